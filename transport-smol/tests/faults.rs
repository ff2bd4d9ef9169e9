//! Faults: ABORT_REQUEST, disconnects mid-request and mid-response, overload, idle and head
//! timeouts, a panicking handler, a refused peer, a protocol error. After each, a normal
//! request still succeeds and no connection is left open.

mod common;

use std::net::Shutdown;
use std::time::Duration;

use common::*;
use ember_fcgi_smol::{Server, WebServerAddrs};

#[test]
fn abort_request_mid_body() {
    let server = Running::tcp(test_limits());
    let mut c = Client::tcp(server.addr());
    let mut out = Vec::new();
    push_begin(&mut out, 1, true);
    push_stream(&mut out, PARAMS, 1, &params_for("/wait-abort", "", "1000"));
    push_record(&mut out, PARAMS, 1, b"");
    push_record(&mut out, STDIN, 1, &[7; 10]);
    c.send(&out);
    server.wait_started(1);
    let mut abort = Vec::new();
    push_record(&mut abort, ABORT_REQUEST, 1, b"");
    c.send(&abort);
    let reply = c.reply(1);
    assert_eq!(reply.protocol_status, 0, "REQUEST_COMPLETE");
    assert!(reply.stdout.is_empty(), "no output after the abort: {reply:?}");
    assert_eq!(server.app.state.aborted(), 1);
    // The connection goes on.
    assert_eq!(c.request(true, "/hello", "", b"").body(), b"Hello, World!\n");
    drop(c);
    let s = server.wait_idle();
    assert_eq!((s.requests, s.requests_aborted), (2, 1));
    server.check_healthy();
}

#[test]
fn client_disconnects_mid_request() {
    let server = Running::tcp(test_limits());
    // During the params.
    let mut c = Client::tcp(server.addr());
    let mut out = Vec::new();
    push_begin(&mut out, 1, true);
    push_record(&mut out, PARAMS, 1, &params_for("/hello", "", "")[..10]);
    c.send(&out);
    drop(c);
    server.wait_idle();
    // During the body, with the handler waiting for it.
    let mut c = Client::tcp(server.addr());
    let mut out = Vec::new();
    push_begin(&mut out, 1, true);
    push_stream(&mut out, PARAMS, 1, &params_for("/wait-abort", "", "1000"));
    push_record(&mut out, PARAMS, 1, b"");
    push_record(&mut out, STDIN, 1, &[1; 100]);
    c.send(&out);
    server.wait_started(1);
    c.stream.shutdown(Shutdown::Both).expect("shutdown");
    drop(c);
    let s = server.wait_idle();
    assert_eq!(server.app.state.aborted(), 1);
    assert_eq!(s.requests_aborted, 1);
    server.check_healthy();
}

#[test]
fn client_disconnects_mid_response() {
    let server = Running::tcp(test_limits());
    let mut c = Client::tcp(server.addr());
    c.send(&request_bytes(1, true, "/download", "n=67108864", b""));
    for _ in 0..4 {
        assert_eq!(c.record().kind, STDOUT);
    }
    drop(c);
    let s = server.wait_for("the download to end", |s| s.requests_aborted == 1);
    assert_eq!(s.requests, 1);
    server.wait_idle();
    server.check_healthy();
}

#[test]
fn over_max_connections_is_accepted_and_closed() {
    let server = Running::tcp(test_limits().with_max_connections(2));
    let mut c1 = Client::tcp(server.addr());
    let mut c2 = Client::tcp(server.addr());
    assert_eq!(c1.request(true, "/hello", "", b"").status(), 200);
    assert_eq!(c2.request(true, "/hello", "", b"").status(), 200);
    let mut c3 = Client::tcp(server.addr());
    assert!(c3.closed_by_server(), "the third connection is closed at once");
    let s = server.wait_for("the refusal", |s| s.refused_over_limit == 1);
    assert_eq!(s.open_connections, 2);
    assert_eq!(c1.get_values(&["FCGI_MAX_CONNS"]), [("FCGI_MAX_CONNS".to_owned(), "2".to_owned())]);
    drop(c1);
    server.wait_for("one connection closed", |s| s.open_connections == 1);
    let mut c4 = Client::tcp(server.addr());
    assert_eq!(c4.request(true, "/hello", "", b"").status(), 200);
    drop((c2, c4));
    server.wait_idle(); // or the next connection could still be over the limit
    server.check_healthy();
}

