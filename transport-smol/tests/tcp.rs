//! Serving over TCP: IPv4, IPv6, keep-alive sequences, GET_VALUES, many connections, large
//! bodies both ways, and a handler that awaits a timer between flushed lines.

mod common;

use common::*;
use ember_fcgi_smol::Listen;

#[test]
fn ipv4_hello_and_keep_conn_sequence() {
    let server = Running::tcp(test_limits());
    let reply = get_once(server.addr(), "/hello", "");
    assert_eq!((reply.status(), reply.app_status, reply.protocol_status), (200, 0, 0));
    assert_eq!(reply.body(), b"Hello, World!\n");

    let mut c = Client::tcp(server.addr());
    for i in 0..100u32 {
        let body = format!("request {i}");
        let reply = c.request(true, "/echo", "", body.as_bytes());
        assert_eq!(reply.body(), body.as_bytes());
    }
    let reply = c.request(true, "/nope", "", b"");
    assert_eq!(reply.status(), 404);
    drop(c);
    let s = server.wait_idle();
    assert_eq!((s.accepted, s.requests, s.closed_with_error), (2, 102, 0));
}

#[test]
fn ipv6_hello() {
    ember_fcgi_testkit::tools::require_ipv6_loopback();
    let server = Running::bind(&Listen::Tcp("[::1]:0".parse().unwrap()), test_limits());
    assert!(server.addr().is_ipv6());
    let reply = get_once(server.addr(), "/hello", "");
    assert_eq!(reply.body(), b"Hello, World!\n");
    server.wait_idle();
}

#[test]
fn get_values_reports_max_connections() {
    let server = Running::tcp(test_limits().with_max_connections(77));
    let mut c = Client::tcp(server.addr());
    let values = c.get_values(&["FCGI_MAX_CONNS", "FCGI_MPXS_CONNS", "FCGI_UNKNOWN"]);
    assert_eq!(
        values,
        [("FCGI_MAX_CONNS".to_owned(), "77".to_owned()), ("FCGI_MPXS_CONNS".to_owned(), "0".to_owned())]
    );
    // The connection still serves requests afterwards.
    assert_eq!(c.request(true, "/hello", "", b"").body(), b"Hello, World!\n");
}

