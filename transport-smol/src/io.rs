//! The driver's view of a connection: `embedded-io-async` reader and writer halves over the
//! non-blocking socket, and the graceful close (FIN, then a bounded drain).
//!
//! A call makes the syscall if the socket may be ready in that direction and returns
//! `Pending` after `WouldBlock`; it stores no waker, because the socket is registered
//! edge-triggered under its pool slot's key and its next readiness event queues that slot.
//! The slot's [`Readiness`] flags (set by events, cleared by `WouldBlock`) spare the
//! `EAGAIN` syscalls of the driver's repeated polls. (A short read is not taken as "drained",
//! as the mio transport and tokio do: `polling` does not report `EPOLLRDHUP`, so an end of
//! input that arrived with the last data would go unseen.) A connection that yields while
//! it could go on may read once more on its next poll (see `Ready::polled`), so a long
//! response still notices an abort before the loop gets round to dispatching events. These
//! futures are only valid inside a [`crate::pool::Pool`] slot. (A write to a closed Unix socket raises SIGPIPE in a
//! process that does not ignore it; Rust programs ignore it from `main` on.)

use std::cell::{Cell, RefCell};
use std::future::{Future, poll_fn};
use std::io::{self, IoSliceMut};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use embedded_io_async::{ErrorType, Read, Write};
use ember_fcgi_core::ConnectionStatus;
use polling::Poller;
use smol::Timer;

use crate::pool::Readiness;
use crate::reactor::Registered;
use crate::socket::Socket;

/// Bytes read and dropped per poll while lingering, before giving other connections a turn.
const LINGER_BYTES_PER_POLL: usize = 64 * 1024;

/// Bytes of a loop's scratch buffer, into which readers throw input the engine skips
/// ([`ConnectionStatus::discardable`]) instead of passing it through the engine's buffer.
pub(crate) const SCRATCH_BYTES: usize = 64 * 1024;

/// A skip is worth a vectored read only from this many bytes on.
const MIN_DISCARD: usize = 512;

/// A loop's scratch buffer (shared by its connections: what lands in it is thrown away).
pub(crate) fn scratch() -> RefCell<Box<[u8]>> {
    RefCell::new(vec![0; SCRATCH_BYTES].into_boxed_slice())
}

/// One open connection: the socket registered with the loop's poller, and its place in
/// the server's open-connection count (released after the socket is closed).
#[derive(Debug)]
pub(crate) struct ConnIo<'p> {
    socket: Registered<'p, Socket>,
    readiness: Arc<Readiness>,
    _open: OpenGuard<'p>,
}

impl<'p> ConnIo<'p> {
    pub(crate) fn new(
        poller: &'p Poller,
        socket: Socket,
        key: usize,
        readiness: Arc<Readiness>,
        open: OpenGuard<'p>,
    ) -> io::Result<Self> {
        Ok(Self { socket: Registered::new(poller, socket, key, true)?, readiness, _open: open })
    }

    pub(crate) fn socket(&self) -> &Socket {
        self.socket.get()
    }

    pub(crate) fn readiness(&self) -> &Readiness {
        &self.readiness
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
    readiness: &'a Readiness,
    bytes_in: &'a AtomicU64,
    scratch: &'a RefCell<Box<[u8]>>,
    closing: &'a Cell<bool>,
    status: &'a ConnectionStatus,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(
        io: &'a ConnIo<'_>,
        scratch: &'a RefCell<Box<[u8]>>,
        closing: &'a Cell<bool>,
        status: &'a ConnectionStatus,
        bytes_in: &'a AtomicU64,
    ) -> Self {
        Self { socket: io.socket(), readiness: io.readiness(), bytes_in, scratch, closing, status }
    }

    /// One read syscall: input the engine will skip goes to the scratch buffer and is
    /// reported discarded, the rest to `buf`. Returns the bytes read in all and those placed
    /// in `buf`.
    fn read_some(&self, buf: &mut [u8]) -> io::Result<(usize, usize)> {
        let skip = self.status.discardable();
        if skip < MIN_DISCARD {
            let n = self.socket.read(buf)?;
            self.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
            return Ok((n, n));
        }
        let mut scratch = self.scratch.borrow_mut();
        let skip = skip.min(scratch.len());
        let n =
            self.socket.read_vectored(&mut [IoSliceMut::new(&mut scratch[..skip]), IoSliceMut::new(buf)])?;
        self.status.discard(n.min(skip));
        self.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
        Ok((n, n.saturating_sub(skip)))
    }

    /// Nothing to read now: end of input if the connection is closing and idle.
    fn idle(&self) -> Poll<io::Result<usize>> {
        if self.closing.get() && self.status.active_requests() == 0 {
            Poll::Ready(Ok(0))
        } else {
            Poll::Pending
        }
    }
}

impl ErrorType for Reader<'_> {
    type Error = io::Error;
}

impl Read for Reader<'_> {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        poll_fn(|_| {
            loop {
                if !self.readiness.readable() {
                    return self.idle();
                }
                match self.read_some(buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.readiness.clear_readable();
                        return self.idle();
                    }
                    Err(e) => return Poll::Ready(Err(e)),
                    // End of input, or bytes for the engine.
                    Ok((0, _)) => return Poll::Ready(Ok(0)),
                    Ok((_, n)) if n > 0 => return Poll::Ready(Ok(n)),
                    // Only skipped bytes: read on.
                    Ok(_) => {}
                }
            }
        })
        .await
    }
}

/// The write half; `flush` has nothing to do (writes go straight to the socket).
#[derive(Debug)]
pub(crate) struct Writer<'a> {
    socket: &'a Socket,
    readiness: &'a Readiness,
    bytes_out: &'a AtomicU64,
}

impl<'a> Writer<'a> {
    pub(crate) fn new(io: &'a ConnIo<'_>, bytes_out: &'a AtomicU64) -> Self {
        Self { socket: io.socket(), readiness: io.readiness(), bytes_out }
    }
}

impl ErrorType for Writer<'_> {
    type Error = io::Error;
}

impl Write for Writer<'_> {
    async fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        poll_fn(|_| {
            if !self.readiness.writable() {
                return Poll::Pending;
            }
            match self.socket.write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.readiness.clear_writable();
                    Poll::Pending
                }
                Ok(n) => {
                    self.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
                    Poll::Ready(Ok(n))
                }
                other => Poll::Ready(other),
            }
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
