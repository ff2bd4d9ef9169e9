//! One connection in the runtime: its boxed engine future (the pooled engine: request
//! memory is borrowed from the loop's pool while a request runs, so steady state allocates
//! nothing), its waker, and its deadlines.
//!
//! A connection is `Serving` while the engine runs, then `Lingering`: after the engine
//! returned `Ok` (or the connection went idle), the write side is shut down and unread
//! input is discarded until EOF or `close_linger`, so the web server sees a clean close
//! rather than a reset.
//!
//! A serving connection may be *released*: its engine future is dropped while the engine
//! reported it idle at a record boundary
//! ([`ConnectionStatus::is_idle_at_boundary`](ember_fcgi_core::ConnectionStatus)) and no
//! input is waiting, and a fresh one is made when the socket is readable again (see
//! [`IdleRelease`](super::IdleRelease)). The reader is cancel-safe (a pending read took no
//! bytes), so the web server cannot tell.

use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use ember_fcgi_core::{Config, ConnectionBuffers, Handler, SliceBuffers};

use super::io::{ConnIo, Drain, Reader, Stream, Writer};
use super::wake::{ConnWaker, Wakes};
use crate::engine::{ConnFuture, ConnResult, EngineCtx, serve_pooled};
use crate::stats::Counters;
use crate::{BufferPool, Limits, Wait, Watch, deadline};

/// Reads at most this many scratch-buffer loads (64 KiB) per poll while lingering (then
/// yields).
const DRAIN_READS: usize = 4;

/// What every connection of a loop shares: the handler, the counters, the request memory
/// pool and the protocol config.
#[derive(Debug)]
pub(crate) struct LoopShared<H> {
    pub(crate) handler: H,
    pub(crate) counters: Arc<Counters>,
    pub(crate) pool: BufferPool,
    pub(crate) config: Config,
    /// `IdleRelease::memory_after` is zero: engines give request memory back at once.
    pub(crate) return_at_once: bool,
}

/// The engine of one connection, with `N` request slots.
pub(crate) async fn engine<H: Handler, S: AsRef<Stream>, const N: usize>(
    io: Rc<ConnIo<S>>,
    shared: Rc<LoopShared<H>>,
) -> ConnResult
where
    for<'b> SliceBuffers<'b, N>: ConnectionBuffers,
{
    let ctx = EngineCtx {
        handler: &shared.handler,
        counters: &shared.counters,
        pool: &shared.pool,
        config: &shared.config,
        return_at_once: shared.return_at_once,
    };
    serve_pooled::<N, _, _, _>(Reader(&io), Writer(&io), || io.may_read(), &io.lease, &io.status, ctx).await
}

/// Boxes the engine of a connection, with as many request slots as the capacities ask
/// (each its own type, so a connection never carries slots it cannot use).
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
    Box::pin(engine::<H, S, N>(io, shared))
}

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// The engine runs.
    Serving,
    /// The engine is gone; discarding input until EOF or the deadline.
    Lingering,
}

/// Why a connection's deadline passed: a wait ran out, or the linger after a close.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Expiry {
    Wait(Wait),
    Linger,
}

/// What one poll of the engine gave.
pub(crate) enum Polled {
    Pending,
    Done(ConnResult),
    /// The engine panicked (outside a handler, whose panics the guard catches).
    Panicked,
}

/// A slab entry: one connection.
pub(crate) struct Entry<'a, S> {
    pub(crate) io: Rc<ConnIo<S>>,
    /// The engine; `None` while lingering, and while serving when released.
    future: Option<ConnFuture<'a>>,
    /// Since when the engine has been idle at a record boundary (it exists, said so after
    /// its last poll, and read no input since).
    rest_since: Option<Instant>,
    wake: Arc<ConnWaker>,
    waker: Waker,
    /// In the loop's run queue (events and wakes add it once).
    pub(crate) scheduled: bool,
    pub(crate) phase: Phase,
    /// Which timeout applies while serving.
    watch: Watch,
    linger_until: Option<Instant>,
}

impl<S> std::fmt::Debug for Entry<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("phase", &self.phase)
            .field("active_requests", &self.io.status.active_requests())
            .field("scheduled", &self.scheduled)
            .finish_non_exhaustive()
    }
}

