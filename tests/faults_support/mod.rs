//! Support for `tests/faults.rs`: FastCGI records written by hand (so tests can send
//! anything, well-formed or not), a blocking client that reads records back, the test
//! application, and [`Transport`], which starts the same application on the mio or the smol
//! server so every scenario runs, unchanged, on both.
#![allow(dead_code)] // not every helper is used by every scenario

use std::io::{self, Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ember_fcgi::host::{Limits, Listen, WebServerAddrs};
use ember_fcgi::prelude::*;
use ember_fcgi::{Buffers, ConnectionBuffers, DefaultBuffers, Roles};

// ---- wire -------------------------------------------------------------------------------

pub const BEGIN_REQUEST: u8 = 1;
pub const ABORT_REQUEST: u8 = 2;
pub const END_REQUEST: u8 = 3;
pub const PARAMS: u8 = 4;
pub const STDIN: u8 = 5;
pub const STDOUT: u8 = 6;
pub const STDERR: u8 = 7;
pub const DATA: u8 = 8;
pub const GET_VALUES: u8 = 9;
pub const GET_VALUES_RESULT: u8 = 10;
pub const UNKNOWN_TYPE: u8 = 11;

pub const RESPONDER: u16 = 1;
pub const AUTHORIZER: u16 = 2;
pub const FILTER: u16 = 3;

pub const REQUEST_COMPLETE: u8 = 0;
pub const CANT_MPX_CONN: u8 = 1;
pub const OVERLOADED: u8 = 2;
pub const UNKNOWN_ROLE: u8 = 3;

pub const MAX_CONTENT: usize = 0xffff;

/// Appends one record with `padding` bytes of padding (version 1).
pub fn push_padded(out: &mut Vec<u8>, kind: u8, id: u16, content: &[u8], padding: u8) {
    let len = u16::try_from(content.len()).expect("record content over 65535 bytes");
    let [i0, i1] = id.to_be_bytes();
    let [l0, l1] = len.to_be_bytes();
    out.extend_from_slice(&[1, kind, i0, i1, l0, l1, padding, 0]);
    out.extend_from_slice(content);
    out.extend(std::iter::repeat_n(0xAA, usize::from(padding)));
}

/// Appends one record padded to a multiple of 8 bytes, as nginx sends them.
pub fn push_record(out: &mut Vec<u8>, kind: u8, id: u16, content: &[u8]) {
    push_padded(out, kind, id, content, ((8 - content.len() % 8) % 8) as u8);
}

/// Appends a stream's content cut into records of at most 65535 bytes (no terminator).
pub fn push_stream(out: &mut Vec<u8>, kind: u8, id: u16, content: &[u8]) {
    for chunk in content.chunks(MAX_CONTENT) {
        push_record(out, kind, id, chunk);
    }
}

fn push_nv_len(out: &mut Vec<u8>, len: usize) {
    if len < 128 {
        out.push(len as u8);
    } else {
        out.extend_from_slice(&(u32::try_from(len).expect("length") | 1 << 31).to_be_bytes());
    }
}

/// Appends one name-value pair.
pub fn push_nv(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    push_nv_len(out, name.len());
    push_nv_len(out, value.len());
    out.extend_from_slice(name);
    out.extend_from_slice(value);
}

/// Encodes name-value pairs (PARAMS or GET_VALUES content).
pub fn encode_pairs(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in pairs {
        push_nv(&mut out, name.as_bytes(), value.as_bytes());
    }
    out
}

/// Decodes name-value pairs.
pub fn decode_pairs(mut data: &[u8]) -> Vec<(String, String)> {
    fn len(data: &mut &[u8]) -> usize {
        if data[0] < 128 {
            let n = usize::from(data[0]);
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
        pairs.push((
            String::from_utf8_lossy(&data[..n]).into_owned(),
            String::from_utf8_lossy(&data[n..n + v]).into_owned(),
        ));
        data = &data[n + v..];
    }
    pairs
}

/// BEGIN_REQUEST for `role`.
pub fn push_begin_role(out: &mut Vec<u8>, id: u16, role: u16, keep_conn: bool) {
    let [r0, r1] = role.to_be_bytes();
    push_record(out, BEGIN_REQUEST, id, &[r0, r1, u8::from(keep_conn), 0, 0, 0, 0, 0]);
}

/// BEGIN_REQUEST for the Responder role.
pub fn push_begin(out: &mut Vec<u8>, id: u16, keep_conn: bool) {
    push_begin_role(out, id, RESPONDER, keep_conn);
}

/// The PARAMS content of a request for `script?query` whose CONTENT_LENGTH is `length`.
pub fn params_for(script: &str, query: &str, length: &str) -> Vec<u8> {
    encode_pairs(&[
        ("GATEWAY_INTERFACE", "CGI/1.1"),
        ("REQUEST_METHOD", if length.is_empty() { "GET" } else { "POST" }),
        ("SCRIPT_NAME", script),
        ("QUERY_STRING", query),
        ("CONTENT_LENGTH", length),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("REMOTE_ADDR", "127.0.0.1"),
    ])
}

/// BEGIN and the whole PARAMS stream (with its terminator) of a request.
pub fn head_bytes(id: u16, keep_conn: bool, script: &str, query: &str, length: &str) -> Vec<u8> {
    let mut out = Vec::new();
    push_begin(&mut out, id, keep_conn);
    push_stream(&mut out, PARAMS, id, &params_for(script, query, length));
    push_record(&mut out, PARAMS, id, b"");
    out
}

/// A whole request: BEGIN, PARAMS and STDIN, with terminators.
pub fn request_bytes(id: u16, keep_conn: bool, script: &str, query: &str, body: &[u8]) -> Vec<u8> {
    let length = if body.is_empty() { String::new() } else { body.len().to_string() };
    let mut out = head_bytes(id, keep_conn, script, query, &length);
    push_stream(&mut out, STDIN, id, body);
    push_record(&mut out, STDIN, id, b"");
    out
}

/// An ABORT_REQUEST record.
pub fn abort_bytes(id: u16) -> Vec<u8> {
    let mut out = Vec::new();
    push_record(&mut out, ABORT_REQUEST, id, b"");
    out
}

/// A GET_VALUES record asking for `names`.
pub fn get_values_bytes(names: &[&str]) -> Vec<u8> {
    let pairs: Vec<(&str, &str)> = names.iter().map(|n| (*n, "")).collect();
    let mut out = Vec::new();
    push_record(&mut out, GET_VALUES, 0, &encode_pairs(&pairs));
    out
}

// ---- data -------------------------------------------------------------------------------

pub const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a, 64 bit, continued from `hash`.
pub fn fnv1a(mut hash: u64, data: &[u8]) -> u64 {
    for &b in data {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// Deterministic position-dependent bytes.
pub fn pattern(offset: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        let x = (offset + i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        *b = (x >> 56) as u8 ^ (x >> 24) as u8;
    }
}

/// `len` pattern bytes.
pub fn pattern_vec(len: usize) -> Vec<u8> {
    let mut v = vec![0; len];
    pattern(0, &mut v);
    v
}

/// What `/upload` answers for `body`.
pub fn upload_answer(body: &[u8]) -> String {
    format!("len={} fnv={:016x}\n", body.len(), fnv1a(FNV_START, body))
}

/// A small deterministic generator (xorshift64*) for garbage input.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| (self.next() >> 56) as u8).collect()
    }
}

// ---- client -----------------------------------------------------------------------------

/// Every client read gives up after this long; no test should ever wait it out.
pub const READ_TIMEOUT: Duration = Duration::from_secs(20);

/// One record received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub kind: u8,
    pub id: u16,
    pub content: Vec<u8>,
}

/// What the server answered to one request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reply {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub app_status: u32,
    pub protocol_status: u8,
}

