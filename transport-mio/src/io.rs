//! The socket seen through `embedded-io-async`: each call tries the non-blocking syscall and
//! returns `Pending` on `WouldBlock`, so readiness never surfaces as an error.
//!
//! No waker is stored: the loop polls a connection's future on every readiness event of its
//! token. Each direction keeps a readiness flag, as tokio's `PollEvented` does: set by an
//! event (and at accept), cleared by `WouldBlock` or by a short read or write (the kernel
//! had no more to give or take; with edge-triggered epoll any later arrival raises a new
//! event). The peer's FIN (`EPOLLRDHUP`) and socket errors set a flag that is never
//! cleared, so an end of input that arrived together with the last data is still read
//! (a short read does not hide it). While no flag allows it, a call returns `Pending`
//! without a syscall, so a connection polled again in the same round (or woken by its
//! handler) does not pay for `EAGAIN` reads. An edge that arrives while the driver is not
//! reading (input buffer busy) only sets the flag, so it is never lost.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::io::{self, IoSliceMut, Read as _, Write as _};
use std::net::Shutdown;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;

use embedded_io_async::{ErrorType, Read, Write};
use ember_fcgi_core::ConnectionStatus;
use mio::event::Source;
use mio::net::{TcpStream, UnixStream};
use mio::{Interest, Registry, Token};

use crate::stats::Counters;

/// An accepted connection, TCP or Unix.
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// Bytes of the loop's scratch buffer, into which readers throw input the engine skips.
pub(crate) const SCRATCH_BYTES: usize = 64 * 1024;

/// A skip is worth a vectored read only from this many bytes on.
const MIN_DISCARD: usize = 512;

/// The loop's scratch buffer: what lands in it is thrown away (so all connections share it).
pub(crate) type Scratch = Rc<RefCell<Box<[u8]>>>;

/// A new scratch buffer for a loop.
pub(crate) fn scratch() -> Scratch {
    Rc::new(RefCell::new(vec![0; SCRATCH_BYTES].into_boxed_slice()))
}

impl Stream {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => (&*s).read(buf),
            Self::Unix(s) => (&*s).read(buf),
        }
    }

    fn read_vectored(&self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => (&*s).read_vectored(bufs),
            Self::Unix(s) => (&*s).read_vectored(bufs),
        }
    }

    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => (&*s).write(buf),
            Self::Unix(s) => (&*s).write(buf),
        }
    }

    /// The peer, for logs: `IP:PORT`, or `unix` (Unix peers are unnamed).
    pub(crate) fn peer(&self) -> String {
        match self {
            Self::Tcp(s) => s.peer_addr().map_or_else(|_| "tcp (peer gone)".into(), |a| a.to_string()),
            Self::Unix(_) => "unix".into(),
        }
    }

    /// Half-closes or closes the socket.
    pub(crate) fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Self::Tcp(s) => s.shutdown(how),
            Self::Unix(s) => s.shutdown(how),
        }
    }

    /// Registers for both directions once; readiness is edge-triggered.
    pub(crate) fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        let interest = Interest::READABLE | Interest::WRITABLE;
        match self {
            Self::Tcp(s) => s.register(registry, token, interest),
            Self::Unix(s) => s.register(registry, token, interest),
        }
    }
}

/// What one round of discarding input found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Drain {
    /// EOF or an error: close now.
    Done,
    /// Nothing more to read for now.
    Blocked,
    /// The read budget ran out with input left: poll again.
    More,
}

/// What a connection's future shares with its loop entry: the socket, the engine's status
/// (for the timeouts), and whether output is stuck behind a full socket.
#[derive(Debug)]
pub(crate) struct ConnIo {
    pub(crate) stream: Stream,
    pub(crate) status: ConnectionStatus,
    scratch: Scratch,
    write_blocked: Cell<bool>,
    /// The socket may have input (or EOF, or an error) to read.
    readable: Cell<bool>,
    /// The peer closed its side or the socket failed: reading never waits again.
    read_closed: Cell<bool>,
    /// The socket may take output.
    writable: Cell<bool>,
    /// The server's counters (bytes in and out).
    counters: Arc<Counters>,
}

impl ConnIo {
    pub(crate) fn new(stream: Stream, scratch: Scratch, counters: Arc<Counters>) -> Self {
        Self {
            counters,
            stream,
            status: ConnectionStatus::new(),
            scratch,
            write_blocked: Cell::new(false),
            readable: Cell::new(true),
            read_closed: Cell::new(false),
            writable: Cell::new(true),
        }
    }

