//! Heap allocations per request of `ember_fcgi::tower`, counted in the whole process
//! (server and a client that allocates nothing while measuring): a hand-written service
//! answering a `String`, an axum `Router` GET, and an axum `Json` POST, on each server.
//! Printed; the assertions are loose ceilings that catch a regression by a multiple.
//!
//! One test in this file, so no other test allocates meanwhile.
#![cfg(feature = "tower")]

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::routing::{get, post};
use ember_fcgi::Handler;
use ember_fcgi::http;
use ember_fcgi::server::{Limits, Listen};
use ember_fcgi::tower::{RequestBody, Service, ServiceHandler};
use ember_fcgi_testkit::alloc::{CountingAllocator, allocations};
use ember_fcgi_testkit::wire::RequestSpec;

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

#[derive(Clone)]
struct Plain;

impl Service<http::Request<RequestBody>> for Plain {
    type Response = http::Response<String>;
    type Error = Infallible;
    type Future = Ready<Result<http::Response<String>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<RequestBody>) -> Self::Future {
        ready(Ok(http::Response::new(String::from("ok\n"))))
    }
}

fn router() -> Router {
    Router::new()
        .route("/ok", get(|| async { "ok\n" }))
        .route("/json", post(|Json(v): Json<serde_json::Value>| async move { Json(v) }))
}

/// A keep-conn request as nginx sends it (13 variables, 3 of them headers).
fn request(method: &str, uri: &str, body: &[u8]) -> Vec<u8> {
    let length = body.len().to_string();
    let params = [
        ("GATEWAY_INTERFACE", "CGI/1.1"),
        ("REQUEST_METHOD", method),
        ("REQUEST_URI", uri),
        ("SCRIPT_NAME", uri),
        ("QUERY_STRING", ""),
        ("CONTENT_LENGTH", if body.is_empty() { "" } else { &length }),
        ("CONTENT_TYPE", if body.is_empty() { "" } else { "application/json" }),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("REMOTE_ADDR", "192.0.2.7"),
        ("REMOTE_PORT", "51234"),
        ("HTTP_HOST", "example.test"),
        ("HTTP_USER_AGENT", "curl/8.5.0"),
        ("HTTP_ACCEPT", "*/*"),
    ];
    RequestSpec { keep_conn: true, params: &params, stdin: body, ..Default::default() }.encode()
}

/// Reads records until END_REQUEST; returns (STDOUT bytes, app status). No allocation.
fn read_reply(stream: &mut TcpStream, buf: &mut [u8]) -> (usize, u32) {
    let (mut filled, mut at, mut stdout) = (0, 0, 0);
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
            7 => {}
            3 => return (stdout, u32::from_be_bytes([buf[at + 8], buf[at + 9], buf[at + 10], buf[at + 11]])),
            other => panic!("unexpected record type {other}"),
        }
        at += len;
    }
}

fn record_len(b: &[u8]) -> usize {
    if b.len() < 8 { 8 } else { 8 + usize::from(u16::from_be_bytes([b[4], b[5]])) + usize::from(b[6]) }
}

const MEASURED: u64 = 500;

/// Allocations per request over [`MEASURED`] requests, after a warm-up.
fn measure(addr: SocketAddr, request: &[u8]) -> f64 {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let mut buf = vec![0u8; 64 * 1024];
    let mut run = |n: u64| {
        for _ in 0..n {
            stream.write_all(request).expect("write");
            let (stdout, status) = read_reply(&mut stream, &mut buf);
            assert!(stdout > 0 && status == 0, "{stdout} {status}");
        }
    };
    run(100);
    std::thread::sleep(Duration::from_millis(100));
    run(20);
    let before = allocations();
    run(MEASURED);
    (allocations() - before) as f64 / MEASURED as f64
}

/// Per request on (mio, smol).
fn on_both<H: Handler + Clone + Send + 'static>(handler: H, request: &[u8]) -> (f64, f64) {
    let listen = Listen::Tcp("127.0.0.1:0".parse().expect("addr"));
    let hour = Duration::from_secs(3600);
    let limits = Limits::default().with_head_timeout(hour).with_idle_timeout(hour);
    let server = ember_fcgi::mio::Server::bind(&listen, handler.clone(), limits).expect("bind");
    let (addr, stop) = (server.local_addr().expect("tcp"), server.shutdown_handle());
    let mio = std::thread::scope(|s| {
        let t = s.spawn(move || server.run());
        let n = measure(addr, request);
        stop.shutdown();
        t.join().expect("join").expect("run");
        n
    });
    let server = ember_fcgi::smol::Server::bind(&listen, handler, limits).expect("bind");
    let (addr, stop) = (server.local_addr().expect("tcp"), server.shutdown_handle());
    let smol = std::thread::scope(|s| {
        let t = s.spawn(move || server.run());
        let n = measure(addr, request);
        stop.shutdown();
        t.join().expect("join").expect("run");
        n
    });
    (mio, smol)
}

/// The `http` bridge alone: `http_parts()` and a fixed answer, for comparison.
async fn parts_only(
    req: &mut ember_fcgi::Request<'_>,
    res: &mut ember_fcgi::Response<'_>,
) -> Result<(), ember_fcgi::HandlerError> {
    use ember_fcgi::http::RequestExt as _;
    let parts = req.http_parts()?;
    drop(parts);
    res.send_response(200, ember_fcgi::content_type::TEXT, b"ok\n").await?;
    Ok(())
}

#[test]
fn allocations_per_request() {
    let bridge = on_both(ember_fcgi::handler_fn(parts_only), &request("GET", "/ok", b""));
    let plain = on_both(ServiceHandler::new(Plain), &request("GET", "/ok", b""));
    let axum_get = on_both(ServiceHandler::new(router()), &request("GET", "/ok", b""));
    let axum_json = on_both(ServiceHandler::new(router()), &request("POST", "/json", br#"{"a":[1,2,3]}"#));
    eprintln!(
        "allocations per request (mio, smol): http_parts alone {bridge:?}, plain service {plain:?}, \
         axum GET {axum_get:?}, axum Json POST {axum_json:?}"
    );
    for (what, (mio, smol), ceiling) in
        [("plain", plain, 20.0), ("axum GET", axum_get, 30.0), ("axum Json", axum_json, 45.0)]
    {
        assert!(mio <= ceiling && smol <= ceiling, "{what}: {mio} / {smol} allocations per request");
    }
}