impl Reply {
    /// The body after the CGI head (everything when there is no head).
    pub fn body(&self) -> &[u8] {
        let at = self.stdout.windows(4).position(|w| w == b"\r\n\r\n").map_or(0, |p| p + 4);
        &self.stdout[at..]
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(self.body()).into_owned()
    }

    /// The `Status:` code of the CGI head (200 when absent).
    pub fn status(&self) -> u16 {
        let head = String::from_utf8_lossy(&self.stdout);
        head.lines()
            .take_while(|l| !l.is_empty())
            .find_map(|l| l.strip_prefix("Status: "))
            .and_then(|s| s.get(..3))
            .map_or(200, |s| s.parse().expect("bad status"))
    }
}

/// A blocking FastCGI client connection (TCP, no Nagle delay) with a record reader.
/// Management records (request id 0) that arrive while a reply is read are kept in
/// [`Client::management`].
#[derive(Debug)]
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    pub management: Vec<Record>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(READ_TIMEOUT)).expect("set_read_timeout");
        stream.set_nodelay(true).expect("set_nodelay");
        Self { stream, buf: vec![0; 128 * 1024], start: 0, end: 0, management: Vec::new() }
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

    /// Buffers at least `n` bytes; false at EOF before that.
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

    /// The next record; `None` at EOF. Every record the server sends must be well-formed.
    pub fn try_record(&mut self) -> io::Result<Option<Record>> {
        if !self.fill(8)? {
            assert_eq!(self.end, self.start, "EOF inside a record header");
            return Ok(None);
        }
        let h = &self.buf[self.start..self.start + 8];
        assert_eq!(h[0], 1, "record version from the server");
        let (kind, id) = (h[1], u16::from_be_bytes([h[2], h[3]]));
        let len = usize::from(u16::from_be_bytes([h[4], h[5]]));
        let total = 8 + len + usize::from(h[6]);
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

    /// Reads records up to the END_REQUEST of `id`; `None` if the connection closed first.
    pub fn try_reply(&mut self, id: u16) -> io::Result<Option<Reply>> {
        let mut reply = Reply::default();
        let mut stdout_closed = false;
        loop {
            let Some(r) = self.try_record()? else {
                return Ok(None);
            };
            if r.id == 0 {
                self.management.push(r);
                continue;
            }
            assert_eq!(r.id, id, "record for another request: {r:?}");
            match r.kind {
                STDOUT => {
                    assert!(!stdout_closed, "STDOUT after its end");
                    stdout_closed = r.content.is_empty();
                    reply.stdout.extend_from_slice(&r.content);
                }
                STDERR => reply.stderr.extend_from_slice(&r.content),
                END_REQUEST => {
                    let c = &r.content;
                    assert_eq!(c.len(), 8, "END_REQUEST body");
                    reply.app_status = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
                    reply.protocol_status = c[4];
                    if reply.protocol_status == REQUEST_COMPLETE {
                        assert!(stdout_closed, "END_REQUEST before the empty STDOUT");
                    }
                    return Ok(Some(reply));
                }
                other => panic!("unexpected record type {other}: {r:?}"),
            }
        }
    }

    pub fn reply(&mut self, id: u16) -> Reply {
        self.try_reply(id).expect("read reply").expect("connection closed before END_REQUEST")
    }

    /// Reads the interleaved replies of several requests, up to each one's END_REQUEST.
    pub fn replies(&mut self, ids: &[u16]) -> Vec<Reply> {
        let mut partial = vec![Reply::default(); ids.len()];
        let mut done = vec![false; ids.len()];
        while done.contains(&false) {
            let r = self.record();
            if r.id == 0 {
                self.management.push(r);
                continue;
            }
            let k = ids.iter().position(|&id| id == r.id).unwrap_or_else(|| panic!("unexpected {r:?}"));
            assert!(!done[k], "record after END_REQUEST: {r:?}");
            match r.kind {
                STDOUT => partial[k].stdout.extend_from_slice(&r.content),
                STDERR => partial[k].stderr.extend_from_slice(&r.content),
                END_REQUEST => {
                    let c = &r.content;
                    partial[k].app_status = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
                    partial[k].protocol_status = c[4];
                    done[k] = true;
                }
                other => panic!("unexpected record type {other}: {r:?}"),
            }
        }
        partial
    }

    /// Sends a whole request (id 1) and reads its reply.
    pub fn request(&mut self, keep_conn: bool, script: &str, query: &str, body: &[u8]) -> Reply {
        self.send(&request_bytes(1, keep_conn, script, query, body));
        self.reply(1)
    }

    /// `/hello` with keep-conn; checks the answer.
    pub fn hello(&mut self, who: &str) {
        let reply = self.request(true, "/hello", who, b"");
        assert_eq!((reply.protocol_status, reply.body_str()), (REQUEST_COMPLETE, format!("hello {who}\n")));
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

// ---- the application --------------------------------------------------------------------

/// What the test application saw.
#[derive(Debug, Default)]
pub struct AppState {
    /// Handlers that started.
    pub started: AtomicU64,
    /// Handlers that returned (rather than being dropped with their connection).
    pub finished: AtomicU64,
    /// Handlers whose read or write failed with `Aborted`.
    pub aborted: AtomicU64,
    /// Handlers whose read failed with `BodyTruncated`.
    pub truncated: AtomicU64,
}

impl AppState {
    pub fn started(&self) -> u64 {
        self.started.load(Ordering::SeqCst)
    }
    pub fn finished(&self) -> u64 {
        self.finished.load(Ordering::SeqCst)
    }
    pub fn aborted(&self) -> u64 {
        self.aborted.load(Ordering::SeqCst)
    }
    pub fn truncated(&self) -> u64 {
        self.truncated.load(Ordering::SeqCst)
    }
}

/// The application every scenario serves; routes on SCRIPT_NAME. Buffers are fixed-size
/// arrays: nothing a request claims (CONTENT_LENGTH, a huge download) makes it allocate.
/// - `/hello?WHO`: "hello WHO\n".
/// - `/upload`: streams the body, answers "len=N fnv=HASH\n"; a body that ends short of
///   CONTENT_LENGTH gets 400 "truncated expected=E received=R\n".
/// - `/read-to-end`: `read_to_end` into a 64-byte buffer; 400 when truncated, 413 when it
///   does not fit, else "len=N\n".
/// - `/strict`: like `/upload`, but passes read errors on with `?` (the engine answers).
/// - `/download?N`: N bytes of the test pattern.
/// - `/wait-abort`: reads the body until the read fails (the request is aborted).
/// - anything else: 404.
#[derive(Clone, Debug, Default)]
pub struct App {
    pub state: Arc<AppState>,
}

impl Handler for App {
    async fn handle(&self, req: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), HandlerError> {
        self.state.started.fetch_add(1, Ordering::SeqCst);
        let result = self.route(req, res).await;
        match result {
            Err(StreamError::Aborted) => {
                self.state.aborted.fetch_add(1, Ordering::SeqCst);
            }
            Err(StreamError::BodyTruncated { .. }) => {
                self.state.truncated.fetch_add(1, Ordering::SeqCst);
            }
            _ => {}
        }
        self.state.finished.fetch_add(1, Ordering::SeqCst);
        Ok(result?)
    }
}

impl App {
    async fn route(&self, req: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), StreamError> {
        let mut line = [0u8; 128];
        // Copied out of the params, which borrow the request that reads the body.
        let route = match req.params().script_name().unwrap_or("") {
            "/hello" => "/hello",
            "/upload" => "/upload",
            "/read-to-end" => "/read-to-end",
            "/strict" => "/strict",
            "/download" => "/download",
            "/wait-abort" => "/wait-abort",
            _ => "",
        };
        let number: u64 = req.params().query_string().parse().unwrap_or(0);
        match route {
            "/hello" => {
                let query = req.params().query_string();
                let text = fmt_into(&mut line, format_args!("hello {query}\n"));
                res.send_response(200, content_type::TEXT, text).await
            }
            "/upload" => {
                let (mut len, mut hash) = (0u64, FNV_START);
                let mut buf = [0u8; 4096];
                loop {
                    match req.read(&mut buf).await {
                        Ok(0) => break,
                        Ok(n) => {
                            len += n as u64;
                            hash = fnv1a(hash, &buf[..n]);
                        }
                        Err(StreamError::BodyTruncated { expected, received }) => {
                            self.state.truncated.fetch_add(1, Ordering::SeqCst);
                            let text = fmt_into(
                                &mut line,
                                format_args!("truncated expected={expected} received={received}\n"),
                            );
                            return res.send_response(400, content_type::TEXT, text).await;
                        }
                        Err(e) => return Err(e),
                    }
                }
                let text = fmt_into(&mut line, format_args!("len={len} fnv={hash:016x}\n"));
                res.send_response(200, content_type::TEXT, text).await
            }
            "/read-to-end" => {
                let mut buf = [0u8; 64];
                match req.read_to_end(&mut buf).await {
                    Ok(n) => {
                        let text = fmt_into(&mut line, format_args!("len={n}\n"));
                        res.send_response(200, content_type::TEXT, text).await
                    }
                    Err(StreamError::BodyTruncated { expected, received }) => {
                        self.state.truncated.fetch_add(1, Ordering::SeqCst);
                        let text = fmt_into(
                            &mut line,
                            format_args!("truncated expected={expected} received={received}\n"),
                        );
                        res.send_response(400, content_type::TEXT, text).await
                    }
                    Err(StreamError::BodyTooLarge { capacity }) => {
                        let text = fmt_into(&mut line, format_args!("too large for {capacity}\n"));
                        res.send_response(413, content_type::TEXT, text).await
                    }
                    Err(e) => Err(e),
                }
            }
            "/strict" => {
                // Passes any read error on with `?`, before writing anything.
                let mut buf = [0u8; 4096];
                let mut len = 0u64;
                loop {
                    match req.read(&mut buf).await? {
                        0 => break,
                        n => len += n as u64,
                    }
                }
                let text = fmt_into(&mut line, format_args!("len={len}\n"));
                res.send_response(200, content_type::TEXT, text).await
            }
            "/download" => {
                let total = number;
                res.send_head(200, &[("Content-Type", content_type::OCTET_STREAM)]).await?;
                let mut buf = [0u8; 8192];
                let mut sent = 0u64;
                while sent < total {
                    let n = (total - sent).min(buf.len() as u64) as usize;
                    pattern(sent, &mut buf[..n]);
                    res.write_all(&buf[..n]).await?;
                    sent += n as u64;
                }
                Ok(())
            }
            "/wait-abort" => {
                let mut buf = [0u8; 1024];
                loop {
                    if req.read(&mut buf).await? == 0 {
                        return res.send_response(200, content_type::TEXT, b"not aborted\n").await;
                    }
                }
            }
            _ => res.send_response(404, content_type::TEXT, b"not found\n").await,
        }
    }
}

/// Formats into a stack buffer.
pub fn fmt_into<'a>(buf: &'a mut [u8; 128], args: std::fmt::Arguments<'_>) -> &'a [u8] {
    struct W<'b>(&'b mut [u8; 128], usize);
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

// ---- servers ----------------------------------------------------------------------------

/// Limits for the scenarios: Responder and Filter roles, short lingering.
pub fn test_limits() -> Limits {
    let mut limits = Limits {
        close_linger: Duration::from_millis(200),
        shutdown_timeout: Duration::from_secs(2),
        ..Limits::default()
    };
    limits.protocol.roles = Roles::RESPONDER | Roles::FILTER;
    limits
}

/// The counters both transports keep, read the same way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub open_connections: u64,
    pub accepted: u64,
    pub refused_over_limit: u64,
    pub timed_out_idle: u64,
    pub timed_out_head: u64,
    pub closed_with_error: u64,
    pub requests: u64,
    pub requests_aborted: u64,
}

macro_rules! snapshot_from {
    ($s:expr) => {{
        let s = $s;
        Snapshot {
            open_connections: s.open_connections,
            accepted: s.accepted,
            refused_over_limit: s.refused_over_limit,
            timed_out_idle: s.timed_out_idle,
            timed_out_head: s.timed_out_head,
            closed_with_error: s.closed_with_error,
            requests: s.requests,
            requests_aborted: s.requests_aborted,
        }
    }};
}

enum StatsHandle {
    Mio(ember_fcgi::mio::Stats),
    Smol(ember_fcgi::smol::Stats),
}

enum StopHandle {
    Mio(ember_fcgi::mio::ShutdownHandle),
    Smol(ember_fcgi::smol::ShutdownHandle),
}

/// Which server runs the handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Mio,
    Smol,
}

