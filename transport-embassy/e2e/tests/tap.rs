//! embassy-net on a TAP device in a network namespace of the test's own: behind a real
//! nginx in the same namespace (GETs with params, keep-alive and not, a 1 MiB POST checked
//! by SHA-256, two concurrent clients, a 431), and raw FastCGI clients for the timeouts
//! and the closes.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use ember_fcgi_embassy_e2e::checks::{Expect, exercise};
use ember_fcgi_embassy_e2e::netns::{self, NetNs};
use ember_fcgi_embassy_e2e::nginx::Nginx;
use ember_fcgi_embassy_e2e::raw::{END_REQUEST, half_a_body, pair, record, request};
use ember_fcgi_embassy_e2e::tools::{require, require_root, start_logged};

const SERVER: &str = "10.77.0.2:9000";

/// Runs `f` inside a fresh namespace where tap-server (with `args`) serves on [`SERVER`].
fn with_tap_server<T: Send>(tag: &str, args: &[&str], f: impl FnOnce() -> T + Send) -> T {
    require_root();
    let ns = NetNs::create(tag);
    let name = ns.name().to_owned();
    ns.ip(&["tuntap", "add", "dev", "tap0", "mode", "tap"]);
    ns.ip(&["addr", "add", "10.77.0.1/24", "dev", "tap0"]);
    ns.ip(&["link", "set", "tap0", "up"]);
    let value = ns.run(|| {
        let (mut server, _log) = start_logged(
            Command::new(env!("CARGO_BIN_EXE_tap-server"))
                .args(["--tap", "tap0", "--address", "10.77.0.2", "--prefix", "24", "--port", "9000"])
                .args(args),
            "FastCGI on 10.77.0.2:9000",
            Duration::from_secs(10),
        );
        let value = f();
        assert!(server.0.try_wait().expect("try_wait").is_none(), "tap-server exited");
        value
    });
    drop(ns);
    assert!(!netns::exists(&name), "network namespace {name} left behind");
    value
}

#[test]
#[ignore = "needs root, /dev/net/tun and nginx: run scripts/test-embassy.sh"]
fn nginx_to_embassy_net_over_tap() {
    let nginx = require("NGINX", &["/usr/sbin/nginx"], "nginx");
    let report = with_tap_server("tap", &[], || {
        let nginx = Nginx::start(&nginx, SERVER);
        exercise(&nginx, &Expect { post_bytes: 1 << 20, oversized_header: 6000, timed_requests: 500 })
    });
    println!(
        "tap: {:.0} requests/s (sequential, keep-alive), 1 MiB POST hashed in {:.2} s",
        report.requests_per_second, report.post_seconds
    );
}

fn connect() -> TcpStream {
    let stream = TcpStream::connect(SERVER).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(5))).expect("read timeout");
    stream
}

/// Reads until the server closes its side: the bytes, and how long it took. A reset
/// fails: every close here must be graceful (a FIN).
fn read_until_closed(stream: &mut TcpStream) -> (Vec<u8>, Duration) {
    let start = Instant::now();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).unwrap_or_else(|e| panic!("expected a FIN, got {e} after {bytes:?}"));
    (bytes, start.elapsed())
}

