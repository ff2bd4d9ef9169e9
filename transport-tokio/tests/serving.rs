//! Serving with `run()` and with `serve()` inside an application's tokio runtime: plain
//! requests, handlers that await tokio's timers, sockets, `spawn_blocking` and
//! `spawn_local`, a panicking handler, the head and idle timeouts, graceful shutdown.

mod common;

use std::future::Future as _;
use std::io::Write as _;
use std::time::{Duration, Instant};

use common::*;

/// One test function per scenario and way of running.
macro_rules! both {
    ($($scenario:ident),* $(,)?) => {
        mod run {
            $(#[test] fn $scenario() { super::$scenario(super::Mode::Run) })*
        }
        mod serve {
            $(#[test] fn $scenario() { super::$scenario(super::Mode::Serve) })*
        }
        mod serve_multi_thread {
            $(#[test] fn $scenario() { super::$scenario(super::Mode::ServeMultiThread) })*
        }
    };
}

both!(
    hello_keep_alive,
    handler_awaits_a_tokio_timer,
    handler_connects_a_tokio_socket,
    handler_awaits_spawn_blocking_and_spawn_local,
    timer_handlers_go_on_concurrently,
    panicking_handler_gets_a_500_and_the_server_goes_on,
    head_timeout_closes_a_stalled_head,
    idle_timeout_closes_an_idle_connection,
    graceful_shutdown_returns,
);

fn hello_keep_alive(mode: Mode) {
    let server = Running::tcp(test_limits(), mode);
    let mut c = Client::tcp(server.addr());
    for i in 0..50 {
        let reply = c.request(true, "/hello", "", b"");
        assert_eq!((reply.status(), reply.app_status, reply.protocol_status), (200, 0, 0), "request {i}");
        assert_eq!(reply.body(), b"Hello, World!\n");
    }
    let body = vec![7u8; 300_000];
    assert_eq!(c.request(true, "/echo", "", &body).body(), &body[..]);
    assert_eq!(c.request(false, "/nothing", "", b"").status(), 404);
    assert!(c.closed_by_server(), "closed after a request without KEEP_CONN");
    let s = server.wait_for("no open connections", |s| s.open_connections == 0);
    assert_eq!((s.accepted, s.requests, s.closed_with_error), (1, 52, 0));
}

fn handler_awaits_a_tokio_timer(mode: Mode) {
    let server = Running::tcp(test_limits(), mode);
    let mut c = Client::tcp(server.addr());
    for _ in 0..3 {
        let started = Instant::now();
        let reply = c.request(true, "/sleep", "ms=10", b"");
        assert_eq!(reply.status(), 200);
        let slept: u64 =
            reply.body_str().trim().trim_start_matches("slept ").trim_end_matches(" ms").parse().unwrap();
        assert!(slept >= 10, "{}", reply.body_str());
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    drop(c);
    server.check_healthy();
}

fn handler_connects_a_tokio_socket(mode: Mode) {
    let peer = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the peer");
    let port = peer.local_addr().unwrap().port();
    let feeder = std::thread::spawn(move || {
        for _ in 0..2 {
            let (mut s, _) = peer.accept().expect("accept");
            s.write_all(b"from the peer\n").expect("write");
        }
    });
    let server = Running::tcp(test_limits(), mode);
    let mut c = Client::tcp(server.addr());
    for _ in 0..2 {
        let reply = c.request(true, "/connect", &format!("port={port}"), b"");
        assert_eq!((reply.status(), reply.body()), (200, &b"from the peer\n"[..]));
    }
    feeder.join().unwrap();
    drop(c);
    server.check_healthy();
}

fn handler_awaits_spawn_blocking_and_spawn_local(mode: Mode) {
    let server = Running::tcp(test_limits(), mode);
    let mut c = Client::tcp(server.addr());
    assert_eq!(c.request(true, "/blocking", "n=21", b"").body(), b"42\n");
    assert_eq!(c.request(true, "/local", "", b"").body(), b"42\n");
    assert_eq!(c.request(true, "/spawn", "", b"").status(), 200);
    drop(c);
    server.check_healthy();
}

fn timer_handlers_go_on_concurrently(mode: Mode) {
    let server = Running::tcp(test_limits(), mode);
    let addr = server.addr();
    let started = Instant::now();
    let clients: Vec<_> =
        (0..20).map(|_| std::thread::spawn(move || get_once(addr, "/sleep", "ms=300").status())).collect();
    for c in clients {
        assert_eq!(c.join().unwrap(), 200);
    }
    // One after another they would take 6 s.
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    server.check_healthy();
}

fn panicking_handler_gets_a_500_and_the_server_goes_on(mode: Mode) {
    let server = Running::tcp(test_limits(), mode);
    let mut other = Client::tcp(server.addr());
    assert_eq!(other.request(true, "/hello", "", b"").status(), 200);
    let mut c = Client::tcp(server.addr());
    assert_eq!(c.request(true, "/panic", "", b"").status(), 500);
    assert_eq!(c.request(true, "/hello", "", b"").status(), 200);
    let s = server.wait_for("the panic", |s| s.handler_panics == 1);
    assert_eq!(s.open_connections, 2);
    drop(c);
    assert_eq!(other.request(true, "/hello", "", b"").status(), 200);
    drop(other);
    server.check_healthy();
}

fn head_timeout_closes_a_stalled_head(mode: Mode) {
    let server = Running::tcp(test_limits().with_head_timeout(Duration::from_millis(300)), mode);
    let mut c = Client::tcp(server.addr());
    let mut out = Vec::new();
    push_begin(&mut out, 1, true);
    push_record(&mut out, PARAMS, 1, &params_for("/hello", "", ""));
    c.send(&out); // params that never end
    let started = Instant::now();
    assert!(c.closed_by_server());
    assert!(started.elapsed() >= Duration::from_millis(250), "{:?}", started.elapsed());
    let s = server.wait_for("no open connections", |s| s.open_connections == 0);
    assert_eq!((s.timed_out_head, s.requests), (1, 0));
    server.check_healthy();
}

fn idle_timeout_closes_an_idle_connection(mode: Mode) {
    let server = Running::tcp(test_limits().with_idle_timeout(Duration::from_millis(300)), mode);
    let mut c = Client::tcp(server.addr());
    // A request that awaits longer than the idle timeout is not cut...
    assert_eq!(c.request(true, "/sleep", "ms=500", b"").status(), 200);
    // ...but the idle connection afterwards is closed.
    assert!(c.closed_by_server());
    let mut silent = Client::tcp(server.addr());
    assert!(silent.closed_by_server());
    let s = server.wait_for("no open connections", |s| s.open_connections == 0);
    assert_eq!((s.timed_out_idle, s.closed_with_error), (2, 0));
    server.check_healthy();
}

fn graceful_shutdown_returns(mode: Mode) {
    let server = Running::tcp(test_limits(), mode);
    let addr = server.addr();
    let mut idle = Client::tcp(addr);
    assert_eq!(idle.request(true, "/hello", "", b"").status(), 200);
    let mut busy = Client::tcp(addr);
    busy.send(&request_bytes(1, true, "/gate", "", b""));
    assert_eq!(busy.record().kind, STDOUT); // the head and "started"

    server.stop.shutdown();
    assert!(idle.closed_by_server(), "an idle keep-alive connection is closed");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_ok() {
        assert!(Instant::now() < deadline, "still accepting after shutdown");
        std::thread::sleep(Duration::from_millis(5));
    }
    server.app.state.open_gate();
    assert_eq!(busy.reply(1).stdout, b"released\n");
    assert!(busy.closed_by_server(), "closed after its request, despite KEEP_CONN");
    let stats = server.stats.clone();
    server.stop().expect("the server returns Ok");
    let s = stats.snapshot();
    assert_eq!((s.open_connections, s.closed_by_shutdown, s.requests), (0, 0, 2));
}

#[test]
fn serve_outside_a_tokio_runtime_is_an_error() {
    let listen = ember_fcgi_tokio::Listen::Tcp("127.0.0.1:0".parse().unwrap());
    let server = ember_fcgi_tokio::Server::bind(&listen, TestApp::default(), test_limits()).expect("bind");
    let mut serve = std::pin::pin!(server.serve());
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match serve.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(Err(e)) => assert!(e.to_string().contains("tokio runtime"), "{e}"),
        other => panic!("expected an error, got {other:?}"),
    }
}
