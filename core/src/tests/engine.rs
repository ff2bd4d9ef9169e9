//! Wire-level behaviour of the engine, driven through `serve_blocking`.

use std::vec;
use std::vec::Vec;

use super::client::*;
use super::handlers::*;
use crate::{Buffers, Config, ConnectionError, DefaultBuffers, ProtocolError};

pub(super) const NGINX_PARAMS: &[(&[u8], &[u8])] = &[
    (b"SCRIPT_FILENAME", b"/srv/www/index.php"),
    (b"QUERY_STRING", b"a=1&b=2"),
    (b"REQUEST_METHOD", b"GET"),
    (b"CONTENT_TYPE", b""),
    (b"CONTENT_LENGTH", b""),
    (b"SCRIPT_NAME", b"/index.php"),
    (b"REQUEST_URI", b"/index.php?a=1&b=2"),
    (b"DOCUMENT_URI", b"/index.php"),
    (b"DOCUMENT_ROOT", b"/srv/www"),
    (b"SERVER_PROTOCOL", b"HTTP/1.1"),
    (b"REQUEST_SCHEME", b"http"),
    (b"GATEWAY_INTERFACE", b"CGI/1.1"),
    (b"SERVER_SOFTWARE", b"nginx/1.22.1"),
    (b"REMOTE_ADDR", b"127.0.0.1"),
    (b"REMOTE_PORT", b"51234"),
    (b"SERVER_ADDR", b"127.0.0.1"),
    (b"SERVER_PORT", b"8080"),
    (b"SERVER_NAME", b"localhost"),
    (b"REDIRECT_STATUS", b"200"),
    (b"HTTP_HOST", b"localhost:8080"),
    (b"HTTP_USER_AGENT", b"curl/7.88.1"),
    (b"HTTP_ACCEPT", b"*/*"),
];

/// The exact bytes of the hello response for request `id`.
pub(super) fn hello_response(id: u16) -> Vec<u8> {
    let mut out = record(6, id, HELLO_STDOUT, 0);
    out.extend(record(6, id, b"", 0));
    out.extend(record(3, id, &[0, 0, 0, 0, 0, 0, 0, 0], 0));
    out
}

#[test]
fn hello_byte_for_byte() {
    let (out, result) = run(&Hello, &request(1, false, NGINX_PARAMS, b""));
    assert!(result.is_ok());
    assert_eq!(out, hello_response(1));
}

/// Input and output written out byte by byte from the spec (section 3.3 headers, 3.4
/// name-value pairs, 4.1 GET_VALUES, 5.1 BEGIN_REQUEST, 5.5 END_REQUEST): no encoder of
/// this crate or of the testkit is involved.
#[test]
fn literal_bytes_in_and_out() {
    #[rustfmt::skip]
    let script: &[u8] = &[
        // GET_VALUES {FCGI_MPXS_CONNS: ""}, padded by 7.
        1, 9, 0, 0, 0, 17, 7, 0, 15, 0, b'F', b'C', b'G', b'I', b'_', b'M', b'P', b'X', b'S', b'_',
        b'C', b'O', b'N', b'N', b'S', 0, 0, 0, 0, 0, 0, 0,
        // BEGIN_REQUEST id 0x0102, role 0x0009 (unknown), keep-conn.
        1, 1, 1, 2, 0, 8, 0, 0, 0, 9, 1, 0, 0, 0, 0, 0,
        // BEGIN_REQUEST id 1, Responder, no keep-conn; PARAMS {A: "1"} with both lengths
        // in the 4-byte form; the empty PARAMS; the empty STDIN.
        1, 1, 0, 1, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0,
        1, 4, 0, 1, 0, 10, 6, 0, 0x80, 0, 0, 1, 0x80, 0, 0, 1, b'A', b'1', 0, 0, 0, 0, 0, 0,
        1, 4, 0, 1, 0, 0, 0, 0,
        1, 5, 0, 1, 0, 0, 0, 0,
    ];
    let (out, result) = run(&Hello, script);
    assert!(result.is_ok());
    let mut expected: Vec<u8> = vec![
        // GET_VALUES_RESULT {FCGI_MPXS_CONNS: "0"}, no padding.
        1, 10, 0, 0, 0, 18, 0, 0, 15, 1, b'F', b'C', b'G', b'I', b'_', b'M', b'P', b'X', b'S', b'_', b'C',
        b'O', b'N', b'N', b'S', b'0', // END_REQUEST id 0x0102: app status 0, UNKNOWN_ROLE.
        1, 3, 1, 2, 0, 8, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0,
    ];
    let stdout_len = u8::try_from(HELLO_STDOUT.len()).expect("short hello");
    expected.extend_from_slice(&[1, 6, 0, 1, 0, stdout_len, 0, 0]);
    expected.extend_from_slice(HELLO_STDOUT);
    expected.extend_from_slice(&[
        1, 6, 0, 1, 0, 0, 0, 0, // the empty STDOUT
        1, 3, 0, 1, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // END_REQUEST: 0, REQUEST_COMPLETE
    ]);
    assert_eq!(out, expected);
}

