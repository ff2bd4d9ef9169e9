//! One loop per core: `Server::run_threads` (one server, its loops sharing the listener,
//! the limits, the stats and the shutdown), and the older way, several servers built with
//! `Server::from_listener` on clones (`Listener::try_clone`) of one listener.

mod common;

use std::collections::HashSet;
use std::io::Read;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use ember_fcgi_core::prelude::*;
use ember_fcgi_mio::{Limits, Listen, Listener, Server, ShutdownHandle, Stats};

/// Answers with the name of the thread that serves the request. `/block` first sends
/// `started` and then blocks its thread (so its whole loop) until the test releases it.
#[derive(Clone)]
struct WhichThread {
    release: Arc<(Mutex<bool>, Condvar)>,
}

impl Handler for WhichThread {
    async fn handle(&self, req: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), HandlerError> {
        let mut out = res.send_head(200, &[("Content-Type", "text/plain")]).await?;
        if req.params().get("SCRIPT_NAME") == Some(b"/block") {
            out.write_all(b"started\n").await?;
            out.flush().await?;
            let (released, wake) = &*self.release;
            let mut released = released.lock().unwrap();
            while !*released {
                released = wake.wait(released).unwrap();
            }
        }
        let name = std::thread::current().name().unwrap_or("?").to_owned();
        out.write_all(name.as_bytes()).await?;
        Ok(())
    }
}

struct Loops {
    addr: std::net::SocketAddr,
    servers: Vec<Running>,
    release: Arc<(Mutex<bool>, Condvar)>,
}

/// `n` loops on clones of one TCP listener, on threads named `loop-0`, `loop-1`, ...
fn start_loops(n: usize) -> Loops {
    let listener = Listener::bind(&Listen::Tcp("127.0.0.1:0".parse().unwrap())).unwrap();
    let addr = listener.local_addr().unwrap();
    let release = Arc::new((Mutex::new(false), Condvar::new()));
    let servers = (0..n)
        .map(|i| {
            let handler = WhichThread { release: Arc::clone(&release) };
            let server: Server<WhichThread> =
                Server::from_listener(listener.try_clone().unwrap(), handler, Limits::default()).unwrap();
            let (stats, stop) = (server.stats(), server.shutdown_handle());
            let thread =
                std::thread::Builder::new().name(format!("loop-{i}")).spawn(move || server.run()).unwrap();
            Running { addr: Some(addr), stats, stop, thread: Some(thread) }
        })
        .collect();
    // `listener` is dropped here: the loops hold their own handles to the socket.
    Loops { addr, servers, release }
}

#[test]
fn a_blocked_loop_does_not_stop_the_others() {
    let loops = start_loops(2);
    let mut blocked = Client::tcp(loops.addr);
    blocked.send(&request_bytes(1, true, "/block", "", b""));
    // `started` arrives just before the handler blocks its loop's thread, so the next
    // connection can only be accepted and served by the other loop.
    let first = blocked.record();
    assert_eq!(first.kind, STDOUT);
    let other = Client::tcp(loops.addr).get("/who", "");
    {
        let (released, wake) = &*loops.release;
        *released.lock().unwrap() = true;
        wake.notify_all();
    }
    let rest = blocked.reply(1);
    let blocked_by = String::from_utf8_lossy(&rest.stdout).into_owned();
    assert!(other.starts_with("loop-"), "{other:?}");
    assert!(!blocked_by.contains(&other), "served by the other loop: {other} vs {blocked_by:?}");
    let served: Vec<u64> = loops.servers.iter().map(|s| s.snapshot().requests).collect();
    assert_eq!(served, [1, 1], "one request on each loop");
    drop(blocked);
    for server in loops.servers {
        server.wait_no_connections();
        server.stop();
    }
}

#[test]
fn loops_share_many_concurrent_clients() {
    let loops = start_loops(2);
    let addr = loops.addr;
    let clients: Vec<_> = (0..32)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = Client::tcp(addr);
                (0..50).map(|_| c.get("/who", "")).collect::<Vec<_>>()
            })
        })
        .collect();
    for c in clients {
        for name in c.join().expect("client") {
            assert!(name == "loop-0" || name == "loop-1", "{name:?}");
        }
    }
    let mut total = 0;
    for server in loops.servers {
        server.wait_no_connections();
        let s = server.stop();
        assert_eq!(s.closed_with_error, 0);
        total += s.requests;
    }
    assert_eq!(total, 32 * 50);
}

// ---- run_threads -------------------------------------------------------------------------