    /// Whether the last write found the socket full (the peer is not reading).
    pub(crate) fn write_blocked(&self) -> bool {
        self.write_blocked.get()
    }

    /// Takes note of a readiness event of this socket.
    pub(crate) fn note_event(&self, event: &mio::event::Event) {
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            self.readable.set(true);
        }
        if event.is_read_closed() || event.is_error() {
            self.read_closed.set(true);
        }
        if event.is_writable() || event.is_write_closed() || event.is_error() {
            self.writable.set(true);
        }
    }

    /// Whether a read may find something without waiting for another event.
    pub(crate) fn may_read(&self) -> bool {
        self.readable.get() || self.read_closed.get()
    }

    /// Reads and throws away input (into the loop's scratch buffer), at most `max_reads`
    /// reads; no syscall while the socket cannot have any.
    pub(crate) fn discard_input(&self, max_reads: usize) -> Drain {
        if !self.may_read() {
            return Drain::Blocked;
        }
        let mut scratch = self.scratch.borrow_mut();
        let mut reads = 0;
        while reads < max_reads {
            match self.stream.read(&mut scratch) {
                Ok(0) => return Drain::Done,
                Ok(n) if n < scratch.len() && !self.read_closed.get() => {
                    self.readable.set(false);
                    return Drain::Blocked;
                }
                Ok(_) => reads += 1,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.readable.set(false);
                    return Drain::Blocked;
                }
                Err(_) => return Drain::Done,
            }
        }
        Drain::More
    }

    /// One read syscall: input the engine will skip ([`ConnectionStatus::discardable`]) goes
    /// to the scratch buffer and is reported discarded, the rest to `buf`. Returns the bytes
    /// read in all, those placed in `buf`, and whether the read was short (the socket had
    /// less than asked for).
    fn read_some(&self, buf: &mut [u8]) -> io::Result<(usize, usize, bool)> {
        let skip = self.status.discardable();
        if skip < MIN_DISCARD {
            let n = self.stream.read(buf)?;
            Counters::add(&self.counters.bytes_in, n);
            return Ok((n, n, n < buf.len()));
        }
        let mut scratch = self.scratch.borrow_mut();
        let skip = skip.min(scratch.len());
        let n =
            self.stream.read_vectored(&mut [IoSliceMut::new(&mut scratch[..skip]), IoSliceMut::new(buf)])?;
        self.status.discard(n.min(skip));
        Counters::add(&self.counters.bytes_in, n);
        Ok((n, n.saturating_sub(skip), n < skip + buf.len()))
    }
}

/// The read half handed to the engine.
#[derive(Debug)]
pub(crate) struct Reader<'a>(pub(crate) &'a ConnIo);

/// The write half handed to the engine.
#[derive(Debug)]
pub(crate) struct Writer<'a>(pub(crate) &'a ConnIo);

impl ErrorType for Reader<'_> {
    type Error = io::Error;
}

impl ErrorType for Writer<'_> {
    type Error = io::Error;
}

impl Read for Reader<'_> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, io::Error> {
        let io = self.0;
        poll_fn(|_| {
            loop {
                if !io.may_read() {
                    return Poll::Pending;
                }
                match io.read_some(buf) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        io.readable.set(false);
                        return Poll::Pending;
                    }
                    // End of input, or bytes for the engine.
                    Ok((0, _, _)) => return Poll::Ready(Ok(0)),
                    Ok((_, n, short)) => {
                        if short {
                            io.readable.set(false);
                        }
                        if n > 0 {
                            return Poll::Ready(Ok(n));
                        }
                        // Only skipped bytes: read on (or wait for more).
                    }
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
        })
        .await
    }
}

impl Write for Writer<'_> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, io::Error> {
        let io = self.0;
        poll_fn(|_| {
            if !io.writable.get() {
                io.write_blocked.set(true);
                return Poll::Pending;
            }
            loop {
                match io.stream.write(buf) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        io.writable.set(false);
                        io.write_blocked.set(true);
                        return Poll::Pending;
                    }
                    Ok(n) => {
                        Counters::add(&io.counters.bytes_out, n);
                        if n > 0 && n < buf.len() {
                            io.writable.set(false);
                        }
                        io.write_blocked.set(false);
                        return Poll::Ready(Ok(n));
                    }
                    Err(e) => {
                        io.write_blocked.set(false);
                        return Poll::Ready(Err(e));
                    }
                }
            }
        })
        .await
    }

    /// Sockets have no user-space buffer: every accepted byte is with the kernel.
    async fn flush(&mut self) -> Result<(), io::Error> {
        Ok(())
    }
}