#[test]
fn every_chunk_size_gives_identical_output() {
    let first = request(1, true, NGINX_PARAMS, b"body bytes here");
    let second = request(1, false, NGINX_PARAMS, b"x");
    let segments = [&first[..], &second[..]];
    let config = Config::default();
    let (expected, _) = run_segments::<DefaultBuffers, _>(&Echo, &config, &segments, usize::MAX);
    assert_eq!(ends(&parse(&expected)).len(), 2);
    for chunk in 1..=first.len() {
        let (out, result) = run_segments::<DefaultBuffers, _>(&Echo, &config, &segments, chunk);
        assert!(result.is_ok(), "chunk {chunk}: {result:?}");
        assert_eq!(out, expected, "chunk {chunk}");
    }
    // Tiny buffers: the input buffer is smaller than one record.
    let (out, _) = run_segments::<Small, _>(&Echo, &config, &segments, 7);
    assert_eq!(stream(&parse(&out), 6, 1), stream(&parse(&expected), 6, 1));
}

#[test]
fn split_at_every_offset() {
    let script = request(1, false, NGINX_PARAMS, b"0123456789");
    let (expected, _) = run(&Echo, &script);
    for split in 0..script.len() {
        // A reader that returns the first `split` bytes, then the rest.
        struct TwoPart<'a>(&'a [u8], &'a [u8]);
        impl embedded_io::ErrorType for TwoPart<'_> {
            type Error = core::convert::Infallible;
        }
        impl embedded_io::Read for TwoPart<'_> {
            fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
                let src = if self.0.is_empty() { &mut self.1 } else { &mut self.0 };
                let n = buf.len().min(src.len());
                buf[..n].copy_from_slice(&src[..n]);
                *src = &src[n..];
                Ok(n)
            }
        }
        let mut out = Vec::new();
        let mut buffers = DefaultBuffers::new();
        let (a, b) = script.split_at(split);
        crate::serve_blocking(
            TwoPart(a, b),
            Sink(&mut out),
            &Echo,
            &mut buffers,
            &Config::default(),
            &mut crate::Spin,
        )
        .unwrap();
        assert_eq!(out, expected, "split {split}");
    }
}

#[test]
fn echo_params_in_order_and_body() {
    let (out, _) = run(&Echo, &request(1, false, &[(b"B", b"2"), (b"A", b"1"), (b"B", b"3")], b"hello"));
    let recs = parse(&out);
    let body = stream(&recs, 6, 1);
    let text = std::str::from_utf8(&body).unwrap();
    assert_eq!(
        text,
        "Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nB=2\nA=1\nB=3\nSTDIN-LENGTH=5\nhello"
    );
    assert_eq!(ends(&recs), vec![(1, 0, 0)]);
}