/// One server on `n` loops (`run_threads`), on a thread of the test's.
struct Threads {
    addr: std::net::SocketAddr,
    stats: Stats,
    stop: ShutdownHandle,
    release: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl Threads {
    fn start(n: usize, limits: Limits) -> Self {
        let release = Arc::new((Mutex::new(false), Condvar::new()));
        let handler = WhichThread { release: Arc::clone(&release) };
        let listen = Listen::Tcp("127.0.0.1:0".parse().unwrap());
        let server = Server::bind(&listen, handler, limits).unwrap();
        let (addr, stats, stop) = (server.local_addr().unwrap(), server.stats(), server.shutdown_handle());
        let thread = std::thread::spawn(move || server.run_threads(n));
        Self { addr, stats, stop, release, thread: Some(thread) }
    }

    fn release(&self) {
        let (released, wake) = &*self.release;
        *released.lock().unwrap() = true;
        wake.notify_all();
    }

    /// Blocks one loop: a `/block` request whose handler has started (and now holds its
    /// loop's thread until [`Self::release`]).
    fn block_one_loop(&self) -> Client {
        let mut blocked = Client::tcp(self.addr);
        blocked.send(&request_bytes(1, true, "/block", "", b""));
        assert_eq!(blocked.record().kind, STDOUT, "started");
        blocked
    }

    /// One shutdown through the one handle; `run_threads` returns (within 10 s).
    fn stop(mut self) -> std::io::Result<()> {
        self.stop.shutdown();
        let thread = self.thread.take().unwrap();
        wait_until("run_threads returns", || thread.is_finished());
        thread.join().expect("run_threads panicked")
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        self.release();
        if let Some(thread) = self.thread.take() {
            self.stop.shutdown();
            let _ = thread.join();
        }
    }
}

#[test]
fn run_threads_serves_on_every_loop_and_one_shutdown_stops_them() {
    let server = Threads::start(2, test_limits());
    // The blocked handler holds its loop, so the next connection wakes the other one.
    let mut blocked = server.block_one_loop();
    let mut other = Client::tcp(server.addr);
    let other_loop = other.get("/who", "");
    server.release();
    let blocked_loop = String::from_utf8_lossy(&blocked.reply(1).stdout).into_owned();
    let the_other = match other_loop.as_str() {
        "ember-fcgi-mio-0" => "ember-fcgi-mio-1",
        "ember-fcgi-mio-1" => "ember-fcgi-mio-0",
        name => panic!("served by {name:?}"),
    };
    assert!(blocked_loop.ends_with(the_other), "both loops served: {other_loop:?} and {blocked_loop:?}");
    // Both connections stay open (keep-alive, one on each loop) while one handle stops all.
    let s = server.stats.snapshot();
    assert_eq!((s.requests, s.open_connections), (2, 2), "one table for both loops");
    server.stop().expect("run_threads returns Ok");
    assert!(blocked.closed_by_server(), "closed by the shutdown");
    assert!(other.closed_by_server());
}

#[test]
fn run_threads_counts_every_loop_in_one_table() {
    let server = Threads::start(2, test_limits());
    let addr = server.addr;
    let clients: Vec<_> = (0..32)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = Client::tcp(addr);
                (0..50).map(|_| c.get("/who", "")).collect::<Vec<_>>()
            })
        })
        .collect();
    let mut loops = HashSet::new();
    for c in clients {
        loops.extend(c.join().expect("client"));
    }
    assert!(loops.iter().all(|l| l == "ember-fcgi-mio-0" || l == "ember-fcgi-mio-1"), "{loops:?}");
    eprintln!("served by {} loop(s)", loops.len());
    wait_until("all connections closed", || server.stats.open_connections() == 0);
    let s = server.stats.snapshot();
    assert_eq!((s.accepted, s.requests, s.closed_with_error), (32, 32 * 50, 0));
    server.stop().expect("run_threads returns Ok");
}

#[test]
fn run_threads_max_connections_bounds_all_loops_together() {
    let server = Threads::start(2, test_limits().with_max_connections(2));
    // One connection on each loop: loop A blocked in a handler, loop B serving keep-alive.
    let mut blocked = server.block_one_loop();
    let mut kept = Client::tcp(server.addr);
    let kept_loop = kept.get("/who", "");
    // Loop A is blocked, so loop B accepts the third; it holds one connection of its own,
    // but the server is full: refused.
    let mut third = std::net::TcpStream::connect(server.addr).unwrap();
    third.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 8];
    let n = third.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "one more than max_connections is closed at once");
    wait_until("a refusal", || server.stats.snapshot().refused_over_limit == 1);
    assert_eq!(server.stats.open_connections(), 2);
    server.release();
    let blocked_loop = String::from_utf8_lossy(&blocked.reply(1).stdout).into_owned();
    assert!(!blocked_loop.contains(&kept_loop), "one connection on each loop: {kept_loop} {blocked_loop:?}");
    drop((blocked, kept));
    wait_until("all connections closed", || server.stats.open_connections() == 0);
    // Room again, on whichever loop.
    assert!(Client::tcp(server.addr).get("/who", "").starts_with("ember-fcgi-mio-"));
    server.stop().expect("run_threads returns Ok");
}

#[test]
fn run_threads_stops_when_shut_down_before_it_runs() {
    let listen = Listen::Tcp("127.0.0.1:0".parse().unwrap());
    let release = Arc::new((Mutex::new(false), Condvar::new()));
    let server = Server::bind(&listen, WhichThread { release }, test_limits()).unwrap();
    server.shutdown_handle().shutdown();
    let start = Instant::now();
    server.run_threads(3).expect("Ok");
    assert!(start.elapsed() < Duration::from_secs(5));
}
