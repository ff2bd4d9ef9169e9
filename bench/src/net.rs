//! Address parsing plus TCP/Unix stream and listener wrappers over mio, so the
//! event loops are written once for both transports.

use std::io::{self, IoSlice, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use mio::event::Source;
use mio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use mio::{Interest, Registry, Token};

/// Where to connect or listen: `HOST:PORT`, `[v6]:PORT` or `unix:PATH`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Addr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl Addr {
    /// Parse (and resolve, taking the first result) an address argument.
    pub fn parse(s: &str) -> Result<Addr, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("empty unix socket path".into());
            }
            return Ok(Addr::Unix(path.into()));
        }
        s.to_socket_addrs()
            .map_err(|e| format!("bad address {s:?}: {e}"))?
            .next()
            .map(Addr::Tcp)
            .ok_or_else(|| format!("address {s:?} resolved to nothing"))
    }
}

impl std::fmt::Display for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Addr::Tcp(a) => write!(f, "{a}"),
            Addr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// A non-blocking connected stream of either kind.
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    /// Start a non-blocking connect; completion is signalled by a writable event.
    pub fn connect(addr: &Addr) -> io::Result<Stream> {
        match addr {
            Addr::Tcp(a) => {
                let s = TcpStream::connect(*a)?;
                s.set_nodelay(true)?;
                Ok(Stream::Tcp(s))
            }
            Addr::Unix(p) => UnixStream::connect(p).map(Stream::Unix),
        }
    }

    /// After a writable event on a connecting stream: `Ok(true)` if connected,
    /// `Ok(false)` if still in progress, `Err` if the connect failed.
    pub fn check_connected(&self) -> io::Result<bool> {
        let (err, peer) = match self {
            Stream::Tcp(s) => (s.take_error()?, s.peer_addr().map(|_| ())),
            Stream::Unix(s) => (s.take_error()?, s.peer_addr().map(|_| ())),
        };
        if let Some(e) = err {
            return Err(e);
        }
        match peer {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write_vectored(bufs),
            Stream::Unix(s) => s.write_vectored(bufs),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Delegate `mio::event::Source` to the inner socket of an enum.
macro_rules! delegate_source {
    ($ty:ident) => {
        impl Source for $ty {
            fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
                match self {
                    $ty::Tcp(s) => s.register(r, t, i),
                    $ty::Unix(s) => s.register(r, t, i),
                }
            }
            fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
                match self {
                    $ty::Tcp(s) => s.reregister(r, t, i),
                    $ty::Unix(s) => s.reregister(r, t, i),
                }
            }
            fn deregister(&mut self, r: &Registry) -> io::Result<()> {
                match self {
                    $ty::Tcp(s) => s.deregister(r),
                    $ty::Unix(s) => s.deregister(r),
                }
            }
        }
    };
}
delegate_source!(Stream);
delegate_source!(Listener);

/// A non-blocking listener of either kind.
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    /// Bind; a stale Unix socket file at the path is removed first.
    pub fn bind(addr: &Addr) -> io::Result<Listener> {
        match addr {
            Addr::Tcp(a) => TcpListener::bind(*a).map(Listener::Tcp),
            Addr::Unix(p) => {
                use std::os::unix::fs::FileTypeExt;
                if std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_socket()) {
                    std::fs::remove_file(p)?;
                }
                UnixListener::bind(p).map(Listener::Unix)
            }
        }
    }

    /// The bound address (with the real port when port 0 was asked for).
    pub fn local_addr(&self, asked: &Addr) -> io::Result<Addr> {
        match self {
            Listener::Tcp(l) => l.local_addr().map(Addr::Tcp),
            Listener::Unix(_) => Ok(asked.clone()),
        }
    }

    /// Accept one connection (`WouldBlock` when none is pending).
    pub fn accept(&self) -> io::Result<Stream> {
        match self {
            Listener::Tcp(l) => {
                let (s, _) = l.accept()?;
                s.set_nodelay(true)?;
                Ok(Stream::Tcp(s))
            }
            Listener::Unix(l) => l.accept().map(|(s, _)| Stream::Unix(s)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_addrs() {
        assert_eq!(Addr::parse("127.0.0.1:9000").unwrap(), Addr::Tcp("127.0.0.1:9000".parse().unwrap()));
        assert_eq!(Addr::parse("[::1]:80").unwrap(), Addr::Tcp("[::1]:80".parse().unwrap()));
        assert_eq!(Addr::parse("unix:/tmp/x.sock").unwrap(), Addr::Unix("/tmp/x.sock".into()));
        assert!(Addr::parse("unix:").is_err());
        assert!(Addr::parse("nope").is_err());
    }
}
