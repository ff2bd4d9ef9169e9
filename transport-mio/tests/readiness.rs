//! The socket's readiness flags: a read that returns less than asked marks the socket
//! drained until its next event, but an end of input that arrived together with the last
//! data is still seen (`EPOLLRDHUP` is sticky), and a body the handler skips is thrown away
//! with few, large reads.

mod common;

use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use common::*;

/// Connects, completes one request (so the server is past its first events), then sends
/// `bytes` and half-closes in one go: data and FIN arrive together.
fn send_and_half_close(server: &Running, bytes: &[u8]) -> Client {
    let s = TcpStream::connect(server.addr.expect("tcp")).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.set_nodelay(true).unwrap();
    let mut c = Client::new(Stream::Tcp(s));
    assert_eq!(c.get("/hello", "first"), "hello first");
    c.send(bytes);
    c.stream.shutdown(Shutdown::Write).expect("shutdown");
    c
}

#[test]
fn end_of_input_with_the_last_request_is_seen() {
    let server = tcp_server(test_limits());
    let started = Instant::now();
    let mut c = send_and_half_close(&server, &request_bytes(1, true, "/hello", "fin", b""));
    assert_eq!(c.reply(1).body_str(), "hello fin");
    // Keep-conn, but the peer is gone: the server closes at once (not after idle_timeout).
    assert!(c.closed_by_server(), "closed after the reply");
    server.wait_no_connections();
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert_eq!(server.stop().closed_with_error, 0);
}

#[test]
fn end_of_input_inside_a_body_aborts_the_request() {
    let server = tcp_server(test_limits());
    let mut msg = begin_bytes(1, true);
    msg.extend(params_bytes(1, &[("SCRIPT_NAME", "/wait"), ("CONTENT_LENGTH", "100000")]));
    push_record(&mut msg, STDIN, 1, &[7; 1000]);
    let mut c = send_and_half_close(&server, &msg);
    assert!(c.closed_by_server(), "an incomplete request gets nothing");
    server.wait_no_connections();
    let s = server.stop();
    assert_eq!((s.requests, s.requests_aborted), (2, 1));
}

#[test]
fn skipped_bodies_keep_the_stream_in_sync() {
    let server = tcp_server(test_limits());
    let mut c = server.client();
    // `/hello` answers without reading its body: the body is skipped (thrown away by the
    // reader), and the next request on the connection must parse from the right byte.
    let body: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
    for round in 0..3 {
        c.send(&request_bytes(1, true, "/hello", &format!("r{round}"), &body));
        assert_eq!(c.reply(1).body_str(), format!("hello r{round}"));
        c.send(&request_bytes(1, true, "/sink", "", &body[..70_000]));
        assert_eq!(c.reply(1).body_str(), format!("70000 {:016x}", fnv(&body[..70_000])));
    }
    drop(c);
    server.wait_no_connections();
    assert_eq!(server.stop().closed_with_error, 0);
}

fn fnv(bytes: &[u8]) -> u64 {
    let mut f = Fnv::new();
    f.update(bytes);
    f.0
}
