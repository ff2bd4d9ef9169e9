//! Reliability over real sockets: whatever bytes arrive, the server answers every
//! well-formed request correctly, keeps serving others, and leaks no connection.
//!
//! Every scenario is one function taking a [`Transport`] and runs, unchanged, on the mio
//! and on the smol server (`on_both_transports!` makes `scenario::mio` and
//! `scenario::smol`), so the two transports cannot drift apart. After each fault a normal
//! request succeeds on a fresh connection and the open-connection count returns to what
//! the test still holds open; where a counter says what happened, it is checked too.
//!
//! The scenarios also pin down each row of the "What each bad input gets" table (`docs/bad-input.md`)
//! (the `table_*` ones, plus those for aborts, oversize params, short bodies, unknown ids).

mod faults_support;

use std::io;
use std::time::Duration;

use ember_fcgi::server::Limits;
use faults_support::*;

macro_rules! on_both_transports {
    ($($scenario:ident),+ $(,)?) => {$(
        mod $scenario {
            use super::faults_support::Transport;
            #[test]
            fn mio() {
                super::$scenario(Transport::Mio)
            }
            #[test]
            fn smol() {
                super::$scenario(Transport::Smol)
            }
        }
    )+};
}

on_both_transports!(
    one_byte_at_a_time,
    slow_head_is_cut_off,
    idle_connections_time_out,
    many_idle_connections_do_not_hold_up_others,
    peer_vanishes_at_every_byte_of_a_request,
    peer_vanishes_while_the_handler_reads,
    peer_vanishes_mid_response,
    abort_before_params_end,
    abort_during_stdin,
    abort_during_large_response,
    garbage_bytes,
    wrong_version,
    oversize_params_get_431_and_keep_the_connection,
    huge_content_length_with_a_short_body,
    records_for_unknown_request_ids,
    duplicate_begin_closes_the_connection,
    get_values_mid_stream,
    connection_limit_exceeded_twice,
    table_malformed_begin,
    table_unknown_role,
    table_busy_slots,
    table_stream_before_params_end,
    table_data_records,
    table_params_ending_inside_a_pair,
    table_padding_and_records_after_stream_end,
    table_management_records,
    table_half_close,
    stalled_body_times_out,
    non_reading_peer_times_out,
    panicking_handler_gets_a_500_and_harms_nobody,
    panic_after_output_closes_only_its_connection,
    panic_after_output_counts_as_a_handler_panic,
    duration_max_limits_are_valid,
    aborted_is_seen_by_a_handler_that_never_reads,
    stalled_and_healthy_clients_together,
);

fn one_byte_at_a_time(t: Transport) {
    let server = t.start_app(test_limits());
    let mut c = server.client();
    let body = pattern_vec(100);
    let mut bytes = request_bytes(1, true, "/upload", "", &body);
    bytes.extend(get_values_bytes(&["FCGI_MPXS_CONNS"]));
    c.send_bytewise(&bytes, Duration::from_millis(1));
    assert_eq!(c.reply(1).body_str(), upload_answer(&body));
    if c.management.is_empty() {
        let r = c.record();
        c.management.push(r);
    }
    assert_eq!(c.management.len(), 1);
    assert_eq!(c.management[0].kind, GET_VALUES_RESULT);
    assert_eq!(decode_pairs(&c.management[0].content), [("FCGI_MPXS_CONNS".into(), "0".into())]);
    // The same connection at full speed.
    c.hello("fast");
    drop(c);
    let s = server.check_healthy(0);
    assert_eq!((s.requests, s.requests_aborted, s.closed_with_error, s.timed_out_head), (3, 0, 0, 0));
}

