//! `examples/axum.rs` end to end: the axum app on the tokio server behind a real nginx
//! (extractors, an 8 KiB cookie, server-sent events arriving in pieces, a client that
//! leaves mid-stream, a 100 MiB upload at flat memory), behind Apache mod_proxy_fcgi, and
//! started by Apache's mod_fcgid itself (its listening socket on fd 0, as on shared
//! hosting); and the same `Router` on `axum::serve` (`--http`).
//!
//! The example is built with the others once per run (`cargo build --release --examples
//! --all-features`, `support::examples_dir`), or taken from `$EMBER_E2E_EXAMPLES`.
//! A missing nginx, apache2 or mod_fcgid fails the test (see `ember_fcgi_testkit::tools`).
#![cfg(all(feature = "tokio", feature = "tower"))]

mod support;

use std::io::{BufRead as _, BufReader, Read, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use ember_fcgi_testkit::web::nginx::{NginxConf, nginx_conf};
use ember_fcgi_testkit::web::{Kind, WebServer};
use sha2::{Digest, Sha256};
use support::{App, Nginx, Reply, TempDir, agent, loud, send, tools};

/// The release binary of the example (built with the others on first use).
fn axum_example() -> PathBuf {
    support::examples_dir().join("axum")
}

/// The example serving FastCGI on a loopback port, with `extra` options.
fn start_app(extra: &[&str]) -> App {
    let mut command = Command::new(axum_example());
    command.args(["--listen", "127.0.0.1:0"]).args(extra).stdin(Stdio::null());
    App::spawn("axum", command, TempDir::new("axum"), None)
}

/// nginx with `fastcgi_keep_conn on` (so a client leaving mid-response is an abort the app
/// sees), request bodies streamed (`fastcgi_request_buffering off`), and header buffers
/// of 16 KiB: nginx's default 8 KiB refuses a `Cookie` line of 8 KiB.
fn start_nginx(app: &App) -> Nginx {
    let upstream = app.endpoint.nginx_address();
    Nginx::launch(&tools::nginx(), |dir, port| {
        let conf = nginx_conf(&NginxConf {
            dir,
            port,
            upstream: &upstream,
            keepalive: true,
            request_buffering: false,
        });
        conf.replacen("http {\n", "http {\n    large_client_header_buffers 4 16k;\n", 1)
    })
}

fn json(reply: &Reply) -> serde_json::Value {
    serde_json::from_str(&reply.body).unwrap_or_else(|e| panic!("not JSON ({e}): {reply:?}"))
}

/// GET with Path and Query, a JSON POST and a form POST, State, the client's address.
fn check_basics(base: &str, software: &str) {
    let agent = agent();
    let reply = send(agent.get(&format!("{base}/items/7?q=two%20words&page=2")).call());
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.content_type.as_deref(), Some("application/json"));
    assert_eq!(json(&reply), serde_json::json!({ "id": 7, "q": "two words", "page": 2 }));

    let note = r#"{"title":"groceries","body":"eggs, café"}"#;
    let reply =
        send(agent.post(&format!("{base}/notes")).set("Content-Type", "application/json").send_string(note));
    assert_eq!(reply.status, 201, "{reply:?}");
    let stored = json(&reply);
    assert_eq!(stored["title"], "groceries");
    assert_eq!(stored["body"], "eggs, café");
    assert_eq!(stored["chars"], 10);
    assert!(stored["id"].as_u64().is_some_and(|id| id >= 1), "{stored}");

    let reply =
        send(agent.post(&format!("{base}/notes")).set("Content-Type", "application/json").send_string("{"));
    assert_eq!(reply.status, 400, "a broken JSON body: {reply:?}");

    let reply = send(agent.post(&format!("{base}/signup")).send_form(&[("name", "Zoë & co"), ("age", "42")]));
    assert_eq!((reply.status, reply.body.as_str()), (200, "welcome Zoë & co (42)\n"));

    let reply = send(agent.get(&format!("{base}/client")).call());
    let client = json(&reply);
    assert!(client["remote"].as_str().is_some_and(|r| r.starts_with("127.0.0.1:")), "{client}");
    let server = client["cgi"]["SERVER_SOFTWARE"].as_str().unwrap_or_default();
    assert!(server.starts_with(software), "SERVER_SOFTWARE {server:?}, expected {software}...");

    let reply = send(agent.get(&format!("{base}/nowhere")).call());
    assert_eq!(reply.status, 404);
}

