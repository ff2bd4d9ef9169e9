//! Support for `tests/faults.rs`: the test application, and [`Transport`], which starts the
//! same application on the mio or the smol server so every scenario runs, unchanged, on
//! both. Records, the client and test data come from `ember-fcgi-testkit` (written from the
//! spec, so tests can send anything, well-formed or not).
#![allow(dead_code)] // not every helper is used by every scenario

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ember_fcgi::prelude::*;
use ember_fcgi::server::{Limits, Listen, ShutdownHandle, Stats, WebServerAddrs};
use ember_fcgi::{Capacities, Roles};
pub use ember_fcgi_testkit::data::*;
pub use ember_fcgi_testkit::*;

// ---- data -------------------------------------------------------------------------------

/// What `/upload` answers for `body`.
pub fn upload_answer(body: &[u8]) -> String {
    format!("len={} fnv={:016x}\n", body.len(), fnv1a(FNV_START, body))
}

/// A connection to a server under test, with a scenario-level check.
pub trait ClientExt {
    /// `/hello` with keep-conn; checks the answer.
    fn hello(&mut self, who: &str);
}

impl ClientExt for Client {
    fn hello(&mut self, who: &str) {
        let reply = self.request(true, "/hello", who, b"");
        assert_eq!((reply.protocol_status, reply.body_str()), (REQUEST_COMPLETE, format!("hello {who}\n")));
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
    /// `/sleep-until-gone` handlers that saw their request go away as aborted.
    pub gone_aborted: AtomicU64,
    /// Handlers whose read or write failed with `TimedOut`.
    pub timed_out: AtomicU64,
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
/// - `/read-to-end`: `read_into_slice` into a 64-byte buffer; 400 when truncated, 413 when it
///   does not fit, else "len=N\n".
/// - `/strict`: like `/upload`, but passes read errors on with `?` (the engine answers).
/// - `/download?N`: N bytes of the test pattern.
/// - `/wait-abort`: reads the body until the read fails (the request is aborted).
/// - `/sleep-until-gone`: never reads its body; waits until the request has gone, notes
///   whether it was aborted, answers nothing.
/// - `/panic`: panics before writing; `/panic-late?N`: writes N bytes, then panics.
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
            Err(StreamError::TimedOut) => {
                self.state.timed_out.fetch_add(1, Ordering::SeqCst);
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
            "/sleep-until-gone" => "/sleep-until-gone",
            "/panic" => "/panic",
            "/panic-late" => "/panic-late",
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
                match req.read_into_slice(&mut buf).await {
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
                    Err(StreamError::BodyTooLarge) => {
                        let text = fmt_into(&mut line, format_args!("too large for {}\n", buf.len()));
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
                let mut out = res.send_head(200, &[("Content-Type", content_type::OCTET_STREAM)]).await?;
                let mut buf = [0u8; 8192];
                let mut sent = 0u64;
                while sent < total {
                    let n = (total - sent).min(buf.len() as u64) as usize;
                    pattern(sent, &mut buf[..n]);
                    out.write_all(&buf[..n]).await?;
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
            "/sleep-until-gone" => {
                req.gone().await;
                if req.aborted() {
                    self.state.gone_aborted.fetch_add(1, Ordering::SeqCst);
                }
                Ok(())
            }
            "/panic" => panic!("the test handler panics on purpose"),
            "/panic-late" => {
                let mut out = res.send_head(200, &[("Content-Type", content_type::OCTET_STREAM)]).await?;
                out.write_all(&vec![7u8; number as usize]).await?;
                out.flush().await?;
                panic!("the test handler panics on purpose, after writing")
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
    // The store of a small host (4 KiB of params), so the oversize cases stay small.
    let capacities = Capacities::new().with_input(4096).with_output(4096).with_params(4096).with_window(1024);
    let mut limits = Limits::default()
        .with_capacities(capacities)
        .with_close_linger(Duration::from_millis(200))
        .with_shutdown_timeout(Duration::from_secs(2));
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
    pub timed_out_body: u64,
    pub timed_out_send: u64,
    pub closed_with_error: u64,
    pub handler_panics: u64,
    pub engine_panics: u64,
    pub handler_errors: u64,
    pub requests: u64,
    pub requests_aborted: u64,
    /// Request memory lent to connections now, and held by the pool (lent or free).
    pub memory_lent: u64,
    pub memory_allocated: u64,
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
            timed_out_body: s.timed_out_body,
            timed_out_send: s.timed_out_send,
            closed_with_error: s.closed_with_error,
            handler_panics: s.handler_panics,
            engine_panics: s.engine_panics,
            handler_errors: s.handler_errors,
            requests: s.requests,
            requests_aborted: s.requests_aborted,
            memory_lent: s.memory_lent,
            memory_allocated: s.memory_allocated,
        }
    }};
}

/// Which server runs the handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Mio,
    Smol,
}

impl Transport {
    /// Runs `handler` on this transport (`run()` on its own thread) on 127.0.0.1, any port.
    pub fn start<H: Handler + Send + 'static>(self, handler: H, limits: Limits) -> Running {
        let listen = Listen::Tcp("127.0.0.1:0".parse().expect("address"));
        let allow = WebServerAddrs::default(); // whatever the environment says
        let (addr, stats, stop, thread) = match self {
            Self::Mio => {
                let server = ember_fcgi::mio::Server::bind(&listen, handler, limits)
                    .expect("bind")
                    .with_web_server_addrs(allow);
                let (addr, stats, stop) = (server.local_addr(), server.stats(), server.shutdown_handle());
                let thread = std::thread::spawn(move || server.run());
                (addr, stats, stop, thread)
            }
            Self::Smol => {
                let server = ember_fcgi::smol::Server::bind(&listen, handler, limits)
                    .expect("bind")
                    .with_web_server_addrs(allow);
                let (addr, stats, stop) = (server.local_addr(), server.stats(), server.shutdown_handle());
                let thread = std::thread::spawn(move || server.run());
                (addr, stats, stop, thread)
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
        let limits = limits.with_capacities(limits.capacities.with_requests(2));
        let mut running = self.start(app, limits);
        running.app = state;
        running
    }
}

/// A server running on its own thread; shut down and joined on drop.
pub struct Running {
    pub transport: Transport,
    pub addr: SocketAddr,
    stats: Stats,
    stop: ShutdownHandle,
    thread: Option<JoinHandle<io::Result<()>>>,
    /// What the test application saw (when it is the handler).
    pub app: Arc<AppState>,
}

impl Running {
    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    pub fn snapshot(&self) -> Snapshot {
        snapshot_from!(self.stats.snapshot())
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
        let s = self.wait_open(open);
        if open > 0 {
            return s;
        }
        // Every connection is gone: its request memory is back in the pool, not lost with
        // it (a lost block would be allocated again by the next request).
        self.wait_for("request memory back in the pool", |s| s.memory_lent == 0 && s.memory_allocated > 0)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.shutdown();
        if let Some(thread) = self.thread.take() {
            let result = thread.join();
            if !std::thread::panicking() {
                result.expect("server thread panicked").expect("server run failed");
            }
        }
    }
}
