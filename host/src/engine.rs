//! One connection's engine on a server: the core driver over request memory borrowed from
//! the loop's [`BufferPool`] while requests are in flight (and until the loop recalls it,
//! a moment after: [`Lease`]), and the application's handler behind a guard that counts
//! requests and turns a panic into an error (a 500), or, once the response began, ends the
//! engine with [`EngineEnd::HandlerPanicked`]. How the engine ended is typed
//! ([`EngineEnd`]); the runtime closes the connection for that reason.

use std::cell::Cell;
use std::future::{Future, pending, poll_fn};
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::task::Poll;
use std::time::{Duration, Instant};

use ember_fcgi_core::{
    Config, ConnectionBuffers, ConnectionError, ConnectionStatus, Handler, HandlerError, Request, Response,
    SliceBuffers, serve_connection,
};

use crate::events;
use crate::limits::deadline;
use crate::pool::BufferPool;
use crate::runtime::io::{ConnIo, Reader, Stream, Writer};
use crate::stats::Counters;

/// What a request that ran out of `request_timeout` before writing anything answers (the
/// same bytes as on embassy).
pub const GATEWAY_TIMEOUT: &[u8] =
    b"Status: 504 Gateway Timeout\r\nContent-Type: text/plain\r\n\r\nGateway Timeout\n";

/// How a connection's engine ended.
#[derive(Debug)]
pub enum EngineEnd {
    /// Cleanly: the web server closed the connection at a record boundary, or a request
    /// without `FCGI_KEEP_CONN` was answered. Close gracefully.
    Finished,
    /// The driver failed: I/O, a protocol error, or the runtime expired the connection
    /// ([`ConnectionStatus::expire`]).
    Failed(ConnectionError<io::Error>),
    /// A handler panicked after its response began: the response cannot be completed, so
    /// the connection must close (the panic is already logged and counted).
    HandlerPanicked,
    /// A request ran past `request_timeout` (given) after its response began: the
    /// connection must close, without END_REQUEST (already logged and counted).
    RequestTimedOut(Duration),
}

/// Why the guard gave up on a response that had begun: the engine ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cut {
    Panicked,
    TimedOut,
}

/// A connection's engine, boxed once when the connection is accepted (and again when a
/// released connection resumes).
pub type ConnFuture<'a> = Pin<Box<dyn Future<Output = EngineEnd> + 'a>>;

/// What every connection's engine of one serving loop shares: the handler, the counters,
/// the request memory pool and the protocol config.
#[derive(Debug)]
pub struct LoopShared<H> {
    pub handler: H,
    pub counters: Arc<Counters>,
    pub pool: BufferPool,
    pub config: Config,
    /// Give request memory back to the pool as soon as a connection is at rest, without a
    /// recall (`IdleRelease::memory_after` is zero).
    pub return_at_once: bool,
    /// The loop's time: the `now` of its current round, set once per round by the runtime
    /// (what the guard measures requests with; no clock read per poll).
    pub clock: Cell<Instant>,
    /// `Limits::request_timeout`.
    pub request_timeout: Duration,
    /// `Limits::slow_request_after`.
    pub slow_request_after: Duration,
}

impl<H> LoopShared<H> {
    /// Whether the guard watches the age of requests (a request timeout or a slow-request
    /// log is set): if not, it reads no clock and publishes no wake-up.
    fn watches_requests(&self) -> bool {
        self.request_timeout != Duration::MAX || self.slow_request_after != Duration::MAX
    }
}

/// When one connection's running requests next need a poll: the earliest of their request
/// timeouts and the moments they turn slow, as the guards published it in the engine's last
/// poll. The runtime schedules it among the connection's deadlines and wakes the engine
/// when it passes; then the guards act on the loop's clock.
#[derive(Debug, Default)]
pub struct RequestTimer(Cell<Option<Instant>>);

impl RequestTimer {
    /// When the engine wants a poll for its requests' sake (`None`: no request is timed).
    pub fn wake_at(&self) -> Option<Instant> {
        self.0.get()
    }

    /// Whether that instant has come at `now`.
    pub fn is_due(&self, now: Instant) -> bool {
        self.0.get().is_some_and(|at| at <= now)
    }

    /// A guard wants a poll at `at`.
    fn want(&self, at: Instant) {
        if self.0.get().is_none_or(|t| at < t) {
            self.0.set(Some(at));
        }
    }
}

/// Whether a connection's engine holds a block of request memory, and whether its loop
/// wants it back. A connection at rest (idle at a record boundary) keeps its block until
/// recalled, so back-to-back keep-alive requests reuse the driver already laid out in it;
/// the loop recalls it a moment later (`IdleRelease::memory_after`), unless the engine
/// gives it back at once ([`LoopShared::return_at_once`]).
#[derive(Debug, Default)]
pub struct Lease(Cell<LeaseState>);

