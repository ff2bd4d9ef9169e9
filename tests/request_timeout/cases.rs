// The cases, included once per server (`main.rs`): each includer brings `Server` into scope.

use std::future::pending;
use std::io;
use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ember_fcgi::prelude::*;
use ember_fcgi::server::{Limits, Listen, ShutdownHandle, Stats, StatsSnapshot};
use ember_fcgi_testkit::*;

/// `/hang` never finishes; `/head-hang` sends a head and a few body bytes, then never
/// finishes; anything else answers "quick".
struct App;

impl Handler for App {
    async fn handle(&self, req: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), HandlerError> {
        match req.params().script_name().unwrap_or("") {
            "/hang" => pending::<()>().await,
            "/head-hang" => {
                let mut body = res.send_head(200, &[("Content-Type", "text/plain")]).await?;
                body.write_all(b"partial").await?;
                body.flush().await?;
                pending::<()>().await;
            }
            _ => res.send_response(200, "text/plain", b"quick").await?,
        }
        Ok(())
    }
}

const TIMEOUT: Duration = Duration::from_millis(400);
const SLOW: Duration = Duration::from_millis(150);

struct Running {
    addr: SocketAddr,
    stats: Stats,
    stop: ShutdownHandle,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl Running {
    fn start() -> Self {
        let limits = Limits::default().with_request_timeout(TIMEOUT).with_slow_request_after(SLOW);
        let listen = Listen::Tcp("127.0.0.1:0".parse().unwrap());
        let server = Server::bind(&listen, App, limits).expect("bind");
        let (addr, stats, stop) =
            (server.local_addr().expect("tcp"), server.stats(), server.shutdown_handle());
        let thread = Some(std::thread::spawn(move || server.run()));
        Self { addr, stats, stop, thread }
    }

    fn wait_for(&self, what: &str, cond: impl Fn(&StatsSnapshot) -> bool) -> StatsSnapshot {
        let start = Instant::now();
        loop {
            let s = self.stats.snapshot();
            if cond(&s) {
                return s;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "timed out waiting until {what}: {s:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.shutdown();
        if let Some(thread) = self.thread.take() {
            thread.join().expect("server thread panicked").expect("run failed");
        }
    }
}

#[test]
fn a_handler_that_never_finishes_gets_504_at_its_deadline() {
    let server = Running::start();
    let mut client = Client::tcp(server.addr);
    let started = Instant::now();
    let reply = client.request(true, "/hang", "", b"");
    let took = started.elapsed();
    assert!(took >= TIMEOUT && took < TIMEOUT + Duration::from_secs(1), "answered after {took:?}");
    assert_eq!(
        reply.stdout,
        b"Status: 504 Gateway Timeout\r\nContent-Type: text/plain\r\n\r\nGateway Timeout\n"
    );
    assert_eq!((reply.protocol_status, reply.app_status), (REQUEST_COMPLETE, 0));
    // The connection serves on; a quick request is neither slow nor timed out.
    assert_eq!(client.get("/quick", ""), "quick");
    let s = server.wait_for("the request memory back", |s| s.memory_lent == 0);
    assert_eq!((s.requests, s.request_timeouts, s.slow_requests), (2, 1, 1));
    assert_eq!((s.requests_aborted, s.handler_errors, s.closed_with_error), (0, 0, 0));
    assert_eq!(s.open_connections, 1);
}

#[test]
fn a_response_begun_then_hung_closes_its_connection() {
    let server = Running::start();
    let mut client = Client::tcp(server.addr);
    let started = Instant::now();
    client.send(&request_bytes(1, true, "/head-hang", "", b""));
    let head = client.record();
    assert_eq!((head.kind, head.id), (STDOUT, 1));
    assert_eq!(head.content, b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\npartial");
    // No END_REQUEST: the connection closes at the deadline.
    assert!(client.closed_by_server());
    let took = started.elapsed();
    assert!(took >= TIMEOUT && took < TIMEOUT + Duration::from_secs(1), "closed after {took:?}");
    let s = server.wait_for("the connection closed", |s| s.open_connections == 0 && s.memory_lent == 0);
    assert_eq!((s.requests, s.request_timeouts, s.slow_requests, s.closed_with_error), (1, 1, 1, 0));
}

#[test]
fn without_limits_nothing_times_out() {
    let listen = Listen::Tcp("127.0.0.1:0".parse().unwrap());
    let limits = Limits::default().with_shutdown_timeout(Duration::from_millis(100));
    let server = Server::bind(&listen, App, limits).expect("bind");
    assert_eq!(server.limits().request_timeout, Duration::MAX);
    assert_eq!(server.limits().slow_request_after, Duration::MAX);
    let (addr, stats, stop) = (server.local_addr().expect("tcp"), server.stats(), server.shutdown_handle());
    let thread = std::thread::spawn(move || server.run());
    let mut client = Client::tcp(addr);
    client.send(&request_bytes(1, true, "/hang", "", b""));
    client.stream.set_read_timeout(Some(Duration::from_millis(600))).unwrap();
    let err = client.try_record().expect_err("no reply while the handler hangs");
    assert!(matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut), "{err}");
    let s = stats.snapshot();
    assert_eq!((s.requests, s.request_timeouts, s.slow_requests), (1, 0, 0));
    drop(client);
    stop.shutdown();
    thread.join().unwrap().unwrap();
}