impl Transport {
    /// Runs `handler` on this transport (`run()` on its own thread) on 127.0.0.1, any port,
    /// with the connection buffers `B`.
    pub fn start_with<H, B>(self, handler: H, limits: Limits) -> Running
    where
        H: Handler + Send + 'static,
        B: ConnectionBuffers + Default + 'static,
    {
        let listen = Listen::Tcp("127.0.0.1:0".parse().expect("address"));
        let allow = WebServerAddrs::default(); // whatever the environment says
        let (addr, stats, stop, thread) = match self {
            Self::Mio => {
                let server = ember_fcgi::mio::Server::bind(&listen, handler, limits)
                    .expect("bind")
                    .with_web_server_addrs(allow)
                    .with_buffers::<B>();
                let (addr, stats, stop) = (server.local_addr(), server.stats(), server.shutdown_handle());
                let thread = std::thread::spawn(move || server.run());
                (addr, StatsHandle::Mio(stats), StopHandle::Mio(stop), thread)
            }
            Self::Smol => {
                let server = ember_fcgi::smol::Server::bind(&listen, handler, limits)
                    .expect("bind")
                    .with_web_server_addrs(allow)
                    .with_buffers::<B>();
                let (addr, stats, stop) = (server.local_addr(), server.stats(), server.shutdown_handle());
                let thread = std::thread::spawn(move || server.run());
                (addr, StatsHandle::Smol(stats), StopHandle::Smol(stop), thread)
            }
        };
        Running {
            transport: self,
            addr: addr.expect("a TCP address"),
            stats,
            stop,
            thread: Some(thread),
            app: Arc::default(),
        }
    }

