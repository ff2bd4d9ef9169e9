//! The sockets' readiness flags and the skipped-body path: an end of input that arrives
//! together with the last data is still seen, and a body the handler skips is thrown away
//! without losing the stream's place.

mod common;

use std::net::Shutdown;

use common::*;

/// One request completed (so the server is past its first events), then `bytes` and a
/// half-close in one go: data and FIN arrive together.
fn send_and_half_close(server: &Running, bytes: &[u8]) -> Client {
    let mut c = Client::tcp(server.addr());
    assert_eq!(c.request(true, "/hello", "", b"").body(), b"Hello, World!\n");
    c.send(bytes);
    c.stream.shutdown(Shutdown::Write).expect("shutdown");
    c
}

#[test]
fn end_of_input_with_the_last_request_is_seen() {
    let server = Running::tcp(test_limits());
    let mut c = send_and_half_close(&server, &request_bytes(1, true, "/hello", "", b""));
    assert_eq!(c.reply(1).body(), b"Hello, World!\n");
    assert!(c.closed_by_server(), "keep-conn, but the peer is gone: closed at once");
    server.wait_idle();
}

#[test]
fn end_of_input_inside_a_body_aborts_the_request() {
    let server = Running::tcp(test_limits());
    let mut msg = Vec::new();
    push_begin(&mut msg, 1, true);
    push_stream(&mut msg, PARAMS, 1, &params_for("/upload", "", "100000"));
    push_record(&mut msg, PARAMS, 1, b"");
    push_record(&mut msg, STDIN, 1, &[7; 1000]);
    let mut c = send_and_half_close(&server, &msg);
    assert!(c.closed_by_server(), "an incomplete request gets nothing");
    server.wait_idle();
    server.check_healthy();
}

#[test]
fn skipped_bodies_keep_the_stream_in_sync() {
    let server = Running::tcp(test_limits());
    let mut c = Client::tcp(server.addr());
    let body: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
    for _ in 0..3 {
        // `/hello` does not read its body: the reader throws it away.
        assert_eq!(c.request(true, "/hello", "", &body).body(), b"Hello, World!\n");
        let reply = c.request(true, "/upload", "", &body[..70_000]);
        assert_eq!(reply.body_str(), format!("len=70000 fnv={:016x}\n", fnv1a(FNV_START, &body[..70_000])));
    }
    drop(c);
    server.check_healthy();
}
