//! `ember_fcgi::tower`: an axum `Router` (and hand-written tower services) served
//! unchanged on the smol and the mio server, over real sockets with the testkit client:
//! extractors (`Path`, `Query`, `Json`, `Form`, `State`, `Extension`), streamed uploads and
//! downloads, errors, readiness, backpressure of a body the service does not read (yet),
//! and the web server going away.
#![cfg(feature = "tower")]

use std::convert::Infallible;
use std::future::{Ready, poll_fn, ready};
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Extension, Form, Json, Path, Query, State};
use axum::routing::{get, post};
use ember_fcgi::Handler;
use ember_fcgi::http;
use ember_fcgi::server::{Limits, Listen, ShutdownHandle, Stats};
use ember_fcgi::tower::{CgiVars, RemoteAddr, RequestBody, Service, ServiceHandler};
use ember_fcgi_testkit::data::{FNV_START, fnv1a, pattern_vec};
use ember_fcgi_testkit::wire::{END_REQUEST, RequestSpec, STDOUT, abort_bytes};
use ember_fcgi_testkit::{Client, Reply};
use futures_lite::StreamExt as _;
use serde::Deserialize;

// ---- servers ----------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Transport {
    Mio,
    Smol,
    Tokio,
}

const TRANSPORTS: [Transport; 3] = [Transport::Smol, Transport::Mio, Transport::Tokio];

struct Running {
    addr: std::net::SocketAddr,
    stats: Stats,
    stop: ShutdownHandle,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.shutdown();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn start<H: Handler + Send + 'static>(transport: Transport, handler: H) -> Running {
    let listen = Listen::Tcp("127.0.0.1:0".parse().expect("address"));
    let limits = Limits::default();
    let (addr, stats, stop, thread) = match transport {
        Transport::Mio => {
            let server = ember_fcgi::mio::Server::bind(&listen, handler, limits).expect("bind");
            let (addr, stats, stop) = (server.local_addr(), server.stats(), server.shutdown_handle());
            (addr, stats, stop, std::thread::spawn(move || server.run()))
        }
        Transport::Smol => {
            let server = ember_fcgi::smol::Server::bind(&listen, handler, limits).expect("bind");
            let (addr, stats, stop) = (server.local_addr(), server.stats(), server.shutdown_handle());
            (addr, stats, stop, std::thread::spawn(move || server.run()))
        }
        Transport::Tokio => {
            let server = ember_fcgi::tokio::Server::bind(&listen, handler, limits).expect("bind");
            let (addr, stats, stop) = (server.local_addr(), server.stats(), server.shutdown_handle());
            (addr, stats, stop, std::thread::spawn(move || server.run()))
        }
    };
    Running { addr: addr.expect("tcp"), stats, stop, thread: Some(thread) }
}

// ---- requests ---------------------------------------------------------------------------

/// A keep-conn request (id 1) as nginx would send it for `method uri`.
fn request(method: &str, uri: &str, content_type: &str, body: &[u8], extra: &[(&str, &str)]) -> Vec<u8> {
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    let length = if body.is_empty() && method == "GET" { String::new() } else { body.len().to_string() };
    let mut params: Vec<(&str, &str)> = vec![
        ("GATEWAY_INTERFACE", "CGI/1.1"),
        ("REQUEST_METHOD", method),
        ("REQUEST_URI", uri),
        ("SCRIPT_NAME", path),
        ("QUERY_STRING", query),
        ("CONTENT_LENGTH", &length),
        ("CONTENT_TYPE", content_type),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("HTTP_HOST", "example.test"),
        ("REMOTE_ADDR", "192.0.2.7"),
        ("REMOTE_PORT", "51234"),
    ];
    params.extend_from_slice(extra);
    RequestSpec { keep_conn: true, params: &params, stdin: body, ..Default::default() }.encode()
}

fn roundtrip(c: &mut Client, bytes: &[u8]) -> Reply {
    c.send(bytes);
    c.reply(1)
}

fn get_uri(c: &mut Client, uri: &str) -> Reply {
    roundtrip(c, &request("GET", uri, "", b"", &[]))
}

fn head(reply: &Reply) -> String {
    reply.split().0
}

