//! No request holds its connection hostage: body windows, `discard_body`, `gone`, the
//! records behind an unread body, DATA_LENGTH, closing multiplexed connections. Input is
//! written out byte by byte from the spec; the driver runs in read-ahead mode over an
//! in-memory socket the test feeds.

use core::cell::{Cell, RefCell};
use core::future::{Future, poll_fn};
use core::pin::pin;
use core::task::{Context, Poll, Waker};
use std::collections::VecDeque;
use std::vec;
use std::vec::Vec;

use embedded_io_async::{ErrorType, Read, Write};

use crate::{Buffers, Config, ConnectionStatus, Handler, Request, Response, Role, Roles, StreamError};

/// A record: version 1, type, request id, content, no padding.
fn rec(ty: u8, id: u16, content: &[u8]) -> Vec<u8> {
    let [ih, il] = id.to_be_bytes();
    let [lh, ll] = (content.len() as u16).to_be_bytes();
    let mut v = vec![1, ty, ih, il, lh, ll, 0, 0];
    v.extend_from_slice(content);
    v
}

/// BEGIN_REQUEST for `role` (1 responder, 3 filter), with or without FCGI_KEEP_CONN.
fn begin(id: u16, role: u8, keep: bool) -> Vec<u8> {
    rec(1, id, &[0, role, u8::from(keep), 0, 0, 0, 0, 0])
}

/// PARAMS with short (1-byte length) pairs, then the empty PARAMS record.
fn params(id: u16, pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (n, v) in pairs {
        body.push(n.len() as u8);
        body.push(v.len() as u8);
        body.extend_from_slice(n.as_bytes());
        body.extend_from_slice(v.as_bytes());
    }
    let mut out = rec(4, id, &body);
    out.extend(rec(4, id, b""));
    out
}

/// END_REQUEST with app status 0 and `protocol_status`.
fn end(id: u16, protocol_status: u8) -> Vec<u8> {
    rec(3, id, &[0, 0, 0, 0, protocol_status, 0, 0, 0])
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// The in-memory socket: bytes the test feeds, then optionally EOF.
#[derive(Default)]
struct Wire {
    input: RefCell<VecDeque<u8>>,
    eof: Cell<bool>,
    output: RefCell<Vec<u8>>,
}

impl Wire {
    fn feed(&self, bytes: &[u8]) {
        self.input.borrow_mut().extend(bytes);
    }
    fn take_output(&self) -> Vec<u8> {
        core::mem::take(&mut *self.output.borrow_mut())
    }
}

struct WireReader<'a>(&'a Wire);
struct WireWriter<'a>(&'a Wire);

impl ErrorType for WireReader<'_> {
    type Error = core::convert::Infallible;
}
impl ErrorType for WireWriter<'_> {
    type Error = core::convert::Infallible;
}

impl Read for WireReader<'_> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        poll_fn(|_| {
            let mut input = self.0.input.borrow_mut();
            if input.is_empty() {
                return if self.0.eof.get() { Poll::Ready(Ok(0)) } else { Poll::Pending };
            }
            let n = buf.len().min(input.len());
            for (dst, src) in buf.iter_mut().zip(input.drain(..n)) {
                *dst = src;
            }
            Poll::Ready(Ok(n))
        })
        .await
    }
}

impl Write for WireWriter<'_> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        self.0.output.borrow_mut().extend_from_slice(buf);
        Ok(buf.len())
    }
    async fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Polls `fut` once (the test re-polls after every change it makes).
fn poll_once<F: Future>(fut: core::pin::Pin<&mut F>) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(Waker::noop()))
}

/// What the handlers of one test saw.
#[derive(Default)]
struct Seen {
    gate: Cell<bool>,
    gone: Cell<u32>,
    aborted: Cell<bool>,
    body: RefCell<Vec<u8>>,
    errors: RefCell<Vec<StreamError>>,
}

impl Seen {
    async fn wait_gate(&self) {
        poll_fn(|_| if self.gate.get() { Poll::Ready(()) } else { Poll::Pending }).await
    }
}

