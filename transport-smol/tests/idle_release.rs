//! `IdleRelease` on smol: the engine of a connection idle at a record boundary is dropped
//! and made again when the connection is readable; the web server sees no difference, and
//! a released connection still takes part in timeouts and a graceful shutdown. A resting
//! connection's request memory goes back to the pool even while its engine is kept.

mod common;

use std::time::Duration;

use common::*;
use ember_fcgi_smol::{IdleRelease, Listen, Server};

const AFTER: Duration = Duration::from_millis(50);

fn released_server(limits: ember_fcgi_smol::Limits) -> Running {
    let app = TestApp::default();
    let listen = Listen::Tcp("127.0.0.1:0".parse().unwrap());
    let server = Server::bind(&listen, app.clone(), limits)
        .expect("bind")
        .with_idle_release(IdleRelease::default().with_after(AFTER).with_keep(0));
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
    let limits = test_limits().with_idle_timeout(Duration::from_millis(300));
    let server = released_server(limits);
    let mut c = Client::tcp(server.addr());
    assert_eq!(c.request(true, "/hello", "", b"").body(), b"Hello, World!\n");
    assert!(c.closed_by_server(), "closed after idle_timeout");
    let s = server.wait_idle();
    assert_eq!(s.timed_out_idle, 1);
}

#[test]
fn request_memory_goes_back_while_the_connection_stays() {
    // Engines kept: only the request memory comes and goes.
    let app = TestApp::default();
    let listen = Listen::Tcp("127.0.0.1:0".parse().unwrap());
    let server = Server::bind(&listen, app.clone(), test_limits())
        .expect("bind")
        .with_idle_release(IdleRelease::NEVER);
    let server = Running::start(server, app, 0);
    let block = test_limits().capacities.memory_bytes() as u64;
    let mut c = Client::tcp(server.addr());
    for _ in 0..3 {
        assert_eq!(c.request(true, "/hello", "", b"").body(), b"Hello, World!\n");
        // At rest: the runtime recalls the block within a sweep or two (`memory_after`),
        // and the next request borrows the same one.
        let s = server.wait_for("the block back in the pool", |s| s.memory_lent == 0);
        assert_eq!(s.memory_allocated, block);
    }
    assert_eq!(server.stats.snapshot().open_connections, 1);
}