/// Where a connection's block of request memory is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum LeaseState {
    /// In the pool: the engine holds none.
    #[default]
    Free,
    /// Held by the engine.
    Held,
    /// Held, and the loop wants it back.
    Recalled,
}

impl Lease {
    /// Whether the engine holds a block now.
    pub fn is_held(&self) -> bool {
        self.0.get() != LeaseState::Free
    }

    /// Asks for the block back to the pool: the engine returns it when next polled, if the
    /// connection is still at rest then (poll it). Nothing to recall if none is held.
    pub fn recall(&self) {
        if self.0.get() == LeaseState::Held {
            self.0.set(LeaseState::Recalled);
        }
    }

    /// Takes a recall (the block stays held until the engine lets go of it).
    fn take_recall(&self) -> bool {
        let recalled = self.0.get() == LeaseState::Recalled;
        if recalled {
            self.0.set(LeaseState::Held);
        }
        recalled
    }
}

/// Marks a [`Lease`] held while it lives (however the engine ends).
struct Held<'l>(&'l Lease);

impl<'l> Held<'l> {
    fn new(lease: &'l Lease) -> Self {
        lease.0.set(LeaseState::Held);
        Self(lease)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.0.set(LeaseState::Free);
    }
}

/// Serves a connection: waits until it is readable, borrows a block from the pool, runs the
/// core driver in it until the connection is at rest (idle at a record boundary,
/// [`ConnectionStatus::is_idle_at_boundary`]) and the block is recalled (see [`Lease`]),
/// returns the block, and starts over. An idle keep-alive connection so holds no request
/// memory, and steady state allocates nothing (the pool lends the same blocks again).
///
/// It owns the connection's halves and the loop's shared state (the runtime boxes this
/// future as it is: no wrapping future per poll).
pub(crate) async fn serve_pooled<const N: usize, S, H>(
    io: Rc<ConnIo<S>>,
    shared: Rc<LoopShared<H>>,
) -> EngineEnd
where
    S: AsRef<Stream>,
    H: Handler,
    for<'b> SliceBuffers<'b, N>: ConnectionBuffers,
{
    let (reader, writer) = (Reader(&*io), Writer(&*io));
    let readable = || io.may_read();
    let (lease, status, timer, shared) = (&io.lease, &io.status, &io.timer, &*shared);
    let cut = Cell::new(None);
    let watches = shared.watches_requests();
    let handler = Guarded { shared, status, timer, cut: &cut, watched: watches };
    loop {
        poll_fn(|_| if readable() { Poll::Ready(()) } else { Poll::Pending }).await;
        let mut block = shared.pool.lend();
        let _held = Held::new(lease);
        // Bound with `let ... else`, not matched: a matched `Result` would stay in the
        // future beside the buffers taken out of it (the slots' state, twice).
        let Ok(mut buffers) = SliceBuffers::<N>::new(&mut block, shared.pool.capacities()) else {
            // The transports check the capacities when they start; close if not.
            return EngineEnd::Finished;
        };
        let mut serving =
            pin!(serve_connection(reader, writer, &handler, &mut buffers, &shared.config, status));
        let outcome = poll_fn(|cx| {
            // The guards of the requests still running publish their next instant anew.
            if watches {
                timer.0.set(None);
            }
            let polled = serving.as_mut().poll(cx);
            // The handler given up on never returns (so its slot writes no END_REQUEST):
            // the connection ends here.
            match cut.get() {
                Some(Cut::Panicked) => return Poll::Ready(Some(EngineEnd::HandlerPanicked)),
                Some(Cut::TimedOut) => {
                    return Poll::Ready(Some(EngineEnd::RequestTimedOut(shared.request_timeout)));
                }
                None => {}
            }
            match polled {
                Poll::Ready(Ok(())) => Poll::Ready(Some(EngineEnd::Finished)),
                Poll::Ready(Err(error)) => Poll::Ready(Some(EngineEnd::Failed(error))),
                // A recall that finds the connection busy again is dropped.
                Poll::Pending
                    if (lease.take_recall() || shared.return_at_once) && status.is_idle_at_boundary() =>
                {
                    Poll::Ready(None)
                }
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        if let Some(result) = outcome {
            return result;
        }
    }
}

/// The application's handler as servers run it: counts requests and aborts; turns a panic
/// into an error, so the request gets a CGI 500 when nothing was sent yet; drops the
/// handler's future at `request_timeout`, answering a 504 when nothing was sent yet; logs a
/// request once when it turns slow (`slow_request_after`), and each finished request to the
/// access log when that is enabled. When a response had begun, a panicking or timed-out
/// handler cannot complete it: the guard then never returns and sets `cut`, and the engine
/// ends ([`EngineEnd::HandlerPanicked`], [`EngineEnd::RequestTimedOut`]).
struct Guarded<'a, H> {
    shared: &'a LoopShared<H>,
    status: &'a ConnectionStatus,
    timer: &'a RequestTimer,
    cut: &'a Cell<Option<Cut>>,
    /// [`LoopShared::watches_requests`], once per connection.
    watched: bool,
}

/// How the guarded handler ended (a handler's error is kept beside it: the outcome stays
/// small, so the poll's result is not copied through `catch_unwind` and each `match`).
enum Outcome {
    Returned,
    Failed,
    Panicked,
    TimedOut,
}

impl<H: Handler> Handler for Guarded<'_, H> {
    async fn handle(
        &self,
        request: &mut Request<'_>,
        response: &mut Response<'_>,
    ) -> Result<(), HandlerError> {
        let shared = self.shared;
        let counters = &*shared.counters;
        Counters::bump(&counters.requests);
        let mut cut_off = CutOff(Some(&counters.requests_aborted));
        // A load and a compare each when off: no clock is read then.
        let access = log::log_enabled!(target: events::ACCESS_TARGET, log::Level::Info);
        let watched = self.watched;
        let mut failure = None;
        // The fast path: no clock, no timer, the handler's poll behind `catch_unwind` only.
        if !watched && !access {
            let outcome = {
                let mut handling = pin!(shared.handler.handle(request, response));
                poll_fn(|cx| poll_guarded(handling.as_mut(), cx, &mut failure)).await
            };
            cut_off.0 = None;
            if let Outcome::Returned = outcome {
                if response.aborted() {
                    Counters::bump(&counters.requests_aborted);
                }
                return Ok(());
            }
            return self.ended(outcome, failure, None, request, response).await;
        }
        let start = Some(shared.clock.get());
        let outcome = {
            // The instants this request times out and turns slow (each `None` when off).
            let (mut expire_at, mut slow_at) = match start.filter(|_| watched) {
                Some(start) => {
                    (deadline(start, shared.request_timeout), deadline(start, shared.slow_request_after))
                }
                None => (None, None),
            };
            // The slow-request log names the request while the handler holds it.
            let params = slow_at.map(|_| request.params_handle());
            let mut handling = pin!(shared.handler.handle(request, response));
            poll_fn(|cx| {
                if watched {
                    let now = shared.clock.get();
                    if expire_at.is_some_and(|at| at <= now) {
                        expire_at = None;
                        return Poll::Ready(Outcome::TimedOut);
                    }
                    if let (Some(at), Some(params), Some(start)) = (slow_at, &params, start)
                        && at <= now
                    {
                        slow_at = None;
                        let (wait, _) = self.status.wait();
                        events::request_slow(counters, &params.params(), now - start, wait);
                    }
                }
                let polled = poll_guarded(handling.as_mut(), cx, &mut failure);
                if polled.is_pending() && watched {
                    for at in [expire_at, slow_at].into_iter().flatten() {
                        self.timer.want(at);
                    }
                }
                polled
            })
            .await
        };
        cut_off.0 = None;
        self.ended(outcome, failure, start.filter(|_| access), request, response).await
    }
}

/// Polls a handler's future once; a panicking poll ends the handler (it is not polled
/// again), and its error goes to `failure`.
#[inline]
fn poll_guarded<F: Future<Output = Result<(), HandlerError>>>(
    handling: Pin<&mut F>,
    cx: &mut std::task::Context<'_>,
    failure: &mut Option<HandlerError>,
) -> Poll<Outcome> {
    let polled = catch_unwind(AssertUnwindSafe(|| match handling.poll(cx) {
        Poll::Ready(Ok(())) => Poll::Ready(Outcome::Returned),
        Poll::Ready(Err(error)) => {
            *failure = Some(error);
            Poll::Ready(Outcome::Failed)
        }
        Poll::Pending => Poll::Pending,
    }));
    polled.unwrap_or(Poll::Ready(Outcome::Panicked))
}

impl<H: Handler> Guarded<'_, H> {
    /// What follows a guarded handler's end: the error, panic or timeout reported, the
    /// access-log line (`access`: the request's start, when the log is on), the aborted
    /// count. A panic or timeout after the response began never returns (see `cut`).
    async fn ended(
        &self,
        outcome: Outcome,
        failure: Option<HandlerError>,
        access: Option<Instant>,
        request: &Request<'_>,
        response: &mut Response<'_>,
    ) -> Result<(), HandlerError> {
        let shared = self.shared;
        let counters = &*shared.counters;
        // `Ok(())` is made anew rather than moved: the `Err` a result may hold is large.
        let result = match (outcome, failure) {
            (Outcome::Failed, Some(error)) => {
                events::handler_failed(counters, &error, request);
                // The driver answers 500 if nothing was written (unless it is an abort).
                let status = match response.bytes_written() == 0 && !error.is_abort() {
                    true => Some(500),
                    false => response.status(),
                };
                log_access(access, request, response, status);
                Err(error)
            }
            (Outcome::Returned | Outcome::Failed, _) => {
                log_access(access, request, response, response.status());
                Ok(())
            }
            // A panic is logged and counted as one, not also as a handler error.
            (Outcome::Panicked, _) => {
                let answered = response.bytes_written() == 0;
                events::handler_panicked(counters, request, answered);
                let status = if answered { Some(500) } else { response.status() };
                log_access(access, request, response, status);
                if !answered {
                    self.cut.set(Some(Cut::Panicked));
                    return pending().await;
                }
                Err(HandlerError::msg("the handler panicked"))
            }
            (Outcome::TimedOut, _) => {
                let answered = response.bytes_written() == 0;
                events::request_timed_out(counters, request, shared.request_timeout, answered);
                if !answered {
                    log_access(access, request, response, response.status());
                    self.cut.set(Some(Cut::TimedOut));
                    return pending().await;
                }
                // Ignored if it fails: the connection failed, and the driver ends it.
                let _ = response.raw_output().write_all(GATEWAY_TIMEOUT).await;
                response.note_status(504);
                log_access(access, request, response, Some(504));
                Ok(())
            }
        };
        if response.aborted() {
            Counters::bump(&counters.requests_aborted);
        }
        result
    }
}