/// Never reads its body: waits until it has gone, notes it, answers nothing.
struct Sleeper<'a>(&'a Seen);

impl Handler for Sleeper<'_> {
    async fn handle(
        &self,
        req: &mut Request<'_>,
        _res: &mut Response<'_>,
    ) -> Result<(), crate::HandlerError> {
        req.gone().await;
        self.0.gone.set(self.0.gone.get() + 1);
        self.0.aborted.set(req.aborted());
        Ok(())
    }
}

/// Waits for the gate, then reads its whole body and answers "ok".
struct LateReader<'a>(&'a Seen);

impl Handler for LateReader<'_> {
    async fn handle(&self, req: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), crate::HandlerError> {
        self.0.wait_gate().await;
        let mut buf = [0u8; 100];
        loop {
            match req.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => self.0.body.borrow_mut().extend_from_slice(&buf[..n]),
                Err(e) => {
                    self.0.errors.borrow_mut().push(e);
                    return Err(e.into());
                }
            }
        }
        Ok(res.raw_output().write_all(b"ok").await?)
    }
}

/// Request 1 sleeps without reading; every other request answers "hi" at once.
struct FirstSleeps<'a>(&'a Seen);

impl Handler for FirstSleeps<'_> {
    async fn handle(&self, req: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), crate::HandlerError> {
        if req.request_id() == 1 {
            self.0.wait_gate().await;
            req.discard_body();
            return Ok(res.raw_output().write_all(b"late").await?);
        }
        Ok(res.raw_output().write_all(b"hi").await?)
    }
}

/// Starts the driver in read-ahead mode over `$wire`, serving `$handler` with buffers of
/// type `$buffers` and `$config`; binds the pinned future as `$conn` and its status.
macro_rules! connect {
    ($conn:ident, $status:ident, $wire:ident, $handler:expr, $buffers:ty, $config:expr) => {
        let mut buffers = <$buffers>::new();
        let $status = ConnectionStatus::new();
        let config = $config;
        let handler = $handler;
        let mut $conn = pin!(crate::serve_connection(
            WireReader(&$wire),
            WireWriter(&$wire),
            &handler,
            &mut buffers,
            &config,
            &$status
        ));
    };
}

const GET_VALUES_MAX_CONNS: &[u8] = &[
    1, 9, 0, 0, 0, 16, 0, 0, 14, 0, b'F', b'C', b'G', b'I', b'_', b'M', b'A', b'X', b'_', b'C', b'O', b'N',
    b'N', b'S',
];

type One = Buffers<256, 512, 512, 1, 64>;
type Two = Buffers<256, 512, 512, 2, 64>;

#[test]
fn abort_is_seen_behind_an_unread_body_that_fits_the_window() {
    let seen = Seen::default();
    let wire = Wire::default();
    connect!(conn, status, wire, Sleeper(&seen), One, Config::default());
    // 40 body bytes (the window holds 64), the body's end, then FCGI_ABORT_REQUEST.
    wire.feed(&cat(&[&begin(1, 1, true), &params(1, &[("CONTENT_LENGTH", "40")]), &rec(5, 1, &[7; 40])]));
    assert!(poll_once(conn.as_mut()).is_pending());
    assert_eq!(seen.gone.get(), 0);
    wire.feed(&cat(&[&rec(5, 1, b""), &rec(2, 1, b"")]));
    assert!(poll_once(conn.as_mut()).is_pending());
    assert_eq!(seen.gone.get(), 1);
    assert!(seen.aborted.get());
    // The aborted request still closes its streams and ends exactly once.
    assert_eq!(wire.take_output(), cat(&[&rec(6, 1, b""), &end(1, 0)]));
}

