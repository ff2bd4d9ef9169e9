//! `IdleRelease` on smol: the engine of a connection idle at a record boundary is dropped
//! and made again when the connection is readable; the web server sees no difference, and
//! a released connection still takes part in timeouts and a graceful shutdown.

mod common;

use std::time::Duration;

use common::*;
use ember_fcgi_smol::{IdleRelease, Listen, Server};

const AFTER: Duration = Duration::from_millis(50);

fn released_server(limits: ember_fcgi_smol::Limits) -> Running {
    let app = TestApp::default();
    let listen = Listen::Tcp("127.0.0.1:0".parse().unwrap());
    let server = Server::bind(&listen, app.clone(), limits).expect("bind").with_idle_release(IdleRelease {
        after: AFTER,
        keep: 0,
        ..IdleRelease::default()
    });
    Running::start(server, app, 0)
}

#[test]
fn a_released_connection_serves_on() {
    let server = released_server(test_limits());
    let mut c = Client::tcp(server.addr());
    let body: Vec<u8> = (0..70_000u32).map(|i| i as u8).collect();
    for round in 0..3 {
        std::thread::sleep(4 * AFTER);
        let reply = c.request(true, "/upload", "", &body);
        let expected = format!("len=70000 fnv={:016x}\n", fnv1a(FNV_START, &body));
        assert_eq!(reply.body_str(), expected, "round {round}");
        assert_eq!(c.request(true, "/hello", "", b"").body(), b"Hello, World!\n", "round {round}");
    }
    std::thread::sleep(4 * AFTER);
    let stats = server.stats.clone();
    server.stop().expect("run returns Ok");
    assert!(c.closed_by_server(), "closed by the shutdown");
    let s = stats.snapshot();
    assert_eq!((s.requests, s.closed_with_error, s.open_connections), (6, 0, 0));
}

#[test]
fn a_released_connection_still_times_out() {
    let limits = ember_fcgi_smol::Limits { idle_timeout: Duration::from_millis(300), ..test_limits() };
    let server = released_server(limits);
    let mut c = Client::tcp(server.addr());
    assert_eq!(c.request(true, "/hello", "", b"").body(), b"Hello, World!\n");
    assert!(c.closed_by_server(), "closed after idle_timeout");
    let s = server.wait_idle();
    assert_eq!(s.timed_out_idle, 1);
}
