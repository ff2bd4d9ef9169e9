//! One connection, start to close: the core driver raced against the watchdog, then a
//! graceful close (after `Ok`) or an immediate one (after an error or a hard timeout).
//!
//! This future is the connection's task: it is boxed once when the connection is accepted
//! and serves every request of the connection, with the buffers `B` inside it.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;

use ember_fcgi_core::{ConnectionBuffers, ConnectionStatus, Handler, SliceBuffers};
use ember_fcgi_host::engine::{EngineCtx, serve_pooled};
use ember_fcgi_host::events;
use smol::Timer;
use smol::future;

use crate::io::{ConnIo, Reader, Writer, linger};
use crate::serve::LoopCtx;
use crate::stats::bump;
use crate::watchdog::{Expired, Watchdog};

/// How the serving part of a connection ended.
enum End {
    Served(ember_fcgi_host::engine::ConnResult),
    Expired(Expired),
}

/// A connection's task as the loop keeps it: boxed once when accepted.
pub(crate) type ConnTask<'a> = Pin<Box<dyn Future<Output = ()> + 'a>>;

/// Boxes the task of a new connection, with as many request slots as the capacities ask
/// (each its own type, so a connection never carries slots it cannot use).
pub(crate) fn boxed_connection<'a, H: Handler>(io: ConnIo<'a>, ctx: &'a LoopCtx<'a, H>) -> ConnTask<'a> {
    ember_fcgi_host::for_request_slots!(ctx.pool.capacities().requests, |N| boxed::<H, N>(io, ctx))
}

/// Bytes of the boxed task of one connection (no buffers: request memory is lent while busy).
pub(crate) fn task_size<H: Handler>(ctx: &LoopCtx<'_, H>) -> usize {
    fn size_of_output<A, B, R>(_: impl FnOnce(A, B) -> R) -> usize {
        std::mem::size_of::<R>()
    }
    ember_fcgi_host::for_request_slots!(ctx.pool.capacities().requests, |N| size_of_output(
        connection::<H, N>
    ))
}

/// One size of task; not inlined, so building a small one never reserves stack for the
/// largest.
#[inline(never)]
fn boxed<'a, H: Handler, const N: usize>(io: ConnIo<'a>, ctx: &'a LoopCtx<'a, H>) -> ConnTask<'a>
where
    for<'b> SliceBuffers<'b, N>: ConnectionBuffers,
{
    Box::pin(connection::<H, N>(io, ctx))
}

/// Serves `io` until it closes: the pooled engine raced against the watchdog, then a
/// graceful close (after `Ok`) or an immediate one (after an error or a hard timeout).
pub(crate) async fn connection<H: Handler, const N: usize>(io: ConnIo<'_>, ctx: &LoopCtx<'_, H>)
where
    for<'b> SliceBuffers<'b, N>: ConnectionBuffers,
{
    let counters = ctx.counters;
    let status = ConnectionStatus::new();
    let closing = Cell::new(false);
    let mut timer = Timer::never();
    let engine = EngineCtx { handler: ctx.handler, counters, pool: &ctx.pool, config: &ctx.config };
    // Built in place (no named locals moved in), so the future holds one copy of each.
    let end = future::or(
        async {
            let reader = Reader::new(&io, &ctx.scratch, &closing, &status, &counters.bytes_in);
            let writer = Writer::new(&io, &counters.bytes_out);
            let readable = || io.readiness().readable() || closing.get();
            End::Served(serve_pooled::<N, _, _, _>(reader, writer, readable, &status, engine).await)
        },
        async {
            End::Expired(
                Watchdog::new(
                    &status,
                    &closing,
                    ctx.draining,
                    &ctx.limits,
                    counters,
                    io.socket(),
                    &mut timer,
                )
                .await,
            )
        },
    )
    .await;
    match end {
        End::Served(Ok(())) => linger(io.socket(), &mut timer, ctx.limits.close_linger).await,
        End::Served(Err(error)) => events::connection_failed(counters, &io.socket().peer(), &error),
        End::Expired(Expired::Stuck) => bump(&counters.closed_with_error),
        End::Expired(Expired::Head) => {} // counted by the watchdog; dropping `io` closes at once
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;
    use std::sync::atomic::AtomicU64;

    use ember_fcgi_core::{HandlerError, Request, Response};
    use ember_fcgi_host::{BufferPool, Limits, WebServerAddrs};
    use polling::Poller;

    use super::*;
    use crate::io::OpenGuard;
    use crate::shutdown::Shutdown;
    use crate::socket::Socket;
    use crate::stats::Stats;

    struct Nothing;

    impl Handler for Nothing {
        async fn handle(&self, _: &mut Request<'_>, _: &mut Response<'_>) -> Result<(), HandlerError> {
            Ok(())
        }
    }

    /// What one connection costs: its boxed future (the driver and the handler's future).
    #[test]
    fn connection_future_size() {
        let poller = Poller::new().expect("poller");
        let (socket, _peer) = UnixStream::pair().expect("pair");
        let open = AtomicU64::new(0);
        let guard = OpenGuard::acquire(&open, 1).expect("room");
        let readiness = std::sync::Arc::new(crate::pool::Readiness::new());
        let io = ConnIo::new(&poller, Socket::Unix(socket), 0, readiness, guard).expect("register");
        let (shutdown, stats, allow, limits) =
            (Shutdown::default(), Stats::default(), WebServerAddrs::default(), Limits::default());
        let ctx = LoopCtx {
            handler: &Nothing,
            scratch: crate::io::scratch(),
            limits,
            config: limits.protocol_config(),
            pool: BufferPool::new(limits.capacities, 1, std::sync::Arc::clone(stats.counters())),
            allow: &allow,
            counters: stats.counters(),
            shutdown: &shutdown,
            draining: shutdown.flag(),
            poller: &poller,
        };
        let future = connection::<Nothing, 1>(io, &ctx);
        let size = std::mem::size_of_val(&future);
        println!("connection future with an empty handler: {size} bytes");
        // No buffers inside: request memory comes from the pool while a request runs.
        assert!(size < 4096, "{size} bytes");
    }
}