#[test]
fn padding_on_every_record_type_is_skipped() {
    let mut script = record(1, 1, &ember_fcgi_testkit::wire::begin_body(RESPONDER, 0), 255);
    script.extend(record(9, 0, &nv(&[(b"FCGI_MPXS_CONNS", b"")]), 3));
    script.extend(record(4, 1, &nv(&[(b"A", b"1")]), 7));
    script.extend(record(4, 1, b"", 255));
    script.extend(record(5, 1, b"abc", 5));
    script.extend(record(5, 1, b"", 1));
    let (out, result) = run(&Echo, &script);
    assert!(result.is_ok());
    let recs = parse(&out);
    assert_eq!(recs[0], Record { kind: 10, id: 0, content: nv(&[(b"FCGI_MPXS_CONNS", b"0")]) });
    assert!(stream(&recs, 6, 1).ends_with(b"A=1\nSTDIN-LENGTH=3\nabc"));
}

#[test]
fn max_content_and_padding_accepted() {
    let body = pattern(65535);
    let mut script = begin(1, RESPONDER, false);
    script.extend(record(4, 1, b"", 0));
    script.extend(record(5, 1, &body, 255));
    script.extend(record(5, 1, b"", 0));
    let (out, result) = run_with::<Small, _>(&Echo, &Config::default(), &script, 1000);
    assert!(result.is_ok());
    let s = stream(&parse(&out), 6, 1);
    assert!(s.ends_with(&body));
}

#[test]
fn get_values_answered_before_between_and_after() {
    let query = record(
        9,
        0,
        &nv(&[
            (b"FCGI_MAX_CONNS", b""),
            (b"FCGI_UNKNOWN", b""),
            (b"FCGI_MAX_REQS", b"ignored"),
            (b"FCGI_MPXS_CONNS", b""),
        ]),
        0,
    );
    let expected = record(
        10,
        0,
        &nv(&[(b"FCGI_MAX_CONNS", b"1024"), (b"FCGI_MAX_REQS", b"1024"), (b"FCGI_MPXS_CONNS", b"0")]),
        0,
    );
    let mut script = query.clone();
    let mut req = begin(1, RESPONDER, true);
    req.extend(record(4, 1, &nv(&[(b"A", b"1")]), 0));
    req.extend(record(4, 1, b"", 0));
    req.extend(record(5, 1, b"ab", 0));
    req.extend(query.clone());
    req.extend(record(5, 1, b"cd", 0));
    req.extend(record(5, 1, b"", 0));
    script.extend(req);
    script.extend(query.clone());
    script.extend(record(9, 0, b"", 0));
    let (out, _) = run(&Echo, &script);
    let recs = parse(&out);
    let results: Vec<&Record> = recs.iter().filter(|r| r.kind == 10).collect();
    assert_eq!(results.len(), 4);
    for r in &results[..3] {
        assert_eq!(record(r.kind, r.id, &r.content, 0), expected);
    }
    assert!(results[3].content.is_empty(), "empty query, empty result");
    assert!(stream(&recs, 6, 1).ends_with(b"STDIN-LENGTH=4\nabcd"));
}

#[test]
fn get_values_reports_multiplexing_truthfully() {
    let query = record(9, 0, &nv(&[(b"FCGI_MAX_REQS", b""), (b"FCGI_MPXS_CONNS", b"")]), 0);
    let config = Config { max_conns: 10, ..Config::default() };
    let (out, _) = run_with::<Buffers<256, 256, 256, 4>, _>(&Hello, &config, &query, usize::MAX);
    assert_eq!(out, record(10, 0, &nv(&[(b"FCGI_MAX_REQS", b"40"), (b"FCGI_MPXS_CONNS", b"1")]), 0));
}

#[test]
fn unknown_management_types_get_unknown_type() {
    for t in [0u8, 12, 255] {
        let (out, result) = run(&Hello, &record(t, 0, b"xyz", 2));
        assert!(result.is_ok());
        assert_eq!(out, [1, 11, 0, 0, 0, 8, 0, 0, t, 0, 0, 0, 0, 0, 0, 0]);
    }
}

