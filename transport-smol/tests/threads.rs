//! `run_threads`: one loop per thread on the shared listener.

mod common;

use std::collections::HashSet;

use common::*;
use ember_fcgi_smol::{Listen, Server};

fn start_threads(threads: usize) -> Running {
    let app = TestApp::default();
    let server = Server::bind(&"127.0.0.1:0".parse().unwrap(), app.clone(), test_limits()).expect("bind");
    Running::start(server, app, threads)
}

#[test]
fn a_blocked_thread_does_not_stop_the_other() {
    let server = start_threads(2);
    let mut blocked = Client::tcp(server.addr());
    blocked.send(&request_bytes(1, true, "/block", "ms=1500", b""));
    // "started" arrives just before the handler blocks its thread in `thread::sleep`, so the
    // next connection can only be accepted and served by the other thread.
    assert_eq!(blocked.record().kind, STDOUT);
    let other = get_once(server.addr(), "/thread", "");
    let other_thread = other.body_str();
    let rest = blocked.reply(1);
    let blocked_thread =
        String::from_utf8_lossy(&rest.stdout).trim().trim_start_matches("done on ").to_owned();
    assert_ne!(other_thread, blocked_thread, "served by the other thread");
    drop(blocked);
    server.wait_idle();
}

#[test]
fn two_threads_serve_many_concurrent_clients() {
    let server = start_threads(2);
    let addr = server.addr();
    let clients: Vec<_> = (0..64)
        .map(|i| {
            std::thread::spawn(move || {
                let mut c = Client::tcp(addr);
                let mut threads = HashSet::new();
                for j in 0..20 {
                    let body = format!("client {i} request {j}");
                    assert_eq!(c.request(true, "/echo", "", body.as_bytes()).body(), body.as_bytes());
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
    let s = server.wait_idle();
    assert_eq!((s.accepted, s.requests, s.closed_with_error), (64, 64 * 40, 0));
    server.stop().expect("run_threads returns Ok");
}

#[test]
fn max_connections_bounds_all_loops_together() {
    let app = TestApp::default();
    let limits = test_limits().with_max_connections(2);
    let server =
        Server::bind(&Listen::Tcp("127.0.0.1:0".parse().unwrap()), app.clone(), limits).expect("bind");
    let server = Running::start(server, app, 2);
    let mut clients: Vec<Client> = (0..2).map(|_| Client::tcp(server.addr())).collect();
    for c in &mut clients {
        assert_eq!(c.request(true, "/hello", "", b"").body(), b"Hello, World!\n");
    }
    let mut third = Client::tcp(server.addr());
    assert!(third.closed_by_server(), "one more than max_connections is closed at once");
    server.wait_for("a refusal", |s| s.refused_over_limit == 1 && s.open_connections == 2);
    drop(clients);
    server.wait_idle();
}

#[test]
fn memory_budget_is_known_before_running() {
    let limits = test_limits().with_max_connections(100);
    let server =
        Server::bind(&Listen::Tcp("127.0.0.1:0".parse().unwrap()), TestApp::default(), limits).expect("bind");
    let budget = server.memory_budget();
    assert_eq!(budget.max_connections, 100);
    assert_eq!(budget.request_memory, limits.capacities.memory_bytes());
    assert!(budget.connection_future > 0 && budget.per_connection > budget.per_idle_connection);
    assert_eq!(budget.total(), (budget.per_connection + budget.request_memory) * 100 + budget.fixed);
    assert_eq!((budget.request_memory_lent, budget.request_memory_allocated), (0, 0));
}