fn slow_head_is_cut_off(t: Transport) {
    let server = t.start_app(test_limits().with_head_timeout(Duration::from_millis(300)));
    let mut c = server.client();
    // One byte per 20 ms: the head would take about 3.5 s, far over the head timeout.
    let head = head_bytes(1, true, "/hello", "slow", "");
    let mut sent = 0;
    for b in &head {
        if c.try_send(std::slice::from_ref(b)).is_err() || server.snapshot().timed_out_head > 0 {
            break;
        }
        sent += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(sent < head.len(), "the whole head went through");
    assert!(c.closed_by_server());
    let s = server.wait_open(0);
    assert_eq!((s.timed_out_head, s.requests, s.closed_with_error), (1, 0, 0));
    server.check_healthy(0);
}

fn idle_connections_time_out(t: Transport) {
    let server = t.start_app(test_limits().with_idle_timeout(Duration::from_millis(300)));
    let mut silent = server.client();
    let mut used = server.client();
    used.hello("then idle");
    assert!(silent.closed_by_server());
    assert!(used.closed_by_server());
    let s = server.wait_open(0);
    assert_eq!((s.timed_out_idle, s.timed_out_head, s.closed_with_error), (2, 0, 0));
    server.check_healthy(0);
}

fn many_idle_connections_do_not_hold_up_others(t: Transport) {
    const IDLE: usize = 500;
    const WORKERS: usize = 4;
    const EACH: usize = 25;
    let server = t.start_app(test_limits());
    let mut idle: Vec<Client> = (0..IDLE).map(|_| server.client()).collect();
    server.wait_open(IDLE as u64);
    // Normal traffic on other connections while the idle ones are held open (each read
    // gives up after READ_TIMEOUT, the only time limit).
    let addr = server.addr;
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                for i in 0..EACH {
                    let body = pattern_vec(1000 * w + i);
                    assert_eq!(c.request(true, "/upload", "", &body).body_str(), upload_answer(&body));
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker");
    }
    // None of the idle connections was dropped: each is served now.
    server.wait_open(IDLE as u64);
    for (i, c) in idle.iter_mut().enumerate() {
        c.hello(&i.to_string());
    }
    drop(idle);
    let s = server.check_healthy(0);
    assert_eq!(s.requests, (WORKERS * EACH + IDLE + 1) as u64);
    assert_eq!((s.closed_with_error, s.timed_out_idle, s.refused_over_limit), (0, 0, 0));
}

fn peer_vanishes_at_every_byte_of_a_request(t: Transport) {
    let server = t.start_app(test_limits());
    let body = pattern_vec(100);
    let request = request_bytes(1, true, "/upload", "", &body);
    // Cut before the last byte at every offset: the input is never complete, so the
    // server answers nothing, aborts the handler if it started, and closes cleanly.
    for cut in 0..request.len() {
        let mut c = server.client();
        c.send(&request[..cut]);
        c.shutdown_write();
        assert!(c.closed_by_server(), "cut at {cut}: nothing is sent");
    }
    let s = server.wait_open(0);
    assert_eq!(s.accepted, request.len() as u64);
    assert_eq!(s.closed_with_error, 0);
    assert!(s.requests > 0);
    assert_eq!(s.requests_aborted, s.requests, "every started handler was aborted");
    assert_eq!((server.app.aborted(), server.app.truncated()), (s.requests, 0));
    server.check_healthy(0);
}

fn peer_vanishes_while_the_handler_reads(t: Transport) {
    let server = t.start_app(test_limits());
    // During the params.
    let mut c = server.client();
    let mut out = Vec::new();
    push_begin(&mut out, 1, true);
    push_record(&mut out, PARAMS, 1, &params_for("/wait-abort", "", "")[..10]);
    c.send(&out);
    server.wait_for("the connection", |s| s.accepted == 1);
    drop(c);
    server.wait_open(0);
    // During the body, the handler waiting for more.
    let mut c = server.client();
    let mut out = head_bytes(1, true, "/wait-abort", "", "100000");
    push_record(&mut out, STDIN, 1, &[7; 1000]);
    c.send(&out);
    server.wait_started(1);
    drop(c);
    let s = server.wait_open(0);
    assert_eq!((s.requests, s.requests_aborted, s.closed_with_error), (1, 1, 0));
    assert_eq!(server.app.aborted(), 1);
    server.check_healthy(0);
}

fn peer_vanishes_mid_response(t: Transport) {
    let server = t.start_app(test_limits());
    let mut c = server.client();
    c.send(&request_bytes(1, true, "/download", "268435456", b""));
    for _ in 0..4 {
        assert_eq!(c.record().kind, STDOUT);
    }
    drop(c); // with unread data: a reset
    let s = server.wait_open(0);
    assert_eq!((s.requests, s.requests_aborted, s.closed_with_error), (1, 1, 1));
    // The handler did not return: its future was dropped with the connection.
    assert_eq!((server.app.started(), server.app.finished()), (1, 0));
    let s = server.check_healthy(0);
    assert_eq!((s.requests, s.requests_aborted), (2, 1));
}

fn abort_before_params_end(t: Transport) {
    let server = t.start_app(test_limits());
    let params = params_for("/hello", "never", "");
    for keep_conn in [true, false] {
        let mut c = server.client();
        let mut out = Vec::new();
        push_begin(&mut out, 1, keep_conn);
        push_record(&mut out, PARAMS, 1, &params[..10]);
        out.extend(abort_bytes(1));
        c.send(&out);
        let reply = c.reply(1);
        assert_eq!(reply, Reply { protocol_status: REQUEST_COMPLETE, ..Reply::default() });
        if keep_conn {
            // The rest of the aborted request is ignored; the connection goes on.
            let mut rest = Vec::new();
            push_record(&mut rest, PARAMS, 1, &params[10..]);
            push_record(&mut rest, PARAMS, 1, b"");
            push_record(&mut rest, STDIN, 1, b"");
            c.send(&rest);
            c.hello("after the abort");
        } else {
            assert!(c.closed_by_server(), "without KEEP_CONN the connection ends with the request");
        }
    }
    let s = server.check_healthy(0);
    // The aborted requests never reached the handler.
    assert_eq!((s.requests, s.requests_aborted, s.closed_with_error), (2, 0, 0));
    assert_eq!(server.app.started(), 2);
}

fn abort_during_stdin(t: Transport) {
    let server = t.start_app(test_limits());
    let mut c = server.client();
    let mut out = head_bytes(1, true, "/wait-abort", "", "100000");
    push_record(&mut out, STDIN, 1, &[7; 1000]);
    c.send(&out);
    server.wait_started(1);
    c.send(&abort_bytes(1));
    let reply = c.reply(1);
    assert_eq!(reply, Reply { protocol_status: REQUEST_COMPLETE, ..Reply::default() });
    assert_eq!(server.app.aborted(), 1);
    // Late records of the aborted request, and another abort for it, are ignored.
    let mut late = Vec::new();
    push_record(&mut late, STDIN, 1, &[7; 1000]);
    push_record(&mut late, STDIN, 1, b"");
    late.extend(abort_bytes(1));
    c.send(&late);
    c.hello("after the abort");
    drop(c);
    let s = server.check_healthy(0);
    assert_eq!((s.requests, s.requests_aborted, s.closed_with_error), (3, 1, 0));
}

fn abort_during_large_response(t: Transport) {
    const SIZE: usize = 256 << 20;
    let server = t.start_app(test_limits());
    let mut c = server.client();
    c.send(&request_bytes(1, true, "/download", &SIZE.to_string(), b""));
    let mut stdout = Vec::new();
    for _ in 0..4 {
        let r = c.record();
        assert_eq!((r.kind, r.id), (STDOUT, 1));
        stdout.extend(r.content);
    }
    c.send(&abort_bytes(1));
    let reply = c.reply(1);
    assert_eq!(reply.protocol_status, REQUEST_COMPLETE);
    stdout.extend(&reply.stdout);
    let body = Reply { stdout, ..Reply::default() }.body().to_vec();
    assert!(body.len() < SIZE, "the handler stopped writing");
    assert_eq!(body, pattern_vec(body.len()), "what was sent is intact");
    assert_eq!(server.app.aborted(), 1);
    c.hello("after the abort");
    drop(c);
    let s = server.check_healthy(0);
    assert_eq!((s.requests, s.requests_aborted, s.closed_with_error), (3, 1, 0));
}

fn garbage_bytes(t: Transport) {
    let server = t.start_app(test_limits());
    // HTTP sent to the FastCGI port.
    let mut c = server.client();
    c.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert!(c.closed_by_server());
    // Garbage after a good request on a kept connection.
    let mut c = server.client();
    c.hello("before the garbage");
    let mut junk = Rng::new(1).bytes(1000);
    junk[0] = 0x17;
    c.send(&junk);
    assert!(c.closed_by_server());
    let s = server.wait_open(0);
    assert_eq!(s.closed_with_error, 2);
    // Random bytes that start like a record, and random records: whatever they parse
    // as, what comes back is well-formed records (the client checks), and after EOF the
    // server closes.
    let mut clients = Vec::new();
    for seed in 0..48u64 {
        let mut rng = Rng::new(seed + 100);
        let mut bytes = Vec::new();
        if seed.is_multiple_of(2) {
            bytes = rng.bytes(2000);
            bytes[0] = 1;
        } else {
            for _ in 0..40 {
                let kind = (rng.next() % 13) as u8;
                let id = (rng.next() % 3) as u16;
                let len = (rng.next() % 48) as usize;
                let content = if kind == BEGIN_REQUEST && rng.next().is_multiple_of(2) {
                    vec![0, (rng.next() % 4) as u8, (rng.next() % 2) as u8, 0, 0, 0, 0, 0]
                } else {
                    rng.bytes(len)
                };
                push_padded(&mut bytes, kind, id, &content, (rng.next() % 9) as u8);
            }
        }
        let mut c = server.client();
        c.send(&bytes);
        c.shutdown_write();
        clients.push(c);
    }
    for (seed, c) in clients.iter_mut().enumerate() {
        loop {
            match c.try_record() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) if matches!(e.kind(), io::ErrorKind::ConnectionReset) => break,
                Err(e) => panic!("seed {seed}: {e}"),
            }
        }
    }
    drop(clients);
    server.wait_open(0);
    server.check_healthy(0);
}

