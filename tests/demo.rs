//! `scripts/demo.sh`, the README's first command: without nginx it prints the install
//! command and exits 1; with nginx it serves until interrupted and cleans up after itself.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use support::{EchoOutput, agent, free_port, send};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts").join("demo.sh")
}

#[test]
fn without_nginx_it_prints_the_install_command() {
    let output = Command::new("bash").arg(script()).env("NGINX", "/nonexistent/nginx").output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("apt-get install -y nginx"), "{stderr}");
}

#[test]
fn serves_until_interrupted_then_cleans_up() {
    let nginx = support::tools::nginx();
    support::examples_dir(); // built already: the script's own cargo build is a no-op
    let port = free_port();
    let mut child = Command::new("bash")
        .arg(script())
        .args(["echo", "--transport", "smol", "--port", &port.to_string()])
        .env("NGINX", nginx)
        .env("CARGO_TARGET_DIR", support::target_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut conf = None;
    loop {
        let Ok(line) = rx.recv_timeout(Duration::from_secs(300)) else {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let output = child.wait_with_output().unwrap();
            panic!("demo.sh did not come up: {}", String::from_utf8_lossy(&output.stderr));
        };
        if let Some(path) = line.trim().strip_prefix("nginx config") {
            conf = Some(PathBuf::from(path.trim()));
        }
        if line.contains("Ctrl-C to stop") {
            break;
        }
    }
    let conf = conf.expect("the script names its nginx config");
    let text = std::fs::read_to_string(&conf).unwrap();
    assert!(text.contains("keepalive 8;") && text.contains("fastcgi_keep_conn on;"), "{text}");

    let reply = send(agent().post(&format!("http://127.0.0.1:{port}/demo?x=1")).send_bytes(b"hi"));
    let out = EchoOutput::parse(&reply.body);
    assert_eq!(out.get("QUERY_STRING"), Some("x=1"));
    out.assert_stdin(2, &support::sha256_hex(b"hi"));

    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(!conf.parent().unwrap().exists(), "the temporary directory is removed");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "nginx is gone");
}
