//! No heap allocation per request in steady state, and none while streaming large bodies:
//! a counting global allocator counts what the server's thread allocates. (Its own test
//! binary: a global allocator affects every test in it. Only the server thread is counted,
//! so clients and parallel tests do not disturb the count.)

mod common;

use std::sync::atomic::{AtomicU64, Ordering};

use common::*;
use ember_fcgi_mio::{Limits, Listen, Server};

#[global_allocator]
static ALLOCATOR: common::counting::Counting = common::counting::Counting;

/// Starts a TCP server whose thread counts its allocations in `counter`.
fn counted_server(counter: &'static AtomicU64, limits: Limits) -> Running {
    let listen = Listen::Tcp("127.0.0.1:0".parse().unwrap());
    let server = Server::bind(&listen, TestHandler, limits).unwrap();
    let (addr, stats, stop) = (server.local_addr(), server.stats(), server.shutdown_handle());
    let thread = std::thread::spawn(move || {
        common::counting::count_this_thread(counter);
        server.run()
    });
    Running { addr, stats, stop, thread: Some(thread) }
}

#[test]
fn keep_conn_requests_allocate_nothing() {
    static ALLOCS: AtomicU64 = AtomicU64::new(0);
    let server = counted_server(&ALLOCS, test_limits());
    let mut c = server.client();
    // One request at a time, as web servers do (a BEGIN for an id still active is a
    // protocol error).
    let sink = request_bytes(1, true, "/sink", "", &[5; 3000]);
    let hello = request_bytes(1, true, "/hello", "world", b"");
    let expected = format!("3000 {:016x}", fnv_of(&[5; 3000]));
    let pair = |c: &mut Client| {
        c.send(&sink);
        assert_eq!(c.reply(1).body_str(), expected);
        c.send(&hello);
        assert_eq!(c.reply(1).body_str(), "hello world");
    };
    for _ in 0..10 {
        pair(&mut c);
    }
    let before = ALLOCS.load(Ordering::Relaxed);
    for _ in 0..1000 {
        pair(&mut c);
    }
    let during = ALLOCS.load(Ordering::Relaxed) - before;
    assert_eq!(during, 0, "allocations over 2000 keep-conn requests");
    assert_eq!(server.snapshot().requests, 2020);

    // The counter does count: a new connection costs its future, socket state and waker
    // (its request memory is the block the first connection gave back once at rest).
    wait_until("the block back in the pool", || server.snapshot().memory_lent == 0);
    let before = ALLOCS.load(Ordering::Relaxed);
    let mut second = server.client();
    pair(&mut second);
    let setup = ALLOCS.load(Ordering::Relaxed) - before;
    assert_eq!(setup, 3, "allocations to set up a connection");
}

#[test]
fn many_connections_steady_state_allocates_nothing() {
    static ALLOCS: AtomicU64 = AtomicU64::new(0);
    let server = counted_server(&ALLOCS, test_limits());
    let mut clients: Vec<Client> = (0..100).map(|_| server.client()).collect();
    let req = request_bytes(1, true, "/hello", "many", b"body");
    let round = |clients: &mut Vec<Client>| {
        for c in clients.iter_mut() {
            c.send(&req);
        }
        for c in clients.iter_mut() {
            assert_eq!(c.reply(1).body_str(), "hello many");
        }
    };
    // Warm-up: every connection busy at once (a body not ended yet), so the pool holds a
    // block for each of them; later rounds, however their requests and the memory a
    // resting connection keeps for a moment (`IdleRelease::memory_after`) overlap, need
    // no new one.
    let block = test_limits().capacities.memory_bytes() as u64;
    let mut head = begin_bytes(1, true);
    head.extend(params_bytes(1, &[("SCRIPT_NAME", "/sink"), ("CONTENT_LENGTH", "4")]));
    push_record(&mut head, STDIN, 1, b"ab");
    for c in clients.iter_mut() {
        c.send(&head);
    }
    wait_until("a block lent to every connection", || server.snapshot().memory_lent == 100 * block);
    let mut rest = Vec::new();
    push_record(&mut rest, STDIN, 1, b"cd");
    push_record(&mut rest, STDIN, 1, b"");
    for c in clients.iter_mut() {
        c.send(&rest);
    }
    let sunk = format!("4 {:016x}", fnv_of(b"abcd"));
    for c in clients.iter_mut() {
        assert_eq!(c.reply(1).body_str(), sunk);
    }
    round(&mut clients);
    let before = ALLOCS.load(Ordering::Relaxed);
    for _ in 0..20 {
        round(&mut clients);
    }
    assert_eq!(
        ALLOCS.load(Ordering::Relaxed) - before,
        0,
        "allocations over 2000 requests on 100 connections"
    );
}

#[test]
fn streaming_64_mib_each_way_allocates_nothing() {
    static ALLOCS: AtomicU64 = AtomicU64::new(0);
    const SIZE: u64 = 64 << 20;
    let server = counted_server(&ALLOCS, test_limits());
    let mut c = server.client();
    assert_eq!(c.get("/hello", "warm"), "hello warm");
    let before = ALLOCS.load(Ordering::Relaxed);

    let mut msg = begin_bytes(1, true);
    msg.extend(params_bytes(1, &[("SCRIPT_NAME", "/sink"), ("CONTENT_LENGTH", &SIZE.to_string())]));
    c.send(&msg);
    let mut chunk = vec![0u8; 65528];
    let mut record = Vec::with_capacity(65536 + 8);
    let mut fnv = Fnv::new();
    let mut sent = 0u64;
    while sent < SIZE {
        let n = (SIZE - sent).min(chunk.len() as u64) as usize;
        pattern(sent, &mut chunk[..n]);
        fnv.update(&chunk[..n]);
        record.clear();
        push_record(&mut record, STDIN, 1, &chunk[..n]);
        c.send(&record);
        sent += n as u64;
    }
    record.clear();
    push_record(&mut record, STDIN, 1, b"");
    c.send(&record);
    assert_eq!(c.reply(1).body_str(), format!("{SIZE} {:016x}", fnv.0));

    c.send(&request_bytes(1, true, "/source", &SIZE.to_string(), b""));
    let mut stdout = 0u64;
    loop {
        let r = c.record();
        match r.kind {
            STDOUT => stdout += r.content.len() as u64,
            END_REQUEST => break,
            k => panic!("unexpected record {k}"),
        }
    }
    assert!(stdout > SIZE, "head plus {SIZE} body bytes, got {stdout}");
    assert_eq!(ALLOCS.load(Ordering::Relaxed) - before, 0, "allocations while streaming 128 MiB");
}

fn fnv_of(bytes: &[u8]) -> u64 {
    let mut f = Fnv::new();
    f.update(bytes);
    f.0
}
