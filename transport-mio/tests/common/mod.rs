//! A small blocking FastCGI client, test handlers, and helpers to run a server in a thread.
#![allow(dead_code)]

pub mod counting;

use std::io::{self, Read as IoRead, Write as IoWrite};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ember_fcgi_core::prelude::*;
use ember_fcgi_mio::{Server, ShutdownHandle, Stats, StatsSnapshot};

// ---- wire ------------------------------------------------------------------------------

pub const BEGIN_REQUEST: u8 = 1;
pub const ABORT_REQUEST: u8 = 2;
pub const END_REQUEST: u8 = 3;
pub const PARAMS: u8 = 4;
pub const STDIN: u8 = 5;
pub const STDOUT: u8 = 6;
pub const STDERR: u8 = 7;
pub const GET_VALUES: u8 = 9;
pub const GET_VALUES_RESULT: u8 = 10;
pub const RESPONDER: u16 = 1;
pub const KEEP_CONN: u8 = 1;

/// Appends one record (content at most 65535 bytes), padded to 8 bytes like nginx.
pub fn push_record(out: &mut Vec<u8>, kind: u8, id: u16, content: &[u8]) {
    let len = u16::try_from(content.len()).expect("record content over 65535 bytes");
    let padding = (8 - content.len() % 8) % 8;
    let [i0, i1] = id.to_be_bytes();
    let [l0, l1] = len.to_be_bytes();
    out.extend_from_slice(&[1, kind, i0, i1, l0, l1, padding as u8, 0]);
    out.extend_from_slice(content);
    out.extend_from_slice(&[0; 8][..padding]);
}

/// Appends a stream's content cut into records (no terminator).
pub fn push_stream(out: &mut Vec<u8>, kind: u8, id: u16, content: &[u8]) {
    for chunk in content.chunks(65535) {
        push_record(out, kind, id, chunk);
    }
}

pub fn push_nv(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    for len in [name.len(), value.len()] {
        if len < 128 {
            out.push(len as u8);
        } else {
            out.extend_from_slice(&(len as u32 | 1 << 31).to_be_bytes());
        }
    }
    out.extend_from_slice(name);
    out.extend_from_slice(value);
}

pub fn begin(id: u16, keep_conn: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let [r0, r1] = RESPONDER.to_be_bytes();
    push_record(&mut out, BEGIN_REQUEST, id, &[r0, r1, if keep_conn { KEEP_CONN } else { 0 }, 0, 0, 0, 0, 0]);
    out
}

pub fn params(id: u16, pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut content = Vec::new();
    for (n, v) in pairs {
        push_nv(&mut content, n.as_bytes(), v.as_bytes());
    }
    let mut out = Vec::new();
    push_stream(&mut out, PARAMS, id, &content);
    push_record(&mut out, PARAMS, id, b"");
    out
}

/// BEGIN, PARAMS and the whole STDIN (with its terminator).
pub fn request(id: u16, keep_conn: bool, script: &str, query: &str, body: &[u8]) -> Vec<u8> {
    let len = body.len().to_string();
    let mut out = begin(id, keep_conn);
    out.extend(params(
        id,
        &[
            ("SCRIPT_NAME", script),
            ("QUERY_STRING", query),
            ("REQUEST_METHOD", "POST"),
            ("CONTENT_LENGTH", &len),
        ],
    ));
    push_stream(&mut out, STDIN, id, body);
    push_record(&mut out, STDIN, id, b"");
    out
}

pub fn abort(id: u16) -> Vec<u8> {
    let mut out = Vec::new();
    push_record(&mut out, ABORT_REQUEST, id, b"");
    out
}

pub fn get_values(names: &[&str]) -> Vec<u8> {
    let mut content = Vec::new();
    for n in names {
        push_nv(&mut content, n.as_bytes(), b"");
    }
    let mut out = Vec::new();
    push_record(&mut out, GET_VALUES, 0, &content);
    out
}

/// Parses name-value pairs (GET_VALUES_RESULT content).
pub fn parse_nv(mut b: &[u8]) -> Vec<(String, String)> {
    fn len(b: &mut &[u8]) -> usize {
        if b[0] < 128 {
            let l = b[0] as usize;
            *b = &b[1..];
            l
        } else {
            let l = u32::from_be_bytes([b[0] & 0x7f, b[1], b[2], b[3]]) as usize;
            *b = &b[4..];
            l
        }
    }
    let mut out = Vec::new();
    while !b.is_empty() {
        let n = len(&mut b);
        let v = len(&mut b);
        let name = String::from_utf8_lossy(&b[..n]).into_owned();
        let value = String::from_utf8_lossy(&b[n..n + v]).into_owned();
        b = &b[n + v..];
        out.push((name, value));
    }
    out
}

