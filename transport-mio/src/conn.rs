//! One connection in the loop: its boxed engine future (which owns the connection's
//! buffers, so steady state allocates nothing), its waker, and its deadlines.
//!
//! A connection is `Serving` while the engine runs, then `Lingering`: after the engine
//! returned `Ok` (or the connection went idle), the write side is shut down and unread
//! input is discarded until EOF or `close_linger`, so the web server sees a clean close
//! rather than a reset.
//!
//! A serving connection may be *released*: its engine future (buffers and all) is dropped
//! while the engine reported it idle at a record boundary
//! ([`ConnectionStatus::is_idle_at_boundary`](ember_fcgi_core::ConnectionStatus)) and no
//! input is waiting, and a fresh one is made when the socket is readable again (see
//! [`crate::IdleRelease`]). The reader is cancel-safe (a pending read took no bytes), so the
//! web server cannot tell.

use std::future::Future;
use std::io;
use std::net::Shutdown;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use ember_fcgi_core::{Config, ConnectionBuffers, ConnectionError, Handler, HandlerError, Request, Response};
use ember_fcgi_host::Limits;

use crate::io::{ConnIo, Drain, Reader, Scratch, Stream, Writer};
use crate::stats::Counters;
use crate::waker::{ConnWaker, Shared};

/// What the engine future of a connection returns.
pub(crate) type ConnResult = Result<(), ConnectionError<io::Error>>;

/// The engine future of one connection, type-erased so the slab holds one entry type.
type ConnFuture = Pin<Box<dyn Future<Output = ConnResult>>>;

/// Reads at most this many scratch-buffer loads (64 KiB) per poll while lingering (then
/// yields).
const DRAIN_READS: usize = 4;

/// The user's handler, counting requests for [`crate::Stats`].
#[derive(Debug)]
pub(crate) struct Counted<H> {
    pub(crate) inner: H,
    pub(crate) counters: Arc<Counters>,
}

impl<H: Handler> Handler for Counted<H> {
    async fn handle(
        &self,
        request: &mut Request<'_>,
        response: &mut Response<'_>,
    ) -> Result<(), HandlerError> {
        Counters::bump(&self.counters.requests);
        let mut cut_off = CutOff(Some(&self.counters.requests_aborted));
        let result = self.inner.handle(request, response).await;
        cut_off.0 = None;
        if request.aborted() {
            Counters::bump(&self.counters.requests_aborted);
        } else if result.as_ref().is_err_and(|e| !e.is_abort()) {
            Counters::bump(&self.counters.handler_errors);
        }
        result
    }
}

/// Counts a request as aborted if its handler is dropped before it returns (the
/// connection failed under it, so the engine stopped polling it).
struct CutOff<'a>(Option<&'a AtomicU64>);

impl Drop for CutOff<'_> {
    fn drop(&mut self) {
        if let Some(aborted) = self.0 {
            Counters::bump(aborted);
        }
    }
}

/// The engine future of one connection: the buffers live inside it, created once.
pub(crate) async fn connection_future<H, B>(
    io: Rc<ConnIo>,
    handler: Rc<Counted<H>>,
    config: Config,
) -> ConnResult
where
    H: Handler,
    B: ConnectionBuffers + Default,
{
    let mut buffers = B::default();
    ember_fcgi_core::serve_connection(Reader(&io), Writer(&io), &*handler, &mut buffers, &config, &io.status)
        .await
}

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// The engine runs.
    Serving,
    /// The engine is gone; discarding input until EOF or the deadline.
    Lingering,
}

/// Why a connection's deadline passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Expiry {
    Idle,
    Head,
    Linger,
}

/// A slab entry: one connection.
pub(crate) struct Entry {
    pub(crate) io: Rc<ConnIo>,
    /// The engine; `None` while lingering, and while serving when released.
    future: Option<ConnFuture>,
    /// Since when the engine has been idle at a record boundary (it exists and said so
    /// after its last poll).
    rest_since: Option<Instant>,
    wake: Arc<ConnWaker>,
    waker: Waker,
    /// In the loop's run queue (events and wakes add it once).
    pub(crate) scheduled: bool,
    pub(crate) phase: Phase,
    idle_since: Option<Instant>,
    head_since: Option<Instant>,
    linger_until: Option<Instant>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("phase", &self.phase)
            .field("active_requests", &self.io.status.active_requests())
            .field("scheduled", &self.scheduled)
            .finish_non_exhaustive()
    }
}

