//! Serving over real TCP sockets: keep-conn sequences, many connections, management
//! records, aborts, disconnects, large bodies, the connection limit, and embedding.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;
use ember_fcgi_mio::{Limits, Listen, Server};

#[test]
fn keep_conn_sequence_and_close_without_keep_conn() {
    let server = tcp_server(test_limits());
    let mut c = server.client();
    for i in 0..50 {
        assert_eq!(c.get("/hello", &i.to_string()), format!("hello {i}"));
    }
    // The same id again, then a request without KEEP_CONN: the server closes after it.
    c.send(&request_bytes(1, false, "/hello", "last", b""));
    assert_eq!(c.reply(1).body_str(), "hello last");
    assert!(c.closed_by_server(), "no KEEP_CONN: the server closes");
    server.wait_no_connections();
    let s = server.stop();
    assert_eq!(s.requests, 51);
    assert_eq!(s.accepted, 1);
    assert_eq!(s.closed_with_error, 0);
}

#[test]
fn many_concurrent_connections() {
    let server = tcp_server(test_limits());
    let mut clients: Vec<Client> = (0..200).map(|_| server.client()).collect();
    for round in 0..3 {
        for (i, c) in clients.iter_mut().enumerate() {
            c.send(&request_bytes(1, true, "/hello", &format!("{round}-{i}"), b"some body"));
        }
        for (i, c) in clients.iter_mut().enumerate() {
            assert_eq!(c.reply(1).body_str(), format!("hello {round}-{i}"));
        }
    }
    assert_eq!(server.snapshot().open_connections, 200);
    drop(clients);
    server.wait_no_connections();
    let s = server.stop();
    assert_eq!((s.accepted, s.requests, s.refused_over_limit), (200, 600, 0));
}

#[test]
fn get_values_reports_max_connections() {
    let server = tcp_server(test_limits().with_max_connections(77));
    let mut c = server.client();
    c.send(&get_values_bytes(&["FCGI_MAX_CONNS", "FCGI_MPXS_CONNS", "NOT_A_VARIABLE"]));
    let r = c.record();
    assert_eq!((r.kind, r.id), (GET_VALUES_RESULT, 0));
    let values = decode_pairs(&r.content);
    assert!(values.contains(&("FCGI_MAX_CONNS".into(), "77".into())), "{values:?}");
    assert!(values.contains(&("FCGI_MPXS_CONNS".into(), "0".into())), "{values:?}");
    assert_eq!(values.len(), 2);
    assert_eq!(c.get("/hello", "after"), "hello after");
}

#[test]
fn stderr_errors_and_unknown_paths() {
    let server = tcp_server(test_limits());
    let mut c = server.client();
    c.send(&request_bytes(1, true, "/stderr", "", b""));
    let r = c.reply(1);
    assert_eq!((r.stderr.as_slice(), r.body()), (&b"a warning"[..], &b"ok"[..]));
    c.send(&request_bytes(1, true, "/fail", "", b""));
    let r = c.reply(1);
    assert!(r.stdout.starts_with(b"Status: 500"), "{:?}", r.body_str());
    assert_eq!(r.app_status, 1);
    assert_eq!(c.get("/hello", "x"), "hello x");
}

#[test]
fn abort_request_mid_body() {
    let server = tcp_server(test_limits());
    let mut c = server.client();
    // The handler waits for the body; abort it halfway.
    let mut msg = begin_bytes(1, true);
    msg.extend(params_bytes(1, &[("SCRIPT_NAME", "/wait"), ("CONTENT_LENGTH", "100000")]));
    push_record(&mut msg, STDIN, 1, &[7; 1000]);
    c.send(&msg);
    std::thread::sleep(Duration::from_millis(50));
    c.send(&abort_bytes(1));
    let r = c.reply(1);
    assert_eq!(r.protocol_status, 0, "END_REQUEST REQUEST_COMPLETE after an abort");
    // Stale stdin for the aborted id is ignored; the connection serves the next request.
    let mut stale = Vec::new();
    push_record(&mut stale, STDIN, 1, &[7; 1000]);
    c.send(&stale);
    assert_eq!(c.get("/hello", "again"), "hello again");
    drop(c);
    server.wait_no_connections();
    let s = server.stop();
    assert_eq!(s.requests_aborted, 1);
    assert_eq!(s.requests, 2);
}

