//! The listening socket (TCP, Unix path, or inherited fd 0), accepting non-blocking.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd};

use ember_fcgi_host::Listener;

use crate::socket::Socket;

/// A bound listener in non-blocking mode. It keeps the host `Listener`, which removes its
/// Unix socket file when dropped.
#[derive(Debug)]
pub(crate) struct ListenSocket(Listener);

impl ListenSocket {
    pub(crate) fn new(listener: Listener) -> io::Result<Self> {
        match &listener {
            Listener::Tcp(l) => l.set_nonblocking(true)?,
            Listener::Unix(l, _) => l.set_nonblocking(true)?,
        }
        Ok(Self(listener))
    }

    /// Accepts one connection; the peer's IP for TCP, `None` for Unix sockets.
    pub(crate) fn accept(&self) -> io::Result<(Socket, Option<IpAddr>)> {
        match &self.0 {
            Listener::Tcp(l) => l.accept().map(|(s, peer)| (Socket::Tcp(s), Some(peer.ip()))),
            Listener::Unix(l, _) => l.accept().map(|(s, _)| (Socket::Unix(s), None)),
        }
    }

    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        self.0.local_addr()
    }

    pub(crate) fn describe(&self) -> String {
        self.0.describe()
    }
}

impl AsFd for ListenSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.0 {
            Listener::Tcp(l) => l.as_fd(),
            Listener::Unix(l, _) => l.as_fd(),
        }
    }
}

/// Whether an `accept` error concerns only the connection being accepted (try the next).
pub(crate) fn is_per_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::PermissionDenied
    )
}