#[test]
fn types_the_server_never_sends_are_ignored() {
    let mut script = Vec::new();
    for t in [3u8, 6, 7, 10, 11] {
        script.extend(record(t, 0, b"junk", 0));
        script.extend(record(t, 1, b"junk", 1));
    }
    script.extend(record(2, 0, b"", 0));
    script.extend(record(4, 0, b"x", 0));
    script.extend(record(200, 5, b"x", 0));
    script.extend(request(1, false, &[], b""));
    let (out, result) = run(&Hello, &script);
    assert!(result.is_ok());
    assert_eq!(out, hello_response(1));
}

#[test]
fn unknown_role_rejected_and_connection_kept() {
    let mut script = begin(1, 0, true);
    script.extend(record(4, 1, &nv(&[(b"A", b"1")]), 0));
    script.extend(record(5, 1, b"", 0));
    script.extend(begin(2, FILTER, true));
    script.extend(begin(3, 0xffff, true));
    script.extend(request(1, false, &[], b""));
    let (out, result) = run(&Hello, &script);
    assert!(result.is_ok());
    let mut expected = Vec::new();
    for id in [1u16, 2, 3] {
        expected.extend(record(3, id, &[0, 0, 0, 0, 3, 0, 0, 0], 0));
    }
    expected.extend(hello_response(1));
    assert_eq!(out, expected);
}

#[test]
fn unknown_role_without_keep_conn_closes() {
    let script = begin(1, ember_fcgi_testkit::AUTHORIZER, false);
    let next = request(2, false, &[], b"");
    let (out, result) = run_each(&Hello, &[&script, &next]);
    assert!(result.is_ok());
    assert_eq!(out, record(3, 1, &[0, 0, 0, 0, 3, 0, 0, 0], 0));
}

#[test]
fn second_request_without_multiplexing_gets_cant_mpx_conn() {
    let mut script = begin(1, RESPONDER, true);
    script.extend(record(4, 1, &nv(&[(b"A", b"1")]), 0));
    script.extend(begin(2, RESPONDER, true));
    script.extend(record(4, 2, b"", 0));
    script.extend(record(5, 2, b"zz", 0));
    script.extend(record(4, 1, b"", 0));
    script.extend(record(5, 1, b"ok", 0));
    script.extend(record(5, 1, b"", 0));
    let (out, _) = run(&Echo, &script);
    let recs = parse(&out);
    assert_eq!(recs[0], Record { kind: 3, id: 2, content: vec![0, 0, 0, 0, 1, 0, 0, 0] });
    assert!(stream(&recs, 6, 1).ends_with(b"STDIN-LENGTH=2\nok"));
    assert_eq!(ends(&recs), vec![(2, 0, 1), (1, 0, 0)]);
}

#[test]
fn multiplexed_requests_interleave_and_overload_is_reported() {
    let mut script = Vec::new();
    for id in [5u16, 6] {
        script.extend(begin(id, RESPONDER, true));
        script.extend(record(4, id, &nv(&[(b"ID", std::format!("{id}").as_bytes())]), 0));
    }
    script.extend(begin(7, RESPONDER, true));
    script.extend(record(4, 6, b"", 0));
    script.extend(record(4, 5, b"", 0));
    script.extend(record(5, 6, b"six", 0));
    script.extend(record(5, 5, b"five", 0));
    script.extend(record(5, 5, b"", 0));
    script.extend(record(5, 6, b"", 0));
    let (out, result) =
        run_with::<Buffers<64, 256, 256, 2>, _>(&Echo, &Config::default(), &script, usize::MAX);
    assert!(result.is_ok());
    let recs = parse(&out);
    assert_eq!(recs[0], Record { kind: 3, id: 7, content: vec![0, 0, 0, 0, 2, 0, 0, 0] });
    assert!(stream(&recs, 6, 5).ends_with(b"ID=5\nSTDIN-LENGTH=4\nfive"));
    assert!(stream(&recs, 6, 6).ends_with(b"ID=6\nSTDIN-LENGTH=3\nsix"));
    let mut e = ends(&recs);
    e.sort();
    assert_eq!(e, vec![(5, 0, 0), (6, 0, 0), (7, 0, 2)]);
}

