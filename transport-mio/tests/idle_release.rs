//! `IdleRelease`: the engine of a connection idle at a record boundary is dropped (its
//! memory returned) and made again, with one allocation, when the connection is readable;
//! the web server sees no difference; a resting connection's request memory goes back to
//! the pool after `memory_after`. A counting allocator tells when it happened. (Its own
//! test binary: a global allocator affects every test in it.)

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use ember_fcgi_mio::{IdleRelease, Listen, Server};

#[global_allocator]
static ALLOCATOR: common::counting::Counting = common::counting::Counting;

/// A TCP server with `release`, whose thread counts its allocations in `counter`.
fn counted_server(counter: &'static AtomicU64, release: IdleRelease) -> Running {
    let listen = Listen::Tcp("127.0.0.1:0".parse().unwrap());
    let server = Server::bind(&listen, TestHandler, test_limits()).unwrap().with_idle_release(release);
    let (addr, stats, stop) = (server.local_addr(), server.stats(), server.shutdown_handle());
    let thread = std::thread::spawn(move || {
        common::counting::count_this_thread(counter);
        server.run()
    });
    Running { addr, stats, stop, thread: Some(thread) }
}

/// Allocations of the server thread while `f` runs.
fn allocations(counter: &AtomicU64, f: impl FnOnce()) -> u64 {
    let before = counter.load(Ordering::Relaxed);
    f();
    counter.load(Ordering::Relaxed) - before
}

#[test]
fn an_idle_engine_is_released_and_made_again() {
    static ALLOCS: AtomicU64 = AtomicU64::new(0);
    // Long enough that back-to-back requests never see a release, even on a busy machine.
    const AFTER: Duration = Duration::from_millis(200);
    let server = counted_server(&ALLOCS, IdleRelease::default().with_after(AFTER).with_keep(0));
    let mut c = server.client();
    assert_eq!(c.get("/hello", "one"), "hello one");
    // Back to back: the engine stays.
    assert_eq!(allocations(&ALLOCS, || assert_eq!(c.get("/hello", "two"), "hello two")), 0);
    // Idle past `after`: released; the next request makes the engine again (one allocation),
    // and the web server cannot tell. A body and a second request check the stream's place.
    for round in 0..3 {
        std::thread::sleep(3 * AFTER);
        let n = allocations(&ALLOCS, || {
            c.send(&request_bytes(1, true, "/sink", "", &[9; 20_000]));
            assert_eq!(c.reply(1).body_str(), format!("20000 {:016x}", fnv(&[9; 20_000])), "round {round}");
            assert_eq!(c.get("/hello", "again"), "hello again");
        });
        assert_eq!(n, 1, "round {round}: one engine made again");
    }
    // A released connection still takes part in a graceful shutdown (it closes at once).
    std::thread::sleep(3 * AFTER);
    let s = server.stop();
    assert_eq!((s.requests, s.closed_with_error), (2 + 3 * 2, 0));
    assert!(c.closed_by_server(), "closed by the shutdown");
}

#[test]
fn never_keeps_every_engine() {
    static ALLOCS: AtomicU64 = AtomicU64::new(0);
    let server = counted_server(&ALLOCS, IdleRelease::NEVER);
    let mut c = server.client();
    assert_eq!(c.get("/hello", "one"), "hello one");
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(allocations(&ALLOCS, || assert_eq!(c.get("/hello", "two"), "hello two")), 0);
    drop(c);
    server.wait_no_connections();
    server.stop();
}

#[test]
fn few_connections_keep_their_engines() {
    static ALLOCS: AtomicU64 = AtomicU64::new(0);
    // The default keeps engines while at most 256 connections hold one.
    let release = IdleRelease::default().with_after(Duration::from_millis(20));
    let server = counted_server(&ALLOCS, release);
    let mut clients: Vec<Client> = (0..10).map(|_| server.client()).collect();
    for c in &mut clients {
        assert_eq!(c.get("/hello", "x"), "hello x");
    }
    std::thread::sleep(Duration::from_millis(150));
    let n = allocations(&ALLOCS, || {
        for c in &mut clients {
            assert_eq!(c.get("/hello", "y"), "hello y");
        }
    });
    assert_eq!(n, 0);
    drop(clients);
    server.wait_no_connections();
    server.stop();
}

#[test]
fn request_memory_goes_back_shortly_after_the_connection_rests() {
    static ALLOCS: AtomicU64 = AtomicU64::new(0);
    // Engines are kept: only the request memory comes and goes.
    let server = counted_server(&ALLOCS, IdleRelease::NEVER);
    let block = test_limits().capacities.memory_bytes() as u64;
    let mut c = server.client();
    assert_eq!(c.get("/hello", "one"), "hello one");
    // At rest: the block goes back to the pool within a sweep or two (`memory_after`).
    wait_until("the block back in the pool", || server.snapshot().memory_lent == 0);
    assert_eq!(server.snapshot().memory_allocated, block);
    // The next requests borrow the same block again: nothing is allocated.
    let n = allocations(&ALLOCS, || {
        for i in 0..20 {
            assert_eq!(c.get("/hello", &i.to_string()), format!("hello {i}"));
        }
    });
    assert_eq!(n, 0);
    wait_until("the block back in the pool", || server.snapshot().memory_lent == 0);
    assert_eq!(server.snapshot().memory_allocated, block);
    drop(c);
    server.wait_no_connections();
    server.stop();
}

#[test]
fn memory_after_says_how_long_a_resting_connection_keeps_its_memory() {
    static ALLOCS: AtomicU64 = AtomicU64::new(0);
    let block = test_limits().capacities.memory_bytes() as u64;
    // Never recalled: the connection at rest keeps its block.
    let kept = counted_server(&ALLOCS, IdleRelease::NEVER.with_memory_after(Duration::MAX));
    let mut c = kept.client();
    assert_eq!(c.get("/hello", "kept"), "hello kept");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!((kept.snapshot().memory_lent, kept.snapshot().memory_allocated), (block, block));
    // Closing the connection returns it.
    drop(c);
    kept.wait_no_connections();
    wait_until("the block back in the pool", || kept.snapshot().memory_lent == 0);
    kept.stop();
    // Zero: it goes back as soon as the connection is at rest, without a sweep.
    static ALLOCS_ZERO: AtomicU64 = AtomicU64::new(0);
    let at_once = counted_server(&ALLOCS_ZERO, IdleRelease::NEVER.with_memory_after(Duration::ZERO));
    let mut c = at_once.client();
    assert_eq!(c.get("/hello", "at once"), "hello at once");
    wait_until("the block back in the pool", || at_once.snapshot().memory_lent == 0);
    drop(c);
    at_once.wait_no_connections();
    at_once.stop();
}

fn fnv(bytes: &[u8]) -> u64 {
    let mut f = Fnv::new();
    f.update(bytes);
    f.0
}