/// The parts of `/proc/PID/status` that say how much memory it holds, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// A raw HTTP/1.1 GET through `port`; the stream, the request sent.
fn raw_get(port: u16, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
    stream
}

/// Reads until `text` has arrived; everything read so far.
fn read_until(stream: &mut TcpStream, got: &mut Vec<u8>, text: &str) {
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(got).contains(text) {
        let n = stream.read(&mut buf).expect("read");
        assert!(n > 0, "EOF before {text:?}: {}", String::from_utf8_lossy(got));
        got.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn nginx_extractors_json_form_cookie_and_timeout() {
    let app = start_app(&["--timeout", "1"]);
    let nginx = start_nginx(&app);
    check_basics(&nginx.url(""), "nginx/");
    let agent = agent();

    let reply = send(agent.get(&nginx.url("/hits")).call());
    assert_eq!(reply.body, "hits 1\n");
    let reply = send(agent.get(&nginx.url("/hits")).call());
    assert_eq!(reply.body, "hits 2\n");

    // An 8 KiB cookie: eight of 1020 bytes each, 8198 bytes in all.
    let cookie: Vec<String> = (0..8).map(|i| format!("c{i}={}", "v".repeat(1020))).collect();
    let cookie = cookie.join("; ");
    assert!(cookie.len() >= 8192);
    let reply = send(agent.get(&nginx.url("/cookies")).set("Cookie", &cookie).call());
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(json(&reply), serde_json::json!({ "count": 8, "bytes": cookie.len() }));

    // tower-http's timeout layer answers for a handler that takes too long.
    let reply = send(agent.get(&nginx.url("/slow?ms=3000")).call());
    assert_eq!(reply.status, 408, "{reply:?}");
    let reply = send(agent.get(&nginx.url("/slow?ms=10")).call());
    assert_eq!((reply.status, reply.body.as_str()), (200, "slept 10 ms\n"));
    nginx.assert_clean_log();
}

#[test]
fn nginx_streamed_events_arrive_in_pieces() {
    let app = start_app(&[]);
    let nginx = start_nginx(&app);
    let started = Instant::now();
    let mut stream = raw_get(nginx.port, "/events?n=5&ms=300");
    let mut got = Vec::new();
    let mut arrivals = Vec::new();
    for i in 0..5 {
        read_until(&mut stream, &mut got, &format!("data: tick {i}\n\n"));
        arrivals.push(started.elapsed());
    }
    stream.read_to_end(&mut got).expect("read the end");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.to_lowercase().contains("content-type: text/event-stream"), "{text}");
    // Produced 300 ms apart (1.2 s from the first to the last): they arrived as produced,
    // not all at the end (the margins allow for a loaded machine).
    assert!(arrivals[4] - arrivals[0] >= Duration::from_millis(600), "events arrived together: {arrivals:?}");
    assert!(
        arrivals.windows(2).filter(|p| p[1] - p[0] >= Duration::from_millis(150)).count() >= 3,
        "{arrivals:?}"
    );
    loud(&format!("axum events arrived at {arrivals:?}"));
    nginx.assert_clean_log();
}

#[test]
fn nginx_client_abort_cancels_the_stream() {
    let app = start_app(&[]);
    let nginx = start_nginx(&app);
    let mut stream = raw_get(nginx.port, "/events?n=1000&ms=100");
    let mut got = Vec::new();
    read_until(&mut stream, &mut got, "data: tick 2\n\n");
    drop(stream);
    // nginx finds the client gone on its next write and ends the FastCGI request; the
    // handler's future (and the stream in it) is dropped.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !app.log().contains("events: stream dropped after") {
        assert!(Instant::now() < deadline, "the stream was not dropped within 10 s:\n{}", app.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let line =
        app.log().lines().find(|l| l.contains("events: stream dropped")).unwrap_or_default().to_owned();
    loud(&format!("axum abort: {line}"));
    let reply = send(agent().get(&nginx.url("/stats")).call());
    assert_eq!(json(&reply)["events_cancelled"], 1, "{reply:?}");
}

/// A reader of `len` bytes of a repeating pattern, hashed as it is read.
struct Pattern {
    left: u64,
    at: u64,
    hasher: Arc<Mutex<Sha256>>,
}

impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        for (i, b) in buf[..n].iter_mut().enumerate() {
            *b = ((self.at + i as u64) % 251) as u8;
        }
        self.hasher.lock().unwrap().update(&buf[..n]);
        self.at += n as u64;
        self.left -= n as u64;
        Ok(n)
    }
}

