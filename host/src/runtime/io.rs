//! A connection's socket as the engine sees it: `embedded-io-async` reader and writer
//! halves over the non-blocking socket, each call making the syscall and returning
//! `Pending` on `WouldBlock`, so readiness never surfaces as an error.
//!
//! No waker is stored: the runtime polls a connection's engine on every readiness event of
//! its socket. Each direction keeps a readiness flag, as tokio's `PollEvented` does: set by
//! an event (and at accept), cleared by `WouldBlock`, and, when the poller reports the
//! peer's FIN (`EPOLLRDHUP`, [`Event::read_closed`]), also by a short read (the kernel
//! had no more to give; with edge-triggered readiness any later arrival raises a new
//! event), and by a short write (the send buffer is full: the next room raises an event). The FIN and socket errors set a flag that is never cleared, so an
//! end of input that arrived together with the last data is still read. While no flag
//! allows it, a call returns `Pending` without a syscall, so a connection polled again in
//! the same round (or woken by its handler) does not pay for `EAGAIN` reads.

use std::cell::{Cell, RefCell};
use std::future::{Future, poll_fn};
use std::io::{self, IoSliceMut};
#[cfg(not(any(target_os = "linux", target_os = "android")))]
use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Shutdown, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;

use embedded_io_async::{ErrorType, Read, Write};
use ember_fcgi_core::ConnectionStatus;

use crate::engine::{Lease, RequestTimer};
use crate::listen::Listener;
use crate::stats::Counters;

/// Bytes of a loop's scratch buffer, into which readers throw input the engine skips
/// ([`ConnectionStatus::discardable`]) instead of passing it through the engine's buffer.
pub const SCRATCH_BYTES: usize = 64 * 1024;

/// A skip is worth a vectored read only from this many bytes on.
const MIN_DISCARD: usize = 512;

/// A loop's scratch buffer: what lands in it is thrown away (so all connections share it).
pub(crate) type Scratch = Rc<RefCell<Box<[u8]>>>;

/// An accepted connection, TCP or Unix, non-blocking.
#[derive(Debug)]
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// What a readiness event of a connection's socket says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// Input (or EOF, or an error) may be there.
    pub readable: bool,
    /// Output may be taken.
    pub writable: bool,
    /// The peer closed its side or the socket failed: reading never waits again.
    pub read_closed: bool,
}

/// Retries `f` on EINTR.
fn retry<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

impl Stream {
    // On Linux the three calls of every request go to the kernel through rustix's raw
    // syscalls: libc's `recv`/`send` wrappers are cancellation points and cost about 50
    // more instructions per call (per request: one read, one write). TCP writes keep std's
    // `MSG_NOSIGNAL` (a peer gone is `EPIPE`, never a signal), as do Unix ones.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[inline]
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        retry(|| Ok(rustix::io::read(self, &mut *buf)?))
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn read_vectored(&self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        retry(|| Ok(rustix::io::readv(self, bufs)?))
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[inline]
    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        retry(|| Ok(rustix::net::send(self, buf, rustix::net::SendFlags::NOSIGNAL)?))
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        retry(|| match self {
            Self::Tcp(s) => { s }.read(buf),
            Self::Unix(s) => { s }.read(buf),
        })
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn read_vectored(&self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        retry(|| match self {
            Self::Tcp(s) => { s }.read_vectored(bufs),
            Self::Unix(s) => { s }.read_vectored(bufs),
        })
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        retry(|| match self {
            Self::Tcp(s) => { s }.write(buf),
            Self::Unix(s) => { s }.write(buf),
        })
    }

    /// The peer, for logs: `IP:PORT`, or `unix` (Unix peers are unnamed).
    pub fn peer(&self) -> String {
        match self {
            Self::Tcp(s) => s.peer_addr().map_or_else(|_| "tcp (peer gone)".into(), |a| a.to_string()),
            Self::Unix(_) => "unix".into(),
        }
    }

    /// Sends FIN: the web server sees the end of the response stream.
    pub(crate) fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Self::Tcp(s) => s.shutdown(Shutdown::Write),
            Self::Unix(s) => s.shutdown(Shutdown::Write),
        }
    }

    /// Non-blocking, and for TCP no Nagle delay (records go out as soon as they are sealed).
    fn prepare(&self) -> io::Result<()> {
        match self {
            Self::Tcp(s) => {
                s.set_nonblocking(true)?;
                let _ = s.set_nodelay(true);
            }
            Self::Unix(s) => s.set_nonblocking(true)?,
        }
        Ok(())
    }
}

/// A connection's peer in a log line ([`Stream::peer`]), looked up only if the line is
/// written.
pub(crate) struct Peer<'a>(pub(crate) &'a Stream);

impl std::fmt::Display for Peer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.peer())
    }
}

impl AsRef<Stream> for Stream {
    fn as_ref(&self) -> &Stream {
        self
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Self::Tcp(s) => s.as_fd(),
            Self::Unix(s) => s.as_fd(),
        }
    }
}

