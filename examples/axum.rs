//! An axum application over FastCGI: one `Router` with the usual extractors (`Path`,
//! `Query`, `Json`, `Form`, `State`), a streamed response (server-sent events, one every
//! few milliseconds), a streamed upload under a size limit (`DefaultBodyLimit`, the body
//! hashed as it arrives, never held whole) and tower-http middleware (a trace span per
//! request, a timeout), served by `ember_fcgi::tower::ServiceHandler` on the tokio server.
//! `--http ADDR` serves the same `Router` over plain HTTP with `axum::serve`, to compare.
//!
//! | route | what |
//! |---|---|
//! | `GET /` | this list |
//! | `GET /items/{id}?q=TEXT&page=N` | `Path` and `Query`: `{"id":7,"q":"TEXT","page":N}` |
//! | `POST /notes` | `Json` in (`{"title":..,"body":..}`), `201` and the stored note out, with its id (`State`) |
//! | `POST /signup` | `Form` (`name=..&age=..`): `welcome NAME (AGE)` |
//! | `GET /hits` | `State`: how many times it was asked |
//! | `GET /events?n=N&ms=MS` | `text/event-stream`: N events (default 5), one every MS ms (default 200) |
//! | `POST /upload` | the body streamed through SHA-256: `{"size":..,"sha256":".."}`; over `--upload-limit` 413 |
//! | `GET /cookies` | the `Cookie` header: `{"count":..,"bytes":..}` |
//! | `GET /client` | the client's address and the CGI variables the web server sent (FastCGI only) |
//! | `GET /slow?ms=MS` | answers after MS ms; past `--timeout`, the timeout layer answers 408 |
//! | `GET /stats` | the counters: hits, notes, uploads (stored, refused), events streams cancelled |
//!
//! A client that leaves in the middle of `/events` drops its stream (the web server aborts
//! the FastCGI request or closes the connection; the handler's future is dropped): the
//! example prints `events: stream dropped after K of N events` and counts it in `/stats`.
//!
//! ```text
//! cargo run --release --features tokio,tower --example axum -- --listen 127.0.0.1:9000
//! cargo run --release --features tokio,tower --example axum -- --http 127.0.0.1:3000
//! curl -N 'http://localhost:8080/events?n=3'
//! ```
//!
//! Without `--listen` or `--http` it serves the socket a launcher passed (systemd, or fd 0
//! from spawn-fcgi, lighttpd's `bin-path` or Apache's mod_fcgid). It runs on the tokio
//! server only (it has no `--transport`): its handlers await tokio timers.

mod common;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Form, Json, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{RequestExt as _, Router};
use ember_fcgi::server::Limits;
use ember_fcgi::tower::{CgiVars, RemoteAddr, ServiceHandler};
use futures_lite::StreamExt as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

/// Shared by every request (`State`); cloning shares the counters.
#[derive(Clone)]
struct AppState {
    hits: Arc<AtomicU64>,
    notes: Arc<AtomicU64>,
    uploads: Arc<AtomicU64>,
    /// Uploads refused as too large.
    refused: Arc<AtomicU64>,
    cancelled: Arc<AtomicU64>,
    upload_limit: usize,
}

#[derive(Deserialize)]
struct Search {
    q: Option<String>,
    page: Option<u32>,
}

async fn item(Path(id): Path<u64>, Query(search): Query<Search>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "id": id, "q": search.q, "page": search.page }))
}

#[derive(Deserialize)]
struct NewNote {
    title: String,
    body: String,
}

#[derive(Serialize)]
struct Note {
    id: u64,
    title: String,
    body: String,
    chars: usize,
}

async fn create_note(State(state): State<AppState>, Json(new): Json<NewNote>) -> (StatusCode, Json<Note>) {
    let id = state.notes.fetch_add(1, Ordering::Relaxed) + 1;
    let chars = new.body.chars().count();
    (StatusCode::CREATED, Json(Note { id, title: new.title, body: new.body, chars }))
}

#[derive(Deserialize)]
struct Signup {
    name: String,
    age: u8,
}