#[test]
fn client_disconnects_mid_request_and_mid_response() {
    let server = tcp_server(test_limits());
    // Mid-request: params sent, body cut short, then the client is gone.
    {
        let mut c = server.client();
        let mut msg = begin_bytes(1, true);
        msg.extend(params_bytes(1, &[("SCRIPT_NAME", "/sink"), ("CONTENT_LENGTH", "1000000")]));
        push_record(&mut msg, STDIN, 1, &[1; 5000]);
        c.send(&msg);
    }
    server.wait_no_connections();
    // Mid-response: ask for 32 MiB, read a little, close with unread data (a reset).
    {
        let mut c = server.client();
        c.send(&request_bytes(1, true, "/source", &(32 << 20).to_string(), b""));
        let mut buf = vec![0u8; 100_000];
        c.stream.read_exact(&mut buf).unwrap();
    }
    server.wait_no_connections();
    // Mid-head: BEGIN and half a PARAMS record.
    {
        let mut c = server.client();
        let mut msg = begin_bytes(1, true);
        msg.extend_from_slice(&params_bytes(1, &[("SCRIPT_NAME", "/hello")])[..12]);
        c.send(&msg);
    }
    server.wait_no_connections();
    let mut c = server.client();
    assert_eq!(c.get("/hello", "still fine"), "hello still fine");
    drop(c);
    server.wait_no_connections();
    let s = server.stop();
    assert_eq!(s.open_connections, 0);
    assert_eq!(s.accepted, 4);
}

#[test]
fn large_bodies_both_ways() {
    let server = tcp_server(test_limits());
    let mut c = server.client();
    const SIZE: u64 = 64 << 20;
    // In: stream 64 MiB of stdin in full records; the handler hashes it.
    let mut msg = begin_bytes(1, true);
    msg.extend(params_bytes(1, &[("SCRIPT_NAME", "/sink"), ("CONTENT_LENGTH", &SIZE.to_string())]));
    c.send(&msg);
    let mut fnv = Fnv::new();
    let mut chunk = vec![0u8; 65528];
    let mut record = Vec::with_capacity(65536 + 8);
    let mut sent = 0u64;
    while sent < SIZE {
        let n = (SIZE - sent).min(chunk.len() as u64) as usize;
        pattern(sent, &mut chunk[..n]);
        fnv.update(&chunk[..n]);
        record.clear();
        push_record(&mut record, STDIN, 1, &chunk[..n]);
        c.send(&record);
        sent += n as u64;
    }
    record.clear();
    push_record(&mut record, STDIN, 1, b"");
    c.send(&record);
    assert_eq!(c.reply(1).body_str(), format!("{SIZE} {:016x}", fnv.0));

    // Out: 64 MiB of stdout, checked byte for byte without keeping it.
    c.send(&request_bytes(1, true, "/source", &SIZE.to_string(), b""));
    let mut got = 0u64;
    let mut head = Vec::new();
    let mut in_body = false;
    loop {
        let r = c.record();
        match r.kind {
            STDOUT if in_body => {
                for (k, b) in r.content.iter().enumerate() {
                    assert_eq!(*b, pattern_byte(got + k as u64), "byte {}", got + k as u64);
                }
                got += r.content.len() as u64;
            }
            STDOUT => {
                head.extend_from_slice(&r.content);
                if let Some(p) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                    let body = head.split_off(p + 4);
                    for (k, b) in body.iter().enumerate() {
                        assert_eq!(*b, pattern_byte(k as u64));
                    }
                    got = body.len() as u64;
                    in_body = true;
                }
            }
            END_REQUEST => break,
            k => panic!("unexpected record {k}"),
        }
    }
    assert_eq!(got, SIZE);
    assert_eq!(c.get("/hello", "after"), "hello after");
}