fn checksum(body: &[u8]) -> String {
    format!("len={} fnv={:016x}", body.len(), fnv1a(FNV_START, body))
}

// ---- the axum app -----------------------------------------------------------------------

/// Opens once; tasks waiting on it are woken (from any thread).
#[derive(Default, Debug)]
struct Gate {
    open: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Gate {
    fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
        if let Some(w) = self.waker.lock().unwrap().take() {
            w.wake();
        }
    }

    async fn wait(&self) {
        poll_fn(|cx| {
            if self.open.load(Ordering::SeqCst) {
                return Poll::Ready(());
            }
            *self.waker.lock().unwrap() = Some(cx.waker().clone());
            if self.open.load(Ordering::SeqCst) { Poll::Ready(()) } else { Poll::Pending }
        })
        .await
    }
}

#[derive(Clone, Default, Debug)]
struct AppState {
    hits: Arc<AtomicU64>,
    gate: Arc<Gate>,
    /// `/forever` handlers whose future was dropped.
    dropped: Arc<AtomicU64>,
    started: Arc<AtomicU64>,
}

struct OnDrop(Arc<AtomicU64>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[derive(Deserialize)]
struct Search {
    q: String,
    page: Option<u32>,
}

#[derive(Deserialize)]
struct Signup {
    name: String,
    age: u8,
}

async fn item(Path(id): Path<u32>, Query(search): Query<Search>) -> String {
    format!("item {id} q={} page={:?}\n", search.q, search.page)
}

async fn echo_json(Json(value): Json<serde_json::Value>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "echo": value }))
}

async fn signup(Form(form): Form<Signup>) -> String {
    format!("welcome {} ({})\n", form.name, form.age)
}

async fn hits(State(state): State<AppState>) -> String {
    format!("hits {}\n", state.hits.fetch_add(1, Ordering::SeqCst) + 1)
}

/// Streams the body, as it arrives; its length, checksum and largest chunk.
async fn upload(body: Body) -> Result<String, (http::StatusCode, String)> {
    let (mut len, mut hash, mut largest) = (0usize, FNV_START, 0usize);
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| (http::StatusCode::BAD_REQUEST, e.to_string()))?;
        len += chunk.len();
        largest = largest.max(chunk.len());
        hash = fnv1a(hash, &chunk);
    }
    Ok(format!("len={len} fnv={hash:016x} largest={largest}\n"))
}

async fn whole(body: Bytes) -> String {
    format!("{}\n", checksum(&body))
}

/// Twenty frames of 5000 bytes, yielding to the executor between them.
async fn download() -> Body {
    let stream = futures_lite::stream::unfold(0u64, |i| async move {
        if i == 20 {
            return None;
        }
        futures_lite::future::yield_now().await;
        let mut frame = vec![0u8; 5000];
        ember_fcgi_testkit::data::pattern(i * 5000, &mut frame);
        Some((Ok::<_, Infallible>(Bytes::from(frame)), i + 1))
    });
    Body::from_stream(stream)
}

async fn body_error() -> Body {
    Body::from_stream(futures_lite::stream::iter([Err::<Bytes, _>(std::io::Error::other("disk on fire"))]))
}

async fn late_error() -> Body {
    Body::from_stream(futures_lite::stream::iter([
        Ok(Bytes::from_static(b"first part\n")),
        Err(std::io::Error::other("disk on fire later")),
    ]))
}

async fn ignore() -> &'static str {
    "ignored\n"
}

/// Waits for the gate before reading the body.
async fn slow(State(state): State<AppState>, body: Body) -> Result<String, (http::StatusCode, String)> {
    state.gate.wait().await;
    upload(body).await
}

async fn forever(State(state): State<AppState>) -> &'static str {
    let _guard = OnDrop(state.dropped.clone());
    state.started.fetch_add(1, Ordering::SeqCst);
    std::future::pending::<()>().await;
    "never"
}