#[test]
#[ignore = "needs root and /dev/net/tun: run scripts/test-embassy.sh"]
fn timeouts_and_closes_over_tap() {
    let idle = Duration::from_millis(400);
    with_tap_server("tapclose", &["--idle-ms", "400", "--head-ms", "400", "--check-ms", "50"], || {
        // A connection that sends nothing is closed after idle_timeout (timed from the
        // client, which starts its clock a little after the server's, hence the slack).
        let (bytes, waited) = read_until_closed(&mut connect());
        assert!(bytes.is_empty());
        assert!(waited >= idle * 3 / 4 && waited < Duration::from_secs(2), "idle close after {waited:?}");

        // A head that never completes is closed after head_timeout, though bytes arrived.
        let mut stream = connect();
        let mut partial = record(1, &[0, 1, 1, 0, 0, 0, 0, 0]);
        partial.extend_from_slice(&[1, 4, 0, 1, 0, 20, 0, 0, 0x0e]);
        stream.write_all(&partial).expect("write partial head");
        let (bytes, waited) = read_until_closed(&mut stream);
        assert!(bytes.is_empty());
        assert!(waited >= idle * 3 / 4 && waited < Duration::from_secs(2), "head close after {waited:?}");

        // Without keep-conn: the answer, END_REQUEST, then a FIN.
        let mut stream = connect();
        stream.write_all(&request(false)).expect("write request");
        let (bytes, waited) = read_until_closed(&mut stream);
        assert!(bytes.ends_with(&END_REQUEST), "answer ends with END_REQUEST: {bytes:?}");
        assert!(waited < Duration::from_secs(1), "closed after {waited:?}");

        // With keep-conn: two answers on one connection; when the web server closes
        // its side, the server closes too, at once.
        let mut stream = connect();
        for _ in 0..2 {
            stream.write_all(&request(true)).expect("write request");
            let mut seen = Vec::new();
            let mut buf = [0u8; 1024];
            while !seen.ends_with(&END_REQUEST) {
                let n = stream.read(&mut buf).expect("read answer");
                assert!(n > 0, "closed before END_REQUEST: {seen:?}");
                seen.extend_from_slice(&buf[..n]);
            }
        }
        stream.shutdown(Shutdown::Write).expect("shutdown");
        let (bytes, waited) = read_until_closed(&mut stream);
        assert!(bytes.is_empty());
        assert!(waited < Duration::from_millis(300), "closed {waited:?} after the peer");
    });
}

#[test]
#[ignore = "needs root and /dev/net/tun: run scripts/test-embassy.sh"]
fn stalls_and_the_allow_list_over_tap() {
    let body = Duration::from_millis(1000);
    let args = [
        "--body-ms",
        "1000",
        "--send-ms",
        "1000",
        "--request-ms",
        "1500",
        "--check-ms",
        "50",
        "--allow",
        "10.77.0.1",
    ];
    with_tap_server("tapstall", &args, || {
        // Four clients (one per socket of the server) send half a body and stop: every
        // socket is held, so a fifth connection finds none listening and is refused...
        let mut stalled: Vec<TcpStream> = (0..4)
            .map(|_| {
                let mut stream = connect();
                stream.write_all(&half_a_body()).expect("write half a body");
                stream
            })
            .collect();
        let start = Instant::now();
        std::thread::sleep(Duration::from_millis(200));
        assert!(TcpStream::connect(SERVER).is_err(), "a fifth connection while four sockets are held");
        // ... until the body timeout closes them (a FIN, no END_REQUEST): their sockets
        // serve new connections.
        for stream in &mut stalled {
            let (bytes, _) = read_until_closed(stream);
            assert!(!bytes.ends_with(&END_REQUEST), "a stalled request ended: {bytes:?}");
        }
        let waited = start.elapsed();
        assert!(waited >= body * 3 / 4 && waited < body * 3, "stalled bodies closed after {waited:?}");
        // Once the clients close too, the sockets listen again (within a moment).
        drop(stalled);
        std::thread::sleep(Duration::from_millis(100));
        let mut stream = connect();
        stream.write_all(&request(false)).expect("write request");
        let (bytes, _) = read_until_closed(&mut stream);
        assert!(bytes.ends_with(&END_REQUEST), "a new connection is served: {bytes:?}");

        // A handler past the request timeout that wrote nothing: dropped, and a 504.
        let mut stream = connect();
        let mut hang = record(1, &[0, 1, 0, 0, 0, 0, 0, 0]);
        hang.extend(record(4, &pair("QUERY_STRING", "hang")));
        hang.extend(record(4, b""));
        hang.extend(record(5, b""));
        stream.write_all(&hang).expect("write request");
        let (bytes, waited) = read_until_closed(&mut stream);
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("Status: 504 Gateway Timeout\r\n"), "504 after the request timeout: {text:?}");
        assert!(bytes.ends_with(&END_REQUEST), "the 504 ends the request: {bytes:?}");
        assert!(
            waited >= Duration::from_millis(1100) && waited < Duration::from_secs(4),
            "504 after {waited:?}"
        );
    });

    // A peer not in the allow-list is reset at accept, unanswered.
    with_tap_server("tapdeny", &["--allow", "10.77.0.9"], || {
        let mut stream = connect();
        let _ = stream.write_all(&request(false));
        let mut bytes = Vec::new();
        match stream.read_to_end(&mut bytes) {
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "refused with {e}"),
            Ok(_) => panic!("a peer not allowed was answered (then closed): {bytes:?}"),
        }
        assert!(bytes.is_empty(), "a peer not allowed got {bytes:?}");
    });
}
