//! The handler API costs no allocation per request on the plain (non-`http`) path: a
//! `handler_fn` closure with shared state, half of whose requests fail with an application
//! error through `?` (500, the text on FCGI_STDERR, counted), runs 2000 keep-conn requests
//! on one connection on each server with 0 heap allocations in the whole process.
//!
//! One test in this file, so no other test allocates meanwhile.

use std::fmt;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ember_fcgi_testkit::alloc::{CountingAllocator, allocations};

use ember_fcgi::prelude::*;
use ember_fcgi::server::Stats;
use ember_fcgi::server::{Limits, Listen};

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// An application error, as a storage layer would return it.
#[derive(Debug)]
struct QuotaExceeded(u64);

impl fmt::Display for QuotaExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "quota exceeded after {} requests", self.0)
    }
}

impl std::error::Error for QuotaExceeded {}

fn check_quota(path: &str, served: u64) -> Result<(), QuotaExceeded> {
    if path == "/fail" { Err(QuotaExceeded(served)) } else { Ok(()) }
}

/// One keep-conn request for `path`, prebuilt.
fn request(path: &str) -> Vec<u8> {
    let mut params = Vec::new();
    for (name, value) in [("SCRIPT_NAME", path), ("REQUEST_METHOD", "GET")] {
        params.extend_from_slice(&[name.len() as u8, value.len() as u8]);
        params.extend_from_slice(name.as_bytes());
        params.extend_from_slice(value.as_bytes());
    }
    let mut out = Vec::new();
    let mut record = |kind: u8, content: &[u8]| {
        out.extend_from_slice(&[1, kind, 0, 1, 0, content.len() as u8, 0, 0]);
        out.extend_from_slice(content);
    };
    record(1, &[0, 1, 1, 0, 0, 0, 0, 0]);
    record(4, &params);
    record(4, b"");
    record(5, b"");
    out
}

/// Reads records until END_REQUEST; returns (STDOUT bytes, STDERR bytes, app status).
/// No allocation.
fn read_reply(stream: &mut TcpStream, buf: &mut [u8]) -> (usize, usize, u32) {
    let (mut filled, mut at, mut stdout, mut stderr) = (0, 0, 0, 0);
    loop {
        while filled - at < record_len(&buf[at..filled]) {
            buf.copy_within(at..filled, 0);
            filled -= at;
            at = 0;
            let n = stream.read(&mut buf[filled..]).expect("read");
            assert!(n > 0, "server closed");
            filled += n;
        }
        let len = record_len(&buf[at..filled]);
        let content = usize::from(u16::from_be_bytes([buf[at + 4], buf[at + 5]]));
        match buf[at + 1] {
            6 => stdout += content,
            7 => stderr += content,
            3 => {
                let status = u32::from_be_bytes([buf[at + 8], buf[at + 9], buf[at + 10], buf[at + 11]]);
                return (stdout, stderr, status);
            }
            other => panic!("unexpected record type {other}"),
        }
        at += len;
    }
}

/// Header plus content plus padding of the record at the front of `b` (8 if incomplete).
fn record_len(b: &[u8]) -> usize {
    if b.len() < 8 { 8 } else { 8 + usize::from(u16::from_be_bytes([b[4], b[5]])) + usize::from(b[6]) }
}

/// Allocations during 1000 good and 1000 failing requests, after 300 to warm up.
fn measure(addr: SocketAddr) -> u64 {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let (ok, fail) = (request("/ok"), request("/fail"));
    let mut buf = vec![0u8; 64 * 1024];
    let ok_len =
        "Status: 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\n\r\nok\n".len();
    let fail_len =
        "Status: 500 Internal Server Error\r\nContent-Type: text/plain\r\n\r\nInternal Server Error\n".len();
    let mut run = |n: usize| {
        for _ in 0..n {
            stream.write_all(&ok).expect("write");
            assert_eq!(read_reply(&mut stream, &mut buf), (ok_len, 0, 0));
            stream.write_all(&fail).expect("write");
            let (stdout, stderr, status) = read_reply(&mut stream, &mut buf);
            assert_eq!((stdout, status), (fail_len, 1));
            assert!(stderr >= "quota exceeded after 1 requests\n".len(), "the error text is logged");
        }
    };
    run(100);
    std::thread::sleep(Duration::from_millis(200));
    run(50);
    let before = allocations();
    run(1000);
    allocations() - before
}

/// Runs a server on its own thread while [`measure`] runs, then stops it.
fn measure_while(
    addr: SocketAddr,
    run: impl FnOnce() -> std::io::Result<()> + Send,
    stop: impl FnOnce(),
) -> u64 {
    std::thread::scope(|scope| {
        let thread = scope.spawn(run);
        let allocations = measure(addr);
        stop();
        thread.join().expect("server thread").expect("run");
        allocations
    })
}

fn limits() -> Limits {
    let hour = Duration::from_secs(3600);
    Limits::default().with_head_timeout(hour).with_idle_timeout(hour)
}

fn check_stats(stats: &Stats) {
    let s = stats.snapshot();
    assert_eq!((s.requests, s.handler_errors, s.requests_aborted), (2300, 1150, 0));
}

#[test]
fn closure_handlers_and_app_errors_allocate_nothing() {
    // State shared by every request (a static, so the closure is `'static` and `Copy`).
    static SERVED: AtomicU64 = AtomicU64::new(0);
    let handler = handler_fn(async |req: &mut Request<'_>, res: &mut Response<'_>| {
        let n = SERVED.fetch_add(1, Ordering::Relaxed) + 1;
        check_quota(req.params().script_name().unwrap_or(""), n)?;
        res.send_response(200, content_type::TEXT, b"ok\n").await?;
        Ok(())
    });
    let listen = Listen::Tcp("127.0.0.1:0".parse().expect("addr"));

    let server = ember_fcgi::mio::Server::bind(&listen, handler, limits()).expect("bind");
    let (addr, stop, stats) = (server.local_addr().expect("tcp"), server.shutdown_handle(), server.stats());
    let mio = measure_while(addr, move || server.run(), move || stop.shutdown());
    check_stats(&stats);

    let server = ember_fcgi::smol::Server::bind(&listen, handler, limits()).expect("bind");
    let (addr, stop, stats) = (server.local_addr().expect("tcp"), server.shutdown_handle(), server.stats());
    let smol = measure_while(addr, move || server.run(), move || stop.shutdown());
    check_stats(&stats);
    eprintln!("allocations in 2000 requests (half failing): mio {mio}, smol {smol}");
    assert_eq!((mio, smol), (0, 0));
}
