//! `run_threads`: a new connection wakes one loop asleep in its poller, not every loop
//! (the listener is registered with `EPOLLEXCLUSIVE`). Alone in its test binary, so the
//! `ember-fcgi-smol` threads it watches are this server's only.

#![cfg(any(target_os = "linux", target_os = "android"))]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use ember_fcgi_smol::Server;

/// Voluntary context switches of this process's loop threads, by thread id. (The kernel
/// keeps 15 bytes of a thread's name: `ember-fcgi-smol-0` is `ember-fcgi-smol`.)
fn loop_switches() -> HashMap<String, u64> {
    let mut found = HashMap::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() != "ember-fcgi-smol" {
            continue;
        }
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        let n = status.lines().find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"));
        found.insert(
            task.file_name().to_string_lossy().into_owned(),
            n.and_then(|n| n.trim().parse().ok()).unwrap_or(0),
        );
    }
    found
}

/// Without `EPOLLEXCLUSIVE` both loops wake for every connection (the one that loses the
/// race finds no event left and sleeps again: seen only in its context switches), so each
/// would switch at least once per connection; with it, a loop that accepts nothing sleeps.
#[test]
fn a_new_connection_wakes_one_loop() {
    const CONNECTIONS: u64 = 40;
    let app = TestApp::default();
    let server = Server::bind(&"127.0.0.1:0".parse().unwrap(), app.clone(), test_limits()).expect("bind");
    let server = Running::start(server, app, 2);
    std::thread::sleep(Duration::from_millis(50));
    let before = loop_switches();
    assert_eq!(before.len(), 2, "{before:?}");
    for n in 1..=CONNECTIONS {
        drop(std::net::TcpStream::connect(server.addr()).unwrap());
        server.wait_for("the connection served", |s| s.accepted == n && s.open_connections == 0);
        // Both loops asleep again (no connection, no timer) before the next one.
        std::thread::sleep(Duration::from_millis(20));
    }
    let after = loop_switches();
    let woken: Vec<u64> = before.iter().map(|(tid, b)| after[tid] - b).collect();
    eprintln!("{CONNECTIONS} connections: context switches per loop {woken:?}");
    let least = woken.iter().min().copied().unwrap_or(0);
    assert!(least < CONNECTIONS / 4, "every loop woken for every connection: {woken:?}");
    server.stop().expect("run_threads returns Ok");
}