#[test]
fn keep_conn_serves_many_and_reuses_ids() {
    let mut script = Vec::new();
    for _ in 0..5 {
        script.extend(request(1, true, NGINX_PARAMS, b"x"));
    }
    script.extend(request(65535, true, &[], b""));
    let (out, result) = run(&Hello, &script);
    assert!(result.is_ok(), "peer EOF ends the connection cleanly");
    let mut expected = Vec::new();
    for _ in 0..5 {
        expected.extend(hello_response(1));
    }
    expected.extend(hello_response(65535));
    assert_eq!(out, expected);
}

#[test]
fn without_keep_conn_the_connection_ends_after_end_request() {
    let script = request(1, false, &[], b"");
    let (out, result) = run_each(&Hello, &[&script, &script]);
    assert!(result.is_ok());
    assert_eq!(out, hello_response(1), "second request is not served");
}

#[test]
fn protocol_errors_close_the_connection() {
    let cases: Vec<(Vec<u8>, ProtocolError)> = vec![
        (
            {
                let mut b = begin(1, RESPONDER, true);
                b[0] = 2;
                b
            },
            ProtocolError::UnsupportedVersion(2),
        ),
        (record(1, 1, &[0, 1, 0, 0, 0, 0, 0], 0), ProtocolError::BeginBodyLength(7)),
        (begin(0, RESPONDER, true), ProtocolError::BeginWithManagementId),
        (
            {
                let mut b = begin(3, RESPONDER, true);
                b.extend(begin(3, RESPONDER, true));
                b
            },
            ProtocolError::DuplicateBegin(3),
        ),
        (
            {
                let mut b = begin(3, RESPONDER, true);
                b.extend(record(5, 3, b"early", 0));
                b
            },
            ProtocolError::StreamBeforeParams(3),
        ),
        (
            {
                let mut b = begin(3, RESPONDER, true);
                b.extend(record(4, 3, &[5, 1, b'a'], 0));
                b.extend(record(4, 3, b"", 0));
                b
            },
            ProtocolError::TruncatedParams(3),
        ),
    ];
    for (mut script, error) in cases {
        script.extend(request(9, true, &[], b""));
        let (out, result) = run(&Hello, &script);
        match result {
            Err(ConnectionError::Protocol(e)) => assert_eq!(e, error),
            other => panic!("expected {error:?}, got {other:?}"),
        }
        assert!(out.is_empty(), "no reply after {error:?}");
    }
}

#[test]
fn records_for_inactive_ids_are_skipped() {
    let mut script = record(4, 9, &nv(&[(b"A", b"1")]), 3);
    script.extend(record(5, 9, b"stdin", 0));
    script.extend(record(8, 9, b"data", 0));
    script.extend(record(2, 9, b"", 0));
    script.extend(request(1, true, &[], b""));
    // After END, records for the finished id are skipped too.
    let mut late = record(5, 1, b"late", 0);
    late.extend(record(2, 1, b"", 0));
    let last = request(1, false, &[], b"");
    let (out, _) = run_each(&Hello, &[&script, &late, &last]);
    let mut expected = hello_response(1);
    expected.extend(hello_response(1));
    assert_eq!(out, expected);
}

#[test]
fn stdin_after_its_end_is_ignored() {
    let mut script = request(1, true, &[], b"abc");
    // Move the final empty STDIN earlier: data after EOF must be ignored.
    let tail = script.split_off(script.len() - 8 - 11);
    script.extend(record(5, 1, b"", 0));
    script.extend(tail);
    let (out, _) = run(&Echo, &script);
    assert!(stream(&parse(&out), 6, 1).ends_with(b"STDIN-LENGTH=0\n"));
}

#[test]
fn large_output_is_cut_into_records() {
    for (n, chunk) in [(65535usize, 65535usize), (65536, 65536), (200_000, 7), (200_000, 100_000)] {
        let (out, result) = run(&Big { n, chunk }, &request(1, false, &[], b""));
        assert!(result.is_ok());
        let recs = parse(&out);
        assert!(recs.iter().all(|r| r.content.len() <= 65535));
        assert_eq!(stream(&recs, 6, 1), pattern(n));
        let last_two: Vec<u8> = recs[recs.len() - 2..].iter().map(|r| r.kind).collect();
        assert_eq!(last_two, [6, 3]);
        assert!(recs[recs.len() - 2].content.is_empty());
    }
}