fn wrong_version(t: Transport) {
    let server = t.start_app(test_limits());
    for version in [0u8, 2, 255] {
        let mut c = server.client();
        let mut out = request_bytes(1, true, "/hello", "", b"");
        out[0] = version;
        c.send(&out);
        assert!(c.closed_by_server(), "version {version}: closed, nothing sent");
    }
    // Mid-connection, after a request was served.
    let mut c = server.client();
    c.hello("v1");
    let mut out = request_bytes(1, true, "/hello", "", b"");
    out[0] = 2;
    c.send(&out);
    assert!(c.closed_by_server());
    let s = server.wait_open(0);
    assert_eq!((s.closed_with_error, s.requests), (4, 1));
    server.check_healthy(0);
}

fn oversize_params_get_431_and_keep_the_connection(t: Transport) {
    let server = t.start_app(test_limits());
    // 10 MB of params: 5 MB of 1 KiB values, then one 5 MB value, then the real ones, in
    // 65535-byte PARAMS records that cut pairs anywhere.
    let mut params = Vec::new();
    let value = vec![b'v'; 1024];
    let mut i = 0;
    while params.len() < 5 << 20 {
        push_nv(&mut params, format!("HTTP_X_{i}").as_bytes(), &value);
        i += 1;
    }
    push_nv(&mut params, b"HTTP_HUGE", &vec![b'h'; 5 << 20]);
    params.extend(params_for("/hello", "big", ""));
    assert!(params.len() > 10 << 20);
    let mut out = Vec::new();
    push_begin(&mut out, 1, true);
    push_stream(&mut out, PARAMS, 1, &params);
    push_record(&mut out, PARAMS, 1, b"");
    push_record(&mut out, STDIN, 1, b"");
    let mut c = server.client();
    c.send(&out);
    let reply = c.reply(1);
    assert_eq!((reply.status(), reply.protocol_status), (431, REQUEST_COMPLETE));
    // The connection is kept.
    c.hello("after the 431");
    // Without KEEP_CONN it closes after the 431, as after any request.
    let mut small = Vec::new();
    for i in 0..20 {
        push_nv(&mut small, format!("HTTP_Y_{i}").as_bytes(), &value);
    }
    let mut out = Vec::new();
    push_begin(&mut out, 1, false);
    push_stream(&mut out, PARAMS, 1, &small);
    push_record(&mut out, PARAMS, 1, b"");
    push_record(&mut out, STDIN, 1, b"");
    let mut c2 = server.client();
    c2.send(&out);
    assert_eq!(c2.reply(1).status(), 431);
    assert!(c2.closed_by_server());
    drop(c);
    let s = server.check_healthy(0);
    // The oversize requests never reached the handler.
    assert_eq!((s.requests, s.requests_aborted, s.closed_with_error), (2, 0, 0));
}

