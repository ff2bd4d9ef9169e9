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
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::task::Poll;

use embedded_io_async::{Read, Write};
use ember_fcgi_core::{
    Config, ConnectionBuffers, ConnectionError, ConnectionStatus, Handler, HandlerError, Request, Response,
    SliceBuffers, serve_connection,
};

use crate::events;
use crate::pool::BufferPool;
use crate::stats::Counters;

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
pub async fn serve_pooled<const N: usize, R, W, H>(
    reader: R,
    writer: W,
    readable: impl Fn() -> bool,
    lease: &Lease,
    status: &ConnectionStatus,
    shared: &LoopShared<H>,
) -> EngineEnd
where
    R: Read<Error = io::Error> + Copy,
    W: Write<Error = io::Error> + Copy,
    H: Handler,
    for<'b> SliceBuffers<'b, N>: ConnectionBuffers,
{
    let panicked = Cell::new(false);
    let handler = Guarded { handler: &shared.handler, counters: &shared.counters, panicked: &panicked };
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
            let polled = serving.as_mut().poll(cx);
            // The panicking handler never returns (so its slot writes no END_REQUEST): the
            // connection ends here.
            if panicked.get() {
                return Poll::Ready(Some(EngineEnd::HandlerPanicked));
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

/// The application's handler as servers run it: counts requests and aborts, and turns a
/// panic into an error, so the request gets a CGI 500 when nothing was sent yet; when
/// something was, the response cannot be completed: the handler then never returns and
/// sets `panicked`, and the engine ends with [`EngineEnd::HandlerPanicked`].
struct Guarded<'a, H> {
    handler: &'a H,
    counters: &'a Counters,
    panicked: &'a Cell<bool>,
}

impl<H: Handler> Handler for Guarded<'_, H> {
    async fn handle(
        &self,
        request: &mut Request<'_>,
        response: &mut Response<'_>,
    ) -> Result<(), HandlerError> {
        Counters::bump(&self.counters.requests);
        let mut cut_off = CutOff(Some(&self.counters.requests_aborted));
        let outcome = {
            let mut handling = pin!(self.handler.handle(request, response));
            // A panicking poll ends the handler (it is not polled again).
            poll_fn(|cx| match catch_unwind(AssertUnwindSafe(|| handling.as_mut().poll(cx))) {
                Ok(Poll::Ready(result)) => Poll::Ready(Some(result)),
                Ok(Poll::Pending) => Poll::Pending,
                Err(_) => Poll::Ready(None),
            })
            .await
        };
        cut_off.0 = None;
        // `Ok(())` is made anew rather than moved: the `Err` a result may hold is large.
        let result = match outcome {
            Some(Ok(())) => Ok(()),
            Some(Err(error)) => {
                events::handler_failed(self.counters, &error, request);
                Err(error)
            }
            // A panic is logged and counted as one, not also as a handler error.
            None => {
                let answered = response.bytes_written() == 0;
                events::handler_panicked(self.counters, request, answered);
                if !answered {
                    self.panicked.set(true);
                    return pending().await;
                }
                Err(HandlerError::msg("the handler panicked"))
            }
        };
        if response.aborted() {
            Counters::bump(&self.counters.requests_aborted);
        }
        result
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
