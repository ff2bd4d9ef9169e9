//! One connection's engine on a server: the core driver over request memory borrowed from
//! the loop's [`BufferPool`] only while requests are in flight, and the application's
//! handler behind a guard that counts requests and turns panics into errors.

use std::future::{Future, poll_fn};
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::{Pin, pin};
use std::sync::atomic::AtomicU64;
use std::task::Poll;

use embedded_io_async::{Read, Write};
use ember_fcgi_core::{
    Config, ConnectionBuffers, ConnectionError, ConnectionStatus, Handler, HandlerError, Request, Response,
    SliceBuffers, serve_connection,
};

use crate::events;
use crate::pool::BufferPool;
use crate::stats::{Counters, bump};

/// What a connection's engine returns: `Ok` to close gracefully.
pub type ConnResult = Result<(), ConnectionError<io::Error>>;

/// A connection's engine, boxed once when the connection is accepted.
pub type ConnFuture<'a> = Pin<Box<dyn Future<Output = ConnResult> + 'a>>;

/// Everything one connection's engine borrows from its loop.
#[derive(Debug)]
pub struct EngineCtx<'a, H> {
    pub handler: &'a H,
    pub counters: &'a Counters,
    pub pool: &'a BufferPool,
    pub config: &'a Config,
}

impl<H> Clone for EngineCtx<'_, H> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<H> Copy for EngineCtx<'_, H> {}

/// Boxes the engine of one connection, with as many request slots as the pool's
/// capacities ask for (1; up to 8; up to 32: each its own future type, so a connection
/// never carries slots it cannot use). `readable` says whether the socket may have input
/// (or EOF, or an error, or the transport wants the engine to look: e.g. it is closing);
/// the transport polls the future again whenever that may have changed.
pub fn boxed_engine<'a, R, W, H>(
    reader: R,
    writer: W,
    readable: impl Fn() -> bool + 'a,
    status: &'a ConnectionStatus,
    ctx: EngineCtx<'a, H>,
) -> ConnFuture<'a>
where
    R: Read<Error = io::Error> + 'a,
    W: Write<Error = io::Error> + 'a,
    H: Handler + 'a,
{
    match ctx.pool.capacities().requests {
        0 | 1 => Box::pin(serve_pooled::<1, _, _, _>(reader, writer, readable, status, ctx)),
        2..=8 => Box::pin(serve_pooled::<8, _, _, _>(reader, writer, readable, status, ctx)),
        _ => Box::pin(serve_pooled::<32, _, _, _>(reader, writer, readable, status, ctx)),
    }
}

/// Serves a connection: waits until it is readable, borrows a block from the pool, runs the
/// core driver until the connection is idle at a record boundary again
/// ([`ConnectionStatus::is_idle_at_boundary`]), returns the block, and starts over. An
/// idle keep-alive connection so holds no request memory, and steady state allocates
/// nothing (the pool lends the same blocks again).
pub async fn serve_pooled<const N: usize, R, W, H>(
    mut reader: R,
    mut writer: W,
    readable: impl Fn() -> bool,
    status: &ConnectionStatus,
    ctx: EngineCtx<'_, H>,
) -> ConnResult
where
    R: Read<Error = io::Error>,
    W: Write<Error = io::Error>,
    H: Handler,
    for<'b> SliceBuffers<'b, N>: ConnectionBuffers,
{
    let handler = Guarded { handler: ctx.handler, counters: ctx.counters, status };
    loop {
        poll_fn(|_| if readable() { Poll::Ready(()) } else { Poll::Pending }).await;
        let mut block = ctx.pool.take();
        let outcome = match SliceBuffers::<N>::new(&mut block, ctx.pool.capacities()) {
            Ok(mut buffers) => {
                let mut serving = pin!(serve_connection(
                    &mut reader,
                    &mut writer,
                    &handler,
                    &mut buffers,
                    ctx.config,
                    status
                ));
                poll_fn(|cx| match serving.as_mut().poll(cx) {
                    Poll::Ready(result) => Poll::Ready(Some(result)),
                    Poll::Pending if status.is_idle_at_boundary() => Poll::Ready(None),
                    Poll::Pending => Poll::Pending,
                })
                .await
            }
            // The transports check the capacities when they start; close if not.
            Err(_) => Some(Ok(())),
        };
        ctx.pool.put(block);
        if let Some(result) = outcome {
            return result;
        }
    }
}

/// The application's handler as servers run it: counts requests and aborts, and turns a
/// panic into an error, so the request gets a CGI 500 when nothing was sent yet; when
/// something was, its connection is closed (the response cannot be completed).
struct Guarded<'a, H> {
    handler: &'a H,
    counters: &'a Counters,
    status: &'a ConnectionStatus,
}

impl<H: Handler> Handler for Guarded<'_, H> {
    async fn handle(
        &self,
        request: &mut Request<'_>,
        response: &mut Response<'_>,
    ) -> Result<(), HandlerError> {
        bump(&self.counters.requests);
        let mut cut_off = CutOff(Some(&self.counters.requests_aborted));
        let outcome = {
            let mut handling = pin!(self.handler.handle(request, response));
            // A panicking poll ends the handler (it is not polled again).
            poll_fn(|cx| match catch_unwind(AssertUnwindSafe(|| handling.as_mut().poll(cx))) {
                Ok(Poll::Ready(result)) => Poll::Ready(Ok(result)),
                Ok(Poll::Pending) => Poll::Pending,
                Err(_) => Poll::Ready(Err(())),
            })
            .await
        };
        cut_off.0 = None;
        let result = match outcome {
            Ok(result) => {
                if let Err(error) = &result {
                    events::handler_failed(self.counters, error, request);
                }
                result
            }
            // A panic is logged and counted as one, not also as a handler error.
            Err(()) => {
                let answered = response.bytes_written() == 0;
                events::handler_panicked(self.counters, request, answered);
                if !answered {
                    self.status.expire();
                }
                Err(HandlerError::from("the handler panicked"))
            }
        };
        if response.aborted() {
            bump(&self.counters.requests_aborted);
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
            bump(aborted);
        }
    }
}

/// Evaluates `$body` with `$n` bound (as a `const`) to the number of request slots an
/// engine needs for `$requests` concurrent requests per connection: 1, 2, 4, 8, 16 or 32.
/// Each is its own future type, so a connection never carries slots it cannot use.
///
/// ```
/// let slots = ember_fcgi_host::for_request_slots!(3, |N| N);
/// assert_eq!(slots, 4);
/// ```
#[macro_export]
macro_rules! for_request_slots {
    ($requests:expr, |$n:ident| $body:expr) => {
        match $requests {
            0 | 1 => {
                const $n: usize = 1;
                $body
            }
            2 => {
                const $n: usize = 2;
                $body
            }
            3..=4 => {
                const $n: usize = 4;
                $body
            }
            5..=8 => {
                const $n: usize = 8;
                $body
            }
            9..=16 => {
                const $n: usize = 16;
                $body
            }
            _ => {
                const $n: usize = 32;
                $body
            }
        }
    };
}
