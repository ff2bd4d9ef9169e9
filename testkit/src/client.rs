//! A blocking FastCGI client over TCP or a Unix socket: sends bytes as given and reads
//! records back through a [`Framer`], assembling replies with the framing checked.
//! Management records (id 0) that arrive while a reply is read are kept in
//! [`Client::management`].

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::decode::Framer;
use crate::nv::decode_pairs;
use crate::reply::{Record, Reply, ReplyBuilder, ReplyReader};
use crate::wire::{GET_VALUES_RESULT, RequestSpec, get_values_bytes, request_bytes};

/// Every client read gives up after this long; no test should ever wait it out.
pub const READ_TIMEOUT: Duration = Duration::from_secs(20);

/// A connected TCP or Unix stream.
#[derive(Debug)]
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(match self {
            Self::Tcp(s) => Self::Tcp(s.try_clone()?),
            Self::Unix(s) => Self::Unix(s.try_clone()?),
        })
    }

    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Self::Tcp(s) => s.shutdown(how),
            Self::Unix(s) => s.shutdown(how),
        }
    }

    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Self::Tcp(s) => s.set_read_timeout(t),
            Self::Unix(s) => s.set_read_timeout(t),
        }
    }

    pub fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Self::Tcp(s) => s.set_write_timeout(t),
            Self::Unix(s) => s.set_write_timeout(t),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => s.read(buf),
            Self::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => s.write(buf),
            Self::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A blocking FastCGI client connection.
#[derive(Debug)]
pub struct Client {
    pub stream: Stream,
    framer: Framer,
    /// Management records (request id 0) received while reading replies.
    pub management: Vec<Record>,
}

impl Client {
    /// Wraps a connected stream (read timeout [`READ_TIMEOUT`]).
    pub fn new(stream: Stream) -> Self {
        stream.set_read_timeout(Some(READ_TIMEOUT)).expect("set_read_timeout");
        Self { stream, framer: Framer::new(), management: Vec::new() }
    }

    /// Connects over TCP, Nagle off.
    pub fn tcp(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream.set_nodelay(true).expect("set_nodelay");
        Self::new(Stream::Tcp(stream))
    }

    /// Same as [`Client::tcp`].
    pub fn connect(addr: SocketAddr) -> Self {
        Self::tcp(addr)
    }

    pub fn unix(path: &Path) -> Self {
        let stream = UnixStream::connect(path).unwrap_or_else(|e| panic!("connect {}: {e}", path.display()));
        Self::new(Stream::Unix(stream))
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Sends without panicking (the server may have closed the connection already).
    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Sends `bytes` one byte per write, pausing `pause` between writes.
    pub fn send_bytewise(&mut self, bytes: &[u8], pause: Duration) {
        for b in bytes {
            self.stream.write_all(std::slice::from_ref(b)).expect("send one byte");
            std::thread::sleep(pause);
        }
    }

    /// Closes the sending side (the server reads EOF).
    pub fn shutdown_write(&self) {
        self.stream.shutdown(Shutdown::Write).expect("shutdown");
    }

    /// The next record; `None` at EOF. A record cut short by EOF is an `UnexpectedEof`
    /// error; a record of another version fails the test.
    pub fn try_record(&mut self) -> io::Result<Option<Record>> {
        loop {
            if let Some(r) = self.framer.next_record().unwrap_or_else(|e| panic!("from the server: {e}")) {
                return Ok(Some(r));
            }
            match self.stream.read(self.framer.spare()) {
                Ok(0) if self.framer.buffered() == 0 => return Ok(None),
                Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "record cut short")),
                Ok(n) => self.framer.filled(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    pub fn record(&mut self) -> Record {
        self.try_record().expect("read record").expect("connection closed before a record")
    }

    /// Reads records up to the END_REQUEST of `id`; `None` if the connection closed first.
    /// A record for another request, or a broken framing rule, fails the test.
    pub fn try_reply(&mut self, id: u16) -> io::Result<Option<Reply>> {
        let mut reader = ReplyReader::new(id);
        loop {
            let Some(r) = self.try_record()? else { return Ok(None) };
            if let Some(reply) = reader.take(r, &mut self.management) {
                return Ok(Some(reply));
            }
        }
    }

    pub fn reply(&mut self, id: u16) -> Reply {
        self.try_reply(id).expect("read reply").expect("connection closed before END_REQUEST")
    }

    /// Reads the interleaved replies of several requests, up to each one's END_REQUEST.
    pub fn replies(&mut self, ids: &[u16]) -> Vec<Reply> {
        let mut builders = vec![ReplyBuilder::default(); ids.len()];
        while builders.iter().any(|b| !b.is_done()) {
            let r = self.record();
            if r.id == 0 {
                self.management.push(r);
                continue;
            }
            let k = ids.iter().position(|&id| id == r.id).unwrap_or_else(|| panic!("unexpected {r:?}"));
            builders[k].add(r).unwrap_or_else(|e| panic!("request {}: {e}", ids[k]));
        }
        builders.into_iter().map(ReplyBuilder::into_reply).collect()
    }

    /// Sends a whole request (id 1) and reads its reply.
    pub fn request(&mut self, keep_conn: bool, script: &str, query: &str, body: &[u8]) -> Reply {
        self.send(&request_bytes(1, keep_conn, script, query, body));
        self.reply(1)
    }

    /// One keep-conn request without a body (id 1), checked complete; its body as text.
    pub fn get(&mut self, script: &str, query: &str) -> String {
        let reply = self.request(true, script, query, b"");
        assert_eq!(reply.protocol_status, crate::wire::REQUEST_COMPLETE, "{reply:?}");
        reply.body_str()
    }

    /// Sends the request `spec` describes and reads its reply.
    pub fn roundtrip<P: AsRef<[u8]>>(&mut self, spec: &RequestSpec<'_, P>) -> Reply {
        self.send(&spec.encode());
        self.reply(spec.id)
    }

    /// GET_VALUES for `names` (no request in flight); the pairs answered.
    pub fn get_values(&mut self, names: &[&str]) -> Vec<(String, String)> {
        self.send(&get_values_bytes(names));
        let r = self.record();
        assert_eq!((r.kind, r.id), (GET_VALUES_RESULT, 0), "{r:?}");
        decode_pairs(&r.content)
    }

    /// Whether the server closed the connection (EOF or reset) with nothing more sent.
    pub fn closed_by_server(&mut self) -> bool {
        match self.try_record() {
            Ok(None) => true,
            Ok(Some(r)) => panic!("expected the connection to close, got {r:?}"),
            Err(e) => matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe),
        }
    }
}

/// One request without KEEP_CONN on a fresh TCP connection; checks the server then closes
/// the connection, and returns the reply.
pub fn get_once(addr: SocketAddr, script: &str, query: &str) -> Reply {
    let mut c = Client::tcp(addr);
    let reply = c.request(false, script, query, b"");
    assert!(c.closed_by_server(), "the server closes after a request without KEEP_CONN");
    reply
}