#[test]
fn two_hundred_concurrent_connections() {
    let server = Running::tcp(test_limits());
    let addr = server.addr();
    let workers: Vec<_> = (0..200)
        .map(|i| {
            std::thread::spawn(move || {
                let mut c = Client::tcp(addr);
                for j in 0..5 {
                    let body = format!("client {i} request {j}");
                    let reply = c.request(true, "/echo", "", body.as_bytes());
                    assert_eq!(reply.body(), body.as_bytes());
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("client thread");
    }
    let s = server.wait_idle();
    assert_eq!((s.accepted, s.requests, s.refused_over_limit, s.closed_with_error), (200, 1000, 0, 0));
}

const BIG: usize = 64 << 20;

#[test]
fn upload_64_mib() {
    let server = Running::tcp(test_limits());
    let mut c = Client::tcp(server.addr());
    let mut body = vec![0u8; BIG];
    pattern(0, &mut body);
    let expected = format!("len={BIG} fnv={:016x}\n", fnv1a(FNV_START, &body));
    // Twice on one connection, with the writer on its own thread (the server reads while
    // it answers, and the answer comes only at the end).
    for _ in 0..2 {
        let bytes = request_bytes(1, true, "/upload", "", &body);
        let mut writer = c.stream.try_clone().expect("clone");
        let sender = std::thread::spawn(move || std::io::Write::write_all(&mut writer, &bytes).map(|_| ()));
        let reply = c.reply(1);
        sender.join().expect("sender").expect("send");
        assert_eq!(reply.body_str(), expected);
    }
    drop(c);
    server.wait_idle();
}

#[test]
fn download_64_mib() {
    let server = Running::tcp(test_limits());
    let mut c = Client::tcp(server.addr());
    c.send(&request_bytes(1, true, "/download", &format!("n={BIG}"), b""));
    let reply = c.reply(1);
    let body = reply.body();
    assert_eq!(body.len(), BIG);
    let mut expected = vec![0u8; BIG];
    pattern(0, &mut expected);
    assert_eq!(fnv1a(FNV_START, body), fnv1a(FNV_START, &expected));
    assert!(body == expected.as_slice());
    // And the connection goes on.
    assert_eq!(c.request(true, "/hello", "", b"").body(), b"Hello, World!\n");
}

#[test]
fn echo_16_mib_full_duplex() {
    let server = Running::tcp(test_limits());
    let mut c = Client::tcp(server.addr());
    let mut body = vec![0u8; 16 << 20];
    pattern(7, &mut body);
    let bytes = request_bytes(1, true, "/echo", "", &body);
    let mut writer = c.stream.try_clone().expect("clone");
    let sender = std::thread::spawn(move || std::io::Write::write_all(&mut writer, &bytes).map(|_| ()));
    let reply = c.reply(1);
    sender.join().expect("sender").expect("send");
    assert!(reply.body() == body.as_slice(), "echo differs");
}

#[test]
fn handler_awaits_timer_between_flushed_lines() {
    let server = Running::tcp(test_limits());
    let mut c = Client::tcp(server.addr());
    c.send(&request_bytes(1, true, "/ndjson", "n=5&ms=30", b""));
    // Each line arrives as its own flushed STDOUT record, before the request ends.
    let mut lines = Vec::new();
    let mut stdout = Vec::new();
    loop {
        let r = c.record();
        if r.kind == END_REQUEST {
            break;
        }
        assert_eq!(r.kind, STDOUT);
        stdout.extend_from_slice(&r.content);
        if r.content.ends_with(b"}\n") {
            lines.push(String::from_utf8(r.content).unwrap());
        }
    }
    assert_eq!(lines.len(), 5, "one record per flushed line: {lines:?}");
    for (i, line) in lines.iter().enumerate() {
        assert!(line.ends_with(&format!("{{\"line\":{i}}}\n")), "{line:?}");
    }
}

#[test]
fn other_requests_go_on_while_a_handler_awaits() {
    let server = Running::tcp(test_limits());
    let mut waiting = Client::tcp(server.addr());
    waiting.send(&request_bytes(1, true, "/gate", "", b""));
    let first = waiting.record();
    assert_eq!(first.content, b"Status: 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nstarted\n");
    for _ in 0..20 {
        assert_eq!(get_once(server.addr(), "/hello", "").body(), b"Hello, World!\n");
    }
    assert_eq!(server.app.state.finished(), 20, "the gated handler is still waiting");
    server.app.state.open_gate();
    let rest = waiting.reply(1);
    assert_eq!(rest.stdout, b"released\n");
    drop(waiting);
    server.wait_idle();
}

#[test]
fn custom_buffers_small_and_multiplexed() {
    // Tiny buffers: everything streams through 512 bytes in and 256 out.
    let app = TestApp::default();
    let capacities = ember_fcgi_smol::Capacities::new()
        .with_input(512)
        .with_output(256)
        .with_params(1024)
        .with_window(256)
        .with_requests(2);
    let limits = test_limits().with_capacities(capacities);
    let server =
        ember_fcgi_smol::Server::bind(&"127.0.0.1:0".parse().unwrap(), app.clone(), limits).expect("bind");
    let server = Running::start(server, app, 0);
    let mut c = Client::tcp(server.addr());
    let mut body = vec![0u8; 1 << 20];
    pattern(3, &mut body);
    let bytes = request_bytes(1, true, "/echo", "", &body);
    let mut writer = c.stream.try_clone().expect("clone");
    let sender = std::thread::spawn(move || std::io::Write::write_all(&mut writer, &bytes).map(|_| ()));
    assert!(c.reply(1).body() == body.as_slice());
    sender.join().expect("sender").expect("send");
    assert_eq!(c.get_values(&["FCGI_MPXS_CONNS"]), [("FCGI_MPXS_CONNS".to_owned(), "1".to_owned())]);

    // Two requests at once on the connection: the second finishes while the first waits.
    let mut out = request_bytes(1, true, "/gate", "", b"");
    out.extend_from_slice(&request_bytes(2, true, "/hello", "", b""));
    c.send(&out);
    let mut stdout: [Vec<u8>; 3] = Default::default();
    loop {
        let r = c.record();
        if r.kind == END_REQUEST {
            assert_eq!(r.id, 2, "request 2 ends first");
            break;
        }
        stdout[usize::from(r.id)].extend_from_slice(&r.content);
    }
    assert!(stdout[2].ends_with(b"Hello, World!\n"));
    server.app.state.open_gate();
    loop {
        let r = c.record();
        if r.kind == END_REQUEST {
            assert_eq!(r.id, 1);
            break;
        }
        stdout[usize::from(r.id)].extend_from_slice(&r.content);
    }
    assert!(stdout[1].ends_with(b"started\nreleased\n"));
    drop(c);
    server.wait_idle();
}

#[test]
fn close_linger_bounds_a_peer_that_never_closes() {
    let server = Running::tcp(test_limits()); // close_linger 200 ms
    let mut c = Client::tcp(server.addr());
    let reply = c.request(false, "/hello", "", b"");
    assert_eq!(reply.status(), 200);
    // We keep the socket open and send more: the server drains it, then closes anyway.
    c.send(b"trailing bytes the server never parses");
    let s = server.wait_idle();
    assert_eq!((s.closed_with_error, s.requests), (0, 1));
    assert!(c.closed_by_server());
}
