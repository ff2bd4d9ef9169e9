//! One connection, start to close: the core driver raced against the watchdog, then a
//! graceful close (after `Ok`) or an immediate one (after an error or a hard timeout).
//!
//! This future is the connection's task: it is boxed once when the connection is accepted
//! and serves every request of the connection, with the buffers `B` inside it.

use std::cell::Cell;
use std::sync::atomic::AtomicU64;

use ember_fcgi_core::{
    ConnectionBuffers, ConnectionError, ConnectionStatus, Handler, HandlerError, Request, Response,
    serve_connection,
};
use smol::Timer;
use smol::future;

use crate::io::{ConnIo, Reader, Writer, linger};
use crate::serve::LoopCtx;
use crate::stats::bump;
use crate::watchdog::{Expired, Watchdog};

/// How the serving part of a connection ended.
enum End {
    Served(Result<(), ConnectionError<std::io::Error>>),
    Expired(Expired),
}

/// Serves `io` until it closes.
pub(crate) async fn connection<H: Handler, B: ConnectionBuffers + Default>(
    io: ConnIo<'_>,
    ctx: &LoopCtx<'_, H>,
) {
    let counters = ctx.counters;
    let status = ConnectionStatus::new();
    let closing = Cell::new(false);
    let mut timer = Timer::never();
    let mut buffers = B::default();
    let handler = Counted {
        handler: ctx.handler,
        requests: &counters.requests,
        aborted: &counters.requests_aborted,
        errors: &counters.handler_errors,
    };
    // Built in place (no named locals moved in), so the future holds one copy of each.
    let end = future::or(
        async {
            let (reader, writer) = (Reader::new(&io, &ctx.scratch, &closing, &status), Writer::new(&io));
            End::Served(serve_connection(reader, writer, &handler, &mut buffers, &ctx.config, &status).await)
        },
        async {
            End::Expired(
                Watchdog::new(&status, &closing, ctx.draining, &ctx.limits, counters, &mut timer).await,
            )
        },
    )
    .await;
    match end {
        End::Served(Ok(())) => linger(io.socket(), &mut timer, ctx.limits.close_linger).await,
        End::Served(Err(_)) | End::Expired(Expired::Stuck) => bump(&counters.closed_with_error),
        End::Expired(Expired::Head) => {} // counted by the watchdog; dropping `io` closes at once
    }
}

/// The application's handler, counting the requests it is given.
struct Counted<'a, H> {
    handler: &'a H,
    requests: &'a AtomicU64,
    aborted: &'a AtomicU64,
    errors: &'a AtomicU64,
}

impl<H: Handler> Handler for Counted<'_, H> {
    async fn handle(
        &self,
        request: &mut Request<'_>,
        response: &mut Response<'_>,
    ) -> Result<(), HandlerError> {
        bump(self.requests);
        let mut cut_off = CutOff(Some(self.aborted));
        let result = self.handler.handle(request, response).await;
        cut_off.0 = None;
        if response.aborted() {
            bump(self.aborted);
        } else if result.as_ref().is_err_and(|e| !e.is_abort()) {
            bump(self.errors);
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

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;
    use std::sync::atomic::AtomicU64;

    use ember_fcgi_core::{DEFAULT_BUFFERS_BYTES, DefaultBuffers};
    use ember_fcgi_host::{Limits, WebServerAddrs};
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

    /// What one connection costs: its boxed future, buffers included, plus the handler's.
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
            allow: &allow,
            counters: stats.counters(),
            shutdown: &shutdown,
            draining: shutdown.flag(),
            poller: &poller,
        };
        let future = connection::<Nothing, DefaultBuffers>(io, &ctx);
        let size = std::mem::size_of_val(&future);
        println!("connection future with DefaultBuffers and an empty handler: {size} bytes");
        assert!(size > DEFAULT_BUFFERS_BYTES && size < DEFAULT_BUFFERS_BYTES + 3072, "{size} bytes");
    }
}