/// What one `accept` gave.
pub(crate) enum Accepted {
    /// A connection, ready to use, and the peer's IP for TCP.
    Conn(Stream, Option<IpAddr>),
    /// Nothing this time, try the next (a failure of that connection only).
    Skip,
}

/// Accepts one connection from a non-blocking listener; errors other than those of the one
/// connection (`WouldBlock`, out of descriptors, ...) are returned.
pub(crate) fn accept(listener: &Listener) -> io::Result<Accepted> {
    let accepted = match listener {
        Listener::Tcp(l) => l.accept().map(|(s, peer)| (Stream::Tcp(s), Some(peer.ip()))),
        Listener::Unix(l, _) => l.accept().map(|(s, _)| (Stream::Unix(s), None)),
    };
    match accepted {
        Ok((stream, peer)) => {
            Ok(if stream.prepare().is_ok() { Accepted::Conn(stream, peer) } else { Accepted::Skip })
        }
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::Interrupted
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::PermissionDenied
            ) =>
        {
            Ok(Accepted::Skip)
        }
        Err(e) => Err(e),
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

/// What a connection's engine shares with its entry in the runtime: the socket, the
/// engine's status (for the timeouts), the readiness flags, and whether output is stuck.
#[derive(Debug)]
pub(crate) struct ConnIo<S> {
    /// The binding's socket: a [`Stream`], perhaps with its registration.
    pub(crate) socket: S,
    pub(crate) status: ConnectionStatus,
    scratch: Scratch,
    write_blocked: Cell<bool>,
    /// The socket may have input (or EOF, or an error) to read.
    readable: Cell<bool>,
    /// The peer closed its side or the socket failed: reading never waits again.
    read_closed: Cell<bool>,
    /// The socket may take output.
    writable: Cell<bool>,
    /// The poller reports the peer's FIN, so a short read or write may clear a flag.
    short_clears: bool,
    /// The server's counters (bytes in and out).
    counters: Arc<Counters>,
    /// Whether the engine holds request memory, and the runtime's recall of it.
    pub(crate) lease: Lease,
    /// When the engine's running requests next need a poll (request timeout, slow log).
    pub(crate) timer: RequestTimer,
    /// Input was read since the runtime last looked ([`Self::take_input_seen`]).
    input_seen: Cell<bool>,
    /// No input was read yet: the peer connected and its first request is on its way
    /// (the graceful shutdown serves it rather than closing the connection under it).
    fresh: Cell<bool>,
}

impl<S: AsRef<Stream>> ConnIo<S> {
    pub(crate) fn new(socket: S, scratch: Scratch, counters: Arc<Counters>, short_clears: bool) -> Self {
        Self {
            counters,
            lease: Lease::default(),
            timer: RequestTimer::default(),
            input_seen: Cell::new(false),
            fresh: Cell::new(true),
            socket,
            status: ConnectionStatus::new(),
            scratch,
            write_blocked: Cell::new(false),
            readable: Cell::new(true),
            read_closed: Cell::new(false),
            writable: Cell::new(true),
            short_clears,
        }
    }

    pub(crate) fn stream(&self) -> &Stream {
        self.socket.as_ref()
    }

    /// Whether the last write found the socket full (the peer is not reading).
    pub(crate) fn write_blocked(&self) -> bool {
        self.write_blocked.get()
    }

    /// Takes note of a readiness event of this socket.
    pub(crate) fn note_event(&self, event: Event) {
        if event.readable || event.read_closed {
            self.readable.set(true);
        }
        if event.read_closed {
            self.read_closed.set(true);
        }
        if event.writable {
            self.writable.set(true);
        }
    }

    /// Whether the engine read input since the last call (so it was not at rest all along).
    pub(crate) fn take_input_seen(&self) -> bool {
        self.input_seen.replace(false)
    }

    /// Whether nothing was read from the peer yet (a connection just accepted).
    pub(crate) fn is_fresh(&self) -> bool {
        self.fresh.get()
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
        for _ in 0..max_reads {
            match self.stream().read(&mut scratch) {
                Ok(0) => return Drain::Done,
                Ok(n) if n < scratch.len() && self.short_clears && !self.read_closed.get() => {
                    self.readable.set(false);
                    return Drain::Blocked;
                }
                Ok(_) => {}
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
    #[inline]
    fn read_some(&self, buf: &mut [u8]) -> io::Result<(usize, usize, bool)> {
        let skip = self.status.discardable();
        if skip < MIN_DISCARD {
            let n = self.stream().read(buf)?;
            Counters::add(&self.counters.bytes_in, n);
            return Ok((n, n, n < buf.len()));
        }
        let mut scratch = self.scratch.borrow_mut();
        let skip = skip.min(scratch.len());
        let n = self
            .stream()
            .read_vectored(&mut [IoSliceMut::new(&mut scratch[..skip]), IoSliceMut::new(buf)])?;
        self.status.discard(n.min(skip));
        Counters::add(&self.counters.bytes_in, n);
        Ok((n, n.saturating_sub(skip), n < skip + buf.len()))
    }
}

/// The read half handed to the engine (by value: a `&mut` would add a forwarding future).
#[derive(Debug)]
pub(crate) struct Reader<'a, S>(pub(crate) &'a ConnIo<S>);

impl<S> Clone for Reader<'_, S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S> Copy for Reader<'_, S> {}

/// The write half handed to the engine.
#[derive(Debug)]
pub(crate) struct Writer<'a, S>(pub(crate) &'a ConnIo<S>);

impl<S> Clone for Writer<'_, S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S> Copy for Writer<'_, S> {}

impl<S> ErrorType for Reader<'_, S> {
    type Error = io::Error;
}

impl<S> ErrorType for Writer<'_, S> {
    type Error = io::Error;
}

