//! Test support: a small blocking FastCGI client (record encoding and parsing), the test
//! application served by the server under test, and a harness that runs a server on a
//! thread and waits on its counters.
#![allow(dead_code)]

use std::io::{self, Read as IoRead, Write as IoWrite};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ember_fcgi_core::ConnectionBuffers;
use ember_fcgi_core::prelude::*;
use ember_fcgi_smol::{Limits, Listen, Server, ShutdownHandle, Stats, StatsSnapshot};

// ---- wire -------------------------------------------------------------------------------

pub const BEGIN_REQUEST: u8 = 1;
pub const ABORT_REQUEST: u8 = 2;
pub const END_REQUEST: u8 = 3;
pub const PARAMS: u8 = 4;
pub const STDIN: u8 = 5;
pub const STDOUT: u8 = 6;
pub const STDERR: u8 = 7;
pub const GET_VALUES: u8 = 9;
pub const GET_VALUES_RESULT: u8 = 10;
pub const KEEP_CONN: u8 = 1;
pub const MAX_CONTENT: usize = 0xffff;

/// Appends one record, padded to 8 bytes as nginx does.
pub fn push_record(out: &mut Vec<u8>, kind: u8, id: u16, content: &[u8]) {
    assert!(content.len() <= MAX_CONTENT);
    let padding = (8 - content.len() % 8) % 8;
    let [id0, id1] = id.to_be_bytes();
    let [l0, l1] = (content.len() as u16).to_be_bytes();
    out.extend_from_slice(&[1, kind, id0, id1, l0, l1, padding as u8, 0]);
    out.extend_from_slice(content);
    out.extend_from_slice(&[0; 8][..padding]);
}

/// Appends a stream's records (content cut at 65535 bytes); no terminator.
pub fn push_stream(out: &mut Vec<u8>, kind: u8, id: u16, data: &[u8]) {
    for chunk in data.chunks(MAX_CONTENT) {
        push_record(out, kind, id, chunk);
    }
}

fn push_nv_len(out: &mut Vec<u8>, len: usize) {
    if len < 128 {
        out.push(len as u8);
    } else {
        out.extend_from_slice(&(len as u32 | 1 << 31).to_be_bytes());
    }
}

/// Encodes name-value pairs (PARAMS / GET_VALUES content).
pub fn encode_pairs(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in pairs {
        push_nv_len(&mut out, name.len());
        push_nv_len(&mut out, value.len());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// Decodes name-value pairs.
pub fn decode_pairs(mut data: &[u8]) -> Vec<(String, String)> {
    fn len(data: &mut &[u8]) -> usize {
        if data[0] < 128 {
            let n = data[0] as usize;
            *data = &data[1..];
            n
        } else {
            let n = u32::from_be_bytes([data[0] & 0x7f, data[1], data[2], data[3]]) as usize;
            *data = &data[4..];
            n
        }
    }
    let mut pairs = Vec::new();
    while !data.is_empty() {
        let (n, v) = (len(&mut data), len(&mut data));
        let name = String::from_utf8_lossy(&data[..n]).into_owned();
        let value = String::from_utf8_lossy(&data[n..n + v]).into_owned();
        data = &data[n + v..];
        pairs.push((name, value));
    }
    pairs
}

/// BEGIN_REQUEST for the responder role.
pub fn push_begin(out: &mut Vec<u8>, id: u16, keep_conn: bool) {
    push_record(out, BEGIN_REQUEST, id, &[0, 1, u8::from(keep_conn), 0, 0, 0, 0, 0]);
}

/// The params of a request for `script?query` with a body of `content_length` bytes.
pub fn params(script: &str, query: &str, content_length: usize) -> Vec<u8> {
    let length = content_length.to_string();
    encode_pairs(&[
        ("GATEWAY_INTERFACE", "CGI/1.1"),
        ("REQUEST_METHOD", if content_length > 0 { "POST" } else { "GET" }),
        ("SCRIPT_NAME", script),
        ("QUERY_STRING", query),
        ("CONTENT_LENGTH", &length),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("REMOTE_ADDR", "127.0.0.1"),
    ])
}

/// A whole request: BEGIN, PARAMS, STDIN (with terminators).
pub fn request_bytes(id: u16, keep_conn: bool, script: &str, query: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    push_begin(&mut out, id, keep_conn);
    push_stream(&mut out, PARAMS, id, &params(script, query, body.len()));
    push_record(&mut out, PARAMS, id, b"");
    push_stream(&mut out, STDIN, id, body);
    push_record(&mut out, STDIN, id, b"");
    out
}

/// One record received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub kind: u8,
    pub id: u16,
    pub content: Vec<u8>,
}

/// What the application answered to one request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reply {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub app_status: u32,
    pub protocol_status: u8,
}