#[test]
fn over_the_connection_limit_is_closed_at_once() {
    let server = tcp_server(test_limits().with_max_connections(2));
    let mut a = server.client();
    let mut b = server.client();
    assert_eq!(a.get("/hello", "a"), "hello a");
    assert_eq!(b.get("/hello", "b"), "hello b");
    let mut extra = server.client();
    extra.send(&request_bytes(1, true, "/hello", "extra", b""));
    assert!(extra.closed_by_server(), "the third connection is closed");
    assert_eq!(a.get("/hello", "a2"), "hello a2");
    assert_eq!(b.get("/hello", "b2"), "hello b2");
    assert_eq!(server.snapshot().refused_over_limit, 1);
    drop((a, b));
    server.wait_no_connections();
    // Room again.
    let mut c = server.client();
    assert_eq!(c.get("/hello", "c"), "hello c");
    drop(c);
    server.wait_no_connections();
    let s = server.stop();
    assert_eq!((s.accepted, s.refused_over_limit, s.open_connections), (3, 1, 0));
}

#[test]
fn memory_budget_is_known_before_start() {
    let listen = Listen::Tcp("127.0.0.1:0".parse().unwrap());
    let server = Server::bind(&listen, TestHandler, Limits::default().with_max_connections(1000)).unwrap();
    let budget = server.memory_budget();
    // The engine holds no buffers: request memory is lent from the pool while busy.
    assert!(budget.connection_future < budget.request_memory, "{budget}");
    assert!(budget.per_connection > budget.connection_future);
    assert_eq!(budget.request_memory, Limits::SERVER_CAPACITIES.memory_bytes());
    assert_eq!(budget.max_connections, 1000);
    assert_eq!(budget.total(), budget.fixed + 1000 * (budget.per_connection + budget.request_memory));
    assert_eq!((budget.request_memory_lent, budget.request_memory_allocated), (0, 0));
}

#[test]
fn unknown_management_record_and_garbage() {
    let server = tcp_server(test_limits());
    let mut c = server.client();
    let mut msg = Vec::new();
    push_record(&mut msg, 42, 0, b"");
    c.send(&msg);
    let r = c.record();
    assert_eq!((r.kind, r.content[0]), (11, 42));
    assert_eq!(c.get("/hello", "1"), "hello 1");
    // A protocol error (version 2) closes the connection; the server is fine.
    c.stream.write_all(&[2, 1, 0, 1, 0, 8, 0, 0]).unwrap();
    assert!(c.closed_by_server());
    server.wait_no_connections();
    assert_eq!(server.client().get("/hello", "2"), "hello 2");
    assert_eq!(server.snapshot().closed_with_error, 1);
}

#[test]
fn stalled_peers_do_not_delay_others() {
    let server = tcp_server(test_limits());
    // A peer that asks for 64 MiB and reads nothing: its output blocks on a full socket.
    let mut stalled_reader = server.client();
    stalled_reader.send(&request_bytes(1, true, "/source", &(64 << 20).to_string(), b""));
    // A peer that starts a large body and stops sending.
    let mut stalled_writer = server.client();
    let mut msg = begin_bytes(1, true);
    msg.extend(params_bytes(1, &[("SCRIPT_NAME", "/sink"), ("CONTENT_LENGTH", "10000000")]));
    push_record(&mut msg, STDIN, 1, &[9; 60000]);
    stalled_writer.send(&msg);
    std::thread::sleep(Duration::from_millis(100));
    for i in 0..20 {
        let mut c = server.client();
        assert_eq!(c.get("/hello", &i.to_string()), format!("hello {i}"));
    }
    // The stalled reader starts reading: it gets everything.
    let mut got = 0u64;
    loop {
        let r = stalled_reader.record();
        match r.kind {
            STDOUT => got += r.content.len() as u64,
            END_REQUEST => break,
            k => panic!("record {k}"),
        }
    }
    assert!(got > 64 << 20);
    drop((stalled_reader, stalled_writer));
    server.wait_no_connections();
}