/// Server-sent events: one at once, the next once the gate opens.
async fn events(State(state): State<AppState>) -> ([(http::HeaderName, &'static str); 1], Body) {
    let stream = futures_lite::stream::unfold(0, move |i| {
        let gate = state.gate.clone();
        async move {
            match i {
                0 => Some((Ok::<_, Infallible>(Bytes::from_static(b"data: one\n\n")), 1)),
                1 => {
                    gate.wait().await;
                    Some((Ok(Bytes::from_static(b"data: two\n\n")), 2))
                }
                _ => None,
            }
        }
    });
    ([(http::header::CONTENT_TYPE, "text/event-stream")], Body::from_stream(stream))
}

/// Takes the body and never reads it, nor answers.
async fn hold(State(state): State<AppState>, _body: Body) -> &'static str {
    forever(State(state)).await
}

async fn vars(
    Extension(vars): Extension<CgiVars>,
    Extension(remote): Extension<RemoteAddr>,
    request: http::Request<Body>,
) -> String {
    format!(
        "{} {} {:?} script={} path_info={} remote={} ip={} vars={}\n",
        request.method(),
        request.uri(),
        request.version(),
        vars.get_str("SCRIPT_NAME").unwrap_or("-"),
        vars.get_str("PATH_INFO").unwrap_or("-"),
        remote,
        remote.0.ip(),
        vars.len(),
    )
}

fn app(state: AppState) -> Router {
    Router::new()
        .route("/items/{id}", get(item))
        .route("/json", post(echo_json))
        .route("/form", post(signup))
        .route("/hits", get(hits))
        .route("/upload", post(upload))
        .route("/whole", post(whole).layer(DefaultBodyLimit::max(4 << 20)))
        .route("/download", get(download))
        .route("/body-error", get(body_error))
        .route("/late-error", get(late_error))
        .route("/ignore", post(ignore))
        .route("/slow", post(slow))
        .route("/forever", get(forever))
        .route("/vars", get(vars))
        .route("/events", get(events))
        .route("/echo", post(|body: Body| async move { body }))
        .route("/hold", post(hold))
        .with_state(state)
}

fn serve_app(transport: Transport) -> (Running, AppState) {
    let state = AppState::default();
    (start(transport, ServiceHandler::new(app(state.clone()))), state)
}

// ---- tests: the axum app ----------------------------------------------------------------

#[test]
fn extractors() {
    for transport in TRANSPORTS {
        let (server, _state) = serve_app(transport);
        let mut c = Client::tcp(server.addr);

        let reply = get_uri(&mut c, "/items/42?q=fast%20cgi&page=3");
        assert_eq!((reply.status(), reply.body_str().as_str()), (200, "item 42 q=fast cgi page=Some(3)\n"));
        assert!(
            head(&reply).contains("content-type: text/plain; charset=utf-8"),
            "{transport:?} {}",
            head(&reply)
        );
        assert!(head(&reply).contains("content-length: 32"), "{}", head(&reply));

        // HEAD: axum's GET route, without the body.
        let reply = roundtrip(&mut c, &request("HEAD", "/items/42?q=a", "", b"", &[]));
        assert_eq!((reply.status(), reply.body()), (200, &b""[..]), "{transport:?}");
        assert!(head(&reply).ends_with("content-length: 22"), "axum gives GET's length: {}", head(&reply));

        let reply = get_uri(&mut c, "/items/x?q=a");
        assert_eq!(reply.status(), 400, "{transport:?}: a bad Path is axum's 400");
        assert_eq!(get_uri(&mut c, "/nowhere").status(), 404);

        let json = br#"{"name":"ember","tags":[1,2,3]}"#;
        let reply = roundtrip(&mut c, &request("POST", "/json", "application/json", json, &[]));
        assert_eq!(reply.status(), 200);
        assert!(head(&reply).contains("content-type: application/json"));
        let value: serde_json::Value = serde_json::from_slice(reply.body()).expect("json");
        assert_eq!(value, serde_json::json!({"echo": {"name": "ember", "tags": [1, 2, 3]}}));

        let reply = roundtrip(&mut c, &request("POST", "/json", "text/plain", json, &[]));
        assert_eq!(reply.status(), 415, "{transport:?}: Json wants application/json");

        let form = b"name=Ada+Lovelace&age=36";
        let reply =
            roundtrip(&mut c, &request("POST", "/form", "application/x-www-form-urlencoded", form, &[]));
        assert_eq!(reply.body_str(), "welcome Ada Lovelace (36)\n");

        assert_eq!(get_uri(&mut c, "/hits").body_str(), "hits 1\n");
        assert_eq!(get_uri(&mut c, "/hits").body_str(), "hits 2\n");
        assert_eq!(server.stats.snapshot().handler_errors, 0);
    }
}

#[test]
fn cgi_variables_and_remote_address_in_extensions() {
    for transport in TRANSPORTS {
        let (server, _state) = serve_app(transport);
        let mut c = Client::tcp(server.addr);
        let extra = [("PATH_INFO", "/extra/path"), ("DOCUMENT_ROOT", "/srv")];
        let reply = roundtrip(&mut c, &request("GET", "/vars?x=1", "", b"", &extra));
        assert_eq!(
            reply.body_str(),
            "GET http://example.test/vars?x=1 HTTP/1.1 script=/vars path_info=/extra/path \
             remote=192.0.2.7:51234 ip=192.0.2.7 vars=13\n",
            "{transport:?}"
        );
        // Without REMOTE_ADDR there is no RemoteAddr: axum's Extension answers 500.
        let spec = [("REQUEST_METHOD", "GET"), ("REQUEST_URI", "/vars")];
        let reply =
            roundtrip(&mut c, &RequestSpec { keep_conn: true, params: &spec, ..Default::default() }.encode());
        assert_eq!(reply.status(), 500, "{transport:?}");
    }
}

#[test]
fn streamed_upload_of_a_few_megabytes() {
    let body = pattern_vec(3 << 20 | 12345);
    for transport in TRANSPORTS {
        let (server, _state) = serve_app(transport);
        let mut c = Client::tcp(server.addr);
        let reply = roundtrip(&mut c, &request("POST", "/upload", "application/octet-stream", &body, &[]));
        let text = reply.body_str();
        assert!(text.starts_with(&checksum(&body)), "{transport:?}: {text}");
        let largest: usize = text.trim_end().rsplit('=').next().unwrap().parse().unwrap();
        assert!(largest <= 16 * 1024, "{transport:?}: chunks of at most 16 KiB, got {largest}");

        // The `Bytes` extractor, under a `DefaultBodyLimit` of 4 MiB.
        let reply = roundtrip(&mut c, &request("POST", "/whole", "application/octet-stream", &body, &[]));
        assert_eq!(reply.body_str(), format!("{}\n", checksum(&body)), "{transport:?}");
        let big = pattern_vec(5 << 20);
        let reply = roundtrip(&mut c, &request("POST", "/whole", "application/octet-stream", &big, &[]));
        assert_eq!(reply.status(), 413, "{transport:?}: over DefaultBodyLimit");
        // The request body streamed back as the response body, while it arrives.
        let reply = roundtrip(&mut c, &request("POST", "/echo", "application/octet-stream", &body, &[]));
        assert!(head(&reply).contains(&format!("content-length: {}", body.len())), "{}", head(&reply));
        assert!(reply.body() == body, "{transport:?}: the echo differs");
        // The connection goes on.
        assert_eq!(get_uri(&mut c, "/hits").body_str(), "hits 1\n");
    }
}

#[test]
fn truncated_body_is_an_error_frame() {
    for transport in TRANSPORTS {
        let (server, _state) = serve_app(transport);
        let mut c = Client::tcp(server.addr);
        let body = pattern_vec(1000);
        let params = [("REQUEST_METHOD", "POST"), ("REQUEST_URI", "/upload"), ("CONTENT_LENGTH", "5000")];
        let spec = RequestSpec { keep_conn: true, params: &params, stdin: &body, ..Default::default() };
        let reply = roundtrip(&mut c, &spec.encode());
        assert_eq!(reply.status(), 400, "{transport:?}");
        assert!(reply.body_str().contains("truncated"), "{transport:?}: {}", reply.body_str());
    }
}

#[test]
fn streamed_response_arrives_whole() {
    for transport in TRANSPORTS {
        let (server, _state) = serve_app(transport);
        let mut c = Client::tcp(server.addr);
        let reply = get_uri(&mut c, "/download");
        assert_eq!(reply.status(), 200);
        assert!(!head(&reply).contains("content-length"), "a stream has no length: {}", head(&reply));
        assert_eq!(reply.body(), pattern_vec(100_000).as_slice(), "{transport:?}");
        assert!(
            reply.stdout_records > 1,
            "{transport:?}: flushed as produced ({} records)",
            reply.stdout_records
        );
    }
}

#[test]
fn body_errors_before_and_after_the_head() {
    for transport in TRANSPORTS {
        let (server, _state) = serve_app(transport);
        let mut c = Client::tcp(server.addr);
        let reply = get_uri(&mut c, "/body-error");
        assert_eq!((reply.status(), reply.app_status), (500, 1), "{transport:?}");
        assert!(String::from_utf8_lossy(&reply.stderr).contains("disk on fire"), "{reply:?}");

        let reply = get_uri(&mut c, "/late-error");
        assert_eq!((reply.status(), reply.app_status), (200, 1), "{transport:?}");
        assert_eq!(reply.body_str(), "first part\n");
        assert!(String::from_utf8_lossy(&reply.stderr).contains("disk on fire later"), "{reply:?}");
        assert_eq!(get_uri(&mut c, "/hits").body_str(), "hits 1\n");
        assert_eq!(server.stats.snapshot().handler_errors, 2);
    }
}

/// A body the service never reads: it answers, the rest is skipped, the connection goes on.
#[test]
fn unread_body_does_not_hang() {
    let body = pattern_vec(8 << 20);
    for transport in TRANSPORTS {
        let (server, _state) = serve_app(transport);
        let mut c = Client::tcp(server.addr);
        let bytes = request("POST", "/ignore", "application/octet-stream", &body, &[]);
        let mut writer = c.stream.try_clone().expect("clone");
        let sending = std::thread::spawn(move || writer.write_all(&bytes));
        let reply = c.reply(1);
        assert_eq!((reply.status(), reply.body_str().as_str()), (200, "ignored\n"), "{transport:?}");
        sending.join().unwrap().expect("the rest of the body is skipped, so it is all sent");
        assert_eq!(get_uri(&mut c, "/hits").body_str(), "hits 1\n");
    }
}

/// A service that does not read its body yet holds the client back (the connection's
/// backpressure), and reads it all once it does.
#[test]
fn body_not_read_yet_holds_the_client_back() {
    const LEN: usize = 24 << 20;
    let body = pattern_vec(LEN);
    let expected = checksum(&body);
    for transport in TRANSPORTS {
        let (server, state) = serve_app(transport);
        let mut c = Client::tcp(server.addr);
        let bytes = request("POST", "/slow", "application/octet-stream", &body, &[]);
        let sent = Arc::new(AtomicU64::new(0));
        let mut writer = c.stream.try_clone().expect("clone");
        let counter = sent.clone();
        let sending = std::thread::spawn(move || {
            for piece in bytes.chunks(64 * 1024) {
                writer.write_all(piece)?;
                counter.fetch_add(piece.len() as u64, Ordering::SeqCst);
            }
            Ok::<_, std::io::Error>(())
        });
        // Wait until the sender stalls.
        let mut last = u64::MAX;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            std::thread::sleep(Duration::from_millis(300));
            let now = sent.load(Ordering::SeqCst);
            if now == last || Instant::now() > deadline {
                break;
            }
            last = now;
        }
        let stalled = sent.load(Ordering::SeqCst);
        eprintln!("{transport:?}: the client stalled after {stalled} of {LEN} bytes");
        assert!(stalled < (LEN / 2) as u64, "{transport:?}: the server buffered {stalled} bytes");
        state.gate.open();
        let reply = c.reply(1);
        sending.join().unwrap().expect("sent");
        assert_eq!(reply.body_str().split(" largest").next(), Some(expected.as_str()), "{transport:?}");
    }
}

