//! `IdleRelease` on tokio (with `serve()` in an application's runtime): the engine of a
//! connection idle at a record boundary is dropped and made again when the connection is
//! readable, also while a handler awaits a tokio timer on another connection; a released
//! connection still times out. A resting connection's request memory goes back to the pool.

mod common;

use std::time::Duration;

use common::*;
use ember_fcgi_tokio::{IdleRelease, Limits, Listen, Server};

const AFTER: Duration = Duration::from_millis(50);

fn released_server(limits: Limits, release: IdleRelease) -> Running {
    let app = TestApp::default();
    let listen = Listen::Tcp("127.0.0.1:0".parse().unwrap());
    let server = Server::bind(&listen, app.clone(), limits).expect("bind").with_idle_release(release);
    Running::start(server, app, Mode::Serve)
}

#[test]
fn a_released_connection_serves_on() {
    let server = released_server(test_limits(), IdleRelease::default().with_after(AFTER).with_keep(0));
    let mut c = Client::tcp(server.addr());
    let body: Vec<u8> = (0..70_000u32).map(|i| i as u8).collect();
    for round in 0..3 {
        std::thread::sleep(4 * AFTER);
        assert_eq!(c.request(true, "/echo", "", &body).body(), &body[..], "round {round}");
        assert_eq!(c.request(true, "/sleep", "ms=20", b"").status(), 200, "round {round}");
    }
    std::thread::sleep(4 * AFTER);
    let stats = server.stats.clone();
    server.stop().expect("serve returns Ok");
    assert!(c.closed_by_server(), "closed by the shutdown");
    let s = stats.snapshot();
    assert_eq!((s.requests, s.closed_with_error, s.open_connections), (6, 0, 0));
}

#[test]
fn a_released_connection_still_times_out() {
    let limits = test_limits().with_idle_timeout(Duration::from_millis(300));
    let server = released_server(limits, IdleRelease::default().with_after(AFTER).with_keep(0));
    let mut c = Client::tcp(server.addr());
    assert_eq!(c.request(true, "/hello", "", b"").body(), b"Hello, World!\n");
    assert!(c.closed_by_server(), "closed after idle_timeout");
    let s = server.wait_for("no open connections", |s| s.open_connections == 0);
    assert_eq!(s.timed_out_idle, 1);
}

#[test]
fn request_memory_goes_back_while_the_connection_stays() {
    let server = released_server(test_limits(), IdleRelease::NEVER);
    let block = test_limits().capacities.memory_bytes() as u64;
    let mut c = Client::tcp(server.addr());
    for _ in 0..3 {
        assert_eq!(c.request(true, "/hello", "", b"").body(), b"Hello, World!\n");
        let s = server.wait_for("the block back in the pool", |s| s.memory_lent == 0);
        assert_eq!(s.memory_allocated, block);
    }
    assert_eq!(server.stats.snapshot().open_connections, 1);
}