#[test]
fn get_values_and_eof_are_seen_behind_an_unread_body() {
    let seen = Seen::default();
    let wire = Wire::default();
    connect!(conn, status, wire, Sleeper(&seen), One, Config { max_conns: 7, ..Config::default() });
    wire.feed(&cat(&[&begin(1, 1, true), &params(1, &[]), &rec(5, 1, &[1; 30]), GET_VALUES_MAX_CONNS]));
    assert!(poll_once(conn.as_mut()).is_pending());
    // GET_VALUES_RESULT: FCGI_MAX_CONNS = 7.
    let mut reply = vec![14, 1];
    reply.extend_from_slice(b"FCGI_MAX_CONNS7");
    assert_eq!(wire.take_output(), rec(10, 0, &reply));
    assert_eq!(seen.gone.get(), 0);
    // The web server closes the connection: the request (input incomplete) is gone and
    // gets no reply; the driver ends.
    wire.eof.set(true);
    assert!(matches!(poll_once(conn.as_mut()), Poll::Ready(Ok(()))));
    assert_eq!(seen.gone.get(), 1);
    assert!(seen.aborted.get());
    assert_eq!(wire.take_output(), b"");
}

#[test]
fn a_full_window_holds_the_input_back_until_the_handler_reads() {
    let seen = Seen::default();
    let wire = Wire::default();
    connect!(conn, status, wire, LateReader(&seen), One, Config::default());
    // 300 body bytes in three records: more than the 64-byte window and 256-byte input.
    let body: Vec<u8> = (0..300u32).map(|i| (i * 7 % 251) as u8).collect();
    wire.feed(&cat(&[
        &begin(1, 1, true),
        &params(1, &[("CONTENT_LENGTH", "300")]),
        &rec(5, 1, &body[..100]),
        &rec(5, 1, &body[100..250]),
        &rec(5, 1, &body[250..]),
        &rec(5, 1, b""),
        GET_VALUES_MAX_CONNS,
    ]));
    assert!(poll_once(conn.as_mut()).is_pending());
    // Backpressure: the GET_VALUES behind the body is not reached while the window is full.
    assert_eq!(wire.take_output(), b"");
    assert!(!wire.input.borrow().is_empty());
    seen.gate.set(true);
    assert!(poll_once(conn.as_mut()).is_pending());
    assert_eq!(*seen.body.borrow(), body, "the body arrives whole and in order through the window");
    let mut reply = vec![14, 4];
    reply.extend_from_slice(b"FCGI_MAX_CONNS1024");
    assert_eq!(
        wire.take_output(),
        cat(&[&rec(10, 0, &reply), &rec(6, 1, b"ok"), &rec(6, 1, b""), &end(1, 0)])
    );
}

#[test]
fn a_body_that_waited_in_the_window_reads_back_exactly() {
    let seen = Seen::default();
    let wire = Wire::default();
    connect!(conn, status, wire, LateReader(&seen), One, Config::default());
    let body: Vec<u8> = (0..60u8).collect();
    // Split so the window wraps around: 25 + 35 bytes in two records.
    wire.feed(&cat(&[&begin(1, 1, true), &params(1, &[]), &rec(5, 1, &body[..25])]));
    assert!(poll_once(conn.as_mut()).is_pending());
    wire.feed(&cat(&[&rec(5, 1, &body[25..]), &rec(5, 1, b"")]));
    assert!(poll_once(conn.as_mut()).is_pending());
    assert!(wire.input.borrow().is_empty(), "all input parsed while the handler waits");
    seen.gate.set(true);
    assert!(poll_once(conn.as_mut()).is_pending());
    assert_eq!(*seen.body.borrow(), body);
    assert_eq!(wire.take_output(), cat(&[&rec(6, 1, b"ok"), &rec(6, 1, b""), &end(1, 0)]));
}

#[test]
fn a_second_request_completes_while_the_first_sleeps_on_its_body() {
    let seen = Seen::default();
    let wire = Wire::default();
    connect!(conn, status, wire, FirstSleeps(&seen), Two, Config::default());
    wire.feed(&cat(&[
        &begin(1, 1, true),
        &params(1, &[]),
        &rec(5, 1, &[9; 50]),
        &begin(2, 1, true),
        &params(2, &[]),
        &rec(5, 2, b""),
    ]));
    assert!(poll_once(conn.as_mut()).is_pending());
    assert_eq!(wire.take_output(), cat(&[&rec(6, 2, b"hi"), &rec(6, 2, b""), &end(2, 0)]));
    // Request 1 discards its body (its end arrives later) and answers.
    seen.gate.set(true);
    wire.feed(&rec(5, 1, b""));
    assert!(poll_once(conn.as_mut()).is_pending());
    assert_eq!(wire.take_output(), cat(&[&rec(6, 1, b"late"), &rec(6, 1, b""), &end(1, 0)]));
}