/// The web server aborting the request drops the service's future.
#[test]
fn abort_drops_the_service_future() {
    for transport in TRANSPORTS {
        let (server, state) = serve_app(transport);
        let mut c = Client::tcp(server.addr);
        c.send(&request("GET", "/forever", "", b"", &[]));
        let deadline = Instant::now() + Duration::from_secs(10);
        while state.started.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < deadline, "the handler started");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(state.dropped.load(Ordering::SeqCst), 0);
        c.send(&abort_bytes(1));
        loop {
            let r = c.record();
            assert!(
                r.kind != STDOUT || r.content.is_empty(),
                "{transport:?}: nothing is written for an aborted request: {r:?}"
            );
            if r.kind == END_REQUEST {
                break;
            }
        }
        assert_eq!(state.dropped.load(Ordering::SeqCst), 1, "{transport:?}");
        assert_eq!(get_uri(&mut c, "/hits").body_str(), "hits 1\n");
        assert_eq!(server.stats.snapshot().handler_errors, 0, "an abort is not an error");
    }
}

/// Each event reaches the client when it is produced, before the next one exists.
#[test]
fn server_sent_events_are_flushed_as_produced() {
    for transport in TRANSPORTS {
        let (server, state) = serve_app(transport);
        let mut c = Client::tcp(server.addr);
        c.send(&request("GET", "/events", "", b"", &[]));
        let mut stdout = Vec::new();
        while !String::from_utf8_lossy(&stdout).contains("data: one\n\n") {
            let r = c.record();
            assert_eq!(r.kind, STDOUT, "{transport:?}: {r:?}");
            stdout.extend_from_slice(&r.content);
        }
        let text = String::from_utf8_lossy(&stdout).into_owned();
        assert!(text.starts_with("Status: 200 OK\r\ncontent-type: text/event-stream\r\n"), "{text}");
        assert!(!text.contains("content-length"), "{text}");
        state.gate.open();
        let reply = c.reply(1);
        assert_eq!(String::from_utf8_lossy(&reply.stdout), "data: two\n\n", "{transport:?}");
    }
}

