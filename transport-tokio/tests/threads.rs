//! `run_threads`: one loop and tokio runtime per thread on the shared listener.

mod common;

use std::collections::HashSet;

use common::*;
use ember_fcgi_tokio::{Listen, Server};

#[test]
fn two_threads_serve_many_concurrent_clients() {
    let server = Running::tcp(test_limits(), Mode::Threads(2));
    let addr = server.addr();
    let clients: Vec<_> = (0..32)
        .map(|i| {
            std::thread::spawn(move || {
                let mut c = Client::tcp(addr);
                let mut threads = HashSet::new();
                for j in 0..10 {
                    let body = format!("client {i} request {j}");
                    assert_eq!(c.request(true, "/echo", "", body.as_bytes()).body(), body.as_bytes());
                    assert_eq!(c.request(true, "/sleep", "ms=1", b"").status(), 200);
                    threads.insert(c.request(true, "/thread", "", b"").body_str());
                }
                threads
            })
        })
        .collect();
    let mut threads = HashSet::new();
    for c in clients {
        threads.extend(c.join().expect("client"));
    }
    assert!(!threads.is_empty() && threads.len() <= 2, "{threads:?}");
    eprintln!("served by {} thread(s)", threads.len());
    let s = server.wait_for("no open connections", |s| s.open_connections == 0);
    assert_eq!((s.accepted, s.requests, s.closed_with_error), (32, 32 * 30, 0));
    server.stop().expect("run_threads returns Ok");
}

#[test]
fn a_gated_request_on_one_thread_and_shutdown_of_all() {
    let app = TestApp::default();
    let limits = test_limits().with_max_connections(3);
    let server =
        Server::bind(&Listen::Tcp("127.0.0.1:0".parse().unwrap()), app.clone(), limits).expect("bind");
    let server = Running::start(server, app, Mode::Threads(2));
    let mut gated = Client::tcp(server.addr());
    gated.send(&request_bytes(1, true, "/gate", "", b""));
    assert_eq!(gated.record().kind, STDOUT);
    assert_eq!(get_once(server.addr(), "/hello", "").status(), 200);
    server.app.state.open_gate();
    assert_eq!(gated.reply(1).stdout, b"released\n");
    drop(gated);
    server.wait_for("no open connections", |s| s.open_connections == 0);
    server.stop().expect("run_threads returns Ok");
}