fn huge_content_length_with_a_short_body(t: Transport) {
    let server = t.start_app(test_limits());
    let mut c = server.client();
    // 4 GiB claimed, 10 bytes sent: the read says BodyTruncated, nothing is allocated for
    // the claim (the engine never allocates; the handler streams through 4 KiB).
    for script in ["/upload", "/read-to-end"] {
        let mut out = head_bytes(1, true, script, "", "4294967296");
        push_record(&mut out, STDIN, 1, b"0123456789");
        push_record(&mut out, STDIN, 1, b"");
        c.send(&out);
        let reply = c.reply(1);
        assert_eq!((reply.status(), reply.protocol_status), (400, REQUEST_COMPLETE), "{script}");
        assert_eq!(reply.body_str(), "truncated expected=4294967296 received=10\n");
    }
    assert_eq!(server.app.truncated(), 2);
    // A handler that passes the error on with `?` before writing: the engine answers 500
    // with app status 1.
    let mut out = head_bytes(1, true, "/strict", "", "4294967296");
    push_record(&mut out, STDIN, 1, b"0123456789");
    push_record(&mut out, STDIN, 1, b"");
    c.send(&out);
    let reply = c.reply(1);
    assert_eq!((reply.status(), reply.app_status, reply.protocol_status), (500, 1, REQUEST_COMPLETE));
    assert_eq!(server.app.truncated(), 3);
    // A body longer than CONTENT_LENGTH is passed through.
    let mut out = head_bytes(1, true, "/upload", "", "4");
    push_record(&mut out, STDIN, 1, b"0123456789");
    push_record(&mut out, STDIN, 1, b"");
    c.send(&out);
    assert_eq!(c.reply(1).body_str(), upload_answer(b"0123456789"));
    // A body larger than read_into_slice's buffer says BodyTooLarge.
    let body = pattern_vec(100);
    assert_eq!(c.request(true, "/read-to-end", "", &body).status(), 413);
    c.hello("after");
    drop(c);
    let s = server.check_healthy(0);
    assert_eq!((s.requests, s.requests_aborted, s.closed_with_error), (7, 0, 0));
}

fn records_for_unknown_request_ids(t: Transport) {
    let server = t.start_app(test_limits());
    let mut c = server.client();
    // Every record type, with content and padding, for ids that were never begun.
    let mut rng = Rng::new(7);
    let mut strays = Vec::new();
    for id in [2u16, 7, 0xffff] {
        for kind in [PARAMS, STDIN, DATA, ABORT_REQUEST, END_REQUEST, STDOUT, STDERR, GET_VALUES_RESULT, 42] {
            push_padded(&mut strays, kind, id, &rng.bytes(100), 7);
        }
    }
    c.send(&strays);
    c.hello("after the strays");
    // The same, interleaved with the records of an active request.
    let mut out = head_bytes(1, true, "/upload", "", "6");
    push_record(&mut out, STDIN, 1, b"abc");
    out.extend(&strays);
    push_record(&mut out, STDIN, 1, b"def");
    push_record(&mut out, STDIN, 1, b"");
    c.send(&out);
    assert_eq!(c.reply(1).body_str(), upload_answer(b"abcdef"));
    // Nothing was sent for the strays (the client checks each record's id).
    assert!(c.management.is_empty());
    drop(c);
    let s = server.check_healthy(0);
    assert_eq!((s.requests, s.closed_with_error), (3, 0));
}

fn duplicate_begin_closes_the_connection(t: Transport) {
    let server = t.start_app(test_limits());
    // While the params arrive.
    let mut c = server.client();
    let mut out = Vec::new();
    push_begin(&mut out, 1, true);
    push_record(&mut out, PARAMS, 1, &params_for("/hello", "", "")[..20]);
    push_begin(&mut out, 1, true);
    c.send(&out);
    assert!(c.closed_by_server());
    // While the handler runs.
    let mut c = server.client();
    let mut out = head_bytes(1, true, "/wait-abort", "", "1000");
    push_record(&mut out, STDIN, 1, &[1; 10]);
    c.send(&out);
    server.wait_started(1);
    let mut dup = Vec::new();
    push_begin(&mut dup, 1, true);
    c.send(&dup);
    assert!(c.closed_by_server());
    let s = server.wait_open(0);
    // The handler that was running is cut off with its connection: counted as aborted.
    assert_eq!((s.closed_with_error, s.requests, s.requests_aborted), (2, 1, 1));
    server.check_healthy(0);
}

fn get_values_mid_stream(t: Transport) {
    let server = t.start_app(test_limits().with_max_connections(77));
    let names =
        ["FCGI_MAX_CONNS", "FCGI_MAX_REQS", "FCGI_MPXS_CONNS", "NOT_A_VALUE", "FCGI_MAX_CONNS_AND_MORE"];
    let expected: Vec<(String, String)> =
        [("FCGI_MAX_CONNS", "77"), ("FCGI_MAX_REQS", "77"), ("FCGI_MPXS_CONNS", "0")]
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
    let query = get_values_bytes(&names);
    let mut c = server.client();
    // Between PARAMS records and between STDIN records of a request.
    let body = pattern_vec(3000);
    let params = params_for("/upload", "", "3000");
    let mut out = Vec::new();
    push_begin(&mut out, 1, true);
    push_record(&mut out, PARAMS, 1, &params[..20]);
    out.extend(&query);
    push_record(&mut out, PARAMS, 1, &params[20..]);
    push_record(&mut out, PARAMS, 1, b"");
    push_record(&mut out, STDIN, 1, &body[..1000]);
    out.extend(&query);
    push_record(&mut out, STDIN, 1, &body[1000..]);
    push_record(&mut out, STDIN, 1, b"");
    c.send(&out);
    assert_eq!(c.reply(1).body_str(), upload_answer(&body));
    // While a 4 MiB response is being written.
    c.send(&request_bytes(1, true, "/download", "4194304", b""));
    let first = c.record();
    assert_eq!((first.kind, first.id), (STDOUT, 1));
    c.send(&query);
    let mut reply = c.reply(1);
    reply.stdout.splice(0..0, first.content);
    assert_eq!(reply.body().len(), 4 << 20);
    assert_eq!(reply.body(), pattern_vec(4 << 20));
    while c.management.len() < 3 {
        let r = c.record();
        c.management.push(r);
    }
    for r in &c.management {
        assert_eq!((r.kind, r.id), (GET_VALUES_RESULT, 0));
        assert_eq!(decode_pairs(&r.content), expected);
    }
    drop(c);
    let s = server.check_healthy(0);
    assert_eq!((s.requests, s.closed_with_error), (3, 0));
}