#[test]
fn a_discarded_body_is_skipped_and_the_connection_goes_on() {
    struct Discards;
    impl Handler for Discards {
        async fn handle(
            &self,
            req: &mut Request<'_>,
            res: &mut Response<'_>,
        ) -> Result<(), crate::HandlerError> {
            req.discard_body();
            let mut buf = [0u8; 8];
            assert_eq!(req.read(&mut buf).await, Ok(0));
            Ok(res.raw_output().write_all(b"x").await?)
        }
    }
    let wire = Wire::default();
    connect!(conn, status, wire, Discards, One, Config::default());
    for _ in 0..2 {
        // 1000 body bytes (CONTENT_LENGTH says so): far more than window and input.
        wire.feed(&cat(&[
            &begin(1, 1, true),
            &params(1, &[("CONTENT_LENGTH", "1000")]),
            &rec(5, 1, &[3; 500]),
            &rec(5, 1, &[4; 500]),
            &rec(5, 1, b""),
        ]));
        assert!(poll_once(conn.as_mut()).is_pending());
        assert_eq!(wire.take_output(), cat(&[&rec(6, 1, b"x"), &rec(6, 1, b""), &end(1, 0)]));
        assert!(wire.input.borrow().is_empty());
    }
}

#[test]
fn a_short_data_stream_reads_as_truncated() {
    let seen = Seen::default();
    struct Filter<'a>(&'a Seen);
    impl Handler for Filter<'_> {
        async fn handle(
            &self,
            req: &mut Request<'_>,
            _res: &mut Response<'_>,
        ) -> Result<(), crate::HandlerError> {
            let mut buf = [0u8; 64];
            while req.read(&mut buf).await? > 0 {}
            let mut data = req.data();
            loop {
                match data.read(&mut buf).await {
                    Ok(0) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => {
                        self.0.errors.borrow_mut().push(e);
                        return Err(e.into());
                    }
                }
            }
        }
    }
    let wire = Wire::default();
    connect!(conn, status, wire, Filter(&seen), One, Config { roles: Roles::ALL, ..Config::default() });
    wire.feed(&cat(&[
        &begin(1, 3, true),
        &params(1, &[("FCGI_DATA_LENGTH", "10")]),
        &rec(5, 1, b""),
        &rec(8, 1, b"abcd"),
        &rec(8, 1, b""),
    ]));
    assert!(poll_once(conn.as_mut()).is_pending());
    assert_eq!(*seen.errors.borrow(), [StreamError::DataTruncated { expected: 10, received: 4 }]);
    // The handler's error before any output: a CGI 500 and app status 1.
    let out = wire.take_output();
    assert!(out.starts_with(&[1, 6, 0, 1]));
    assert!(out.ends_with(&rec(3, 1, &[0, 0, 0, 1, 0, 0, 0, 0])));
    let _ = Role::Filter;
}

#[test]
fn a_closing_multiplexed_connection_refuses_new_requests_then_closes() {
    let seen = Seen::default();
    let wire = Wire::default();
    connect!(conn, status, wire, FirstSleeps(&seen), Two, Config::default());
    // Request 1 (keep-conn) sleeps; request 2 has no FCGI_KEEP_CONN and ends at once.
    wire.feed(&cat(&[
        &begin(1, 1, true),
        &params(1, &[]),
        &rec(5, 1, b""),
        &begin(2, 1, false),
        &params(2, &[]),
        &rec(5, 2, b""),
    ]));
    assert!(poll_once(conn.as_mut()).is_pending());
    assert_eq!(wire.take_output(), cat(&[&rec(6, 2, b"hi"), &rec(6, 2, b""), &end(2, 0)]));
    // A new request on the closing connection: refused (CANT_MPX_CONN), not served.
    wire.feed(&cat(&[&begin(3, 1, true), &params(3, &[]), &rec(5, 3, b"")]));
    assert!(poll_once(conn.as_mut()).is_pending());
    assert_eq!(wire.take_output(), end(3, 1));
    // When request 1 ends, the driver returns: the transport closes the connection.
    seen.gate.set(true);
    assert!(matches!(poll_once(conn.as_mut()), Poll::Ready(Ok(()))));
    assert_eq!(wire.take_output(), cat(&[&rec(6, 1, b"late"), &rec(6, 1, b""), &end(1, 0)]));
}

