//! The socket halves as the core driver sees them: one error type for both, and a reader
//! that enforces the idle and head timeouts from the connection's status.

use core::fmt;

use embassy_futures::select::{Either, select};
use embassy_net::tcp::{self, TcpReader, TcpWriter};
use embassy_time::{Instant, Timer};
use embedded_io_async::{ErrorKind, ErrorType, Read, Write};
use ember_fcgi_core::ConnectionStatus;

use crate::limits::Limits;

/// Why a connection's I/O failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoError {
    /// The peer reset the connection, or the stack gave up on it (`tcp_timeout`).
    Reset,
    /// No request arrived within `idle_timeout`, or a head took longer than `head_timeout`.
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

/// The read half: every read ends by a deadline while the connection is idle (no request)
/// or a request is in its head; it looks again every `check_interval`, because a handler
/// that finishes while the read waits makes the connection idle.
pub(crate) struct TimedReader<'s, 'c> {
    pub(crate) inner: TcpReader<'s>,
    pub(crate) status: &'c ConnectionStatus,
    pub(crate) limits: &'c Limits,
    /// What the connection was doing at the last read: idle, in a head, or busy.
    phase: Phase,
    /// Since when it has been doing that, as first seen by a read.
    since: Instant,
}

/// What a connection is doing, as far as its timeouts go.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No request: `idle_timeout` applies.
    Idle,
    /// Some request's params have not all arrived: `head_timeout` applies.
    Head,
    /// Requests are being served: no read timeout.
    Busy,
}

impl<'s, 'c> TimedReader<'s, 'c> {
    pub(crate) fn new(inner: TcpReader<'s>, status: &'c ConnectionStatus, limits: &'c Limits) -> Self {
        Self { inner, status, limits, phase: Phase::Idle, since: Instant::now() }
    }

    /// The instant this connection times out in its current state, if it can.
    fn deadline(&mut self) -> Option<Instant> {
        let (phase, timeout) = if self.status.requests_in_head() > 0 {
            (Phase::Head, Some(self.limits.head_timeout))
        } else if self.status.active_requests() == 0 {
            (Phase::Idle, Some(self.limits.idle_timeout))
        } else {
            (Phase::Busy, None)
        };
        if phase != self.phase {
            self.phase = phase;
            self.since = Instant::now();
        }
        timeout.map(|timeout| self.since + timeout)
    }
}

impl ErrorType for TimedReader<'_, '_> {
    type Error = IoError;
}

// The I/O methods are not `async fn`s: their futures would hold the arguments twice (as
// passed, and moved into the body); the blocks hold them once.
#[allow(clippy::manual_async_fn)]
impl Read for TimedReader<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> impl Future<Output = Result<usize, IoError>> {
        async move {
            loop {
                let check = Instant::now() + self.limits.check_interval;
                let wake = match self.deadline() {
                    Some(deadline) if deadline <= Instant::now() => return Err(IoError::TimedOut),
                    Some(deadline) => deadline.min(check),
                    None => check,
                };
                // A TcpReader read takes no bytes until it completes, so dropping it is safe.
                match select(self.inner.read(buf), Timer::at(wake)).await {
                    Either::First(result) => return Ok(result?),
                    Either::Second(()) => continue,
                }
            }
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
