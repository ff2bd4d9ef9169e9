//! The runtime without a poller: a test reactor registers nothing and the test feeds every
//! connection a readiness event each round.

use std::cell::{Cell, RefCell};
use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ember_fcgi_core::{Handler, HandlerError, Request, Response};

use super::{Event, Reactor, Runtime, Setup, Stream};
use crate::stats::StatsSnapshot;
use crate::{Limits, Listener};

struct Nop;

impl Handler for Nop {
    async fn handle(&self, _: &mut Request<'_>, _: &mut Response<'_>) -> Result<(), HandlerError> {
        Ok(())
    }
}

/// A socket whose first `as_ref` panics (so the engine's first read does, outside any
/// handler); later calls give the stream.
struct Sock(Stream, Rc<Cell<bool>>);

impl AsRef<Stream> for Sock {
    fn as_ref(&self) -> &Stream {
        if self.1.replace(false) {
            panic!("the test socket panics on purpose");
        }
        &self.0
    }
}

#[derive(Default)]
struct TestReactor {
    keys: RefCell<Vec<usize>>,
    panics: Rc<Cell<bool>>,
}

impl Reactor for TestReactor {
    type Socket = Sock;
    fn register(&self, stream: Stream, key: usize) -> std::io::Result<Sock> {
        self.keys.borrow_mut().push(key);
        Ok(Sock(stream, Rc::clone(&self.panics)))
    }
    fn deregister_listener(&self, _: &Listener) {}
}