#[test]
fn an_expired_connection_fails_the_handler_with_timed_out() {
    let seen = Seen::default();
    let wire = Wire::default();
    connect!(conn, status, wire, LateReader(&seen), One, Config::default());
    wire.feed(&cat(&[&begin(1, 1, true), &params(1, &[("CONTENT_LENGTH", "10")])]));
    seen.gate.set(true);
    assert!(poll_once(conn.as_mut()).is_pending());
    assert!(status.is_waiting_for_body());
    assert_eq!(status.body_bytes(), 0);
    status.expire();
    assert!(matches!(poll_once(conn.as_mut()), Poll::Ready(Err(crate::ConnectionError::TimedOut))));
    assert_eq!(*seen.errors.borrow(), [StreamError::TimedOut]);
}

/// What a handler in the property test does with its body.
#[derive(Clone, Copy, Debug)]
enum Behaviour {
    /// Reads it all, then answers with its length.
    Read,
    /// Calls `discard_body`, then answers.
    Discard,
    /// Answers at once without reading.
    Ignore,
    /// Waits this many polls (the body piles up in its window), then reads it all.
    ReadLate(u8),
}

/// Handlers that behave per request id and record the bodies they read.
struct Mixed<'a> {
    behaviours: &'a [Behaviour],
    bodies: &'a RefCell<Vec<Option<Vec<u8>>>>,
}

impl Handler for Mixed<'_> {
    async fn handle(&self, req: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), crate::HandlerError> {
        let i = usize::from(req.request_id()) - 1;
        let mut body = Vec::new();
        let mut buf = [0u8; 37];
        match self.behaviours[i] {
            Behaviour::Ignore => {}
            Behaviour::Discard => req.discard_body(),
            Behaviour::Read | Behaviour::ReadLate(_) => {
                if let Behaviour::ReadLate(polls) = self.behaviours[i] {
                    let mut left = polls;
                    poll_fn(|_| {
                        if left == 0 {
                            return Poll::Ready(());
                        }
                        left -= 1;
                        Poll::Pending
                    })
                    .await;
                }
                loop {
                    let n = req.read(&mut buf).await?;
                    if n == 0 {
                        break;
                    }
                    body.extend_from_slice(&buf[..n]);
                }
                self.bodies.borrow_mut()[i] = Some(body.clone());
            }
        }
        Ok(res.raw_output().write_all(std::format!("{}", body.len()).as_bytes()).await?)
    }
}

mod props {
    use super::*;
    use proptest::prelude::*;
    use std::format;
    use std::string::String;

