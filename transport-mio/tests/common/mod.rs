//! Test handlers and helpers to run a server in a thread; the client side (records,
//! the blocking client, test data) is `ember-fcgi-testkit`.
#![allow(dead_code)]

pub mod counting;

use std::io;
use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use ember_fcgi_testkit::data::*;
pub use ember_fcgi_testkit::*;

use ember_fcgi_core::prelude::*;
use ember_fcgi_mio::{Server, ShutdownHandle, Stats, StatsSnapshot};

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
            let mut out = res.send_head(200, &[("Content-Type", "text/plain")]).await?;
            return Ok(out.write_all(text).await?);
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
                let mut out = res.send_head(200, &[("Content-Type", "text/plain")]).await?;
                Ok(out.write_all(text).await?)
            }
            "/source" => {
                let total = number;
                let mut out = res.send_head(200, &[("Content-Type", "application/octet-stream")]).await?;
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
            "/stderr" => {
                res.stderr().write_all(b"a warning").await?;
                let mut out = res.send_head(200, &[]).await?;
                Ok(out.write_all(b"ok").await?)
            }
            "/fail" => Err(StreamError::InvalidHeader.into()),
            _ => {
                let mut out = res.send_head(404, &[]).await?;
                Ok(out.write_all(b"not found").await?)
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
    ember_fcgi_mio::Limits::default()
        .with_shutdown_timeout(Duration::from_secs(5))
        .with_close_linger(Duration::from_millis(300))
}

pub fn tcp_server(limits: ember_fcgi_mio::Limits) -> Running {
    let listen = ember_fcgi_mio::Listen::Tcp("127.0.0.1:0".parse().unwrap());
    Running::start(Server::bind(&listen, TestHandler, limits).expect("bind"))
}
