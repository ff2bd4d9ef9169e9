//! The accept loop of one socket, and the life of one connection on it.

use core::future::poll_fn;
use core::pin::{Pin, pin};
use core::task::{Context, Poll};

use embassy_futures::select::{Either, select};
use embassy_net::Stack;
use embassy_net::tcp::TcpSocket;
use embassy_time::{Duration, Instant, Timer, with_deadline};
use ember_fcgi_core::{
    Config, ConnectionBuffers, ConnectionError, ConnectionStatus, Handler, HandlerError, Request, Response,
    serve_connection,
};

use crate::io::{IoError, SocketReader, SocketWriter, watch};
use crate::limits::Limits;
use crate::stats::Stats;

/// All memory of one connection: the socket's receive and send buffers (`RX`, `TX`
/// bytes) and the FastCGI buffers `B` (a [`Buffers`](ember_fcgi_core::Buffers)). Put one
/// per concurrent connection in a `static` (e.g. a `static_cell::ConstStaticCell`).
pub struct Slot<const RX: usize, const TX: usize, B> {
    rx: [u8; RX],
    tx: [u8; TX],
    buffers: B,
}

impl<const RX: usize, const TX: usize, B> Slot<RX, TX, B> {
    /// A slot around `buffers` (usually `Buffers::new()`), with zeroed socket buffers.
    pub const fn new(buffers: B) -> Self {
        Self { rx: [0; RX], tx: [0; TX], buffers }
    }
}

impl<const RX: usize, const TX: usize, B> core::fmt::Debug for Slot<RX, TX, B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Slot<rx {RX}, tx {TX}>")
    }
}

/// Accepts connections on `port` with the slot's socket and serves each with `handler`,
/// one at a time, forever, counting them in `stats`. Run one per slot for concurrent
/// connections on one port.
pub async fn serve<H, B, const RX: usize, const TX: usize>(
    stack: Stack<'_>,
    port: u16,
    slot: &mut Slot<RX, TX, B>,
    handler: &H,
    config: &Config,
    limits: &Limits,
    stats: &Stats,
) -> !
where
    H: Handler,
    B: ConnectionBuffers,
{
    loop {
        let mut socket = TcpSocket::new(stack, &mut slot.rx, &mut slot.tx);
        socket.set_timeout(limits.tcp_timeout);
        // The driver hands over whole records and flushes at the end of a response, so
        // Nagle's algorithm would only hold the last small segment (END_REQUEST) back until
        // the web server acknowledges the previous one.
        socket.set_nagle_enabled(false);
        if socket.accept(port).await.is_err() {
            // Only a reset during the handshake or a bad port get here; do not spin.
            Timer::at(after(Duration::from_millis(10))).await;
            continue;
        }
        // Only the web servers of `allowed_peers`: others are reset at once.
        if !socket.remote_endpoint().is_some_and(|peer| limits.allowed_peers.allows(peer.addr)) {
            // Dropped unanswered: the peer's next segment (its request) finds no connection
            // and is answered with a reset, while the socket listens again at once.
            stats.refused();
            continue;
        }
        stats.accepted();
        let result = serve_accepted(&mut socket, handler, &mut slot.buffers, config, limits).await;
        stats.ended(&result);
    }
}