    fn behaviour() -> impl Strategy<Value = Behaviour> {
        prop_oneof![
            Just(Behaviour::Read),
            Just(Behaviour::Discard),
            Just(Behaviour::Ignore),
            (1u8..6).prop_map(Behaviour::ReadLate),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        /// Multiplexed requests whose handlers read, discard, ignore or read their bodies
        /// late, with records interleaved and the input fed in random pieces: every request
        /// ends with exactly one END_REQUEST while the connection lives, and every handler
        /// that reads gets its body exactly.
        #[test]
        fn every_request_ends_exactly_once_whatever_its_handler_does_with_its_body(
            requests in proptest::collection::vec((behaviour(), 0usize..700, 1usize..300), 1..5),
            order in proptest::collection::vec(any::<u8>(), 0..64),
            feed in proptest::collection::vec(1usize..200, 1..16),
        ) {
            // Each request's records in order; requests interleaved as `order` says.
            let mut queues: Vec<VecDeque<Vec<u8>>> = requests.iter().enumerate().map(|(i, (_, len, piece))| {
                let id = i as u16 + 1;
                let body: Vec<u8> = (0..*len).map(|b| (b * 31 + i) as u8).collect();
                let length = format!("{len}");
                let mut q = VecDeque::from([begin(id, 1, true), params(id, &[("CONTENT_LENGTH", &length)])]);
                for chunk in body.chunks(*piece) {
                    q.push_back(rec(5, id, chunk));
                }
                q.push_back(rec(5, id, b""));
                q
            }).collect();
            let mut input = Vec::new();
            let mut k = 0;
            while queues.iter().any(|q| !q.is_empty()) {
                let pick = usize::from(order.get(k).copied().unwrap_or(0)) % queues.len();
                k += 1;
                let q = (pick..queues.len()).chain(0..pick).find(|&j| !queues[j].is_empty()).unwrap_or(0);
                if let Some(r) = queues[q].pop_front() {
                    input.extend(r);
                }
            }
            let behaviours: Vec<Behaviour> = requests.iter().map(|(b, _, _)| *b).collect();
            let bodies = RefCell::new(std::vec![None; requests.len()]);
            let handler = Mixed { behaviours: &behaviours, bodies: &bodies };
            let wire = Wire::default();
            let mut buffers = Buffers::<64, 256, 512, 4, 48>::new();
            let status = ConnectionStatus::new();
            let config = Config::default();
            let mut conn = pin!(crate::serve_connection(
                WireReader(&wire), WireWriter(&wire), &handler, &mut buffers, &config, &status
            ));
            let mut at = 0;
            let mut polls = 0;
            let mut ended = false;
            while polls < 10_000 {
                polls += 1;
                if at < input.len() {
                    let n = feed[polls % feed.len()].min(input.len() - at);
                    wire.feed(&input[at..at + n]);
                    at += n;
                } else if wire.input.borrow().is_empty() && status.active_requests() == 0 {
                    wire.eof.set(true);
                }
                if let Poll::Ready(result) = poll_once(conn.as_mut()) {
                    prop_assert!(result.is_ok(), "{:?}", result.err());
                    ended = true;
                    break;
                }
            }
            prop_assert!(ended, "the connection did not finish");
            // Every request: one END_REQUEST (REQUEST_COMPLETE), after its empty STDOUT.
            let out = wire.take_output();
            let mut ends = std::vec![0; requests.len()];
            let mut answers = std::vec![String::new(); requests.len()];
            let mut rest = &out[..];
            while !rest.is_empty() {
                prop_assert!(rest.len() >= 8);
                let (ty, id) = (rest[1], usize::from(u16::from_be_bytes([rest[2], rest[3]])));
                let len = usize::from(u16::from_be_bytes([rest[4], rest[5]]));
                let content = &rest[8..8 + len];
                prop_assert!((1..=requests.len()).contains(&id), "record for id {}", id);
                match ty {
                    6 => answers[id - 1] += core::str::from_utf8(content).unwrap_or("?"),
                    3 => {
                        prop_assert_eq!(content, &[0, 0, 0, 0, 0, 0, 0, 0][..]);
                        ends[id - 1] += 1;
                    }
                    other => prop_assert!(false, "unexpected record type {}", other),
                }
                rest = &rest[8 + len..];
            }
            prop_assert_eq!(&ends, &std::vec![1; requests.len()]);
            for (i, (b, len, _)) in requests.iter().enumerate() {
                let expected: Vec<u8> = (0..*len).map(|x| (x * 31 + i) as u8).collect();
                match b {
                    Behaviour::Read | Behaviour::ReadLate(_) => {
                        let got = bodies.borrow()[i].clone();
                        prop_assert_eq!(got, Some(expected));
                        prop_assert_eq!(&answers[i], &format!("{len}"));
                    }
                    Behaviour::Discard | Behaviour::Ignore => prop_assert_eq!(&answers[i], "0"),
                }
            }
        }
    }
}
