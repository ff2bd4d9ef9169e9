//! embassy-net on a TAP device in a network namespace of the test's own, behind a real
//! nginx in the same namespace: GETs with params, keep-alive and not, a 1 MiB POST
//! checked by SHA-256, two concurrent clients, and a 431.

use std::process::{Command, Stdio};
use std::time::Duration;

use ember_fcgi_embassy_e2e::checks::{Expect, exercise};
use ember_fcgi_embassy_e2e::netns::NetNs;
use ember_fcgi_embassy_e2e::nginx::Nginx;
use ember_fcgi_embassy_e2e::tools::{KillOnDrop, require, require_root, wait_for_line};

#[test]
#[ignore = "needs root, /dev/net/tun and nginx: run scripts/test-embassy.sh"]
fn nginx_to_embassy_net_over_tap() {
    require_root();
    let nginx = require("NGINX", &["/usr/sbin/nginx"], "nginx");
    let ns = NetNs::create("tap");
    ns.ip(&["tuntap", "add", "dev", "tap0", "mode", "tap"]);
    ns.ip(&["addr", "add", "10.77.0.1/24", "dev", "tap0"]);
    ns.ip(&["link", "set", "tap0", "up"]);
    let report = ns.run(|| {
        let log = tempfile::NamedTempFile::new().expect("log file");
        let mut server = KillOnDrop(
            Command::new(env!("CARGO_BIN_EXE_tap-server"))
                .args(["--tap", "tap0", "--address", "10.77.0.2", "--prefix", "24", "--port", "9000"])
                .stdin(Stdio::null())
                .stdout(log.reopen().expect("log"))
                .stderr(log.reopen().expect("log"))
                .spawn()
                .expect("spawn tap-server"),
        );
        wait_for_line(&mut server, log.path(), "FastCGI on 10.77.0.2:9000", Duration::from_secs(10));
        let nginx = Nginx::start(&nginx, "10.77.0.2:9000");
        let report =
            exercise(&nginx, &Expect { post_bytes: 1 << 20, oversized_header: 6000, timed_requests: 500 });
        assert!(server.0.try_wait().expect("try_wait").is_none(), "tap-server exited");
        report
    });
    println!(
        "tap: {:.0} requests/s (sequential, keep-alive), 1 MiB POST hashed in {:.2} s",
        report.requests_per_second, report.post_seconds
    );
}