fn connection_limit_exceeded_twice(t: Transport) {
    const N: usize = 4;
    let server = t.start_app(test_limits().with_max_connections(N));
    let mut clients: Vec<Client> = (0..2 * N).map(|_| server.client()).collect();
    let s = server.wait_for("every connection accepted or refused", |s| {
        s.accepted + s.refused_over_limit == 2 * N as u64
    });
    assert_eq!((s.accepted, s.refused_over_limit, s.open_connections), (N as u64, N as u64, N as u64));
    let (mut served, mut refused) = (0, 0);
    for (i, c) in clients.iter_mut().enumerate() {
        let _ = c.try_send(&request_bytes(1, true, "/hello", &i.to_string(), b""));
        match c.try_reply(1) {
            Ok(Some(reply)) => {
                assert_eq!(reply.body_str(), format!("hello {i}\n"));
                assert_eq!(c.get_values(&["FCGI_MAX_CONNS"]), [("FCGI_MAX_CONNS".into(), N.to_string())]);
                served += 1;
            }
            Ok(None) => refused += 1,
            Err(e) if matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe) => {
                refused += 1
            }
            Err(e) => panic!("connection {i}: {e}"),
        }
    }
    assert_eq!((served, refused), (N, N));
    drop(clients);
    server.wait_open(0);
    // Room again: N at once are served.
    let mut again: Vec<Client> = (0..N).map(|_| server.client()).collect();
    for c in &mut again {
        c.hello("again");
    }
    assert_eq!(server.snapshot().refused_over_limit, N as u64);
    drop(again);
    server.wait_open(0); // or the next connection could still be over the limit
    let s = server.check_healthy(0);
    assert_eq!((s.accepted, s.refused_over_limit, s.closed_with_error), (2 * N as u64 + 1, N as u64, 0));
}

// ---- docs/bad-input.md, row by row ------------------------------------------------------

fn table_malformed_begin(t: Transport) {
    let server = t.start_app(test_limits());
    let mut bad = Vec::new();
    // Content length 7 and 9.
    let mut seven = Vec::new();
    push_record(&mut seven, BEGIN_REQUEST, 1, &[0, 1, 1, 0, 0, 0, 0]);
    bad.push(seven);
    let mut nine = Vec::new();
    push_record(&mut nine, BEGIN_REQUEST, 1, &[0, 1, 1, 0, 0, 0, 0, 0, 0]);
    bad.push(nine);
    // Request id 0.
    let mut zero = Vec::new();
    push_begin(&mut zero, 0, true);
    bad.push(zero);
    for bytes in &bad {
        let mut c = server.client();
        c.send(bytes);
        assert!(c.closed_by_server());
    }
    let s = server.wait_open(0);
    assert_eq!(s.closed_with_error, bad.len() as u64);
    server.check_healthy(0);
}

fn table_unknown_role(t: Transport) {
    // The test limits accept Responder and Filter, so Authorizer (2) is refused, and so
    // is a role FastCGI 1.0 does not define.
    let server = t.start_app(test_limits());
    let mut c = server.client();
    for role in [AUTHORIZER, 9] {
        let mut out = Vec::new();
        push_begin_role(&mut out, 1, role, true);
        // The rest of the refused request is skipped.
        push_stream(&mut out, PARAMS, 1, &params_for("/hello", "", ""));
        push_record(&mut out, PARAMS, 1, b"");
        push_record(&mut out, STDIN, 1, b"");
        c.send(&out);
        assert_eq!(c.reply(1), Reply { protocol_status: UNKNOWN_ROLE, ..Reply::default() });
    }
    c.hello("kept with KEEP_CONN");
    // Without KEEP_CONN the connection closes after the END_REQUEST.
    let mut c = server.client();
    let mut out = Vec::new();
    push_begin_role(&mut out, 1, AUTHORIZER, false);
    c.send(&out);
    assert_eq!(c.reply(1), Reply { protocol_status: UNKNOWN_ROLE, ..Reply::default() });
    assert!(c.closed_by_server());
    let s = server.check_healthy(1);
    assert_eq!((s.requests, s.closed_with_error), (2, 0));
    assert_eq!(server.app.started(), 2);
}

