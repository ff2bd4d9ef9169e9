//! FastCGI inside a caller's own mio loop: token ranges, the caller's other sources, the
//! caller's waker, and shutdown through the same handle.

mod common;

use std::io::{Read, Write};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use common::*;
use ember_fcgi_mio::{Limits, Listen, Server, ShutdownHandle, Stats};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};

const OWN_LISTENER: Token = Token(0);
const OWN_WAKER: Token = Token(1);

struct Embedded {
    fcgi_addr: std::net::SocketAddr,
    own_addr: std::net::SocketAddr,
    stop: ShutdownHandle,
    stats: Stats,
    thread: JoinHandle<u64>,
}

/// Runs a loop that owns a plain TCP service ("hi" to every connection) on token 0 and
/// FastCGI on tokens 100..110; with `share_waker`, FastCGI uses the loop's own waker.
/// The thread returns how many connections its own service accepted.
fn start(share_waker: bool) -> Embedded {
    let listen = Listen::Tcp("127.0.0.1:0".parse().unwrap());
    let server = Server::bind(&listen, TestHandler, test_limits().with_max_connections(1000)).unwrap();
    let (fcgi_addr, stop, stats) = (server.local_addr().unwrap(), server.shutdown_handle(), server.stats());
    let mut own = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let own_addr = own.local_addr().unwrap();
    let thread = std::thread::spawn(move || {
        let mut poll = Poll::new().unwrap();
        poll.registry().register(&mut own, OWN_LISTENER, Interest::READABLE).unwrap();
        let mut fcgi = if share_waker {
            let waker = Arc::new(mio::Waker::new(poll.registry(), OWN_WAKER).unwrap());
            server.register_with_waker(poll.registry(), 100..110, waker).unwrap()
        } else {
            server.register(poll.registry(), 100..110).unwrap()
        };
        assert_eq!(fcgi.max_connections(), 8, "capped by the token range");
        let mut events = Events::with_capacity(64);
        let mut served = 0;
        loop {
            fcgi.process(poll.registry());
            if fcgi.is_finished() {
                break;
            }
            let timeout = fcgi.timeout().map_or(Duration::from_secs(1), |t| t.min(Duration::from_secs(1)));
            poll.poll(&mut events, Some(timeout)).unwrap();
            for event in events.iter() {
                if fcgi.handle_event(event) {
                    continue;
                }
                match event.token() {
                    OWN_LISTENER => {
                        while let Ok((mut s, _)) = own.accept() {
                            let _ = s.write_all(b"hi");
                            served += 1;
                        }
                    }
                    OWN_WAKER => {}
                    t => panic!("unknown token {t:?}"),
                }
            }
        }
        fcgi.deregister(poll.registry());
        served
    });
    Embedded { fcgi_addr, own_addr, stop, stats, thread }
}

fn check(share_waker: bool) {
    let e = start(share_waker);
    let mut c = Client::tcp(e.fcgi_addr);
    assert_eq!(c.get("/hello", "embedded"), "hello embedded");
    c.send(&get_values_bytes(&["FCGI_MAX_CONNS"]));
    let r = c.record();
    assert_eq!(decode_pairs(&r.content), vec![("FCGI_MAX_CONNS".to_string(), "8".to_string())]);

    let mut own = std::net::TcpStream::connect(e.own_addr).unwrap();
    let mut hi = [0u8; 2];
    own.read_exact(&mut hi).unwrap();
    assert_eq!(&hi, b"hi");

    // Nine connections for eight tokens: the ninth is refused.
    let mut more: Vec<Client> = (0..7).map(|_| Client::tcp(e.fcgi_addr)).collect();
    for m in &mut more {
        assert_eq!(m.get("/hello", "m"), "hello m");
    }
    let mut ninth = Client::tcp(e.fcgi_addr);
    assert!(ninth.closed_by_server());
    assert_eq!(e.stats.snapshot().refused_over_limit, 1);
    drop(more);

    e.stop.shutdown();
    assert!(c.closed_by_server(), "shutdown closes the idle connection");
    assert_eq!(e.thread.join().unwrap(), 1);
    assert_eq!(e.stats.snapshot().open_connections, 0);
}

#[test]
fn inside_a_caller_loop_with_own_waker() {
    check(false);
}

#[test]
fn inside_a_caller_loop_sharing_the_callers_waker() {
    check(true);
}

#[test]
fn token_range_too_small_is_an_error() {
    let listen = Listen::Tcp("127.0.0.1:0".parse().unwrap());
    let server = Server::bind(&listen, TestHandler, Limits::default()).unwrap();
    let poll = Poll::new().unwrap();
    let err = server.register(poll.registry(), 5..7).unwrap_err();
    assert!(err.to_string().contains("token range 5..7"), "{err}");
}