#[test]
fn small_writes_are_coalesced() {
    let (out, _) = run(&Big { n: 1000, chunk: 1 }, &request(1, false, &[], b""));
    let recs = parse(&out);
    assert_eq!(recs.len(), 3, "one data record, the empty STDOUT, END");
}

#[test]
fn stderr_is_closed_and_app_status_sent() {
    let (out, _) = run(&WithStderr, &request(1, false, &[], b""));
    let mut expected = record(7, 1, b"warn", 0);
    expected.extend(record(6, 1, b"Status: 200 OK\r\n\r\n", 0));
    expected.extend(record(6, 1, b"", 0));
    expected.extend(record(7, 1, b"", 0));
    expected.extend(record(3, 1, &[0, 0, 0, 7, 0, 0, 0, 0], 0));
    assert_eq!(out, expected);
}

#[test]
fn params_over_capacity_get_431_and_connection_stays() {
    let big = vec![b'v'; 2000];
    let mut script = request(1, true, &[(b"HUGE", &big), (b"A", b"1")], b"body");
    script.extend(request(1, false, &[], b""));
    let (out, result) = run_with::<Small, _>(&Hello, &Config::default(), &script, usize::MAX);
    assert!(result.is_ok());
    let recs = parse(&out);
    let first = stream(&recs[..3], 6, 1);
    assert!(first.starts_with(b"Status: 431 Request Header Fields Too Large\r\n"));
    assert_eq!(ends(&recs), vec![(1, 0, 0), (1, 0, 0)]);
    assert!(stream(&recs[3..], 6, 1).starts_with(b"Status: 200 OK"));
}

#[test]
fn body_shorter_than_content_length_is_detected() {
    let (out, _) = run(&BodyCheck, &request(1, false, &[(b"CONTENT_LENGTH", b"10")], b"abc"));
    assert_eq!(stream(&parse(&out), 6, 1), b"Err(BodyTruncated { expected: 10, received: 3 })");
    let (out, _) = run(&BodyCheck, &request(1, false, &[(b"CONTENT_LENGTH", b"3")], b"abc"));
    assert_eq!(stream(&parse(&out), 6, 1), b"Ok(3)");
    let (out, _) = run(&BodyCheck, &request(1, false, &[], b"123456789"));
    assert_eq!(stream(&parse(&out), 6, 1), b"Err(BodyTooLarge)");
}

#[test]
fn a_response_has_one_head() {
    let (out, _) = run(&TwoHeads, &request(1, false, &[], b""));
    let want = b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\n\
        Some(HeadAlreadySent) Err(HeadAlreadySent) Err(HeadAlreadySent)";
    assert_eq!(stream(&parse(&out), 6, 1), want);
}

#[test]
fn an_empty_buffer_is_not_reported_as_too_small() {
    let (out, _) = run(&EmptyBufferCheck, &request(1, false, &[], b"abc"));
    assert_eq!(stream(&parse(&out), 6, 1), b"Err(EmptyBuffer)");
    let (out, _) = run(&EmptyBufferCheck, &request(1, false, &[], b""));
    assert_eq!(stream(&parse(&out), 6, 1), b"Ok(0)");
}

#[test]
fn a_response_remembers_the_status_of_its_typed_head() {
    let cases: [(&[u8], &[u8]); 8] = [
        (b"", b"None"),
        (b"head", b"Some(201)"),
        (b"whole", b"Some(202)"),
        (b"bad", b"None"),
        (b"redirect", b"Some(302)"),
        (b"local", b"None"),
        (b"raw", b"None"),
        (b"noted", b"Some(204)"),
    ];
    for (query, want) in cases {
        let (out, _) = run(&StatusSeen, &request(1, false, &[(b"QUERY_STRING", query)], b""));
        assert_eq!(stream(&parse(&out), 7, 1), want, "{}", std::string::String::from_utf8_lossy(query));
    }
}
