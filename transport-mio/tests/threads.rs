//! One loop per core: several threads, each running a server built with
//! `Server::from_listener` on a clone (`Listener::try_clone`) of one listener.

mod common;

use std::sync::{Arc, Condvar, Mutex};

use common::*;
use ember_fcgi_core::prelude::*;
use ember_fcgi_mio::{Limits, Listen, Listener, Server};

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