    /// Runs `handler` with the default buffers.
    pub fn start<H: Handler + Send + 'static>(self, handler: H, limits: Limits) -> Running {
        self.start_with::<H, DefaultBuffers>(handler, limits)
    }

    /// Runs the test application with the default buffers.
    pub fn start_app(self, limits: Limits) -> Running {
        let app = App::default();
        let state = Arc::clone(&app.state);
        let mut running = self.start(app, limits);
        running.app = state;
        running
    }

    /// Runs the test application with two request slots per connection (multiplexing).
    pub fn start_app_mpx2(self, limits: Limits) -> Running {
        let app = App::default();
        let state = Arc::clone(&app.state);
        let mut running = self.start_with::<App, Buffers<4096, 4096, 4096, 2>>(app, limits);
        running.app = state;
        running
    }
}

/// A server running on its own thread; shut down and joined on drop.
pub struct Running {
    pub transport: Transport,
    pub addr: SocketAddr,
    stats: StatsHandle,
    stop: StopHandle,
    thread: Option<JoinHandle<io::Result<()>>>,
    /// What the test application saw (when it is the handler).
    pub app: Arc<AppState>,
}

impl Running {
    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    pub fn snapshot(&self) -> Snapshot {
        match &self.stats {
            StatsHandle::Mio(s) => snapshot_from!(s.snapshot()),
            StatsHandle::Smol(s) => snapshot_from!(s.snapshot()),
        }
    }