impl Reply {
    /// The body after the CGI head.
    pub fn body(&self) -> &[u8] {
        let at = self.stdout.windows(4).position(|w| w == b"\r\n\r\n").expect("no CGI head in stdout");
        &self.stdout[at + 4..]
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(self.body()).into_owned()
    }

    /// The `Status:` code (200 when absent).
    pub fn status(&self) -> u16 {
        let head = String::from_utf8_lossy(&self.stdout);
        head.lines()
            .take_while(|l| !l.is_empty())
            .find_map(|l| l.strip_prefix("Status: "))
            .and_then(|s| s.get(..3))
            .map_or(200, |s| s.parse().expect("bad status"))
    }
}

// ---- client -----------------------------------------------------------------------------

/// A TCP or Unix stream to the server.
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
}

impl IoRead for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => s.read(buf),
            Self::Unix(s) => s.read(buf),
        }
    }
}

impl IoWrite for Stream {
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

/// Reads every client socket gives up after this long (no test should ever wait it out).
pub const READ_TIMEOUT: Duration = Duration::from_secs(20);

/// A blocking FastCGI client connection with a record reader.
#[derive(Debug)]
pub struct Client {
    pub stream: Stream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Client {
    pub fn new(stream: Stream) -> Self {
        stream.set_read_timeout(Some(READ_TIMEOUT)).expect("set_read_timeout");
        Self { stream, buf: vec![0; 128 * 1024], start: 0, end: 0 }
    }

    pub fn tcp(addr: SocketAddr) -> Self {
        Self::new(Stream::Tcp(TcpStream::connect(addr).expect("connect")))
    }

    pub fn unix(path: &Path) -> Self {
        Self::new(Stream::Unix(UnixStream::connect(path).expect("connect unix")))
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Fills at least `n` buffered bytes; false at EOF (or a reset) before that.
    fn fill(&mut self, n: usize) -> io::Result<bool> {
        if self.end - self.start >= n {
            return Ok(true);
        }
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        while self.end < n {
            match self.stream.read(&mut self.buf[self.end..]) {
                Ok(0) => return Ok(false),
                Ok(k) => self.end += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// The next record; `None` when the server closed the connection.
    pub fn try_record(&mut self) -> io::Result<Option<Record>> {
        if !self.fill(8)? {
            return Ok(None);
        }
        let h = &self.buf[self.start..self.start + 8];
        assert_eq!(h[0], 1, "record version");
        let (kind, id) = (h[1], u16::from_be_bytes([h[2], h[3]]));
        let len = u16::from_be_bytes([h[4], h[5]]) as usize;
        let total = 8 + len + h[6] as usize;
        if !self.fill(total)? {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "record cut short"));
        }
        let content = self.buf[self.start + 8..self.start + 8 + len].to_vec();
        self.start += total;
        Ok(Some(Record { kind, id, content }))
    }

    pub fn record(&mut self) -> Record {
        self.try_record().expect("read record").expect("connection closed before a record")
    }

    /// Reads the records of request `id` up to its END_REQUEST.
    pub fn try_reply(&mut self, id: u16) -> io::Result<Option<Reply>> {
        let mut reply = Reply::default();
        loop {
            let Some(r) = self.try_record()? else {
                return Ok(None);
            };
            assert_eq!(r.id, id, "record for another request: {r:?}");
            match r.kind {
                STDOUT => reply.stdout.extend_from_slice(&r.content),
                STDERR => reply.stderr.extend_from_slice(&r.content),
                END_REQUEST => {
                    let c = &r.content;
                    reply.app_status = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
                    reply.protocol_status = c[4];
                    return Ok(Some(reply));
                }
                other => panic!("unexpected record type {other}"),
            }
        }
    }

    pub fn reply(&mut self, id: u16) -> Reply {
        self.try_reply(id).expect("read reply").expect("connection closed before END_REQUEST")
    }

    /// Sends a whole request and reads its reply.
    pub fn request(&mut self, keep_conn: bool, script: &str, query: &str, body: &[u8]) -> Reply {
        self.send(&request_bytes(1, keep_conn, script, query, body));
        self.reply(1)
    }

    /// GET_VALUES for `names`; the pairs answered.
    pub fn get_values(&mut self, names: &[&str]) -> Vec<(String, String)> {
        let pairs: Vec<(&str, &str)> = names.iter().map(|n| (*n, "")).collect();
        let mut out = Vec::new();
        push_record(&mut out, GET_VALUES, 0, &encode_pairs(&pairs));
        self.send(&out);
        let r = self.record();
        assert_eq!((r.kind, r.id), (GET_VALUES_RESULT, 0));
        decode_pairs(&r.content)
    }

    /// Whether the server closed the connection (EOF or reset) within the read timeout.
    pub fn closed_by_server(&mut self) -> bool {
        match self.try_record() {
            Ok(None) => true,
            Ok(Some(r)) => panic!("expected the connection to close, got {r:?}"),
            Err(e) => matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe),
        }
    }
}

/// A one-shot request on a new connection (KEEP_CONN off: the server closes after it).
pub fn get(addr: SocketAddr, script: &str, query: &str) -> Reply {
    let mut c = Client::tcp(addr);
    let reply = c.request(false, script, query, b"");
    assert!(c.closed_by_server(), "the server closes after a request without KEEP_CONN");
    reply
}

// ---- data -------------------------------------------------------------------------------

/// FNV-1a, 64 bit, continued from `hash`.
pub fn fnv1a(mut hash: u64, data: &[u8]) -> u64 {
    for &b in data {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

pub const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// Deterministic position-dependent bytes (catches lost, repeated or reordered chunks).
pub fn pattern(offset: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        let x = (offset + i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        *b = (x >> 56) as u8 ^ (x >> 24) as u8;
    }
}

/// `key=value` from a query string.
pub fn query_arg(query: &str, key: &str) -> Option<u64> {
    query.split('&').find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

// ---- the application --------------------------------------------------------------------

/// What the test application saw.
#[derive(Debug)]
pub struct AppState {
    /// Handlers that saw their request aborted (a read or write failed with `Aborted`).
    pub aborted: AtomicU64,
    /// Handlers that started.
    pub started: AtomicU64,
    /// Handlers that returned.
    pub finished: AtomicU64,
    /// `/gate` requests wait for a message here.
    gate: (smol::channel::Sender<()>, smol::channel::Receiver<()>),
}

impl Default for AppState {
    fn default() -> Self {
        Self {
            aborted: AtomicU64::new(0),
            started: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            gate: smol::channel::unbounded(),
        }
    }
}

impl AppState {
    /// Lets one waiting (or future) `/gate` request finish.
    pub fn open_gate(&self) {
        self.gate.0.try_send(()).expect("gate channel open");
    }

    pub fn started(&self) -> u64 {
        self.started.load(Ordering::SeqCst)
    }

    pub fn finished(&self) -> u64 {
        self.finished.load(Ordering::SeqCst)
    }

    pub fn aborted(&self) -> u64 {
        self.aborted.load(Ordering::SeqCst)
    }
}

/// The handler every test serves; routes on SCRIPT_NAME.
#[derive(Clone, Debug, Default)]
pub struct TestApp {
    pub state: Arc<AppState>,
}

impl Handler for TestApp {
    async fn handle(&self, req: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), HandlerError> {
        self.state.started.fetch_add(1, Ordering::SeqCst);
        let result = self.route(req, res).await;
        if result == Err(StreamError::Aborted) {
            self.state.aborted.fetch_add(1, Ordering::SeqCst);
        }
        self.state.finished.fetch_add(1, Ordering::SeqCst);
        Ok(result?)
    }
}

impl TestApp {
    async fn route(&self, req: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), StreamError> {
        let script = req.params().get_str("SCRIPT_NAME").unwrap_or("").to_owned();
        let query = req.params().get_str("QUERY_STRING").unwrap_or("").to_owned();
        let arg = |key: &str, default: u64| query_arg(&query, key).unwrap_or(default);
        match script.as_str() {
            "/hello" => res.send_response(200, content_type::TEXT, b"Hello, World!\n").await,
            "/echo" => {
                res.send_head(200, &[("Content-Type", content_type::OCTET_STREAM)]).await?;
                let mut buf = [0u8; 8192];
                loop {
                    match req.read(&mut buf).await? {
                        0 => return Ok(()),
                        n => res.write_all(&buf[..n]).await?,
                    }
                }
            }
            "/upload" => {
                let (mut len, mut hash) = (0u64, FNV_START);
                let mut buf = [0u8; 16384];
                loop {
                    match req.read(&mut buf).await? {
                        0 => break,
                        n => {
                            len += n as u64;
                            hash = fnv1a(hash, &buf[..n]);
                        }
                    }
                }
                let body = format!("len={len} fnv={hash:016x}\n");
                res.send_response(200, content_type::TEXT, body.as_bytes()).await
            }
            "/download" => {
                let total = arg("n", 0);
                res.send_head(200, &[("Content-Type", content_type::OCTET_STREAM)]).await?;
                let mut buf = vec![0u8; 60_000];
                let mut sent = 0u64;
                while sent < total {
                    let n = buf.len().min((total - sent) as usize);
                    pattern(sent, &mut buf[..n]);
                    res.write_all(&buf[..n]).await?;
                    sent += n as u64;
                }
                Ok(())
            }
            "/ndjson" => {
                let (lines, ms) = (arg("n", 3), arg("ms", 10));
                res.send_head(200, &[("Content-Type", content_type::NDJSON)]).await?;
                for i in 0..lines {
                    smol::Timer::after(Duration::from_millis(ms)).await;
                    res.write_all(format!("{{\"line\":{i}}}\n").as_bytes()).await?;
                    res.flush().await?;
                }
                Ok(())
            }
            "/sleep" => {
                res.send_head(200, &[("Content-Type", content_type::TEXT)]).await?;
                res.write_all(b"started\n").await?;
                res.flush().await?;
                smol::Timer::after(Duration::from_millis(arg("ms", 100))).await;
                res.write_all(b"done\n").await
            }
            "/gate" => {
                // Waits, in the async way, until the test opens the gate.
                res.send_head(200, &[("Content-Type", content_type::TEXT)]).await?;
                res.write_all(b"started\n").await?;
                res.flush().await?;
                let _ = self.state.gate.1.recv().await;
                res.write_all(b"released\n").await
            }
            "/block" => {
                // Blocks its whole thread: only another thread can serve meanwhile.
                res.send_head(200, &[("Content-Type", content_type::TEXT)]).await?;
                res.write_all(b"started\n").await?;
                res.flush().await?;
                std::thread::sleep(Duration::from_millis(arg("ms", 100)));
                let me = format!("done on {:?}\n", std::thread::current().id());
                res.write_all(me.as_bytes()).await
            }
            "/thread" => {
                let me = format!("{:?}", std::thread::current().id());
                res.send_response(200, content_type::TEXT, me.as_bytes()).await
            }
            "/wait-abort" => {
                // Reads the body until the web server aborts the request.
                let mut buf = [0u8; 1024];
                loop {
                    if req.read(&mut buf).await? == 0 {
                        return res.send_response(200, content_type::TEXT, b"not aborted\n").await;
                    }
                }
            }
            "/panic" => panic!("the test handler panics on purpose"),
            _ => res.send_response(404, content_type::TEXT, b"not found\n").await,
        }
    }
}

// ---- harness ----------------------------------------------------------------------------

/// Limits for tests: short lingering so closes are quick.
pub fn test_limits() -> Limits {
    Limits { close_linger: Duration::from_millis(200), ..Limits::default() }
}

/// A server running on its own thread(s); shut down and joined on drop.
#[derive(Debug)]
pub struct Running {
    pub addr: Option<SocketAddr>,
    pub stop: ShutdownHandle,
    pub stats: Stats,
    pub app: TestApp,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl Running {
    /// Runs `server` with `run` (threads = 0) or `run_threads(threads)`.
    pub fn start(server: Server<TestApp>, app: TestApp, threads: usize) -> Self {
        Self::start_with(server, app, threads)
    }

    /// [`Running::start`] for a server with other buffers.
    pub fn start_with<B: ConnectionBuffers + Default + 'static>(
        server: Server<TestApp, B>,
        app: TestApp,
        threads: usize,
    ) -> Self {
        let addr = server.local_addr();
        let stop = server.shutdown_handle();
        let stats = server.stats();
        let thread =
            std::thread::spawn(move || if threads == 0 { server.run() } else { server.run_threads(threads) });
        Self { addr, stop, stats, app, thread: Some(thread) }
    }

    /// Binds `listen` with the test application and runs it on one thread.
    pub fn bind(listen: &Listen, limits: Limits) -> Self {
        let app = TestApp::default();
        let server = Server::bind(listen, app.clone(), limits).expect("bind");
        Self::start(server, app, 0)
    }

    /// A TCP server on 127.0.0.1 (any port).
    pub fn tcp(limits: Limits) -> Self {
        Self::bind(&Listen::Tcp("127.0.0.1:0".parse().unwrap()), limits)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr.expect("a TCP server")
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// Waits until `cond` holds of the counters (panics after 10 s with the counters).
    pub fn wait_for(&self, what: &str, cond: impl Fn(&StatsSnapshot) -> bool) -> StatsSnapshot {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.snapshot();
            if cond(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}: {s:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits until no connection is open (none leaked).
    pub fn wait_idle(&self) -> StatsSnapshot {
        self.wait_for("no open connections", |s| s.open_connections == 0)
    }

    /// Checks the server still answers, then that nothing leaked.
    pub fn check_healthy(&self) {
        let reply = get(self.addr(), "/hello", "");
        assert_eq!(reply.body(), b"Hello, World!\n");
        self.wait_idle();
    }

    /// Shuts down and returns what `run` returned.
    /// Waits until `n` handlers have started.
    pub fn wait_started(&self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.app.state.started() < n {
            assert!(Instant::now() < deadline, "timed out waiting for {n} handlers to start");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    pub fn stop(mut self) -> io::Result<()> {
        self.stop.shutdown();
        self.thread.take().expect("running").join().expect("server thread panicked")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