impl<'a, S: AsRef<Stream> + 'a> Entry<'a, S> {
    /// A new serving connection; the binding has registered its socket under `key`.
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
            rest_since: None,
            wake,
            waker,
            scheduled: false,
            phase: Phase::Serving,
            watch: Watch::new(now),
            linger_until: None,
        }
    }

    /// The loop took this connection off the wake queue.
    pub(crate) fn clear_wake(&self) {
        self.wake.clear();
    }

    /// Queues this connection for the loop's next round (used to yield).
    pub(crate) fn wake_later(&self) {
        self.waker.wake_by_ref();
    }

    /// Whether the engine was released (see [`Self::release_engine`]).
    pub(crate) fn is_released(&self) -> bool {
        self.phase == Phase::Serving && self.future.is_none()
    }

    /// Whether the engine exists.
    pub(crate) fn has_engine(&self) -> bool {
        self.future.is_some()
    }

    /// A released connection's socket is readable: starts a fresh engine for it.
    pub(crate) fn resume<H: Handler + 'a>(&mut self, loop_shared: &Rc<LoopShared<H>>) {
        if self.is_released() {
            self.future = Some(boxed_engine(&self.io, loop_shared));
        }
    }

    /// When the engine may be released: `after` past the moment it came to rest.
    pub(crate) fn release_at(&self, after: Duration) -> Option<Instant> {
        self.rest_since.and_then(|t| t.checked_add(after))
    }

    /// When the engine's request memory is recalled: `after` past the moment it came to
    /// rest, if it holds some (with `after` zero the engine gives it back by itself).
    pub(crate) fn memory_recall_at(&self, after: Duration) -> Option<Instant> {
        if after.is_zero() || !self.io.lease.is_held() {
            return None;
        }
        self.release_at(after)
    }

    /// Asks the engine to give its request memory back to the pool, and queues a poll for
    /// it to do so (if it is still at rest then).
    pub(crate) fn recall_memory(&self) {
        self.io.lease.recall();
        self.wake_later();
    }

    /// Drops the engine (and its buffers) if it is still at rest since `release_at`,
    /// no input is waiting and nothing is queued for it; true if it did.
    pub(crate) fn release_engine(&mut self) -> bool {
        let releasable = self.phase == Phase::Serving
            && self.future.is_some()
            && self.rest_since.is_some()
            && self.io.status.is_idle_at_boundary()
            && !self.io.may_read()
            && !self.scheduled
            && !self.wake.is_queued();
        if releasable {
            self.future = None;
            self.rest_since = None;
        }
        releasable
    }

    /// Polls the engine once (a panic ends it); the future is dropped when it finished.
    pub(crate) fn poll_engine(&mut self, now: Instant) -> Polled {
        let Some(future) = self.future.as_mut() else {
            return Polled::Pending;
        };
        let mut cx = Context::from_waker(&self.waker);
        let polled = match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(&mut cx))) {
            Ok(Poll::Pending) => {
                self.track(now);
                return Polled::Pending;
            }
            Ok(Poll::Ready(result)) => Polled::Done(result),
            Err(_) => Polled::Panicked,
        };
        self.future = None;
        self.rest_since = None;
        polled
    }

    /// Follows the engine's status: which timeout applies, whether it came to rest.
    fn track(&mut self, now: Instant) {
        let status = &self.io.status;
        self.watch.observe(status, || now);
        let input_seen = self.io.take_input_seen();
        if !status.is_idle_at_boundary() {
            self.rest_since = None;
        } else if input_seen {
            // Served something in this poll and came to rest again.
            self.rest_since = Some(now);
        } else {
            self.rest_since.get_or_insert(now);
        }
    }

    /// No request is active, no output is stuck and no wake is pending: closing now loses
    /// nothing (used by the graceful shutdown).
    pub(crate) fn is_quiet(&self) -> bool {
        self.phase == Phase::Serving
            && self.io.status.active_requests() == 0
            && !self.io.write_blocked()
            && !self.wake.is_queued()
    }

    /// When this connection must be looked at again.
    pub(crate) fn deadline(&self, limits: &Limits) -> Option<Instant> {
        match self.phase {
            Phase::Lingering => self.linger_until,
            Phase::Serving => self.watch.deadline(limits),
        }
    }

    /// Which deadline has passed at `now`, if any.
    pub(crate) fn expired(&self, now: Instant, limits: &Limits) -> Option<Expiry> {
        match self.phase {
            Phase::Lingering => self.linger_until.filter(|t| *t <= now).map(|_| Expiry::Linger),
            Phase::Serving => self.watch.expired(now, limits).map(Expiry::Wait),
        }
    }

    /// A stall timeout ran out: the handlers' next reads and writes fail with `TimedOut`
    /// (one last poll lets them see it), then the engine is dropped.
    pub(crate) fn time_out(&mut self, now: Instant) {
        self.io.status.expire();
        let _ = self.poll_engine(now);
        self.future = None;
    }

    /// Drops the engine, shuts down the write side and starts discarding input for at
    /// most `linger`.
    pub(crate) fn start_linger(&mut self, now: Instant, linger: Duration) -> io::Result<()> {
        self.future = None;
        self.rest_since = None;
        self.phase = Phase::Lingering;
        self.linger_until = deadline(now, linger);
        self.io.stream().shutdown_write()
    }

    /// Discards input while lingering.
    pub(crate) fn drain(&self) -> Drain {
        self.io.discard_input(DRAIN_READS)
    }

    /// Drops the engine (before the socket, which its future borrows through the `Rc`).
    pub(crate) fn release(&mut self) {
        self.future = None;
    }
}
