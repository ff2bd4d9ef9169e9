//! The socket halves as the core driver sees them (one error type for both), and the
//! watch that enforces the idle, head, body and send timeouts from the connection's status.

use core::fmt;

use embassy_futures::yield_now;
use embassy_net::tcp::{self, TcpReader, TcpWriter};
use embassy_time::{Duration, Instant, Timer};
use embedded_io_async::{ErrorKind, ErrorType, Read, Write};
use ember_fcgi_core::{ConnectionStatus, Wait};

use crate::limits::Limits;

/// Why a connection's I/O failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoError {
    /// The peer reset the connection, or the stack gave up on it (`tcp_timeout`).
    Reset,
    /// No request arrived within `idle_timeout`, or a head took longer than `head_timeout`
    /// (body, send and request timeouts end a connection with `ConnectionError::TimedOut`).
    TimedOut,
}

impl fmt::Display for IoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Reset => f.write_str("connection reset"),
            Self::TimedOut => f.write_str("idle or head timeout"),
        }
    }
}

impl core::error::Error for IoError {}

impl embedded_io_async::Error for IoError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Reset => ErrorKind::ConnectionReset,
            Self::TimedOut => ErrorKind::TimedOut,
        }
    }
}

impl From<tcp::Error> for IoError {
    fn from(_: tcp::Error) -> Self {
        Self::Reset
    }
}

/// The read half, with the writer's error type. Cancel-safe: a `TcpReader` read takes no
/// bytes until it completes.
pub(crate) struct SocketReader<'s>(pub(crate) TcpReader<'s>);

impl ErrorType for SocketReader<'_> {
    type Error = IoError;
}

// The I/O methods are not `async fn`s: their futures would hold the arguments twice (as
// passed, and moved into the body); the blocks hold them once.
#[allow(clippy::manual_async_fn)]
impl Read for SocketReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> impl Future<Output = Result<usize, IoError>> {
        async move { Ok(self.0.read(buf).await?) }
    }
}

/// The limit that applies to `wait` (`None` while busy), as the std servers' `allowed`.
fn allowed(wait: Wait, limits: &Limits) -> Option<Duration> {
    match wait {
        Wait::Idle => Some(limits.idle_timeout),
        Wait::Head => Some(limits.head_timeout),
        Wait::Send => Some(limits.send_timeout),
        Wait::Body => Some(limits.body_timeout),
        Wait::Busy => None,
    }
}

/// Watches a connection beside its driver (they are polled together: the driver updates
/// `status` whenever it waits). An idle or head timeout completes it (the caller drops the
/// driver: no handler runs, or none that could answer); a stalled body or send expires
/// the connection, so that the handlers' calls fail with `TimedOut` and the driver
/// returns when it is polled next (at once). It looks at `status` every `check_interval`,
/// since the status changes without waking it.
pub(crate) async fn watch(status: &ConnectionStatus, limits: &Limits) {
    let mut seen = (Wait::Idle, 0);
    let mut since = Instant::now();
    loop {
        let now = Instant::now();
        let current = status.wait();
        if current != seen {
            seen = current;
            since = now;
        }
        let check = now.checked_add(limits.check_interval).unwrap_or(Instant::MAX);
        match allowed(seen.0, limits).and_then(|allowed| since.checked_add(allowed)) {
            Some(deadline) if deadline <= now => {
                if matches!(seen.0, Wait::Idle | Wait::Head) {
                    return;
                }
                status.expire();
                yield_now().await;
            }
            Some(deadline) => Timer::at(deadline.min(check)).await,
            None => Timer::at(check).await,
        }
    }
}

/// The write half, with the reader's error type.
pub(crate) struct SocketWriter<'s>(pub(crate) TcpWriter<'s>);

impl ErrorType for SocketWriter<'_> {
    type Error = IoError;
}

#[allow(clippy::manual_async_fn)]
impl Write for SocketWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> impl Future<Output = Result<usize, IoError>> {
        async move { Ok(self.0.write(buf).await?) }
    }

    fn flush(&mut self) -> impl Future<Output = Result<(), IoError>> {
        async move { Ok(self.0.flush().await?) }
    }
}