impl<S: AsRef<Stream>> Read for Reader<'_, S> {
    // The `poll_fn` itself, not an `async fn` around it: no state machine per call.
    #[inline]
    fn read(&mut self, buf: &mut [u8]) -> impl Future<Output = Result<usize, io::Error>> {
        let io = self.0;
        poll_fn(move |_| {
            loop {
                if !io.may_read() {
                    return Poll::Pending;
                }
                match io.read_some(buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        io.readable.set(false);
                        return Poll::Pending;
                    }
                    Err(e) => return Poll::Ready(Err(e)),
                    // End of input.
                    Ok((0, _, _)) => return Poll::Ready(Ok(0)),
                    Ok((_, n, short)) => {
                        if short && io.short_clears {
                            io.readable.set(false);
                        }
                        if n > 0 {
                            io.input_seen.set(true);
                            io.fresh.set(false);
                            return Poll::Ready(Ok(n));
                        }
                        // Only skipped bytes: read on (or wait for more).
                    }
                }
            }
        })
    }
}

impl<S: AsRef<Stream>> Write for Writer<'_, S> {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> impl Future<Output = Result<usize, io::Error>> {
        let io = self.0;
        poll_fn(move |_| {
            if !io.writable.get() {
                io.write_blocked.set(true);
                return Poll::Pending;
            }
            match io.stream().write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    io.writable.set(false);
                    io.write_blocked.set(true);
                    Poll::Pending
                }
                Ok(n) => {
                    Counters::add(&io.counters.bytes_out, n);
                    if n > 0 && n < buf.len() {
                        io.writable.set(false);
                    }
                    io.write_blocked.set(false);
                    Poll::Ready(Ok(n))
                }
                Err(e) => {
                    io.write_blocked.set(false);
                    Poll::Ready(Err(e))
                }
            }
        })
    }

    /// Sockets have no user-space buffer: every accepted byte is with the kernel.
    #[inline]
    fn flush(&mut self) -> impl Future<Output = Result<(), io::Error>> {
        std::future::ready(Ok(()))
    }
}

/// An epoll fd's events as the runtime reads them (Linux): the bindings that own their
/// epoll fd (mio's `Server::run`, the `polling` loops) wait on it with this rather than
/// through their poller library, which costs more per wait (libc's cancellation-point
/// wrapper, polling's timerfd and notifier).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub struct EpollEvents {
    list: Vec<rustix::event::epoll::Event>,
}

#[cfg(any(target_os = "linux", target_os = "android"))]
impl std::fmt::Debug for EpollEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpollEvents").field("len", &self.list.len()).finish_non_exhaustive()
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
impl EpollEvents {
    /// Room for `capacity` events per wait.
    pub fn with_capacity(capacity: usize) -> Self {
        Self { list: Vec::with_capacity(capacity) }
    }

    /// Waits at most `timeout` (`None`: until an event; rounded up to whole milliseconds)
    /// for events of `epoll`; true if the buffer was filled (more may be waiting). An
    /// interrupted wait returns no events.
    pub fn wait(&mut self, epoll: impl AsFd, timeout: Option<std::time::Duration>) -> io::Result<bool> {
        use rustix::event::epoll;
        // Beyond what a `Timespec` holds, no timeout (the timers are years away then).
        let timeout = timeout.and_then(|t| rustix::event::Timespec::try_from(t).ok());
        self.list.clear();
        match epoll::wait(epoll, rustix::buffer::spare_capacity(&mut self.list), timeout.as_ref()) {
            Ok(_) => Ok(self.list.len() == self.list.capacity()),
            Err(rustix::io::Errno::INTR) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The events of the last wait: each one's data (the key it was registered with) and
    /// what it says, read from epoll's flags as mio reads them.
    pub fn iter(&self) -> impl Iterator<Item = (u64, Event)> + '_ {
        use rustix::event::epoll::EventFlags;
        self.list.iter().map(|event| {
            let flags = event.flags;
            let failed = flags.contains(EventFlags::ERR);
            let read_closed = flags.contains(EventFlags::HUP)
                || flags.contains(EventFlags::IN | EventFlags::RDHUP)
                || failed;
            let writable = flags.contains(EventFlags::OUT) || flags.contains(EventFlags::HUP) || failed;
            let readable = flags.intersects(EventFlags::IN | EventFlags::PRI) || read_closed;
            (event.data.u64(), Event { readable, writable, read_closed })
        })
    }
}
