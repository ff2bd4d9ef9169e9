//! The driver's view of a connection: `embedded-io-async` reader and writer halves over the
//! non-blocking socket, and the graceful close (FIN, then a bounded drain).
//!
//! A call tries the syscall first and returns `Pending` only after `WouldBlock`; it stores
//! no waker, because the socket is registered edge-triggered under its pool slot's key and
//! its next readiness event queues that slot. These futures are only valid inside a
//! [`crate::pool::Pool`] slot. (A write to a closed Unix socket raises SIGPIPE in a
//! process that does not ignore it; Rust programs ignore it from `main` on.)

use std::cell::Cell;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use embedded_io_async::{ErrorType, Read, Write};
use ember_fcgi_core::ConnectionStatus;
use polling::Poller;
use smol::Timer;

use crate::reactor::Registered;
use crate::socket::Socket;

/// Bytes read and dropped per poll while lingering, before giving other connections a turn.
const LINGER_BYTES_PER_POLL: usize = 64 * 1024;

/// One open connection: the socket registered with the loop's poller, and its place in
/// the server's open-connection count (released after the socket is closed).
#[derive(Debug)]
pub(crate) struct ConnIo<'p> {
    socket: Registered<'p, Socket>,
    _open: OpenGuard<'p>,
}

impl<'p> ConnIo<'p> {
    pub(crate) fn new(
        poller: &'p Poller,
        socket: Socket,
        key: usize,
        open: OpenGuard<'p>,
    ) -> io::Result<Self> {
        Ok(Self { socket: Registered::new(poller, socket, key, true)?, _open: open })
    }

    pub(crate) fn socket(&self) -> &Socket {
        self.socket.get()
    }
}

/// A place in the open-connection count, given back on drop.
#[derive(Debug)]
pub(crate) struct OpenGuard<'a>(&'a AtomicU64);

impl<'a> OpenGuard<'a> {
    /// Takes a place if fewer than `max` are taken.
    pub(crate) fn acquire(open: &'a AtomicU64, max: usize) -> Option<Self> {
        let max = u64::try_from(max).unwrap_or(u64::MAX);
        open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).ok()?;
        Some(Self(open))
    }
}

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The read half. Once `closing` is set it reports end of input instead of waiting, as
/// soon as no request is active, so the driver finishes gracefully (flushing what it has).
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    socket: &'a Socket,
    closing: &'a Cell<bool>,
    status: &'a ConnectionStatus,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(socket: &'a Socket, closing: &'a Cell<bool>, status: &'a ConnectionStatus) -> Self {
        Self { socket, closing, status }
    }
}

impl ErrorType for Reader<'_> {
    type Error = io::Error;
}

impl Read for Reader<'_> {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        poll_fn(|_| match self.socket.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if self.closing.get() && self.status.active_requests() == 0 {
                    Poll::Ready(Ok(0))
                } else {
                    Poll::Pending
                }
            }
            other => Poll::Ready(other),
        })
        .await
    }
}

/// The write half; `flush` has nothing to do (writes go straight to the socket).
#[derive(Debug)]
pub(crate) struct Writer<'a> {
    socket: &'a Socket,
}

impl<'a> Writer<'a> {
    pub(crate) fn new(socket: &'a Socket) -> Self {
        Self { socket }
    }
}

impl ErrorType for Writer<'_> {
    type Error = io::Error;
}

impl Write for Writer<'_> {
    async fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        poll_fn(|_| match self.socket.write(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
            other => Poll::Ready(other),
        })
        .await
    }

    async fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Closes gracefully: sends FIN, then reads and drops input until the web server closes
/// its side or `linger` has passed (so it sees no reset while reading our last bytes).
pub(crate) async fn linger(socket: &Socket, timer: &mut Timer, linger: Duration) {
    if socket.shutdown_write().is_err() {
        return;
    }
    let mut scratch = [0u8; 512];
    let mut armed = false;
    poll_fn(|cx| {
        let mut drained = 0;
        let would_block = loop {
            match socket.read(&mut scratch) {
                Ok(0) => return Poll::Ready(()),
                Ok(n) => {
                    drained += n;
                    if drained >= LINGER_BYTES_PER_POLL {
                        break false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break true,
                Err(_) => return Poll::Ready(()),
            }
        };
        if !armed {
            timer.set_after(linger);
            armed = true;
        }
        if Pin::new(&mut *timer).poll(cx).is_ready() {
            return Poll::Ready(());
        }
        if !would_block {
            // The peer keeps sending: let the others run, then read on.
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    })
    .await
}
