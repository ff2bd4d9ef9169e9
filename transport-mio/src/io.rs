//! The socket seen through `embedded-io-async`: each call tries the non-blocking syscall and
//! returns `Pending` on `WouldBlock`, so readiness never surfaces as an error.
//!
//! No waker is stored: the loop polls a connection's future on every readiness event of its
//! token, and every poll retries the syscall, so an edge consumed while the driver was not
//! reading (input buffer full) is never lost.

use std::cell::Cell;
use std::future::poll_fn;
use std::io::{self, Read as _, Write as _};
use std::net::Shutdown;
use std::task::Poll;

use embedded_io_async::{ErrorType, Read, Write};
use ember_fcgi_core::ConnectionStatus;
use mio::event::Source;
use mio::net::{TcpStream, UnixStream};
use mio::{Interest, Registry, Token};

/// An accepted connection, TCP or Unix.
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => (&*s).read(buf),
            Self::Unix(s) => (&*s).read(buf),
        }
    }

    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => (&*s).write(buf),
            Self::Unix(s) => (&*s).write(buf),
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

    pub(crate) fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            Self::Tcp(s) => s.deregister(registry),
            Self::Unix(s) => s.deregister(registry),
        }
    }

    /// Reads and throws away input, at most `max_reads` reads.
    pub(crate) fn discard_input(&self, max_reads: usize) -> Drain {
        let mut scratch = [0u8; 2048];
        let mut reads = 0;
        while reads < max_reads {
            match self.read(&mut scratch) {
                Ok(0) => return Drain::Done,
                Ok(_) => reads += 1,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Drain::Blocked,
                Err(_) => return Drain::Done,
            }
        }
        Drain::More
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
    write_blocked: Cell<bool>,
}

impl ConnIo {
    pub(crate) fn new(stream: Stream) -> Self {
        Self { stream, status: ConnectionStatus::new(), write_blocked: Cell::new(false) }
    }

    /// Whether the last write found the socket full (the peer is not reading).
    pub(crate) fn write_blocked(&self) -> bool {
        self.write_blocked.get()
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
        poll_fn(|_| {
            loop {
                match self.0.stream.read(buf) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                    other => return Poll::Ready(other),
                }
            }
        })
        .await
    }
}

impl Write for Writer<'_> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, io::Error> {
        poll_fn(|_| {
            loop {
                match self.0.stream.write(buf) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.0.write_blocked.set(true);
                        return Poll::Pending;
                    }
                    other => {
                        self.0.write_blocked.set(false);
                        return Poll::Ready(other);
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
