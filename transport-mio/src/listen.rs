//! The listening socket in the loop: the host's std listener, duplicated into mio's type.
//!
//! `ember_fcgi_host::Listener` removes its Unix socket file when dropped, so it is kept
//! alongside the mio listener (a duplicate of the same socket) until accepting stops.

use std::io;
use std::net::IpAddr;

use ember_fcgi_host::Listener;
use mio::event::Source;
use mio::{Interest, Registry, Token};

use crate::io::Stream;

/// The accepting side of a server, registered for readable events.
#[derive(Debug)]
pub(crate) struct Acceptor {
    mio: MioListener,
    /// Owns the socket file of a Unix listener; dropped when accepting stops.
    _host: Listener,
}

#[derive(Debug)]
enum MioListener {
    Tcp(mio::net::TcpListener),
    Unix(mio::net::UnixListener),
}

impl Acceptor {
    /// Duplicates the host listener's socket into a mio listener.
    pub(crate) fn new(host: Listener) -> io::Result<Self> {
        let mio = match &host {
            Listener::Tcp(l) => MioListener::Tcp(mio::net::TcpListener::from_std(l.try_clone()?)),
            Listener::Unix(l, _) => MioListener::Unix(mio::net::UnixListener::from_std(l.try_clone()?)),
        };
        Ok(Self { mio, _host: host })
    }

    /// Where it listens, for logs.
    pub(crate) fn describe(&self) -> String {
        self._host.describe()
    }

    pub(crate) fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        match &mut self.mio {
            MioListener::Tcp(l) => l.register(registry, token, Interest::READABLE),
            MioListener::Unix(l) => l.register(registry, token, Interest::READABLE),
        }
    }

    pub(crate) fn deregister(&mut self, registry: &Registry) {
        // Closing the socket right after removes it from the poll anyway.
        let _ = match &mut self.mio {
            MioListener::Tcp(l) => l.deregister(registry),
            MioListener::Unix(l) => l.deregister(registry),
        };
    }

    /// Accepts one connection: the stream, and the peer's IP for TCP.
    pub(crate) fn accept(&self) -> io::Result<(Stream, Option<IpAddr>)> {
        match &self.mio {
            MioListener::Tcp(l) => {
                let (stream, addr) = l.accept()?;
                Ok((Stream::Tcp(stream), Some(addr.ip())))
            }
            MioListener::Unix(l) => {
                let (stream, _) = l.accept()?;
                Ok((Stream::Unix(stream), None))
            }
        }
    }
}
