//! Graceful shutdown: stop accepting, close idle connections, let a request in flight
//! finish; and the hard stop when `shutdown_timeout` runs out.

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

/// Waits until connecting to `addr` is refused (the listener is closed).
fn wait_refused(addr: std::net::SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_ok() {
        assert!(Instant::now() < deadline, "still accepting after shutdown");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn graceful_shutdown_finishes_the_request_in_flight() {
    let server = Running::tcp(test_limits());
    let addr = server.addr();
    let mut idle = Client::tcp(addr);
    assert_eq!(idle.request(true, "/hello", "", b"").status(), 200);
    let mut busy = Client::tcp(addr);
    busy.send(&request_bytes(1, true, "/gate", "", b""));
    assert_eq!(busy.record().kind, STDOUT); // the head and "started"

    server.stop.shutdown();
    assert!(idle.closed_by_server(), "an idle keep-alive connection is closed");
    wait_refused(addr);
    assert_eq!(server.app.state.finished(), 1, "the gated request is still in flight");

    server.app.state.open_gate();
    let rest = busy.reply(1);
    assert_eq!(rest.stdout, b"released\n");
    assert_eq!(rest.protocol_status, 0);
    assert!(busy.closed_by_server(), "closed after its request, despite KEEP_CONN");

    let stats = server.stats.clone();
    server.stop().expect("run returns Ok");
    let s = stats.snapshot();
    assert_eq!((s.open_connections, s.closed_by_shutdown, s.requests, s.requests_aborted), (0, 0, 2, 0));
}

#[test]
fn shutdown_timeout_closes_what_is_left() {
    let server = Running::tcp(test_limits().with_shutdown_timeout(Duration::from_millis(200)));
    let mut stuck = Client::tcp(server.addr());
    stuck.send(&request_bytes(1, true, "/gate", "", b""));
    assert_eq!(stuck.record().kind, STDOUT);
    let stats = server.stats.clone();
    server.stop().expect("run returns Ok"); // the gate never opens
    assert!(stuck.closed_by_server());
    let s = stats.snapshot();
    assert_eq!((s.open_connections, s.closed_by_shutdown, s.requests_aborted), (0, 1, 1));
}

#[test]
fn shutdown_with_nothing_in_flight_returns_at_once() {
    let server = Running::tcp(test_limits());
    server.stop.shutdown();
    let stats = server.stats.clone();
    server.stop().expect("run returns Ok");
    let s = stats.snapshot();
    // Every counter is zero; the memory figures and the uptime describe the server.
    let gauges = ember_fcgi_smol::StatsSnapshot {
        memory_budget: s.memory_budget,
        memory_in_use: s.memory_in_use,
        memory_per_connection: s.memory_per_connection,
        request_memory: s.request_memory,
        max_connections: s.max_connections,
        uptime: s.uptime,
        ..Default::default()
    };
    assert_eq!(s, gauges);
}
