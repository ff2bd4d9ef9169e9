//! Test support: the test application served by the server under test, and a harness
//! that runs a server on a thread and waits on its counters. The client side (records,
//! the blocking client, test data) is `ember-fcgi-testkit`.
#![allow(dead_code)]

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ember_fcgi_core::prelude::*;
use ember_fcgi_smol::{Limits, Listen, Server, ShutdownHandle, Stats, StatsSnapshot};
pub use ember_fcgi_testkit::data::*;
pub use ember_fcgi_testkit::*;

// ---- data -------------------------------------------------------------------------------

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
                let mut out = res.send_head(200, &[("Content-Type", content_type::OCTET_STREAM)]).await?;
                let mut buf = [0u8; 8192];
                loop {
                    match req.read(&mut buf).await? {
                        0 => return Ok(()),
                        n => out.write_all(&buf[..n]).await?,
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
                let mut out = res.send_head(200, &[("Content-Type", content_type::OCTET_STREAM)]).await?;
                let mut buf = vec![0u8; 60_000];
                let mut sent = 0u64;
                while sent < total {
                    let n = buf.len().min((total - sent) as usize);
                    pattern(sent, &mut buf[..n]);
                    out.write_all(&buf[..n]).await?;
                    sent += n as u64;
                }
                Ok(())
            }
            "/ndjson" => {
                let (lines, ms) = (arg("n", 3), arg("ms", 10));
                let mut out = res.send_head(200, &[("Content-Type", content_type::NDJSON)]).await?;
                for i in 0..lines {
                    smol::Timer::after(Duration::from_millis(ms)).await;
                    out.write_all(format!("{{\"line\":{i}}}\n").as_bytes()).await?;
                    out.flush().await?;
                }
                Ok(())
            }
            "/sleep" => {
                let mut out = res.send_head(200, &[("Content-Type", content_type::TEXT)]).await?;
                out.write_all(b"started\n").await?;
                out.flush().await?;
                smol::Timer::after(Duration::from_millis(arg("ms", 100))).await;
                out.write_all(b"done\n").await
            }
            "/gate" => {
                // Waits, in the async way, until the test opens the gate.
                let mut out = res.send_head(200, &[("Content-Type", content_type::TEXT)]).await?;
                out.write_all(b"started\n").await?;
                out.flush().await?;
                let _ = self.state.gate.1.recv().await;
                out.write_all(b"released\n").await
            }
            "/block" => {
                // Blocks its whole thread: only another thread can serve meanwhile.
                let mut out = res.send_head(200, &[("Content-Type", content_type::TEXT)]).await?;
                out.write_all(b"started\n").await?;
                out.flush().await?;
                std::thread::sleep(Duration::from_millis(arg("ms", 100)));
                let me = format!("done on {:?}\n", std::thread::current().id());
                out.write_all(me.as_bytes()).await
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
    Limits::default().with_close_linger(Duration::from_millis(200))
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
        let reply = get_once(self.addr(), "/hello", "");
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