#[test]
fn idle_timeout_closes_idle_connections_only() {
    let server = Running::tcp(test_limits().with_idle_timeout(Duration::from_millis(300)));
    // A request that takes longer than the idle timeout is not cut...
    let mut c = Client::tcp(server.addr());
    let reply = c.request(true, "/sleep", "ms=700", b"");
    assert_eq!(reply.body(), b"started\ndone\n");
    // ...but the idle connection afterwards is closed.
    assert!(c.closed_by_server());
    // So is one that never sends anything.
    let mut silent = Client::tcp(server.addr());
    assert!(silent.closed_by_server());
    let s = server.wait_idle();
    assert_eq!((s.timed_out_idle, s.closed_with_error), (2, 0));
    server.check_healthy();
}

#[test]
fn head_timeout_closes_slow_heads_only() {
    let server = Running::tcp(test_limits().with_head_timeout(Duration::from_millis(300)));
    // Params that never end: closed.
    let mut c = Client::tcp(server.addr());
    let mut out = Vec::new();
    push_begin(&mut out, 1, true);
    push_record(&mut out, PARAMS, 1, &params_for("/hello", "", ""));
    c.send(&out);
    assert!(c.closed_by_server());
    let s = server.wait_idle();
    assert_eq!((s.timed_out_head, s.requests), (1, 0));
    // A complete head with a slow body is not cut.
    let mut c = Client::tcp(server.addr());
    let mut out = Vec::new();
    push_begin(&mut out, 1, true);
    push_stream(&mut out, PARAMS, 1, &params_for("/upload", "", "4"));
    push_record(&mut out, PARAMS, 1, b"");
    c.send(&out);
    std::thread::sleep(Duration::from_millis(600));
    let mut out = Vec::new();
    push_record(&mut out, STDIN, 1, b"abcd");
    push_record(&mut out, STDIN, 1, b"");
    c.send(&out);
    assert_eq!(c.reply(1).body_str(), format!("len=4 fnv={:016x}\n", fnv1a(FNV_START, b"abcd")));
    drop(c);
    assert_eq!(server.wait_idle().timed_out_head, 1);
    server.check_healthy();
}

#[test]
fn panicking_handler_gets_a_500_and_harms_nobody() {
    let server = Running::tcp(test_limits());
    let mut other = Client::tcp(server.addr());
    assert_eq!(other.request(true, "/hello", "", b"").status(), 200);
    let mut c = Client::tcp(server.addr());
    // Nothing was sent before the panic: the request gets a CGI 500 and the keep-alive
    // connection serves the next request.
    assert_eq!(c.request(true, "/panic", "", b"").status(), 500);
    assert_eq!(c.request(true, "/hello", "", b"").status(), 200);
    let s = server.wait_for("the panic", |s| s.handler_panics == 1);
    assert_eq!(s.open_connections, 2);
    drop(c);
    assert_eq!(other.request(true, "/hello", "", b"").status(), 200);
    drop(other);
    server.check_healthy();
}

#[test]
fn peer_outside_web_server_addrs_is_refused() {
    let app = TestApp::default();
    let server = Server::bind(&"127.0.0.1:0".parse().unwrap(), app.clone(), test_limits())
        .expect("bind")
        .with_web_server_addrs(WebServerAddrs::parse("10.1.2.3, 192.0.2.1"));
    let server = Running::start(server, app, 0);
    let mut c = Client::tcp(server.addr());
    assert!(c.closed_by_server());
    let s = server.wait_for("the refusal", |s| s.refused_not_allowed == 1);
    assert_eq!((s.accepted, s.open_connections), (0, 0));

    let app = TestApp::default();
    let allowed = Server::bind(&"127.0.0.1:0".parse().unwrap(), app.clone(), test_limits())
        .expect("bind")
        .with_web_server_addrs(WebServerAddrs::parse("10.1.2.3,127.0.0.1"));
    let allowed = Running::start(allowed, app, 0);
    allowed.check_healthy();
}

#[test]
fn protocol_error_closes_the_connection() {
    let server = Running::tcp(test_limits());
    let mut c = Client::tcp(server.addr());
    c.send(&[2, 1, 0, 1, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]); // version 2
    assert!(c.closed_by_server());
    let s = server.wait_idle();
    assert_eq!(s.closed_with_error, 1);
    server.check_healthy();
}