impl Entry {
    /// A new serving connection; the caller has registered `stream` under the key's token.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new<H, B>(
        key: usize,
        stream: Stream,
        scratch: &Scratch,
        handler: &Rc<Counted<H>>,
        config: Config,
        shared: &Arc<Shared>,
        now: Instant,
    ) -> Self
    where
        H: Handler + 'static,
        B: ConnectionBuffers + Default + 'static,
    {
        let io = Rc::new(ConnIo::new(stream, Rc::clone(scratch)));
        let future: ConnFuture =
            Box::pin(connection_future::<H, B>(Rc::clone(&io), Rc::clone(handler), config));
        let wake = Arc::new(ConnWaker::new(key, Arc::clone(shared)));
        let waker = Waker::from(Arc::clone(&wake));
        Self {
            io,
            future: Some(future),
            rest_since: None,
            wake,
            waker,
            scheduled: false,
            phase: Phase::Serving,
            idle_since: Some(now),
            head_since: None,
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
    pub(crate) fn resume<H, B>(&mut self, handler: &Rc<Counted<H>>, config: Config)
    where
        H: Handler + 'static,
        B: ConnectionBuffers + Default + 'static,
    {
        if self.is_released() {
            self.future =
                Some(Box::pin(connection_future::<H, B>(Rc::clone(&self.io), Rc::clone(handler), config)));
        }
    }

    /// When the engine may be released: `after` past the moment it came to rest.
    pub(crate) fn release_at(&self, after: std::time::Duration) -> Option<Instant> {
        self.rest_since.and_then(|t| t.checked_add(after))
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

    /// Polls the engine once; `Some` when it finished (the future is then dropped).
    pub(crate) fn poll_engine(&mut self, now: Instant) -> Option<ConnResult> {
        let future = self.future.as_mut()?;
        let mut cx = Context::from_waker(&self.waker);
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(result) => {
                self.future = None;
                self.rest_since = None;
                Some(result)
            }
            Poll::Pending => {
                self.track(now);
                None
            }
        }
    }

    /// Follows the engine's status: when the connection went idle, when a head started.
    fn track(&mut self, now: Instant) {
        let status = &self.io.status;
        if status.active_requests() == 0 {
            self.idle_since.get_or_insert(now);
        } else {
            self.idle_since = None;
        }
        if status.requests_in_head() > 0 {
            self.head_since.get_or_insert(now);
        } else {
            self.head_since = None;
        }
        if status.is_idle_at_boundary() {
            self.rest_since.get_or_insert(now);
        } else {
            self.rest_since = None;
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
            Phase::Serving => {
                let idle = self.idle_since.map(|t| t + limits.idle_timeout);
                let head = self.head_since.map(|t| t + limits.head_timeout);
                match (idle, head) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
        }
    }

    /// Which deadline has passed at `now`, if any.
    pub(crate) fn expired(&self, now: Instant, limits: &Limits) -> Option<Expiry> {
        match self.phase {
            Phase::Lingering => self.linger_until.filter(|t| *t <= now).map(|_| Expiry::Linger),
            Phase::Serving => {
                if self.head_since.is_some_and(|t| t + limits.head_timeout <= now) {
                    Some(Expiry::Head)
                } else if self.idle_since.is_some_and(|t| t + limits.idle_timeout <= now) {
                    Some(Expiry::Idle)
                } else {
                    None
                }
            }
        }
    }

    /// Drops the engine, shuts down the write side and starts discarding input for at
    /// most `linger`.
    pub(crate) fn start_linger(&mut self, now: Instant, linger: std::time::Duration) -> io::Result<()> {
        self.future = None;
        self.rest_since = None;
        self.phase = Phase::Lingering;
        self.linger_until = Some(now + linger);
        self.io.stream.shutdown(Shutdown::Write)
    }

    /// Discards input while lingering.
    pub(crate) fn drain(&self) -> Drain {
        self.io.discard_input(DRAIN_READS)
    }

    /// Drops the engine first; the socket closes when the entry is dropped, which also
    /// removes it from epoll (the fd is not shared: accepted with CLOEXEC, never duplicated),
    /// so no `EPOLL_CTL_DEL` is needed.
    pub(crate) fn release(&mut self) {
        self.future = None;
    }
}