fn table_busy_slots(t: Transport) {
    // One slot (no multiplexing): CANT_MPX_CONN, and the active request goes on.
    let server = t.start_app(test_limits());
    let mut c = server.client();
    let mut out = head_bytes(1, true, "/wait-abort", "", "");
    push_record(&mut out, STDIN, 1, b"first");
    c.send(&out);
    server.wait_started(1);
    c.send(&request_bytes(2, true, "/hello", "", b"pending"));
    assert_eq!(c.reply(2), Reply { protocol_status: CANT_MPX_CONN, ..Reply::default() });
    let mut end = Vec::new();
    push_record(&mut end, STDIN, 1, b"");
    c.send(&end);
    assert_eq!(c.reply(1).body_str(), "not aborted\n");
    c.hello("after");
    drop(c);
    server.check_healthy(0);
    drop(server);

    // Two slots: OVERLOADED for a third request.
    let server = t.start_app_mpx2(test_limits());
    let mut c = server.client();
    for id in [1, 2] {
        let mut out = head_bytes(id, true, "/wait-abort", "", "");
        push_record(&mut out, STDIN, id, b"x");
        c.send(&out);
    }
    server.wait_started(2);
    c.send(&request_bytes(3, true, "/hello", "", b""));
    assert_eq!(c.replies(&[3]), [Reply { protocol_status: OVERLOADED, ..Reply::default() }]);
    let mut end = Vec::new();
    push_record(&mut end, STDIN, 1, b"");
    push_record(&mut end, STDIN, 2, b"");
    c.send(&end);
    for reply in c.replies(&[1, 2]) {
        assert_eq!(reply.body_str(), "not aborted\n");
    }
    assert_eq!(c.get_values(&["FCGI_MPXS_CONNS"]), [("FCGI_MPXS_CONNS".into(), "1".into())]);
    drop(c);
    let s = server.check_healthy(0);
    assert_eq!((s.requests, s.closed_with_error), (3, 0));
}

fn table_stream_before_params_end(t: Transport) {
    let server = t.start_app(test_limits());
    for kind in [STDIN, DATA] {
        let mut c = server.client();
        let mut out = Vec::new();
        push_begin(&mut out, 1, true);
        push_record(&mut out, PARAMS, 1, &params_for("/hello", "", ""));
        push_record(&mut out, kind, 1, b"early");
        c.send(&out);
        assert!(c.closed_by_server());
    }
    let s = server.wait_open(0);
    assert_eq!((s.closed_with_error, s.requests), (2, 0));
    server.check_healthy(0);
}

fn table_data_records(t: Transport) {
    let server = t.start_app(test_limits());
    // A Responder's DATA is skipped.
    let mut c = server.client();
    let mut out = head_bytes(1, true, "/upload", "", "6");
    push_record(&mut out, DATA, 1, b"data!");
    push_record(&mut out, STDIN, 1, b"abc");
    push_record(&mut out, DATA, 1, b"more data");
    push_record(&mut out, STDIN, 1, b"def");
    push_record(&mut out, STDIN, 1, b"");
    push_record(&mut out, DATA, 1, b"");
    c.send(&out);
    assert_eq!(c.reply(1).body_str(), upload_answer(b"abcdef"));
    c.hello("after DATA");
    // A Filter's DATA before its STDIN ended closes the connection.
    let mut c = server.client();
    let mut out = Vec::new();
    push_begin_role(&mut out, 1, FILTER, true);
    push_stream(&mut out, PARAMS, 1, &params_for("/wait-abort", "", "100"));
    push_record(&mut out, PARAMS, 1, b"");
    push_record(&mut out, STDIN, 1, b"some");
    c.send(&out);
    server.wait_started(2);
    let mut data = Vec::new();
    push_record(&mut data, DATA, 1, b"too early");
    c.send(&data);
    assert!(c.closed_by_server());
    let s = server.wait_open(1);
    assert_eq!((s.closed_with_error, s.requests, s.requests_aborted), (1, 3, 1));
    server.check_healthy(1);
}

fn table_params_ending_inside_a_pair(t: Transport) {
    let server = t.start_app(test_limits());
    let mut c = server.client();
    let mut out = Vec::new();
    push_begin(&mut out, 1, true);
    push_record(&mut out, PARAMS, 1, &[5, 10, b'N', b'A', b'M', b'E', b'S', b'v', b'a']);
    push_record(&mut out, PARAMS, 1, b"");
    c.send(&out);
    assert!(c.closed_by_server());
    let s = server.wait_open(0);
    assert_eq!((s.closed_with_error, s.requests), (1, 0));
    server.check_healthy(0);
}

fn table_padding_and_records_after_stream_end(t: Transport) {
    let server = t.start_app(test_limits());
    let mut c = server.client();
    for padding in [0u8, 1, 7, 8, 255] {
        let body = pattern_vec(500);
        let params = params_for("/upload", "", "500");
        let mut out = Vec::new();
        push_padded(&mut out, BEGIN_REQUEST, 1, &[0, 1, 1, 0, 0, 0, 0, 0], padding);
        push_padded(&mut out, PARAMS, 1, &params[..30], padding);
        push_padded(&mut out, PARAMS, 1, &params[30..], padding);
        push_padded(&mut out, PARAMS, 1, b"", padding);
        push_padded(&mut out, STDIN, 1, &body[..123], padding);
        push_padded(&mut out, STDIN, 1, &body[123..], padding);
        push_padded(&mut out, STDIN, 1, b"", padding);
        // Stream records after their stream ended are ignored.
        push_padded(&mut out, PARAMS, 1, &params_for("/hello", "", ""), padding);
        push_padded(&mut out, PARAMS, 1, b"", padding);
        push_padded(&mut out, STDIN, 1, b"after the end", padding);
        push_padded(&mut out, STDIN, 1, b"", padding);
        c.send(&out);
        assert_eq!(c.reply(1).body_str(), upload_answer(&body), "padding {padding}");
    }
    c.hello("after padding");
    drop(c);
    let s = server.check_healthy(0);
    assert_eq!((s.requests, s.closed_with_error), (7, 0));
}