/// Growth of the server's peak resident memory allowed over a 100 MiB upload: the request
/// path holds one 16 KiB chunk between the connection and the service beside the
/// connection's own buffers (tens of KiB), so any growth is allocator slack; 32 MiB
/// leaves room for that while failing at once if a third of the body were ever held.
const RSS_GROWTH_BOUND_KIB: u64 = 32 * 1024;

#[test]
fn nginx_100_mib_upload_at_flat_rss() {
    let app = start_app(&[]);
    let nginx = start_nginx(&app);
    let agent = agent();
    // Warm up: the first upload allocates what every later one reuses.
    let reply = send(agent.post(&nginx.url("/upload")).send_bytes(&[7u8; 100_000]));
    assert_eq!(reply.status, 200, "{reply:?}");
    let (hwm_before, rss_before) = memory_kib(app.pid());

    let len: u64 = 100 << 20;
    let hasher = Arc::new(Mutex::new(Sha256::new()));
    let body = Pattern { left: len, at: 0, hasher: hasher.clone() };
    let started = Instant::now();
    let reply = send(
        agent
            .post(&nginx.url("/upload"))
            .set("Content-Type", "application/octet-stream")
            .set("Content-Length", &len.to_string())
            .send(body),
    );
    let took = started.elapsed();
    assert_eq!(reply.status, 200, "{reply:?}");
    let expected = hasher.lock().unwrap().clone().finalize();
    let expected: String = expected.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(json(&reply), serde_json::json!({ "size": len, "sha256": expected }));

    let (hwm_after, rss_after) = memory_kib(app.pid());
    loud(&format!(
        "axum 100 MiB upload in {took:.1?}: VmHWM {hwm_before} -> {hwm_after} KiB, \
         VmRSS {rss_before} -> {rss_after} KiB"
    ));
    assert!(
        hwm_after.saturating_sub(hwm_before) < RSS_GROWTH_BOUND_KIB,
        "peak RSS grew by {} KiB over the upload (bound {RSS_GROWTH_BOUND_KIB} KiB)",
        hwm_after - hwm_before
    );
    assert!(
        rss_after.saturating_sub(rss_before) < RSS_GROWTH_BOUND_KIB,
        "RSS {rss_before} -> {rss_after} KiB"
    );
    nginx.assert_clean_log();
}

/// `DefaultBodyLimit` on `/upload`: a body over it is 413 whether `Content-Length` says so
/// up front or a chunked body passes it on the way; one under it is stored.
#[test]
fn nginx_upload_over_the_limit_is_413() {
    let app = start_app(&["--upload-limit", "100000"]);
    let nginx = start_nginx(&app);
    let agent = agent();
    let reply = send(agent.post(&nginx.url("/upload")).send_bytes(&[1u8; 200_000]));
    assert_eq!(reply.status, 413, "{reply:?}");
    assert_eq!(reply.body, "uploads are limited to 100000 bytes\n");
    // Without a length (chunked), the limit is found while streaming. The 413 then comes
    // before the client sent the whole body, and nginx may close the connection under the
    // client before it reads the answer (HTTP's early-response race): the app's count says.
    let body = Pattern { left: 200_000, at: 0, hasher: Arc::default() };
    match agent.post(&nginx.url("/upload")).send(body) {
        Err(ureq::Error::Status(413, _)) => {}
        Err(ureq::Error::Transport(e)) => loud(&format!("axum: the chunked 413 was cut short: {e}")),
        other => panic!("a chunked upload over the limit: {other:?}"),
    }
    let body = Pattern { left: 50_000, at: 0, hasher: Arc::default() };
    let reply = send(agent.post(&nginx.url("/upload")).send(body));
    assert_eq!((reply.status, json(&reply)["size"].as_u64()), (200, Some(50_000)), "{reply:?}");
    let reply = send(agent.get(&nginx.url("/stats")).call());
    let stats = json(&reply);
    assert_eq!((stats["uploads"].as_u64(), stats["uploads_refused"].as_u64()), (Some(1), Some(2)), "{stats}");
}