/// Waits for another thread before answering: the loop sleeps in `poll` meanwhile, so only
/// the waker (through the `mio::Waker`) can bring the request back.
struct CrossThread;

impl ember_fcgi_core::Handler for CrossThread {
    async fn handle(
        &self,
        _req: &mut ember_fcgi_core::Request<'_>,
        res: &mut ember_fcgi_core::Response<'_>,
    ) -> Result<(), ember_fcgi_core::HandlerError> {
        use std::sync::{Arc, Mutex};
        use std::task::{Poll, Waker};
        let state: Arc<Mutex<(bool, Option<Waker>)>> = Arc::default();
        let remote = Arc::clone(&state);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            let mut s = remote.lock().unwrap();
            s.0 = true;
            if let Some(w) = s.1.take() {
                w.wake();
            }
        });
        std::future::poll_fn(|cx| {
            let mut s = state.lock().unwrap();
            if s.0 {
                Poll::Ready(())
            } else {
                s.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
        Ok(res.raw_output().write_all(b"Status: 200 OK\r\n\r\nwoken").await?)
    }
}

#[test]
fn handler_woken_from_another_thread() {
    let listen = Listen::Tcp("127.0.0.1:0".parse().unwrap());
    let server = Running::start(Server::bind(&listen, CrossThread, test_limits()).unwrap());
    let mut clients: Vec<Client> = (0..10).map(|_| server.client()).collect();
    for c in &mut clients {
        c.send(&request_bytes(1, true, "/", "", b""));
    }
    for c in &mut clients {
        assert_eq!(c.reply(1).body_str(), "woken");
    }
}

#[test]
fn multiplexed_requests_with_larger_buffers() {
    let capacities = ember_fcgi_mio::Capacities::new()
        .with_input(8192)
        .with_output(8192)
        .with_params(2048)
        .with_window(1024)
        .with_requests(4);
    let limits = test_limits().with_capacities(capacities);
    let listener = ember_fcgi_mio::Listener::bind(&Listen::Tcp("127.0.0.1:0".parse().unwrap())).unwrap();
    let server = Server::from_listener(listener, TestHandler, limits).unwrap();
    let addr = server.local_addr();
    let (stats, stop) = (server.stats(), server.shutdown_handle());
    let thread = std::thread::spawn(move || server.run());
    let server = Running { addr, stats, stop, thread: Some(thread) };

    let mut c = server.client();
    c.send(&get_values_bytes(&["FCGI_MPXS_CONNS", "FCGI_MAX_REQS"]));
    let values = decode_pairs(&c.record().content);
    assert!(values.contains(&("FCGI_MPXS_CONNS".into(), "1".into())), "{values:?}");
    // Three requests interleaved record by record.
    let ids = [3u16, 7, 9];
    let reqs: Vec<Vec<u8>> =
        ids.iter().map(|id| request_bytes(*id, true, "/hello", &id.to_string(), b"")).collect();
    let mut msg = Vec::new();
    for r in &reqs {
        msg.extend_from_slice(&r[..16]); // BEGIN
    }
    for r in &reqs {
        msg.extend_from_slice(&r[16..]);
    }
    c.send(&msg);
    let mut bodies = std::collections::BTreeMap::<u16, Vec<u8>>::new();
    let mut ended = 0;
    while ended < 3 {
        let r = c.record();
        match r.kind {
            STDOUT => bodies.entry(r.id).or_default().extend_from_slice(&r.content),
            END_REQUEST => ended += 1,
            k => panic!("record {k}"),
        }
    }
    for id in ids {
        let out = String::from_utf8(bodies.remove(&id).unwrap()).unwrap();
        assert!(out.ends_with(&format!("\r\n\r\nhello {id}")), "{out:?}");
    }
}