fn table_management_records(t: Transport) {
    let server = t.start_app(test_limits());
    let mut c = server.client();
    // Management records of types the spec does not define: UNKNOWN_TYPE with the type.
    for kind in [0u8, 12, 42, 255] {
        let mut out = Vec::new();
        push_padded(&mut out, kind, 0, b"whatever", 3);
        c.send(&out);
        let r = c.record();
        assert_eq!((r.kind, r.id, r.content), (UNKNOWN_TYPE, 0, vec![kind, 0, 0, 0, 0, 0, 0, 0]));
    }
    // Records only a server sends, as management records and for a request id: ignored.
    let mut out = Vec::new();
    for id in [0u16, 1] {
        for kind in [END_REQUEST, STDOUT, STDERR, GET_VALUES_RESULT, UNKNOWN_TYPE] {
            push_record(&mut out, kind, id, &[1, 2, 3, 4, 5, 6, 7, 8]);
        }
    }
    c.send(&out);
    // GET_VALUES answers the known names asked, leaves the others out; the next record is
    // its answer, so nothing was sent for the ignored records.
    let pairs = c.get_values(&["FCGI_MPXS_CONNS", "UNKNOWN", "FCGI_MAX_CONNS"]);
    assert_eq!(pairs, [("FCGI_MAX_CONNS".into(), "1024".into()), ("FCGI_MPXS_CONNS".into(), "0".into())]);
    assert_eq!(c.get_values(&["NOTHING_KNOWN"]), []);
    c.hello("after management records");
    drop(c);
    let s = server.check_healthy(0);
    assert_eq!((s.requests, s.closed_with_error), (2, 0));
}

fn table_half_close(t: Transport) {
    let server = t.start_app(test_limits());
    // A complete request, then the web server closes its sending side: answered.
    let mut c = server.client();
    let body = pattern_vec(5000);
    c.send(&request_bytes(1, true, "/upload", "", &body));
    c.shutdown_write();
    assert_eq!(c.reply(1).body_str(), upload_answer(&body));
    assert!(c.closed_by_server());
    // An incomplete one: aborted, nothing sent.
    let mut c = server.client();
    let mut out = head_bytes(1, true, "/upload", "", "5000");
    push_record(&mut out, STDIN, 1, &body[..100]);
    c.send(&out);
    server.wait_started(2);
    c.shutdown_write();
    assert!(c.closed_by_server());
    let s = server.wait_open(0);
    assert_eq!((s.requests, s.requests_aborted, s.closed_with_error), (2, 1, 0));
    server.check_healthy(0);
}

/// Limits with a short body and send stall timeout.
fn stall_limits() -> Limits {
    test_limits().with_body_timeout(Duration::from_millis(300)).with_send_timeout(Duration::from_millis(300))
}

/// A head that promises 10 body bytes that never come: after `body_timeout` the handler's
/// read fails with `TimedOut` and the connection closes.
fn stalled_body_times_out(t: Transport) {
    let server = t.start_app(stall_limits());
    let mut c = server.client();
    let started = std::time::Instant::now();
    c.send(&head_bytes(1, true, "/upload", "", "10"));
    assert!(c.closed_by_server());
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(250) && waited < Duration::from_secs(5), "{waited:?}");
    let s = server.wait_for("the body timeout", |s| s.timed_out_body == 1 && s.open_connections == 0);
    assert_eq!(s.timed_out_send, 0);
    server.wait_for("the handler's read failing", |_| {
        server.app.timed_out.load(std::sync::atomic::Ordering::SeqCst) == 1
    });
    server.check_healthy(0);
}

/// A peer that asks for 40 MB and reads nothing: once the socket is full, after
/// `send_timeout` the handler's write fails with `TimedOut` and the connection closes.
fn non_reading_peer_times_out(t: Transport) {
    let server = t.start_app(stall_limits());
    let mut c = server.client();
    c.send(&request_bytes(1, true, "/download", "40000000", b""));
    let s = server.wait_for("the send timeout", |s| s.timed_out_send == 1 && s.open_connections == 0);
    assert_eq!(s.timed_out_body, 0);
    server.wait_for("the handler's write failing", |_| {
        server.app.timed_out.load(std::sync::atomic::Ordering::SeqCst) == 1
    });
    drop(c);
    server.check_healthy(0);
}

/// A handler that panics before writing: its request gets a CGI 500, its keep-alive
/// connection serves the next request, and other connections never notice.
fn panicking_handler_gets_a_500_and_harms_nobody(t: Transport) {
    let server = t.start_app(test_limits());
    let mut other = server.client();
    other.hello("before");
    let mut c = server.client();
    let reply = c.request(true, "/panic", "", b"");
    assert_eq!((reply.protocol_status, reply.app_status), (REQUEST_COMPLETE, 1));
    assert!(reply.stdout_text().starts_with("Status: 500"), "{reply:?}");
    assert!(String::from_utf8_lossy(&reply.stderr).contains("panicked"), "{reply:?}");
    c.hello("after the panic, same connection");
    other.hello("after the panic, other connection");
    let s = server.wait_for("the panic", |s| s.handler_panics == 1);
    assert_eq!(s.closed_with_error, 0);
    drop((c, other));
    server.check_healthy(0);
}