#[test]
fn apache_mod_proxy_fcgi() {
    let app = start_app(&[]);
    let apache = WebServer::start(Kind::Apache, &tools::apache2(), &app.endpoint);
    check_basics(&apache.url(""), "Apache/");
    apache.assert_clean_log();
}

#[test]
fn apache_mod_fcgid_starts_the_app() {
    let apache = WebServer::start_apache_fcgid(&tools::apache2(), &tools::mod_fcgid(), &axum_example(), "");
    check_basics(&apache.url(""), "Apache/");
    // mod_fcgid started it, with the listening socket as its fd 0.
    let spawned = apache.descendants();
    assert!(
        spawned.iter().any(|(_, cmd)| cmd.first().is_some_and(|c| c.ends_with("examples/axum"))),
        "no axum process under Apache: {spawned:?}"
    );
    let logs = apache.logs();
    assert!(logs.contains("listening on fd:0"), "{logs}");
    apache.assert_clean_log();
}

/// mod_fcgid retires a process after `FcgidMaxRequestsPerProcess` requests (SIGTERM: the
/// app shuts down gracefully) and starts another for the next: the state starts over.
#[test]
fn apache_mod_fcgid_retires_and_respawns() {
    let extra = "FcgidMaxRequestsPerProcess 3\nFcgidErrorScanInterval 1\n";
    let apache =
        WebServer::start_apache_fcgid(&tools::apache2(), &tools::mod_fcgid(), &axum_example(), extra);
    let agent = agent();
    let mut hits = Vec::new();
    for _ in 0..7 {
        let reply = send(agent.get(&apache.url("/hits")).call());
        assert_eq!(reply.status, 200, "{reply:?}");
        let n: u64 = reply.body.trim().strip_prefix("hits ").and_then(|n| n.parse().ok()).expect("hits N");
        hits.push(n);
    }
    // No process served more than 3, and a fresh one (its count from 1) took over.
    assert!(hits.iter().all(|&n| n <= 3) && hits[1..].contains(&1), "hits per request: {hits:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let logs = apache.logs();
        let started = logs.matches("listening on fd:0").count();
        if started >= 2 && logs.contains("shutting down gracefully") {
            loud(&format!("axum under mod_fcgid: {hits:?} hits per request, {started} processes started"));
            break;
        }
        assert!(Instant::now() < deadline, "no retired and respawned process within 10 s:\n{logs}");
        std::thread::sleep(Duration::from_millis(50));
    }
    apache.assert_clean_log();
}

/// The common command line without `--transport` (the example runs on tokio only).
#[test]
fn command_line_has_no_transport() {
    let help = Command::new(axum_example()).arg("--help").output().expect("run axum --help");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.starts_with("usage: axum [--listen ADDR]"), "{help}");
    assert!(help.contains("--http ADDR") && !help.contains("--transport"), "{help}");
    let refused = Command::new(axum_example()).args(["--transport", "smol"]).output().expect("run axum");
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).starts_with("axum: unknown option --transport\n"));
    let no_socket = Command::new(axum_example()).stdin(Stdio::null()).output().expect("run axum");
    assert_eq!(no_socket.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&no_socket.stderr);
    assert!(
        stderr
            .contains("cargo run --release --features tokio,tower --example axum -- --listen 127.0.0.1:9000"),
        "{stderr}"
    );
}

/// `--http ADDR`: the same `Router` on `axum::serve`.
#[test]
fn http_mode_serves_the_same_router() {
    let mut child = Command::new(axum_example())
        .args(["--http", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn axum --http");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(addr) = line.strip_prefix("listening on ") {
                let _ = tx.send(addr.to_owned());
            }
        }
    });
    let base = rx.recv_timeout(Duration::from_secs(20));
    let outcome = std::panic::catch_unwind(|| {
        let base = base.expect("axum --http did not print `listening on`");
        let agent = agent();
        let reply = send(agent.get(&format!("{base}/items/3?q=x")).call());
        assert_eq!(json(&reply), serde_json::json!({ "id": 3, "q": "x", "page": null }));
        let reply = send(agent.post(&format!("{base}/signup")).send_form(&[("name", "Ann"), ("age", "7")]));
        assert_eq!(reply.body, "welcome Ann (7)\n");
        let reply = send(agent.get(&format!("{base}/client")).call());
        assert_eq!(json(&reply), serde_json::json!({ "remote": null, "cgi": null }));
    });
    kill(&mut child);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}
