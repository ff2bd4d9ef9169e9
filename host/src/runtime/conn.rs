//! One connection in the runtime: its boxed engine future (the pooled engine: request
//! memory is borrowed from the loop's pool while a request runs, so steady state allocates
//! nothing), its waker, and its deadlines.
//!
//! Its life is one [`ConnState`], changed only through [`Entry::enter`] (which applies
//! [`ConnState::step`] and drops the engine future in the states without one):
//! `Running` or `AtRest` while the engine exists; `Released` when the engine future of a
//! connection at rest was dropped (idle release: a new one is made when the socket is
//! readable again, see [`IdleRelease`](super::IdleRelease); the reader is cancel-safe, a
//! pending read took no bytes, so the web server cannot tell); `Lingering` during a
//! graceful close (the write side is shut down and unread input is discarded until EOF or
//! `close_linger`, so the web server sees a clean close rather than a reset); `Closed`.

use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use ember_fcgi_core::{ConnectionBuffers, Handler, SliceBuffers};

use super::IdleRelease;
use super::io::{ConnIo, Drain, Stream};
use super::state::{CloseReason, ConnState, Step};
use super::wake::{ConnWaker, Wakes};
use crate::engine::{ConnFuture, EngineEnd, LoopShared, serve_pooled};
use crate::{Limits, Wait, Watch, deadline};

/// Reads at most this many scratch-buffer loads (64 KiB) per poll while lingering (then
/// yields).
const DRAIN_READS: usize = 4;

/// Boxes the engine of a connection with 1, 4 or 32 request slots, as `for_request_slots!`
/// picks for `Capacities::requests` (the driver runs that many; an unused slot costs its
/// future's size).
fn boxed_engine<'a, H: Handler + 'a, S: AsRef<Stream> + 'a>(
    io: &Rc<ConnIo<S>>,
    shared: &Rc<LoopShared<H>>,
) -> ConnFuture<'a> {
    let (io, shared) = (Rc::clone(io), Rc::clone(shared));
    crate::for_request_slots!(shared.pool.capacities().requests, |N| boxed::<H, S, N>(io, shared))
}

/// One size of engine; not inlined, so building a small engine never reserves stack for
/// the largest.
#[inline(never)]
fn boxed<'a, H: Handler + 'a, S: AsRef<Stream> + 'a, const N: usize>(
    io: Rc<ConnIo<S>>,
    shared: Rc<LoopShared<H>>,
) -> ConnFuture<'a>
where
    for<'b> SliceBuffers<'b, N>: ConnectionBuffers,
{
    Box::pin(serve_pooled::<N, S, H>(io, shared))
}

/// Why a connection's deadline passed: a wait ran out, or the linger after a close.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Expiry {
    Wait(Wait),
    Linger,
}

/// What one poll of a connection's engine found: the engine's status, typed.
#[derive(Debug)]
pub(crate) enum Polled {
    /// The engine works (a request is active, or input or output is under way).
    Busy,
    /// The connection is idle at a record boundary.
    AtRest,
    /// The engine ended cleanly: close gracefully ([`CloseReason::Finished`]).
    Finished,
    /// The engine ended for this reason: close.
    Failed(CloseReason),
}

/// A slab entry: one connection.
pub(crate) struct Entry<'a, S> {
    pub(crate) io: Rc<ConnIo<S>>,
    /// The engine; exists exactly while `state.has_engine()`.
    future: Option<ConnFuture<'a>>,
    /// Where the connection is in its life; written only by [`Self::enter`].
    state: ConnState,
    wake: Arc<ConnWaker>,
    waker: Waker,
    /// In the loop's run queue (events and wakes add it once). Not part of the
    /// connection's life: the run queue's membership flag.
    pub(crate) scheduled: bool,
    /// Which timeout applies while the connection is open and not lingering.
    watch: Watch,
    /// In the runtime's list of engines kept at rest past `IdleRelease::after` because at
    /// most `IdleRelease::keep` connections held one (the list's membership flag).
    pub(crate) kept: bool,
}

impl<S> std::fmt::Debug for Entry<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("state", &self.state)
            .field("active_requests", &self.io.status.active_requests())
            .field("scheduled", &self.scheduled)
            .finish_non_exhaustive()
    }
}