// ---- connection ------------------------------------------------------------------------

/// A client connection over TCP or a Unix socket.
pub enum Sock {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl IoRead for Sock {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => s.read(buf),
            Self::Unix(s) => s.read(buf),
        }
    }
}

impl IoWrite for Sock {
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

/// A record as received.
#[derive(Debug)]
pub struct Record {
    pub kind: u8,
    pub id: u16,
    pub content: Vec<u8>,
}

/// A response as received.
#[derive(Debug, Default)]
pub struct Reply {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub app_status: u32,
    pub protocol_status: u8,
}

impl Reply {
    pub fn body(&self) -> &[u8] {
        let at = self.stdout.windows(4).position(|w| w == b"\r\n\r\n").map_or(0, |p| p + 4);
        &self.stdout[at..]
    }
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(self.body()).into_owned()
    }
}

pub struct Client {
    pub sock: Sock,
}

impl Client {
    pub fn tcp(addr: SocketAddr) -> Self {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.set_nodelay(true).unwrap();
        Self { sock: Sock::Tcp(s) }
    }

    pub fn unix(path: &Path) -> Self {
        let s = UnixStream::connect(path).expect("connect unix");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Self { sock: Sock::Unix(s) }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.sock.write_all(bytes).expect("send");
    }

    /// The next record, or `None` at EOF (an error such as a reset counts as EOF too).
    pub fn record(&mut self) -> Option<Record> {
        let mut h = [0u8; 8];
        if self.sock.read_exact(&mut h).is_err() {
            return None;
        }
        assert_eq!(h[0], 1, "version");
        let len = u16::from_be_bytes([h[4], h[5]]) as usize;
        let mut content = vec![0; len + h[6] as usize];
        self.sock.read_exact(&mut content).expect("record content");
        content.truncate(len);
        Some(Record { kind: h[1], id: u16::from_be_bytes([h[2], h[3]]), content })
    }

    /// Reads records until END_REQUEST for `id`.
    pub fn reply(&mut self, id: u16) -> Reply {
        self.try_reply(id).expect("connection closed before END_REQUEST")
    }

    pub fn try_reply(&mut self, id: u16) -> Option<Reply> {
        let mut reply = Reply::default();
        loop {
            let r = self.record()?;
            assert_eq!(r.id, id, "record for another request: {r:?}");
            match r.kind {
                STDOUT => reply.stdout.extend_from_slice(&r.content),
                STDERR => reply.stderr.extend_from_slice(&r.content),
                END_REQUEST => {
                    reply.app_status =
                        u32::from_be_bytes([r.content[0], r.content[1], r.content[2], r.content[3]]);
                    reply.protocol_status = r.content[4];
                    return Some(reply);
                }
                k => panic!("unexpected record type {k}"),
            }
        }
    }

    /// One whole request with keep-conn; returns the body.
    pub fn get(&mut self, script: &str, query: &str) -> String {
        self.send(&request(1, true, script, query, b""));
        let reply = self.reply(1);
        assert_eq!(reply.protocol_status, 0);
        reply.body_str()
    }

    /// True if the server closed the connection (EOF or reset) without sending anything.
    pub fn closed_without_reply(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.sock.read(&mut b), Ok(0) | Err(_))
    }
}

// ---- data ------------------------------------------------------------------------------

/// The byte at offset `i` of the test pattern.
pub fn pattern(i: u64) -> u8 {
    (i ^ (i >> 8) ^ (i >> 17)).wrapping_mul(31) as u8
}

pub fn fill_pattern(buf: &mut [u8], offset: u64) {
    for (k, b) in buf.iter_mut().enumerate() {
        *b = pattern(offset + k as u64);
    }
}

/// FNV-1a, 64 bit.
#[derive(Clone, Copy, Debug)]
pub struct Fnv(pub u64);

impl Fnv {
    pub fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
    pub fn update(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }
}

// ---- handlers --------------------------------------------------------------------------

/// Routes on SCRIPT_NAME:
/// - `/hello`: "hello QUERY_STRING".
/// - `/sink`: reads the body, answers "LEN HASH" (FNV-1a of the body).
/// - `/source`: writes QUERY_STRING bytes of the test pattern.
/// - `/wait`: reads the body to its end, answers "done LEN".
/// - `/stderr`: writes to stderr and stdout.
/// - `/fail`: returns an error before writing.
#[derive(Clone, Copy, Debug, Default)]
pub struct TestHandler;

