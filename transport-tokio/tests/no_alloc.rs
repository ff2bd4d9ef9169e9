//! Heap allocations per request in steady state: a counting global allocator watches the
//! whole process (the server's loop and its tokio runtime, the client) while keep-alive
//! requests run on one connection. The client reuses its buffers, so it allocates nothing.
//!
//! One test in this file, so no other test allocates meanwhile.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use ember_fcgi_testkit::alloc::{CountingAllocator, allocations};

use ember_fcgi_core::prelude::*;
use ember_fcgi_testkit::RequestSpec;
use ember_fcgi_tokio::{Limits, Listen, Server};

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Reads a body, then answers with a small response: the work of a typical request. On
/// `/sleep` it first awaits a 1 ms tokio timer.
struct Small;

impl Handler for Small {
    async fn handle(&self, req: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), HandlerError> {
        if req.params().get_str("SCRIPT_NAME") == Some("/sleep") {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let mut body = [0u8; 64];
        let n = req.read_into_slice(&mut body).await?;
        let mut out = res.send_head(200, &[("Content-Type", content_type::TEXT)]).await?;
        out.write_all(b"got ").await?;
        out.write_all(&body[..n]).await?;
        Ok(())
    }
}

/// One request with KEEP_CONN and an 11-byte body, prebuilt.
fn request(script: &str) -> Vec<u8> {
    let params: &[(&str, &str)] =
        &[("SCRIPT_NAME", script), ("REQUEST_METHOD", "POST"), ("CONTENT_LENGTH", "11")];
    RequestSpec { keep_conn: true, params, stdin: b"hello world", ..RequestSpec::default() }.encode()
}

/// Reads records into `buf` until END_REQUEST; returns the STDOUT bytes seen. No allocation.
fn read_reply(stream: &mut TcpStream, buf: &mut [u8]) -> usize {
    let (mut filled, mut at, mut stdout) = (0, 0, 0);
    loop {
        while filled - at < record_len(&buf[at..filled]) {
            if at > 0 {
                buf.copy_within(at..filled, 0);
                filled -= at;
                at = 0;
            }
            let n = stream.read(&mut buf[filled..]).expect("read");
            assert!(n > 0, "server closed");
            filled += n;
        }
        let kind = buf[at + 1];
        let len = record_len(&buf[at..filled]);
        match kind {
            6 => stdout += usize::from(u16::from_be_bytes([buf[at + 4], buf[at + 5]])),
            3 => {
                assert_eq!(filled, at + len, "nothing after END_REQUEST");
                return stdout;
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

/// How a measured server runs.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// `Server::run`: its own current-thread runtime and `LocalSet`.
    Run,
    /// `Server::serve` spawned on a `LocalSet` in an application's current-thread runtime.
    Serve,
}

/// Allocations during `n` keep-alive requests to `script` on one connection, after 300
/// to warm up.
fn measure(mode: Mode, script: &str, n: usize) -> u64 {
    let listen = Listen::Tcp("127.0.0.1:0".parse().unwrap());
    // The timeout timer is re-armed about once per `head_timeout` (not per request); an
    // hour keeps that out of the measured window even on a slow machine.
    let hour = Duration::from_secs(3600);
    let limits = Limits::default().with_head_timeout(hour).with_idle_timeout(hour);
    let server = Server::bind(&listen, Small, limits).expect("bind");
    let addr = server.local_addr().expect("tcp");
    let stop = server.shutdown_handle();
    let stats = server.stats();
    let thread = std::thread::spawn(move || match mode {
        Mode::Run => server.run(),
        Mode::Serve => {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let local = tokio::task::LocalSet::new();
            runtime.block_on(local.run_until(async { local_serve(server).await }))
        }
    });

    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let request = request(script);
    let mut buf = vec![0u8; 64 * 1024];
    let expected = "Status: 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\r\ngot hello world".len();
    let mut run = |n: usize| {
        for _ in 0..n {
            stream.write_all(&request).expect("write");
            assert_eq!(read_reply(&mut stream, &mut buf), expected);
        }
    };
    run(200);
    std::thread::sleep(Duration::from_millis(200));
    run(100);
    let before = allocations();
    assert!(before > 0, "the counting allocator is in use");
    let started = std::time::Instant::now();
    run(n);
    let allocations = allocations() - before;
    eprintln!("{mode:?} {script}: {allocations} allocations in {n} requests, {:?}", started.elapsed());

    drop(stream);
    stop.shutdown();
    thread.join().expect("server thread").expect("run");
    let s = stats.snapshot();
    assert_eq!((s.requests, s.accepted, s.open_connections), (300 + n as u64, 1, 0));
    allocations
}

/// The server's future spawned on the current `LocalSet`, as an application would.
async fn local_serve(server: Server<Small>) -> std::io::Result<()> {
    tokio::task::spawn_local(server.serve()).await.expect("the serve task panicked")
}

#[test]
fn keep_alive_requests_allocate_nothing() {
    let run = measure(Mode::Run, "/small", 2000);
    let serve = measure(Mode::Serve, "/small", 2000);
    let run_timer = measure(Mode::Run, "/sleep", 500);
    eprintln!(
        "allocations: 2000 keep-alive requests: run {run}, serve on a LocalSet {serve}; \
         500 requests awaiting a 1 ms tokio timer: run {run_timer}"
    );
    assert_eq!(run, 0, "heap allocations during 2000 keep-alive requests with `run`");
    assert_eq!(serve, 0, "heap allocations during 2000 keep-alive requests with `serve`");
}
