//! Test support: a handler that uses tokio (timers, sockets, `spawn_blocking`), and a
//! harness that runs a server on a thread (`run`, `run_threads`, or `serve` inside a tokio
//! runtime the test builds, as an application would) and waits on its counters. The client
//! side is `ember-fcgi-testkit`.
#![allow(dead_code)]

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ember_fcgi_core::prelude::*;
pub use ember_fcgi_testkit::*;
use ember_fcgi_tokio::{Limits, Listen, Server, ShutdownHandle, Stats, StatsSnapshot};
use tokio::io::AsyncReadExt as _;

/// `key=value` from a query string.
pub fn query_arg(query: &str, key: &str) -> Option<u64> {
    query.split('&').find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

/// What the test application saw, and the gate `/gate` requests wait at.
#[derive(Debug)]
pub struct AppState {
    pub started: AtomicU64,
    pub finished: AtomicU64,
    gate: tokio::sync::Semaphore,
}

impl Default for AppState {
    fn default() -> Self {
        Self { started: AtomicU64::new(0), finished: AtomicU64::new(0), gate: tokio::sync::Semaphore::new(0) }
    }
}

impl AppState {
    /// Lets one waiting (or future) `/gate` request finish (from any thread).
    pub fn open_gate(&self) {
        self.gate.add_permits(1);
    }

    pub fn started(&self) -> u64 {
        self.started.load(Ordering::SeqCst)
    }

    pub fn finished(&self) -> u64 {
        self.finished.load(Ordering::SeqCst)
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
        self.state.finished.fetch_add(1, Ordering::SeqCst);
        result
    }
}

impl TestApp {
    async fn route(&self, req: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), HandlerError> {
        let script = req.params().get_str("SCRIPT_NAME").unwrap_or("").to_owned();
        let query = req.params().get_str("QUERY_STRING").unwrap_or("").to_owned();
        let arg = |key: &str, default: u64| query_arg(&query, key).unwrap_or(default);
        match script.as_str() {
            "/hello" => res.send_response(200, content_type::TEXT, b"Hello, World!\n").await?,
            "/echo" => {
                let mut out = res.send_head(200, &[("Content-Type", content_type::OCTET_STREAM)]).await?;
                let mut buf = [0u8; 8192];
                loop {
                    match req.read(&mut buf).await? {
                        0 => break,
                        n => out.write_all(&buf[..n]).await?,
                    }
                }
            }
            "/sleep" => {
                // A tokio timer inside a handler.
                let start = Instant::now();
                tokio::time::sleep(Duration::from_millis(arg("ms", 10))).await;
                let body = format!("slept {} ms\n", start.elapsed().as_millis());
                res.send_response(200, content_type::TEXT, body.as_bytes()).await?;
            }
            "/connect" => {
                // A tokio socket inside a handler: reads what the local listener sends.
                let port = u16::try_from(arg("port", 0))?;
                let mut peer = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
                let mut got = Vec::new();
                peer.read_to_end(&mut got).await?;
                res.send_response(200, content_type::TEXT, &got).await?;
            }
            "/blocking" => {
                let n = arg("n", 7);
                let doubled = tokio::task::spawn_blocking(move || {
                    std::thread::sleep(Duration::from_millis(5));
                    n * 2
                })
                .await?;
                res.send_response(200, content_type::TEXT, format!("{doubled}\n").as_bytes()).await?;
            }
            "/spawn" => {
                // A `Send` task on the runtime (a worker thread of a multi-thread one).
                let task = tokio::spawn(async {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    format!("{:?}", std::thread::current().id())
                });
                let there = task.await?;
                res.send_response(200, content_type::TEXT, there.as_bytes()).await?;
            }
            "/local" => {
                // `spawn_local` needs the loop's `LocalSet`.
                let task = tokio::task::spawn_local(async { 41 + 1 });
                let n = task.await?;
                res.send_response(200, content_type::TEXT, format!("{n}\n").as_bytes()).await?;
            }
            "/gate" => {
                let mut out = res.send_head(200, &[("Content-Type", content_type::TEXT)]).await?;
                out.write_all(b"started\n").await?;
                out.flush().await?;
                self.state.gate.acquire().await?.forget();
                out.write_all(b"released\n").await?;
            }
            "/thread" => {
                let me = format!("{:?}", std::thread::current().id());
                res.send_response(200, content_type::TEXT, me.as_bytes()).await?;
            }
            "/panic" => panic!("the test handler panics on purpose"),
            _ => res.send_response(404, content_type::TEXT, b"not found\n").await?,
        }
        Ok(())
    }
}

/// Limits for tests: short lingering so closes are quick.
pub fn test_limits() -> Limits {
    Limits::default().with_close_linger(Duration::from_millis(200))
}

/// How a test runs its server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `Server::run`.
    Run,
    /// `Server::run_threads(n)`.
    Threads(usize),
    /// `Server::serve()` spawned on a `LocalSet` in a current-thread runtime the test
    /// builds, as `#[tokio::main(flavor = "current_thread")]` does.
    Serve,
    /// `Server::serve()` in `LocalSet::run_until` on a multi-thread runtime's `block_on`, as
    /// `#[tokio::main]` does; the handlers' `tokio::spawn` tasks run on its workers.
    ServeMultiThread,
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
    pub fn start(server: Server<TestApp>, app: TestApp, mode: Mode) -> Self {
        let addr = server.local_addr();
        let stop = server.shutdown_handle();
        let stats = server.stats();
        let thread = std::thread::spawn(move || match mode {
            Mode::Run => server.run(),
            Mode::Threads(n) => server.run_threads(n),
            Mode::Serve => serve_in_app_runtime(server),
            Mode::ServeMultiThread => {
                let runtime =
                    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
                runtime.block_on(tokio::task::LocalSet::new().run_until(server.serve()))
            }
        });
        Self { addr, stop, stats, app, thread: Some(thread) }
    }

    /// A TCP server on 127.0.0.1 (any port) serving the test application.
    pub fn tcp(limits: Limits, mode: Mode) -> Self {
        let app = TestApp::default();
        let listen = Listen::Tcp("127.0.0.1:0".parse().unwrap());
        let server = Server::bind(&listen, app.clone(), limits).expect("bind");
        Self::start(server, app, mode)
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

    /// Checks the server still answers, then that no connection is left open.
    pub fn check_healthy(&self) {
        let reply = get_once(self.addr(), "/hello", "");
        assert_eq!(reply.body(), b"Hello, World!\n");
        self.wait_for("no open connections", |s| s.open_connections == 0);
    }

    /// Shuts down and returns what the server returned.
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

/// What an application's `#[tokio::main(flavor = "current_thread")] async fn main` does:
/// its own runtime, a `LocalSet`, the server's future spawned on it beside other tasks.
pub fn serve_in_app_runtime(server: Server<TestApp>) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let local = tokio::task::LocalSet::new();
        let ticks = Arc::new(AtomicU64::new(0));
        let ticker = {
            let ticks = Arc::clone(&ticks);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    ticks.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        let fastcgi = local.spawn_local(server.serve());
        let result = local.run_until(fastcgi).await.expect("the serve task panicked");
        ticker.abort();
        result
    })
}