/// Runs the loop until `done` holds of the counters (at most 5 s).
fn run_until(
    rt: &mut Runtime<'_, Nop, Sock>,
    reactor: &TestReactor,
    done: impl Fn(&StatsSnapshot) -> bool,
) -> StatsSnapshot {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        rt.note_listener();
        let keys = reactor.keys.borrow().clone();
        for key in keys {
            rt.note_event(key, Event { readable: true, writable: true, read_closed: false });
        }
        rt.process(reactor);
        let s = rt.stats().snapshot();
        if done(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "timed out: {s:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn an_engine_panic_closes_its_connection_and_is_not_a_handler_panic() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let setup = Setup::new(Listener::Tcp(listener), Nop, Limits::default()).unwrap();
    let settings = setup.settings(4, false, 0);
    let Setup { listener, handler, .. } = setup;
    let mut rt = Runtime::new(Arc::new(listener), handler, settings);
    let reactor = TestReactor::default();
    reactor.panics.set(true);
    let mut client = TcpStream::connect(addr).unwrap();
    client.write_all(b"x").unwrap();
    let s = run_until(&mut rt, &reactor, |s| s.engine_panics == 1 && s.open_connections == 0);
    assert_eq!((s.accepted, s.handler_panics, s.closed_with_error, s.requests), (1, 0, 0, 0), "{s:?}");
}

/// Runs the loop for `ms` milliseconds, accepting but feeding no connection events (so a
/// released engine stays released).
fn spin(rt: &mut Runtime<'_, Nop, Sock>, reactor: &TestReactor, ms: u64) {
    let end = Instant::now() + Duration::from_millis(ms);
    while Instant::now() < end {
        rt.note_listener();
        rt.process(reactor);
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn keep_holds_engines_without_a_walk_and_releases_kept_ones_when_more_are_held() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut setup = Setup::new(Listener::Tcp(listener), Nop, Limits::default()).unwrap();
    setup.release = super::IdleRelease::default().with_after(Duration::from_millis(20)).with_keep(1);
    let settings = setup.settings(8, false, 0);
    let Setup { listener, handler, .. } = setup;
    let mut rt = Runtime::new(Arc::new(listener), handler, settings);
    let reactor = TestReactor::default();
    let _a = TcpStream::connect(addr).unwrap();
    let _b = TcpStream::connect(addr).unwrap();
    spin(&mut rt, &reactor, 10);
    assert_eq!((rt.conns.len(), rt.engines), (2, 2));
    // Both at rest past `after`: one engine goes, the other is kept (keep = 1).
    spin(&mut rt, &reactor, 80);
    assert_eq!(rt.engines, 1);
    assert_eq!(rt.kept.len(), 1, "the engine kept waits in the list");
    let kept = rt.kept[0];
    // A third connection: two engines held, so the kept one goes at the next sweep, with
    // no deadline of its own due.
    let _c = TcpStream::connect(addr).unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while rt.conns[kept].state() != super::ConnState::Released {
        assert!(Instant::now() < deadline, "the kept engine was not released: {:?}", rt.conns[kept]);
        spin(&mut rt, &reactor, 1);
    }
    assert_eq!((rt.conns.len(), rt.engines), (3, 1));
    // The newcomer rests past `after` too, but is the only one holding an engine: kept.
    spin(&mut rt, &reactor, 80);
    assert_eq!((rt.conns.len(), rt.engines, rt.kept.len()), (3, 1, 1));
}

/// Never finishes.
struct Hang;

impl Handler for Hang {
    async fn handle(&self, _: &mut Request<'_>, _: &mut Response<'_>) -> Result<(), HandlerError> {
        std::future::pending::<()>().await;
        Ok(())
    }
}

/// BEGIN_REQUEST (responder, keep-conn) and the params `SCRIPT_NAME=/x` of request 1.
fn begin_and_params() -> Vec<u8> {
    let mut bytes = vec![1, 1, 0, 1, 0, 8, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0];
    let pair = [11u8, 2].iter().chain(b"SCRIPT_NAME/x").copied().collect::<Vec<u8>>();
    bytes.extend([1, 4, 0, 1, 0, pair.len() as u8, 0, 0]);
    bytes.extend(pair);
    bytes.extend([1, 4, 0, 1, 0, 0, 0, 0]);
    bytes
}

#[test]
fn a_request_deadline_is_scheduled_and_wakes_the_engine_without_an_event() {
    let timeout = Duration::from_millis(60);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = Limits::default().with_request_timeout(timeout);
    let setup = Setup::new(Listener::Tcp(listener), Hang, limits).unwrap();
    let settings = setup.settings(4, false, 0);
    let Setup { listener, handler, .. } = setup;
    let mut rt = Runtime::new(Arc::new(listener), handler, settings);
    let reactor = TestReactor::default();
    let mut client = TcpStream::connect(addr).unwrap();
    client.write_all(&begin_and_params()).unwrap();
    // Events until the handler runs.
    let started = Instant::now();
    while rt.stats().snapshot().requests == 0 {
        assert!(started.elapsed() < Duration::from_secs(5));
        rt.note_listener();
        for key in reactor.keys.borrow().clone() {
            rt.note_event(key, Event { readable: true, writable: true, read_closed: false });
        }
        rt.process(&reactor);
        std::thread::sleep(Duration::from_millis(1));
    }
    let key = reactor.keys.borrow()[0];
    let wake_at = rt.conns[key].io.timer.wake_at().expect("the guard published its deadline");
    assert!(wake_at <= Instant::now() + timeout, "{wake_at:?}");
    // The runtime sleeps no longer than the deadline (the memory recall is not due: busy).
    assert!(rt.next_timer().is_some_and(|t| t <= wake_at));
    // No more events: only the deadline can wake the engine.
    while rt.stats().snapshot().request_timeouts == 0 {
        assert!(started.elapsed() < Duration::from_secs(5), "no timeout: {:?}", rt.stats().snapshot());
        rt.process(&reactor);
        std::thread::sleep(rt.timeout().unwrap_or(Duration::from_millis(1)).min(Duration::from_millis(5)));
    }
    assert!(Instant::now() >= wake_at);
    // Nothing was written: a 504, END_REQUEST; the timer is clear again.
    rt.note_event(key, Event { readable: false, writable: true, read_closed: false });
    rt.process(&reactor);
    assert_eq!(rt.conns[key].io.timer.wake_at(), None);
    let mut reply = vec![0u8; 256];
    client.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let n = std::io::Read::read(&mut client, &mut reply).unwrap();
    let text = String::from_utf8_lossy(&reply[..n]);
    assert!(text.contains("Status: 504 Gateway Timeout\r\n"), "{text:?}");
    let s = rt.stats().snapshot();
    assert_eq!((s.requests, s.request_timeouts, s.requests_aborted), (1, 1, 0));
}