/// Writes a finished request's access-log line, if `access` (the request's start) says the
/// log is on.
#[inline]
fn log_access(access: Option<Instant>, request: &Request<'_>, response: &Response<'_>, status: Option<u16>) {
    if let Some(start) = access {
        events::access(request, status, response.bytes_written(), start.elapsed());
    }
}

/// Counts a request as aborted if its handler is dropped before it returns (the
/// connection failed or was closed under it).
struct CutOff<'a>(Option<&'a AtomicU64>);

impl Drop for CutOff<'_> {
    fn drop(&mut self) {
        if let Some(aborted) = self.0 {
            Counters::bump(aborted);
        }
    }
}

/// Evaluates `$body` with `$n` bound (as a `const`) to the number of request slots an
/// engine has for `$requests` concurrent requests per connection: 1 for 1 (no
/// multiplexing: what nginx, Apache, lighttpd and Caddy ask for), 4 for 2 to 4, else
/// [`MAX_REQS`](ember_fcgi_core::MAX_REQS) (32); the driver runs `$requests` of them.
///
/// So the driver and the handler's future are compiled three times per handler and socket
/// type, not six (binary size), at a cost in memory for some multiplexing servers: the
/// engine future holds one slot future (about the size of the handler's future) per slot,
/// used or not, so 2 requests carry 4 slots and 5 to 31 carry 32. The engine future is
/// allocated once per connection; `MemoryBudget` reports its exact size. (Not one size for
/// all of 2 to 32: an unoptimized build keeps several copies of the engine future on the
/// stack while it polls it, and 32 slots overflow a 2 MiB thread stack there.)
///
/// ```
/// assert_eq!(ember_fcgi_host::for_request_slots!(1, |N| N), 1);
/// assert_eq!(ember_fcgi_host::for_request_slots!(3, |N| N), 4);
/// assert_eq!(ember_fcgi_host::for_request_slots!(5, |N| N), 32);
/// ```
#[macro_export]
macro_rules! for_request_slots {
    ($requests:expr, |$n:ident| $body:expr) => {
        match $requests {
            0 | 1 => {
                const $n: usize = 1;
                $body
            }
            2..=4 => {
                const $n: usize = 4;
                $body
            }
            _ => {
                const $n: usize = 32;
                $body
            }
        }
    };
}

// `for_request_slots!` spells `MAX_REQS` out (a macro exported to other crates).
const _: () = assert!(ember_fcgi_core::MAX_REQS == 32);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_timer_keeps_the_earliest_instant() {
        let timer = RequestTimer::default();
        let now = Instant::now();
        assert_eq!((timer.wake_at(), timer.is_due(now)), (None, false));
        timer.want(now + Duration::from_secs(2));
        timer.want(now + Duration::from_secs(1));
        timer.want(now + Duration::from_secs(3));
        assert_eq!(timer.wake_at(), Some(now + Duration::from_secs(1)));
        assert!(!timer.is_due(now) && timer.is_due(now + Duration::from_secs(1)));
    }
}