/// Serves one accepted connection until it ends, with the timeouts of `limits`, then
/// closes the socket: after `Ok(())` (the web server closed, or a request without
/// keep-conn is answered) or a timeout (idle, head, body, send, request) with a FIN and a
/// drain of at most `close_linger`; after a reset or a protocol error with a reset. The
/// socket is closed when this returns and may accept again. The peer is not checked
/// against `allowed_peers` here: [`serve`] does that at accept.
// Not an `async fn`: its future would hold the arguments twice (as passed, and moved into
// the body); the block holds them once.
#[allow(clippy::manual_async_fn)]
pub fn serve_accepted<H, B>(
    socket: &mut TcpSocket<'_>,
    handler: &H,
    buffers: &mut B,
    config: &Config,
    limits: &Limits,
) -> impl Future<Output = Result<(), ConnectionError<IoError>>>
where
    H: Handler,
    B: ConnectionBuffers,
{
    async move {
        let status = ConnectionStatus::new();
        let handler = Timed { handler, status: &status, timeout: limits.request_timeout };
        let result = {
            let (reader, writer) = socket.split();
            let (reader, writer) = (SocketReader(reader), SocketWriter(writer));
            let connection = serve_connection(reader, writer, &handler, buffers, config, &status);
            match select(connection, watch(&status, limits)).await {
                // A request timeout that expired the connection ends the driver with `Ok`.
                Either::First(Ok(())) if status.is_expired() => Err(ConnectionError::TimedOut),
                Either::First(result) => result,
                Either::Second(()) => Err(ConnectionError::Read(IoError::TimedOut)),
            }
        };
        // A timeout closes like the end of a connection: the peer did nothing wrong that a
        // reset should report, and a web server sees a FIN on an idle connection at once.
        let graceful = matches!(
            result,
            Ok(()) | Err(ConnectionError::Read(IoError::TimedOut) | ConnectionError::TimedOut)
        );
        if graceful {
            socket.close();
        } else {
            socket.abort();
        }
        // After a FIN, throws away what the peer still sends until it closes too (so it
        // sees no reset for bytes it already sent); then sends what is still queued (the
        // FIN or the reset). A graceful close that takes longer than `close_linger` ends in
        // a reset, sent by the stack for the peer's next segment once the socket is gone.
        // (Through a scratch buffer with `read`, the driver's read, rather than `read_with`:
        // one read path in flash. The scratch shares the future's memory with the driver.)
        let closed = with_deadline(after(limits.close_linger), async {
            let mut scratch = [0u8; 32];
            while graceful && matches!(socket.read(&mut scratch).await, Ok(1..)) {}
            let _ = socket.flush().await;
        })
        .await;
        if closed.is_err() {
            socket.abort();
        }
        result
    }
}

/// The instant `duration` from now, `Instant::MAX` if that is past it (`Duration::MAX`:
/// never). Every deadline here goes through it: one saturating addition in place of
/// `Instant + Duration`, which panics on overflow (its message and panic site in flash).
fn after(duration: Duration) -> Instant {
    Instant::now().checked_add(duration).unwrap_or(Instant::MAX)
}

/// What a request that ran out of `request_timeout` before writing anything answers.
const GATEWAY_TIMEOUT: &[u8] =
    b"Status: 504 Gateway Timeout\r\nContent-Type: text/plain\r\n\r\nGateway Timeout\n";

/// The handler under `request_timeout`: past it the handler's future is dropped; a 504
/// answers if it wrote nothing, else the connection is expired (closed, no END_REQUEST).
struct Timed<'a, H> {
    handler: &'a H,
    status: &'a ConnectionStatus,
    timeout: Duration,
}

impl<H: Handler> Handler for Timed<'_, H> {
    async fn handle(
        &self,
        request: &mut Request<'_>,
        response: &mut Response<'_>,
    ) -> Result<(), HandlerError> {
        let mut timer = Instant::now().checked_add(self.timeout).map(Timer::at);
        let outcome = {
            let mut handling = pin!(self.handler.handle(request, response));
            poll_fn(|cx| {
                if expired(&mut timer, cx) {
                    return Poll::Ready(None);
                }
                handling.as_mut().poll(cx).map(Some)
            })
            .await
        };
        match outcome {
            Some(result) => result,
            None => {
                time_out(self.status, response).await;
                Ok(())
            }
        }
    }
}

/// Whether the request timer (if any) has expired.
fn expired(timer: &mut Option<Timer>, cx: &mut Context<'_>) -> bool {
    timer.as_mut().is_some_and(|timer| Pin::new(timer).poll(cx).is_ready())
}

/// Ends a request past its timeout: a 504 if it wrote nothing, else the connection
/// expires (the driver then ends it without END_REQUEST, and returns).
async fn time_out(status: &ConnectionStatus, response: &mut Response<'_>) {
    if response.bytes_written() == 0 {
        let _ = response.raw_output().write_all(GATEWAY_TIMEOUT).await;
    } else {
        status.expire();
    }
}