impl<'a, S: AsRef<Stream> + 'a> Entry<'a, S> {
    /// A new connection, `Running`; the binding has registered its socket under `key`.
    pub(crate) fn new<H: Handler + 'a>(
        key: usize,
        io: ConnIo<S>,
        loop_shared: &Rc<LoopShared<H>>,
        wakes: &Arc<Wakes>,
        now: Instant,
    ) -> Self {
        let io = Rc::new(io);
        let future = boxed_engine(&io, loop_shared);
        let wake = Arc::new(ConnWaker::new(key, Arc::clone(wakes)));
        let waker = Waker::from(Arc::clone(&wake));
        Self {
            io,
            future: Some(future),
            state: ConnState::Running,
            wake,
            waker,
            scheduled: false,
            watch: Watch::new(now),
            kept: false,
        }
    }

    /// The one place the connection's state changes: applies `step`
    /// ([`ConnState::step`]) and drops the engine future (and the request memory it
    /// holds) when the new state has none. The future goes before the socket, which it
    /// borrows through the `Rc`.
    pub(crate) fn enter(&mut self, step: Step) {
        self.state = self.state.step(step);
        if !self.state.has_engine() {
            self.future = None;
        }
    }

    /// Where the connection is in its life.
    pub(crate) fn state(&self) -> ConnState {
        self.state
    }

    /// The loop took this connection off the wake queue.
    pub(crate) fn clear_wake(&self) {
        self.wake.clear();
    }

    /// Queues this connection for the loop's next round (used to yield).
    pub(crate) fn wake_later(&self) {
        self.waker.wake_by_ref();
    }

    /// Whether the engine future exists.
    pub(crate) fn has_engine(&self) -> bool {
        self.state.has_engine()
    }

    /// A released connection's socket is readable: makes a new engine future for it
    /// (`Released` to `Running`).
    pub(crate) fn resume<H: Handler + 'a>(&mut self, loop_shared: &Rc<LoopShared<H>>) {
        self.enter(Step::Resume);
        if self.state == ConnState::Running && self.future.is_none() {
            self.future = Some(boxed_engine(&self.io, loop_shared));
        }
    }

    /// When the engine future may be freed: `after` past the moment the connection came
    /// to rest.
    pub(crate) fn engine_free_at(&self, after: Duration) -> Option<Instant> {
        match self.state {
            ConnState::AtRest { since } => since.checked_add(after),
            _ => None,
        }
    }

    /// When the engine's request memory is recalled to the pool: `after` past the moment
    /// it came to rest, if it holds some (with `after` zero the engine gives it back by
    /// itself).
    pub(crate) fn request_memory_recall_at(&self, after: Duration) -> Option<Instant> {
        if after.is_zero() || !self.io.lease.is_held() {
            return None;
        }
        self.engine_free_at(after)
    }

    /// Asks the engine to give its request memory block back to the pool, and queues a
    /// poll for it to do so (if it is still at rest then).
    pub(crate) fn recall_request_memory(&self) {
        self.io.lease.recall();
        self.wake_later();
    }

    /// Frees the engine future (back to the allocator; `AtRest` to `Released`) if the
    /// connection is still at rest, no input is waiting and nothing is queued for it; true
    /// if it did.
    pub(crate) fn free_idle_engine(&mut self) -> bool {
        let idle = matches!(self.state, ConnState::AtRest { .. })
            && self.io.status.is_idle_at_boundary()
            && !self.io.may_read()
            && !self.scheduled
            && !self.wake.is_queued();
        if idle {
            self.enter(Step::Release);
        }
        idle
    }

    /// Polls the engine once, if it exists (a panic ends it), and moves the state to what
    /// the poll found: `Busy` or `AtRest`. When the engine ended, the state is left to
    /// the close.
    pub(crate) fn poll_engine(&mut self, now: Instant) -> Polled {
        let Some(future) = self.future.as_mut() else {
            return match self.state {
                ConnState::Released => Polled::AtRest,
                _ => Polled::Busy,
            };
        };
        let mut cx = Context::from_waker(&self.waker);
        match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(&mut cx))) {
            Ok(Poll::Pending) => self.track(now),
            Ok(Poll::Ready(EngineEnd::Finished)) => Polled::Finished,
            Ok(Poll::Ready(EngineEnd::Failed(error))) => Polled::Failed(CloseReason::from_error(error)),
            Ok(Poll::Ready(EngineEnd::HandlerPanicked)) => Polled::Failed(CloseReason::HandlerPanicked),
            Ok(Poll::Ready(EngineEnd::RequestTimedOut(limit))) => {
                Polled::Failed(CloseReason::RequestTimeout(limit))
            }
            Err(_) => Polled::Failed(CloseReason::EnginePanicked),
        }
    }

    /// Follows the engine's status after a pending poll: which timeout applies, whether it
    /// came to rest.
    fn track(&mut self, now: Instant) -> Polled {
        let status = &self.io.status;
        self.watch.observe(status, || now);
        let served = self.io.take_input_seen();
        if status.is_idle_at_boundary() {
            self.enter(Step::Rest { now, served });
            Polled::AtRest
        } else {
            self.enter(Step::Busy);
            Polled::Busy
        }
    }

    /// No request is active, no output is stuck and no wake is pending, and the peer sent
    /// something already: closing now loses nothing (used by the graceful shutdown). A
    /// connection just accepted is not quiet: its first request is on its way (a web server
    /// does not retry a request on a fresh connection closed under it, as it does on a
    /// reused keep-alive one); it is served, or closed at the end of the shutdown timeout.
    pub(crate) fn is_quiet(&self) -> bool {
        !self.io.is_fresh()
            && matches!(self.state, ConnState::Running | ConnState::AtRest { .. } | ConnState::Released)
            && self.io.status.active_requests() == 0
            && !self.io.write_blocked()
            && !self.wake.is_queued()
    }

    /// When this connection must be looked at again.
    pub(crate) fn deadline(&self, limits: &Limits) -> Option<Instant> {
        match self.state {
            ConnState::Lingering { until } => until,
            ConnState::Closed => None,
            _ => self.watch.deadline(limits),
        }
    }

    /// When the runtime must look at this connection next: the earliest of its timeout
    /// (or the end of its linger), its running requests' timer (request timeout, slow
    /// log), the recall of its request memory and the release of its engine; with `past`, only instants later than it (those up to `past` were just
    /// dealt with).
    pub(crate) fn next_look(
        &self,
        limits: &Limits,
        release: &IdleRelease,
        past: Option<Instant>,
    ) -> Option<Instant> {
        let later = |at: &Instant| past.is_none_or(|past| *at > past);
        let next = [
            self.deadline(limits),
            self.request_memory_recall_at(release.memory_after),
            self.engine_free_at(release.after),
        ]
        .into_iter()
        .flatten()
        .filter(later)
        .min();
        // Apart, so a connection with no timed request (the usual case) pays one branch.
        match self.io.timer.wake_at().filter(later) {
            Some(at) => Some(next.map_or(at, |next| next.min(at))),
            None => next,
        }
    }

    /// Which deadline has passed at `now`, if any.
    pub(crate) fn expired(&self, now: Instant, limits: &Limits) -> Option<Expiry> {
        match self.state {
            ConnState::Lingering { until } => until.filter(|t| *t <= now).map(|_| Expiry::Linger),
            ConnState::Closed => None,
            _ => self.watch.expired(now, limits).map(Expiry::Wait),
        }
    }

    /// Polls the engine in the loop's next round if its requests' timer is due at `now`
    /// (a request timed out or turned slow: its guard acts when polled).
    pub(crate) fn wake_if_requests_due(&self, now: Instant) {
        if self.io.timer.is_due(now) {
            self.wake_later();
        }
    }

    /// A stall timeout ran out: the handlers' next reads and writes fail with `TimedOut`;
    /// one last poll lets them see it (what it gives is ignored: the connection closes).
    pub(crate) fn expire_handlers(&mut self) {
        self.io.status.expire();
        if let Some(future) = self.future.as_mut() {
            let mut cx = Context::from_waker(&self.waker);
            let _ = catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(&mut cx)));
        }
    }

    /// Starts a graceful close: drops the engine, shuts down the write side and discards
    /// input for at most `linger`.
    pub(crate) fn start_linger(&mut self, now: Instant, linger: Duration) -> io::Result<()> {
        self.enter(Step::Linger { until: deadline(now, linger) });
        self.io.stream().shutdown_write()
    }

    /// Discards input while lingering.
    pub(crate) fn drain(&self) -> Drain {
        self.io.discard_input(DRAIN_READS)
    }
}