async fn signup(Form(form): Form<Signup>) -> String {
    format!("welcome {} ({})\n", form.name, form.age)
}

async fn hits(State(state): State<AppState>) -> String {
    format!("hits {}\n", state.hits.fetch_add(1, Ordering::Relaxed) + 1)
}

#[derive(Deserialize)]
struct Events {
    n: Option<u64>,
    ms: Option<u64>,
}

/// The state of one `/events` stream; dropped before its last event, it says so.
struct Ticker {
    next: u64,
    total: u64,
    every: Duration,
    cancelled: Arc<AtomicU64>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        if self.next < self.total {
            self.cancelled.fetch_add(1, Ordering::Relaxed);
            eprintln!("events: stream dropped after {} of {} events (client gone)", self.next, self.total);
        }
    }
}

async fn events(State(state): State<AppState>, Query(query): Query<Events>) -> Response {
    let ticker = Ticker {
        next: 0,
        total: query.n.unwrap_or(5),
        every: Duration::from_millis(query.ms.unwrap_or(200)),
        cancelled: state.cancelled.clone(),
    };
    let stream = futures_lite::stream::unfold(ticker, |mut ticker| async move {
        if ticker.next == ticker.total {
            return None;
        }
        if ticker.next > 0 {
            tokio::time::sleep(ticker.every).await;
        }
        let event = format!("id: {0}\ndata: tick {0}\n\n", ticker.next);
        ticker.next += 1;
        Some((Ok::<_, std::convert::Infallible>(Bytes::from(event)), ticker))
    });
    let headers = [
        (header::CONTENT_TYPE, "text/event-stream"),
        (header::CACHE_CONTROL, "no-cache"),
        // nginx passes each event on at once instead of filling its buffers first.
        (header::HeaderName::from_static("x-accel-buffering"), "no"),
    ];
    (headers, Body::from_stream(stream)).into_response()
}

/// Streams the body through SHA-256, a chunk at a time; over the route's
/// `DefaultBodyLimit` it is 413 (at once when `Content-Length` says so, else once the
/// limit is passed).
async fn upload(
    State(state): State<AppState>,
    request: Request,
) -> Result<Json<serde_json::Value>, Response> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = || {
        state.refused.fetch_add(1, Ordering::Relaxed);
        (StatusCode::PAYLOAD_TOO_LARGE, format!("uploads are limited to {} bytes\n", state.upload_limit))
    };
    if declared.is_some_and(|n| n > state.upload_limit as u64) {
        return Err(too_large().into_response());
    }
    let mut stream = request.with_limited_body().into_body().into_data_stream();
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            if error_chain(&e).contains("length limit exceeded") {
                too_large().into_response()
            } else {
                (StatusCode::BAD_REQUEST, format!("upload failed: {}\n", error_chain(&e))).into_response()
            }
        })?;
        size += chunk.len() as u64;
        hasher.update(&chunk);
    }
    state.uploads.fetch_add(1, Ordering::Relaxed);
    Ok(Json(serde_json::json!({ "size": size, "sha256": common::hex(&hasher.finalize()) })))
}

/// An error and its sources, `: `-separated.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text += &format!(": {e}");
        source = e.source();
    }
    text
}

async fn cookies(headers: HeaderMap) -> Json<serde_json::Value> {
    let mut count = 0;
    let mut bytes = 0;
    for value in headers.get_all(header::COOKIE) {
        bytes += value.len();
        count += value.as_bytes().split(|&b| b == b';').filter(|c| !c.is_empty()).count();
    }
    Json(serde_json::json!({ "count": count, "bytes": bytes }))
}

async fn client(request: Request) -> Json<serde_json::Value> {
    let remote = request.extensions().get::<RemoteAddr>().map(ToString::to_string);
    let vars: Option<BTreeMap<String, String>> = request.extensions().get::<CgiVars>().map(|vars| {
        vars.iter()
            .map(|(n, v)| (String::from_utf8_lossy(n).into_owned(), String::from_utf8_lossy(v).into_owned()))
            .collect()
    });
    Json(serde_json::json!({ "remote": remote, "cgi": vars }))
}