/// A handler that panics after writing: the response cannot be completed, so its
/// connection closes; the others and the listener carry on.
fn panic_after_output_closes_only_its_connection(t: Transport) {
    let server = t.start_app(test_limits());
    let mut other = server.client();
    other.hello("before");
    let mut c = server.client();
    c.send(&request_bytes(1, true, "/panic-late", "1000", b""));
    let mut got = 0;
    while let Ok(Some(r)) = c.try_record() {
        assert_eq!((r.kind, r.id), (STDOUT, 1), "no END_REQUEST after a panic mid-response");
        got += r.content.len();
    }
    assert!(got >= 1000, "what was written before the panic arrived ({got} bytes)");
    other.hello("after the panic");
    server.wait_for("the panic", |s| s.handler_panics == 1);
    drop(other);
    server.check_healthy(0);
}

/// A handler that panics after writing closes its connection as a handler panic: not as a
/// stall (`TimedOut`, which another handler on the connection would see as its error), an
/// I/O error or an engine panic. The other request on the connection is cut off (aborted).
fn panic_after_output_counts_as_a_handler_panic(t: Transport) {
    let limits = test_limits();
    let server = t.start_app(limits.with_capacities(limits.capacities.with_requests(2)));
    let mut c = server.client();
    // Request 1 panics after writing; request 2 waits for a body that never comes.
    let mut bytes = request_bytes(1, true, "/panic-late", "100", b"");
    bytes.extend(head_bytes(2, true, "/upload", "", "10"));
    c.send(&bytes);
    while let Ok(Some(r)) = c.try_record() {
        assert_eq!((r.kind, r.id), (STDOUT, 1), "no END_REQUEST after a panic mid-response");
    }
    let s = server.wait_open(0);
    assert_eq!(
        (s.handler_panics, s.engine_panics, s.closed_with_error, s.handler_errors),
        (1, 0, 0, 0),
        "{s:?}"
    );
    assert_eq!((s.timed_out_idle, s.timed_out_head, s.timed_out_body, s.timed_out_send), (0, 0, 0, 0));
    server.check_healthy(0);
}

/// `Duration::MAX` is a valid limit everywhere: it means never.
fn duration_max_limits_are_valid(t: Transport) {
    let limits = test_limits()
        .with_idle_timeout(Duration::MAX)
        .with_head_timeout(Duration::MAX)
        .with_body_timeout(Duration::MAX)
        .with_send_timeout(Duration::MAX)
        .with_shutdown_timeout(Duration::MAX)
        .with_close_linger(Duration::MAX);
    let server = t.start_app(limits);
    let mut kept = server.client();
    for i in 0..3 {
        kept.hello(&format!("kept {i}"));
    }
    let mut closing = server.client();
    let reply = closing.request(false, "/hello", "closing", b"");
    assert_eq!(reply.body_str(), "hello closing\n");
    assert!(closing.closed_by_server());
    // It lingers (close_linger is MAX) until the client closes too.
    drop(closing);
    let mut head = server.client();
    head.send(&head_bytes(1, true, "/upload", "", "10"));
    std::thread::sleep(Duration::from_millis(100));
    let s = server.wait_for("the closed one gone", |s| s.open_connections == 2);
    assert_eq!((s.timed_out_head, s.timed_out_body, s.timed_out_idle), (0, 0, 0));
    drop((kept, head));
    server.check_healthy(0);
}

/// A handler that never reads its body still sees the abort behind it (the body fits the
/// request's window) and stops waiting.
fn aborted_is_seen_by_a_handler_that_never_reads(t: Transport) {
    let server = t.start_app(test_limits());
    let mut c = server.client();
    let mut bytes = head_bytes(1, true, "/sleep-until-gone", "", "100");
    push_stream(&mut bytes, STDIN, 1, &pattern_vec(100));
    c.send(&bytes);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(server.app.gone_aborted.load(std::sync::atomic::Ordering::SeqCst), 0);
    c.send(&abort_bytes(1));
    let reply = c.reply(1);
    assert_eq!((reply.protocol_status, reply.stdout.len()), (REQUEST_COMPLETE, 0));
    assert_eq!(server.app.gone_aborted.load(std::sync::atomic::Ordering::SeqCst), 1);
    c.hello("after the abort");
    drop(c);
    server.check_healthy(0);
}

/// 500 connections at once: 200 stall their body, 20 never read a large response, 280 are
/// healthy. Every healthy request completes; every stalled connection is closed within
/// its timeout (plus scheduling slack); nothing stays open.
fn stalled_and_healthy_clients_together(t: Transport) {
    let server = t.start_app(stall_limits());
    let started = std::time::Instant::now();
    let mut stalled: Vec<Client> = (0..200)
        .map(|_| {
            let mut c = server.client();
            c.send(&head_bytes(1, true, "/upload", "", "10"));
            c
        })
        .collect();
    let readers: Vec<Client> = (0..20)
        .map(|_| {
            let mut c = server.client();
            c.send(&request_bytes(1, true, "/download", "8000000", b""));
            c
        })
        .collect();
    let addr = server.addr;
    let healthy: Vec<_> = (0..4)
        .map(|k| {
            std::thread::spawn(move || {
                let mut clients: Vec<Client> = (0..70).map(|_| Client::connect(addr)).collect();
                for (i, c) in clients.iter_mut().enumerate() {
                    c.hello(&format!("{k}-{i}"));
                }
                for (i, c) in clients.iter_mut().enumerate() {
                    c.hello(&format!("{k}-{i} again"));
                }
            })
        })
        .collect();
    for h in healthy {
        h.join().expect("every healthy request completes");
    }
    for c in &mut stalled {
        assert!(c.closed_by_server());
    }
    let s = server.wait_for("every stalled connection closed", |s| {
        s.timed_out_body == 200 && s.timed_out_send == 20 && s.open_connections == 0
    });
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    assert_eq!(s.requests, 200 + 20 + 4 * 70 * 2);
    drop(readers);
    server.check_healthy(0);
}