impl Handler for TestHandler {
    async fn handle(&self, req: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), HandlerError> {
        let params = req.params();
        let script = params.script_name().unwrap_or("");
        let query = params.query_string();
        let number: u64 = query.parse().unwrap_or(0);
        let mut line = [0u8; 64];
        if script == "/hello" {
            let text = fmt_into(&mut line, format_args!("hello {query}"));
            res.send_head(200, &[("Content-Type", "text/plain")]).await?;
            return Ok(res.write_all(text).await?);
        }
        let script = match script {
            "/sink" => "/sink",
            "/wait" => "/wait",
            "/source" => "/source",
            "/stderr" => "/stderr",
            "/fail" => "/fail",
            _ => "",
        };
        match script {
            "/sink" | "/wait" => {
                let mut buf = [0u8; 4096];
                let mut fnv = Fnv::new();
                let mut total = 0u64;
                loop {
                    let n = req.read(&mut buf).await?;
                    if n == 0 {
                        break;
                    }
                    total += n as u64;
                    fnv.update(&buf[..n]);
                }
                let text = if script == "/sink" {
                    fmt_into(&mut line, format_args!("{total} {:016x}", fnv.0))
                } else {
                    fmt_into(&mut line, format_args!("done {total}"))
                };
                res.send_head(200, &[("Content-Type", "text/plain")]).await?;
                Ok(res.write_all(text).await?)
            }
            "/source" => {
                let total = number;
                res.send_head(200, &[("Content-Type", "application/octet-stream")]).await?;
                let mut buf = [0u8; 8192];
                let mut sent = 0u64;
                while sent < total {
                    let n = (total - sent).min(buf.len() as u64) as usize;
                    fill_pattern(&mut buf[..n], sent);
                    res.write_all(&buf[..n]).await?;
                    sent += n as u64;
                }
                Ok(())
            }
            "/stderr" => {
                res.stderr().write_all(b"a warning").await?;
                res.send_head(200, &[]).await?;
                Ok(res.write_all(b"ok").await?)
            }
            "/fail" => Err(StreamError::InvalidHeader.into()),
            _ => {
                res.send_head(404, &[]).await?;
                Ok(res.write_all(b"not found").await?)
            }
        }
    }
}

/// Formats into a stack buffer (handlers must not allocate).
pub fn fmt_into<'a>(buf: &'a mut [u8; 64], args: std::fmt::Arguments<'_>) -> &'a [u8] {
    struct W<'b>(&'b mut [u8; 64], usize);
    impl std::fmt::Write for W<'_> {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            let end = self.1 + s.len();
            if end > self.0.len() {
                return Err(std::fmt::Error);
            }
            self.0[self.1..end].copy_from_slice(s.as_bytes());
            self.1 = end;
            Ok(())
        }
    }
    let mut w = W(buf, 0);
    let _ = std::fmt::write(&mut w, args);
    let len = w.1;
    &buf[..len]
}

// ---- running servers -------------------------------------------------------------------

/// A server running on its own thread.
pub struct Running {
    pub addr: Option<SocketAddr>,
    pub stats: Stats,
    pub stop: ShutdownHandle,
    pub thread: Option<JoinHandle<io::Result<()>>>,
}

impl Running {
    pub fn start<H: Handler + Send + 'static>(server: Server<H>) -> Self {
        let addr = server.local_addr();
        let stats = server.stats();
        let stop = server.shutdown_handle();
        let thread = std::thread::spawn(move || server.run());
        Self { addr, stats, stop, thread: Some(thread) }
    }

    pub fn client(&self) -> Client {
        Client::tcp(self.addr.expect("tcp server"))
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// Waits until no connection is open (the client side closed everything).
    pub fn wait_no_connections(&self) {
        wait_until("all connections closed", || self.stats.open_connections() == 0);
    }

    /// Shuts down and waits for `run` to return.
    pub fn stop(mut self) -> StatsSnapshot {
        self.stop.shutdown();
        let thread = self.thread.take().expect("running");
        thread.join().expect("server thread panicked").expect("run failed");
        self.stats.snapshot()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.stop.shutdown();
            let _ = thread.join();
        }
    }
}

/// Polls `cond` every few milliseconds for up to 10 s.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(10), "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Limits with short timeouts for tests.
pub fn test_limits() -> ember_fcgi_mio::Limits {
    ember_fcgi_mio::Limits {
        shutdown_timeout: Duration::from_secs(5),
        close_linger: Duration::from_millis(300),
        ..Default::default()
    }
}

pub fn tcp_server(limits: ember_fcgi_mio::Limits) -> Running {
    let listen = ember_fcgi_mio::Listen::Tcp("127.0.0.1:0".parse().unwrap());
    Running::start(Server::bind(&listen, TestHandler, limits).expect("bind"))
}