    /// Waits (up to 10 s) until `cond` holds of the counters; panics with them if not.
    pub fn wait_for(&self, what: &str, cond: impl Fn(&Snapshot) -> bool) -> Snapshot {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.snapshot();
            if cond(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "{:?}: timed out waiting for {what}: {s:?}", self.transport);
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits until exactly `n` connections are open (closes are asynchronous).
    pub fn wait_open(&self, n: u64) -> Snapshot {
        self.wait_for(&format!("{n} open connections"), |s| s.open_connections == n)
    }

    /// Waits until `n` handlers have started.
    pub fn wait_started(&self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.app.started() < n {
            assert!(Instant::now() < deadline, "timed out waiting for {n} handlers to start");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// After a fault: a normal request on a fresh connection succeeds (and the server
    /// closes that connection, as KEEP_CONN is off), and then exactly `open` connections
    /// are open: none leaked. Returns the counters then.
    pub fn check_healthy(&self, open: u64) -> Snapshot {
        let mut c = self.client();
        let reply = c.request(false, "/hello", "again", b"");
        assert_eq!((reply.protocol_status, reply.body_str()), (REQUEST_COMPLETE, "hello again\n".to_owned()));
        assert!(c.closed_by_server(), "the server closes after a request without KEEP_CONN");
        drop(c);
        self.wait_open(open)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        match &self.stop {
            StopHandle::Mio(h) => h.shutdown(),
            StopHandle::Smol(h) => h.shutdown(),
        }
        if let Some(thread) = self.thread.take() {
            let result = thread.join();
            if !std::thread::panicking() {
                result.expect("server thread panicked").expect("server run failed");
            }
        }
    }
}