/// Aborted, or the connection closed, while the service holds the body unread: its future
/// is dropped. (Part of the body only: a whole chunk, window and input buffer of unread body
/// ahead of ABORT_REQUEST or EOF would hold them back, as for any handler.)
#[test]
fn gone_while_the_body_waits_drops_the_service_future() {
    // Records of whole STDIN content: the part of the body sent before the abort or EOF.
    let body = pattern_vec(20_000);
    for transport in TRANSPORTS {
        let (server, state) = serve_app(transport);
        let wait_for = |counter: &AtomicU64, n: u64| {
            let deadline = Instant::now() + Duration::from_secs(10);
            while counter.load(Ordering::SeqCst) < n {
                assert!(Instant::now() < deadline, "{transport:?}: waited for {n}: {state:?}");
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        // ABORT_REQUEST after part of the body.
        let mut c = Client::tcp(server.addr);
        let params = [("REQUEST_METHOD", "POST"), ("REQUEST_URI", "/hold"), ("CONTENT_LENGTH", "200000")];
        let spec = RequestSpec {
            keep_conn: true,
            params: &params,
            stdin: &body,
            end_stdin: false,
            ..Default::default()
        };
        let bytes = spec.encode();
        c.send(&bytes);
        wait_for(&state.started, 1);
        c.send(&abort_bytes(1));
        wait_for(&state.dropped, 1);
        // The connection closes (EOF) while the body is unread.
        let mut c = Client::tcp(server.addr);
        c.send(&bytes);
        wait_for(&state.started, 2);
        c.shutdown_write();
        wait_for(&state.dropped, 2);
        drop(c);
        assert_eq!(server.stats.snapshot().handler_errors, 0, "{transport:?}");
    }
}

/// The axum app behind a real nginx (Debian's `fastcgi_params`), over HTTP.
#[test]
fn behind_nginx() {
    use ember_fcgi_testkit::web::Endpoint;
    use ember_fcgi_testkit::web::nginx::Nginx;
    use std::io::Read as _;

    for transport in TRANSPORTS {
        let (server, _state) = serve_app(transport);
        let nginx = Nginx::start(&ember_fcgi_testkit::tools::nginx(), &Endpoint::Tcp(server.addr), true);
        let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(20)).build();

        let reply = agent.get(&nginx.url("/items/7?q=two%20words&page=2")).call().expect("get");
        assert_eq!(reply.status(), 200);
        assert_eq!(reply.header("content-type"), Some("text/plain; charset=utf-8"));
        assert_eq!(reply.into_string().unwrap(), "item 7 q=two words page=Some(2)\n", "{transport:?}");

        let reply = agent.get(&nginx.url("/vars")).call().expect("get");
        let text = reply.into_string().unwrap();
        assert!(
            text.starts_with(&format!("GET http://127.0.0.1:{}/vars HTTP/1.1 script=/vars ", nginx.port)),
            "{transport:?}: {text}"
        );
        assert!(text.contains(" remote=127.0.0.1:") && text.contains(" ip=127.0.0.1 "), "{text}");

        let json = br#"{"through":"nginx"}"#;
        let reply = agent.post(&nginx.url("/json")).set("Content-Type", "application/json").send_bytes(json);
        let reply = reply.expect("post");
        assert_eq!(reply.into_string().unwrap(), r#"{"echo":{"through":"nginx"}}"#);

        let body = pattern_vec(3 << 20);
        let reply = agent.post(&nginx.url("/upload")).send_bytes(&body).expect("upload");
        let text = reply.into_string().unwrap();
        assert!(text.starts_with(&checksum(&body)), "{transport:?}: {text}");

        let reply = agent.get(&nginx.url("/download")).call().expect("download");
        let mut got = Vec::new();
        reply.into_reader().read_to_end(&mut got).unwrap();
        assert!(got == pattern_vec(100_000), "{transport:?}: the streamed body differs");

        match agent.get(&nginx.url("/nowhere")).call() {
            Err(ureq::Error::Status(404, _)) => {}
            other => panic!("{transport:?}: {other:?}"),
        }
        nginx.assert_clean_log();
    }
}

// ---- tests: hand-written services -------------------------------------------------------

/// `/fail`: the service fails; anything else: ready only after `poll_ready` said
/// `Pending` once (and woke), answers how many polls it took.
#[derive(Clone, Default)]
struct Picky {
    polls: u32,
    ready: bool,
}

impl Service<http::Request<RequestBody>> for Picky {
    type Response = http::Response<String>;
    type Error = String;
    type Future = Ready<Result<http::Response<String>, String>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), String>> {
        self.polls += 1;
        if self.polls < 2 {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.ready = true;
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<RequestBody>) -> Self::Future {
        assert!(self.ready, "called before ready");
        if req.uri().path() == "/fail" {
            return ready(Err("the database is down".to_owned()));
        }
        let mut response = http::Response::new(format!("ready after {} polls\n", self.polls));
        response
            .headers_mut()
            .insert(http::header::TRANSFER_ENCODING, http::HeaderValue::from_static("chunked"));
        response.headers_mut().append("set-cookie", http::HeaderValue::from_static("a=1"));
        response.headers_mut().append("set-cookie", http::HeaderValue::from_static("b=2"));
        ready(Ok(response))
    }
}

#[test]
fn readiness_service_errors_and_headers() {
    for transport in TRANSPORTS {
        let server = start(transport, ServiceHandler::new(Picky::default()));
        let mut c = Client::tcp(server.addr);
        let reply = get_uri(&mut c, "/ok");
        assert_eq!(reply.body_str(), "ready after 2 polls\n", "{transport:?}");
        let h = head(&reply);
        assert!(!h.to_ascii_lowercase().contains("transfer-encoding"), "CGI has no Transfer-Encoding: {h}");
        assert!(h.contains("content-length: 20"), "{h}");
        assert!(h.contains("set-cookie: a=1\r\nset-cookie: b=2"), "{h}");

        let reply = get_uri(&mut c, "/fail");
        assert_eq!((reply.status(), reply.app_status), (500, 1), "{transport:?}");
        assert!(String::from_utf8_lossy(&reply.stderr).contains("the database is down"), "{reply:?}");
        assert_eq!(server.stats.snapshot().handler_errors, 1);

        // Variables that make no HTTP request: 400, the reason on FCGI_STDERR.
        let params = [("REQUEST_METHOD", "GET"), ("REQUEST_URI", "/x"), ("HTTP_X_BAD", "a\u{1}b")];
        let reply = roundtrip(
            &mut c,
            &RequestSpec { keep_conn: true, params: &params, ..Default::default() }.encode(),
        );
        assert_eq!(reply.status(), 400, "{transport:?}");
        assert!(String::from_utf8_lossy(&reply.stderr).contains("HTTP_X_BAD"), "{reply:?}");
    }
}

#[test]
fn request_body_default_is_empty() {
    use ember_fcgi::tower::Body as _;
    let body = RequestBody::default();
    assert!(body.is_end_stream());
    assert_eq!(body.size_hint().exact(), Some(0));
}