#[derive(Deserialize)]
struct Slow {
    ms: Option<u64>,
}

async fn slow(Query(slow): Query<Slow>) -> String {
    let ms = slow.ms.unwrap_or(1000);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    format!("slept {ms} ms\n")
}

async fn stats(State(state): State<AppState>) -> Json<serde_json::Value> {
    let get = |n: &AtomicU64| n.load(Ordering::Relaxed);
    Json(serde_json::json!({
        "hits": get(&state.hits),
        "notes": get(&state.notes),
        "uploads": get(&state.uploads),
        "uploads_refused": get(&state.refused),
        "events_cancelled": get(&state.cancelled),
    }))
}

async fn index() -> &'static str {
    "GET /items/{id}?q=&page=, POST /notes (JSON), POST /signup (form), GET /hits, \
     GET /events?n=&ms=, POST /upload, GET /cookies, GET /client, GET /slow?ms=, GET /stats\n"
}

/// The application: the same `Router` for FastCGI and for `--http`.
fn app(state: AppState, timeout: Duration) -> Router {
    let limit = state.upload_limit;
    Router::new()
        .route("/", get(index))
        .route("/items/{id}", get(item))
        .route("/notes", post(create_note))
        .route("/signup", post(signup))
        .route("/hits", get(hits))
        .route("/events", get(events))
        .route("/upload", post(upload).layer(DefaultBodyLimit::max(limit)))
        .route("/cookies", get(cookies))
        .route("/client", get(client))
        .route("/slow", get(slow))
        .route("/stats", get(stats))
        // JSON and form bodies: at most 64 KiB.
        .layer(DefaultBodyLimit::max(64 * 1024))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, timeout))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// `--http ADDR`: the same app on `axum::serve`, until SIGTERM or SIGINT.
fn serve_http(addr: &str, app: Router, log: log::LevelFilter) -> ExitCode {
    env_logger::Builder::new().filter_level(log).init();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("axum: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let listener =
            tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("--http {addr}: {e}"))?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        eprintln!("listening on http://{local}");
        axum::serve(listener, app).with_graceful_shutdown(signalled()).await.map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("axum: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Completes on SIGTERM or SIGINT.
async fn signalled() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    eprintln!("signal: shutting down gracefully");
}

fn main() -> ExitCode {
    let opts = [
        common::Opt {
            name: "http",
            value: "ADDR",
            required: false,
            help: "serve the same app over plain HTTP on ADDR (axum::serve), not FastCGI",
        },
        common::Opt {
            name: "upload-limit",
            value: "BYTES",
            required: false,
            help: "the largest body POST /upload takes (default 1073741824)",
        },
        common::Opt {
            name: "timeout",
            value: "SECS",
            required: false,
            help: "a request the app has not answered in SECS gets 408 (default 30)",
        },
    ];
    let args = common::parse_tokio_args("axum", &opts, "tokio,tower");
    let number = |name: &str, default: u64| -> Result<u64, String> {
        match args.get(name) {
            None => Ok(default),
            Some(v) => v
                .to_str()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("bad --{name} {v:?}: expected a whole number")),
        }
    };
    let (upload_limit, timeout) = match (number("upload-limit", 1 << 30), number("timeout", 30)) {
        (Ok(limit), Ok(timeout)) => (limit, timeout),
        (Err(message), _) | (_, Err(message)) => {
            eprintln!("axum: {message}");
            return ExitCode::from(2);
        }
    };
    let state = AppState {
        hits: Arc::default(),
        notes: Arc::default(),
        uploads: Arc::default(),
        refused: Arc::default(),
        cancelled: Arc::default(),
        upload_limit: usize::try_from(upload_limit).unwrap_or(usize::MAX),
    };
    let app = app(state, Duration::from_secs(timeout));
    if let Some(addr) = args.get("http") {
        let Some(addr) = addr.to_str() else {
            eprintln!("axum: --http {addr:?} is not UTF-8");
            return ExitCode::from(2);
        };
        return serve_http(addr, app, args.ops.log);
    }
    common::serve_tokio(&args, ServiceHandler::new(app), Limits::default())
}
