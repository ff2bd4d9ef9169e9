//! Idle and head timeouts, and graceful shutdown (with a request in flight, and when the
//! shutdown timeout runs out).

mod common;

use std::net::TcpStream;
use std::time::Duration;

use common::*;
use ember_fcgi_mio::{Limits, Listen, Server};

fn short(idle_ms: u64, head_ms: u64, shutdown_ms: u64) -> Limits {
    Limits::default()
        .with_idle_timeout(Duration::from_millis(idle_ms))
        .with_head_timeout(Duration::from_millis(head_ms))
        .with_shutdown_timeout(Duration::from_millis(shutdown_ms))
        .with_close_linger(Duration::from_millis(200))
}

/// BEGIN and PARAMS of a `/wait` request whose body is still to come.
fn waiting_request(body_len: usize) -> Vec<u8> {
    let mut msg = begin_bytes(1, true);
    msg.extend(params_bytes(1, &[("SCRIPT_NAME", "/wait"), ("CONTENT_LENGTH", &body_len.to_string())]));
    msg
}

fn body(len: usize) -> Vec<u8> {
    let mut msg = Vec::new();
    push_stream(&mut msg, STDIN, 1, &vec![3; len]);
    push_record(&mut msg, STDIN, 1, b"");
    msg
}

#[test]
fn idle_connection_is_closed_busy_one_is_not() {
    let server = tcp_server(short(300, 10_000, 5_000));
    // Busy: the handler waits for the body for longer than the idle timeout.
    let mut busy = server.client();
    busy.send(&waiting_request(10));
    // Idle: one request, then nothing.
    let mut idle = server.client();
    assert_eq!(idle.get("/hello", "1"), "hello 1");
    assert!(idle.closed_by_server(), "idle connection closed");
    assert_eq!(server.snapshot().timed_out_idle, 1);
    std::thread::sleep(Duration::from_millis(300));
    busy.send(&body(10));
    assert_eq!(busy.reply(1).body_str(), "done 10");
    // Now idle too: it goes after the timeout.
    assert!(busy.closed_by_server());
    server.wait_no_connections();
    // A never-used connection is idle from the start.
    let mut silent = server.client();
    assert!(silent.closed_by_server());
    server.wait_no_connections();
    let s = server.stop();
    assert_eq!((s.timed_out_idle, s.timed_out_head, s.closed_with_error), (3, 0, 0));
    assert_eq!(s.requests, 2);
}

#[test]
fn slow_head_is_cut_off() {
    let server = tcp_server(short(10_000, 300, 5_000));
    let mut slow = server.client();
    let mut msg = begin_bytes(1, true);
    msg.extend_from_slice(&params_bytes(1, &[("SCRIPT_NAME", "/hello"), ("QUERY_STRING", "x")])[..20]);
    slow.send(&msg);
    assert!(slow.closed_by_server(), "slowloris closed");
    server.wait_no_connections();
    assert_eq!(server.snapshot().timed_out_head, 1);
    // The head timeout does not cover the body: a slow body is fine.
    let mut ok = server.client();
    ok.send(&waiting_request(5));
    std::thread::sleep(Duration::from_millis(500));
    ok.send(&body(5));
    assert_eq!(ok.reply(1).body_str(), "done 5");
    assert_eq!(ok.get("/hello", "fine"), "hello fine");
    drop(ok);
    server.wait_no_connections();
    let s = server.stop();
    assert_eq!((s.timed_out_head, s.timed_out_idle, s.open_connections), (1, 0, 0));
}

#[test]
fn shutdown_lets_the_request_in_flight_finish() {
    let mut server = tcp_server(short(10_000, 10_000, 10_000));
    let addr = server.addr.unwrap();
    let mut busy = server.client();
    busy.send(&waiting_request(1000));
    let mut idle = server.client();
    assert_eq!(idle.get("/hello", "1"), "hello 1");
    wait_until("the request runs", || server.snapshot().requests == 2);

    server.stop.shutdown();
    assert!(idle.closed_by_server(), "idle connections close at once");
    wait_until("the listener is closed", || TcpStream::connect(addr).is_err());
    let thread = server.thread.take().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert!(!thread.is_finished(), "run waits for the request in flight");

    busy.send(&body(1000));
    assert_eq!(busy.reply(1).body_str(), "done 1000");
    assert!(busy.closed_by_server(), "closed once the request is done");
    thread.join().unwrap().expect("run returns Ok");
    let s = server.snapshot();
    assert_eq!((s.open_connections, s.closed_by_shutdown, s.requests_aborted), (0, 0, 0));
}

#[test]
fn shutdown_timeout_closes_what_is_left() {
    let server = tcp_server(short(10_000, 10_000, 300));
    let mut stuck = server.client();
    stuck.send(&waiting_request(1000));
    wait_until("the request runs", || server.snapshot().requests == 1);
    let s = server.stop();
    assert_eq!((s.closed_by_shutdown, s.open_connections), (1, 0));
    assert!(stuck.closed_by_server());
}

#[test]
fn shutdown_before_run_returns_at_once() {
    let listen = Listen::Tcp("127.0.0.1:0".parse().unwrap());
    let server = Server::bind(&listen, TestHandler, Limits::default()).unwrap();
    let stop = server.shutdown_handle();
    stop.shutdown();
    assert!(stop.is_shutdown_requested());
    server.run().unwrap();
}

#[test]
fn close_lingers_discarding_input_then_closes() {
    let server = tcp_server(short(10_000, 10_000, 5_000).with_close_linger(Duration::from_millis(1000)));
    let mut c = server.client();
    c.send(&request_bytes(1, false, "/hello", "bye", b""));
    assert_eq!(c.reply(1).body_str(), "hello bye");
    // No KEEP_CONN: the server shut down its write side (EOF here) but still reads and
    // discards what the peer sends, so the peer sees no reset.
    assert!(c.closed_by_server());
    c.send(&[0u8; 10_000]);
    assert_eq!(server.snapshot().open_connections, 1, "lingering");
    // The peer never closes: the linger time ends it.
    server.wait_no_connections();
    let s = server.stop();
    assert_eq!((s.closed_with_error, s.timed_out_idle), (0, 0));
}
