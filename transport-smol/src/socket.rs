//! A connection's non-blocking socket, TCP or Unix, behind one type (so every connection
//! of a loop is the same future type).

use std::io::{self, IoSliceMut, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;

/// An accepted connection.
#[derive(Debug)]
pub(crate) enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Socket {
    /// Non-blocking, and for TCP no Nagle delay (a response's last records are small).
    pub(crate) fn prepare(&self) -> io::Result<()> {
        match self {
            Self::Tcp(s) => {
                s.set_nonblocking(true)?;
                let _ = s.set_nodelay(true);
            }
            Self::Unix(s) => s.set_nonblocking(true)?,
        }
        Ok(())
    }

    /// One `read` syscall (retried on EINTR); `WouldBlock` when nothing is there.
    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let result = match self {
                Self::Tcp(s) => { s }.read(buf),
                Self::Unix(s) => { s }.read(buf),
            };
            match result {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }

    /// One `readv` syscall (retried on EINTR), filling `bufs` in order.
    pub(crate) fn read_vectored(&self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        loop {
            let result = match self {
                Self::Tcp(s) => { s }.read_vectored(bufs),
                Self::Unix(s) => { s }.read_vectored(bufs),
            };
            match result {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }

    /// One `write` syscall (retried on EINTR); `WouldBlock` when the send buffer is full.
    pub(crate) fn write(&self, buf: &[u8]) -> io::Result<usize> {
        loop {
            let result = match self {
                Self::Tcp(s) => { s }.write(buf),
                Self::Unix(s) => { s }.write(buf),
            };
            match result {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }

    /// The peer, for logs: `IP:PORT`, or `unix` (Unix peers are unnamed).
    pub(crate) fn peer(&self) -> String {
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
}

impl AsFd for Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Self::Tcp(s) => s.as_fd(),
            Self::Unix(s) => s.as_fd(),
        }
    }
}
