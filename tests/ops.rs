//! Running it in production: the status and ping pages through nginx in all three formats
//! (OpenMetrics parsed by the Python `prometheus_client` parser), the operating guide's (`docs/operating.md`)
//! localhost-only nginx locations and Prometheus job, the log lines of a refusal, a
//! timeout and a handler error, systemd socket activation with `systemd-socket-activate`
//! from the guide's `.socket`/`.service` pair (TCP and Unix), and `spawn-fcgi`.
//!
//! Missing tools (nginx, systemd-socket-activate, spawn-fcgi, python3-prometheus-client)
//! fail the tests (they name the package); `scripts/setup.sh` installs them.

mod support;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use ember_fcgi::prelude::*;
use ember_fcgi::server::{Limits, Listen};
use ember_fcgi_testkit::tools::{loud, nginx};
use ember_fcgi_testkit::web::{Nginx, NginxConf, nginx_conf};
use ember_fcgi_testkit::wire::{self as fcgi, TextRequest};
use ember_fcgi_testkit::{Client, Stream};
use support::{
    App, Combo, Endpoint, FASTCGI_PARAMS, Socket, Stack, TempDir, Transport, agent, example, free_port, send,
};

matrix_tests!(status_pages_through_nginx);
socket_tests!(systemd_socket_activation, spawn_fcgi_launches_an_example);

// ---------------------------------------------------------------------------------------
// Tools

/// `path`; a test whose tool is missing fails (it never passes without having run).
fn tool(path: &str, package: &str) -> PathBuf {
    assert!(
        Path::new(path).is_file(),
        "{path} missing: run scripts/setup.sh (or apt-get install -y {package})"
    );
    PathBuf::from(path)
}

/// Debian's python3 with `prometheus_client` (the package python3-prometheus-client).
fn prometheus_python() -> PathBuf {
    let python = tool("/usr/bin/python3", "python3-prometheus-client");
    let ok =
        Command::new(&python).args(["-c", "import prometheus_client"]).status().is_ok_and(|s| s.success());
    assert!(
        ok,
        "python3 lacks prometheus_client: run scripts/setup.sh (or apt-get install -y python3-prometheus-client)"
    );
    python
}

/// Parses an OpenMetrics exposition with `prometheus_client`'s strict OpenMetrics parser:
/// `(family type, sample name, labels, value)` for every sample. Panics if it rejects it.
fn parse_openmetrics(python: &Path, exposition: &str) -> Vec<(String, String, String, f64)> {
    const SCRIPT: &str = "
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ','.join(f'{k}={v}' for k, v in sorted(s.labels.items()))
        print(family.type, s.name, labels or '-', repr(float(s.value)))
";
    let mut child = Command::new(python)
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    child.stdin.take().expect("stdin").write_all(exposition.as_bytes()).expect("write exposition");
    let output = child.wait_with_output().expect("python3 output");
    assert!(
        output.status.success(),
        "prometheus_client rejected the exposition: {}\n{exposition}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .lines()
        .map(|line| {
            let parts: Vec<&str> = line.split(' ').collect();
            let value = parts[3].parse().expect("value");
            (parts[0].to_owned(), parts[1].to_owned(), parts[2].to_owned(), value)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Reading the pages

/// The top-level figures of the `?json` page (the object before `"loops"`).
fn json_totals(body: &str) -> BTreeMap<String, f64> {
    let totals = body.strip_prefix('{').and_then(|b| b.split_once(",\"loops\":")).expect("json shape").0;
    totals
        .split(',')
        .map(|pair| {
            let (name, value) = pair.split_once(':').expect("name:value");
            (name.trim_matches('"').to_owned(), value.parse().expect("number"))
        })
        .collect()
}

/// The `name: value` lines of the plain text page.
fn text_figures(body: &str) -> BTreeMap<String, f64> {
    body.lines()
        .map(|line| {
            let (name, value) = line.split_once(':').expect("name: value");
            (name.to_owned(), value.trim().parse().expect("number"))
        })
        .collect()
}

fn status_pages_through_nginx(combo: Combo) {
    let python = prometheus_python();
    let extra: Vec<&OsStr> = ["--status-path", "/status", "--ping-path", "/ping"].map(OsStr::new).to_vec();
    let stack = Stack::start("hello", combo, &extra);
    let agent = agent();

    let ping = send(agent.get(&stack.url("/ping")).call());
    assert_eq!((ping.status, ping.body.as_str()), (200, "pong\n"));
    assert_eq!(ping.content_type.as_deref(), Some("text/plain; charset=utf-8"));

    let get_json = || {
        let reply = send(agent.get(&stack.url("/status?json")).call());
        assert_eq!(reply.status, 200);
        assert_eq!(reply.content_type.as_deref(), Some("application/json"));
        json_totals(&reply.body)
    };
    let before = get_json();
    for _ in 0..5 {
        assert_eq!(send(agent.get(&stack.url("/hello")).call()).body, "Hello, World!\n");
    }
    let after = get_json();
    // Every page is a request too: the five hellos and the second status page.
    assert_eq!(after["requests"] - before["requests"], 6.0, "{before:?}\n{after:?}");
    if !combo.keepalive {
        assert_eq!(after["connections_accepted"] - before["connections_accepted"], 6.0);
    }
    assert!(after["received_bytes"] > before["received_bytes"] + 5.0 * 100.0, "{after:?}");
    assert!(after["sent_bytes"] > before["sent_bytes"] + 5.0 * 14.0, "{after:?}");
    assert_eq!(after["handler_errors"], 0.0);
    assert!(after["connections_open"] >= 1.0, "this request's connection is open");
    assert_eq!(after["connections_max"], 1024.0);
    // An engine without buffers per connection; request memory (the default capacities)
    // is lent while a request runs: this page's own request holds one block.
    assert!(after["memory_per_connection_bytes"] < after["memory_request_bytes"], "{after:?}");
    assert_eq!(after["memory_request_bytes"], 180_224.0, "16 + 16 + 128 + 16 KiB");
    assert!(after["memory_lent_bytes"] >= after["memory_request_bytes"], "{after:?}");
    assert!(after["memory_allocated_bytes"] >= after["memory_lent_bytes"], "{after:?}");
    let per_busy = after["memory_per_connection_bytes"] + after["memory_request_bytes"];
    let unused = after["connections_max"] - after["connections_open"];
    assert_eq!(
        after["memory_budget_bytes"] - after["memory_in_use_bytes"],
        after["connections_max"] * per_busy
            - after["connections_open"] * after["memory_per_connection_bytes"]
            - after["memory_lent_bytes"],
        "budget and use differ by the memory not in use: {after:?} ({unused} connections not open)"
    );
    assert!(after["uptime_seconds"] > 0.0);

    let text = send(agent.get(&stack.url("/status")).call());
    assert_eq!(text.content_type.as_deref(), Some("text/plain; charset=utf-8"));
    let text = text_figures(&text.body);
    assert_eq!(text.keys().collect::<Vec<_>>(), after.keys().collect::<Vec<_>>(), "the same figures");
    assert_eq!(text["requests"], after["requests"] + 1.0);

    let metrics = send(agent.get(&stack.url("/status?openmetrics")).call());
    assert_eq!(metrics.status, 200);
    assert_eq!(
        metrics.content_type.as_deref(),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let samples = parse_openmetrics(&python, &metrics.body);
    assert_eq!(samples.len(), after.len(), "one sample per figure: {samples:?}");
    for (kind, name, labels, _) in &samples {
        let figure = name.strip_prefix("ember_fcgi_").expect("prefix");
        let figure =
            if kind == "counter" { figure.strip_suffix("_total").expect("counter suffix") } else { figure };
        assert!(after.contains_key(figure), "{name} is not a JSON figure");
        assert_eq!(labels, "-", "one loop: no labels");
    }
    let value = |name: &str| samples.iter().find(|s| s.1 == name).map(|s| s.3).expect(name);
    assert_eq!(value("ember_fcgi_requests_total"), text["requests"] + 1.0);
    assert_eq!(samples.iter().find(|s| s.1 == "ember_fcgi_connections_open").unwrap().0, "gauge");
    stack.nginx.assert_clean_log();
}

// ---------------------------------------------------------------------------------------
// The operating guide's (docs/operating.md) snippets

/// The fenced blocks (with their info string) of the guide's section `## {heading}`.
fn readme_blocks(heading: &str) -> Vec<(String, String)> {
    let guide = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operating.md"))
        .expect("docs/operating.md");
    let section = guide
        .split("\n## ")
        .find(|s| s.starts_with(heading))
        .unwrap_or_else(|| panic!("docs/operating.md has no `## {heading}`"));
    section
        .split("```")
        .skip(1)
        .step_by(2)
        .map(|block| {
            let (info, body) = block.split_once('\n').unwrap_or((block, ""));
            (info.to_owned(), body.to_owned())
        })
        .collect()
}

fn readme_block(heading: &str, info: &str, containing: &str) -> String {
    readme_blocks(heading)
        .into_iter()
        .find(|(i, body)| i == info && body.contains(containing))
        .unwrap_or_else(|| {
            panic!("docs/operating.md `## {heading}` has no ```{info} block with {containing:?}")
        })
        .1
}

/// The scrape URL path and query of the guide's Prometheus job.
fn scrape_path(job: &str) -> String {
    let path = job.lines().find_map(|l| l.trim().strip_prefix("metrics_path: ")).expect("metrics_path");
    let lines: Vec<&str> = job.lines().collect();
    let params = lines.iter().position(|l| l.trim() == "params:").expect("params");
    let query: Vec<String> = lines[params + 1..]
        .iter()
        .take_while(|l| l.starts_with("      "))
        .map(|l| {
            let (key, value) = l.trim().split_once(": ").expect("key: [value]");
            format!("{key}={}", value.trim_matches(&['[', ']', '\''][..]))
        })
        .collect();
    format!("{path}?{}", query.join("&"))
}

/// nginx with the operating guide's status/ping locations in its server block, passing to
/// `app` (an upstream of the example); they include Debian's `/etc/nginx/fastcgi_params`
/// (a copy of its params is written beside the config too, for a relative include).
fn start_nginx_with(dir: &TempDir, app: &Endpoint, locations: &str) -> (std::process::Child, u16) {
    let binary = nginx();
    let port = free_port();
    let params: String =
        FASTCGI_PARAMS.iter().map(|(name, value)| format!("fastcgi_param {name} {value};\n")).collect();
    std::fs::write(dir.path().join("fastcgi_params"), params).expect("fastcgi_params");
    let base = nginx_conf(&NginxConf {
        dir: dir.path(),
        port,
        upstream: &app.nginx_address(),
        keepalive: false,
        request_buffering: true,
    });
    let upstream =
        format!("\n    upstream app {{\n        server {};\n    }}\n    server {{", app.nginx_address());
    let conf = base.replacen("\n    server {", &upstream, 1).replacen(
        "        location / {",
        &format!("        listen 127.0.0.2:{port};\n{locations}\n        location / {{"),
        1,
    );
    let conf_path = dir.path().join("nginx.conf");
    std::fs::write(&conf_path, conf).expect("nginx.conf");
    let child = Command::new(binary)
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&conf_path)
        .arg("-e")
        .arg(dir.path().join("error.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn nginx");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nginx did not start: {:?}",
            std::fs::read_to_string(dir.path().join("error.log"))
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, port)
}

/// A GET sent from `from` (a loopback address) to `to`: the status code.
fn status_from(from: &str, to: SocketAddr, path: &str) -> u16 {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.bind(&format!("{from}:0").parse::<SocketAddr>().expect("addr").into()).expect("bind client");
    socket.connect(&to.into()).expect("connect");
    let mut stream: TcpStream = socket.into();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").expect("send");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("read");
    reply
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad reply {reply:?}"))
}

#[test]
fn readme_status_locations_and_prometheus_job() {
    let python = prometheus_python();
    let locations = readme_block("Status and metrics", "nginx", "location = /status");
    let job = readme_block("Status and metrics", "yaml", "scrape_configs");
    let combo = Combo { transport: Transport::Mio, socket: Socket::Unix, keepalive: false };
    let extra: Vec<&OsStr> = ["--status-path", "/status", "--ping-path", "/ping"].map(OsStr::new).to_vec();
    let app = App::start("hello", combo, &extra);
    let dir = TempDir::new("ops-nginx");
    let (mut nginx, port) = start_nginx_with(&dir, &app.endpoint, &locations);
    let local: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let other: SocketAddr = format!("127.0.0.2:{port}").parse().unwrap();
    let result = std::panic::catch_unwind(|| {
        assert_eq!(status_from("127.0.0.1", local, "/ping"), 200);
        assert_eq!(status_from("127.0.0.1", local, "/status"), 200);
        assert_eq!(status_from("127.0.0.2", other, "/status"), 403, "only localhost sees the status");
        assert_eq!(status_from("127.0.0.2", other, "/ping"), 403);
        assert_eq!(status_from("127.0.0.2", other, "/"), 200, "the application is public");
        let url = format!("http://127.0.0.1:{port}{}", scrape_path(&job));
        assert_eq!(scrape_path(&job), "/status?openmetrics=");
        let scrape = send(agent().get(&url).call());
        assert_eq!(scrape.status, 200);
        let samples = parse_openmetrics(&python, &scrape.body);
        assert!(samples.iter().any(|s| s.1 == "ember_fcgi_requests_total" && s.3 >= 3.0), "{samples:?}");
    });
    let _ = nginx.kill();
    let _ = nginx.wait();
    if let Err(panic) = result {
        loud(&format!(
            "---- nginx error.log ----\n{:?}",
            std::fs::read_to_string(dir.path().join("error.log"))
        ));
        std::panic::resume_unwind(panic);
    }
}

// ---------------------------------------------------------------------------------------
// Logs

/// Every log record of this test process, as `LEVEL target: message`.
static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let line = format!("{} {}: {}", record.level(), record.target(), record.args());
        LINES.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    }
    fn flush(&self) {}
}

fn capture_logs() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        log::set_logger(&Capture).expect("the only logger");
        log::set_max_level(log::LevelFilter::Debug);
    });
}

/// Waits up to 5 s for a captured line that `wanted` accepts; returns it.
fn wait_line(what: &str, wanted: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let lines = LINES.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(line) = lines.iter().find(|l| wanted(l)) {
            return line.clone();
        }
        assert!(Instant::now() < deadline, "no log line {what}; got:\n{}", lines.join("\n"));
        drop(lines);
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn expect_line(line: &str) {
    wait_line(&format!("{line:?}"), |l| l == line);
}

/// Answers with a header name nginx would reject: the handler gets `InvalidHeader`.
struct BadHeader;

impl Handler for BadHeader {
    async fn handle(&self, _: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), HandlerError> {
        res.send_head(200, &[("Bad Header", "x")]).await?;
        Ok(())
    }
}

/// Runs `BadHeader` on `transport` with one connection at most and a 300 ms head timeout;
/// returns its address and a function that stops it.
fn log_server(transport: Transport) -> (SocketAddr, Box<dyn FnOnce()>) {
    let limits = Limits::default().with_max_connections(1).with_head_timeout(Duration::from_millis(300));
    let listen: Listen = "127.0.0.1:0".parse().unwrap();
    type Run = Box<dyn FnOnce() -> std::io::Result<()> + Send>;
    let (addr, stop, run): (SocketAddr, Box<dyn FnOnce()>, Run) = match transport {
        Transport::Mio => {
            let server = ember_fcgi::mio::Server::bind(&listen, BadHeader, limits).expect("bind");
            let handle = server.shutdown_handle();
            (
                server.local_addr().unwrap(),
                Box::new(move || handle.shutdown()),
                Box::new(move || server.run()),
            )
        }
        Transport::Smol => {
            let server = ember_fcgi::smol::Server::bind(&listen, BadHeader, limits).expect("bind");
            let handle = server.shutdown_handle();
            (
                server.local_addr().unwrap(),
                Box::new(move || handle.shutdown()),
                Box::new(move || server.run()),
            )
        }
    };
    let thread = std::thread::spawn(run);
    let stop = move || {
        stop();
        thread.join().unwrap().unwrap();
    };
    (addr, Box::new(stop))
}

fn logs_a_refusal_a_timeout_and_a_handler_error(transport: Transport) {
    capture_logs();
    let (addr, stop) = log_server(transport);
    let startup = format!(
        "INFO ember_fcgi: serving FastCGI on {addr}: max_connections 1, idle_timeout 120s, head_timeout 300ms, "
    );
    let line = wait_line(&format!("starting {startup:?}"), |l| l.starts_with(&startup));
    assert!(line.contains(" bytes per connection, memory budget "), "{line}");

    // A handler error, with the request's method, URI and client.
    let mut stream = Client::tcp(addr);
    let uri = format!("/fail/{transport:?}");
    let params = [("REQUEST_METHOD", "GET"), ("REQUEST_URI", uri.as_str()), ("REMOTE_ADDR", "192.0.2.7")];
    let request = TextRequest { keep_conn: true, params: &params, ..Default::default() };
    let reply = stream.roundtrip(&request);
    assert!(reply.stdout_text().starts_with("Status: 500"), "{reply:?}");
    expect_line(&format!(
        "WARN ember_fcgi: handler error for GET {uri} (client 192.0.2.7): invalid CGI response header or status"
    ));

    // A refusal: the one connection allowed is open.
    let second = TcpStream::connect(addr).expect("connect");
    let second_port = second.local_addr().unwrap().port();
    expect_line(&format!(
        "WARN ember_fcgi: refused a connection from 127.0.0.1:{second_port}: max_connections (1) are open"
    ));
    drop(second);

    // A head timeout: params begun and never finished.
    let Stream::Tcp(tcp) = &stream.stream else { unreachable!("a TCP client") };
    let port = tcp.local_addr().unwrap().port();
    stream.send(&fcgi::record(fcgi::BEGIN_REQUEST, 2, &[0, 1, 1, 0, 0, 0, 0, 0]));
    stream.send(&fcgi::record(fcgi::PARAMS, 2, &ember_fcgi_testkit::encode_pairs(&[("A", "1")])));
    let mut rest = Vec::new();
    let _ = stream.stream.read_to_end(&mut rest); // closed by the server
    assert!(rest.is_empty(), "nothing is sent: {rest:?}");
    expect_line(&format!(
        "WARN ember_fcgi: closed the connection from 127.0.0.1:{port}: request params took longer than head_timeout (300ms)"
    ));
    stop();
}

#[test]
fn logs_mio() {
    logs_a_refusal_a_timeout_and_a_handler_error(Transport::Mio);
}

#[test]
fn logs_smol() {
    logs_a_refusal_a_timeout_and_a_handler_error(Transport::Smol);
}

/// Waits up to 5 s for `text` in the example's stderr.
fn wait_for_log(app: &App, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !app.log().contains(text) {
        assert!(Instant::now() < deadline, "no {text:?} in:\n{}", app.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The examples take `--log`: at `warn` a refusal is logged and startup is not; at the
/// default `info` the startup line names the address and the memory budget.
#[test]
fn example_log_levels() {
    let combo = Combo { transport: Transport::Mio, socket: Socket::Tcp, keepalive: false };
    let extra: Vec<&OsStr> = ["--max-connections", "1", "--log", "warn"].map(OsStr::new).to_vec();
    let app = App::start("hello", combo, &extra);
    let Endpoint::Tcp(addr) = app.endpoint.clone() else { unreachable!() };
    let _first = TcpStream::connect(addr).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let second = TcpStream::connect(addr).unwrap();
    let port = second.local_addr().unwrap().port();
    let wanted =
        format!("WARN  ember_fcgi] refused a connection from 127.0.0.1:{port}: max_connections (1) are open");
    wait_for_log(&app, &wanted);
    assert!(!app.log().contains("INFO"), "warn hides startup:\n{}", app.log());

    let app = App::start("hello", combo, &[]);
    let startup = format!(
        "INFO  ember_fcgi] serving FastCGI on {}: max_connections 1024, ",
        app.endpoint.nginx_address()
    );
    wait_for_log(&app, &startup);
}

// ---------------------------------------------------------------------------------------
// Launchers

/// `key=value` lines of a systemd unit block (sections and comments left out).
fn unit_keys(block: &str) -> Vec<(String, String)> {
    block
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('[') && !l.trim().is_empty())
        .map(|l| {
            let (key, value) = l.split_once('=').expect("key=value");
            (key.to_owned(), value.to_owned())
        })
        .collect()
}

/// Sends a FastCGI request for `/ping` to `endpoint` (retrying the connect) and returns the
/// body: the first connection is what makes `systemd-socket-activate` start the app.
fn ping(endpoint: Endpoint) -> String {
    let mut stream = endpoint.connect();
    let params = [("REQUEST_METHOD", "GET"), ("REQUEST_URI", "/ping")];
    let reply = stream.roundtrip(&TextRequest { params: &params, ..Default::default() });
    reply.split().1
}

fn systemd_socket_activation(combo: Combo) {
    let activate = tool("/usr/bin/systemd-socket-activate", "systemd");
    let nginx_binary = nginx();
    let socket_unit = unit_keys(&readme_block("Launchers", "ini", "[Socket]"));
    let service_unit = unit_keys(&readme_block("Launchers", "ini", "[Service]"));
    let get = |unit: &[(String, String)], key: &str| {
        unit.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).unwrap_or_else(|| panic!("no {key}="))
    };
    // Keys the test applies, and keys only systemd applies (permissions, install target).
    let known = ["ListenStream", "FileDescriptorName", "SocketMode", "SocketGroup", "WantedBy", "ExecStart"];
    for (key, _) in socket_unit.iter().chain(&service_unit) {
        assert!(
            known.contains(&key.as_str()),
            "docs/operating.md unit key {key} is not handled by this test"
        );
    }
    assert_eq!(get(&socket_unit, "ListenStream"), "/run/app.sock");
    let dir = TempDir::new("ops-sd");
    let (listen, endpoint) = match combo.socket {
        Socket::Unix => {
            let path = dir.path().join("app.sock");
            (path.display().to_string(), Endpoint::Unix(path))
        }
        Socket::Tcp => {
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            (addr.to_string(), Endpoint::Tcp(addr))
        }
    };
    let exec = get(&service_unit, "ExecStart");
    let mut words = exec.split_whitespace();
    assert_eq!(words.next(), Some("/usr/local/bin/app"));
    let args: Vec<&str> = words.map(|w| if w == "mio" { combo.transport.arg() } else { w }).collect();
    assert!(args.contains(&"--listen") && args.contains(&"--status-path"), "{exec}");
    let mut command = Command::new(activate);
    command
        .arg("-l")
        .arg(&listen)
        .arg(format!("--fdname={}", get(&socket_unit, "FileDescriptorName")))
        .arg(example("hello"))
        .args(&args)
        .stdin(Stdio::null());
    // systemd-socket-activate starts the app on the first connection.
    let first = std::thread::spawn({
        let endpoint = endpoint.clone();
        move || ping(endpoint)
    });
    let app = App::spawn("hello (systemd-socket-activate)", command, dir, None);
    assert_eq!(app.endpoint, endpoint, "the example serves the socket systemd passed");
    assert_eq!(first.join().expect("first request"), "pong\n");
    let nginx = Nginx::start(&nginx_binary, &app.endpoint, combo.keepalive);
    let reply = send(agent().get(&nginx.url("/status?json")).call());
    assert_eq!(reply.status, 200);
    assert_eq!(json_totals(&reply.body)["requests"], 2.0, "the first ping and this page");
    assert_eq!(send(agent().get(&nginx.url("/")).call()).body, "Hello, World!\n");
    nginx.assert_clean_log();
}

fn spawn_fcgi_launches_an_example(combo: Combo) {
    let spawn_fcgi = tool("/usr/bin/spawn-fcgi", "spawn-fcgi");
    let nginx_binary = nginx();
    let line = readme_block("Launchers", "bash", "spawn-fcgi");
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words[..6], ["spawn-fcgi", "-n", "-s", "/run/app.sock", "-M", "0660"], "{line}");
    assert_eq!(words[6..], ["--", "/usr/local/bin/app", "--transport", "mio"], "{line}");
    let dir = TempDir::new("ops-spawn");
    let (socket_args, endpoint) = match combo.socket {
        Socket::Unix => {
            let path = dir.path().join("app.sock");
            (
                vec!["-s".to_owned(), path.display().to_string(), "-M".into(), "0660".into()],
                Endpoint::Unix(path),
            )
        }
        Socket::Tcp => {
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            (vec!["-a".into(), "127.0.0.1".into(), "-p".into(), addr.port().to_string()], Endpoint::Tcp(addr))
        }
    };
    let mut command = Command::new(spawn_fcgi);
    command
        .arg("-n")
        .args(&socket_args)
        .arg("--")
        .arg(example("hello"))
        .args(["--transport", combo.transport.arg(), "--status-path", "/status"])
        .stdin(Stdio::null());
    let app = App::spawn("hello (spawn-fcgi)", command, dir, Some(endpoint.clone()));
    wait_for_log(&app, "listening on fd:0");
    if let Endpoint::Unix(path) = &endpoint {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).expect("socket").permissions().mode() & 0o777;
        assert_eq!(mode, 0o660, "spawn-fcgi -M");
    }
    let nginx = Nginx::start(&nginx_binary, &app.endpoint, combo.keepalive);
    assert_eq!(send(agent().get(&nginx.url("/")).call()).body, "Hello, World!\n");
    let reply = send(agent().get(&nginx.url("/status")).call());
    assert_eq!(text_figures(&reply.body)["requests"], 2.0);
    nginx.assert_clean_log();
}

// ---------------------------------------------------------------------------------------
// Several loops

#[derive(Clone)]
struct Hello;

impl Handler for Hello {
    async fn handle(&self, _: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), HandlerError> {
        Ok(res.send_response(200, content_type::TEXT, b"Hello, World!\n").await?)
    }
}

/// Two mio loops on one listener, both registered on one board: the page shows their totals
/// and each loop, and the OpenMetrics samples carry `loop="0"` and `loop="1"`.
#[test]
fn several_loops_show_each_loop() {
    let python = prometheus_python();
    let listener = ember_fcgi::server::Listener::bind(&"127.0.0.1:0".parse().unwrap()).expect("bind");
    let addr = listener.local_addr().unwrap();
    let pages = ember_fcgi::server::StatusPages::new(Hello).with_status_path("/status");
    let board = pages.board();
    let mut loops = Vec::new();
    for _ in 0..2 {
        let server = ember_fcgi::mio::Server::<_>::from_listener(
            listener.try_clone().unwrap(),
            pages.clone(),
            Limits::default(),
        )
        .expect("server");
        board.add(server.stats());
        loops.push((server.shutdown_handle(), std::thread::spawn(move || server.run())));
    }
    let page = |query: &str| {
        let mut stream = Endpoint::Tcp(addr).connect();
        let params = [("REQUEST_METHOD", "GET"), ("DOCUMENT_URI", "/status"), ("QUERY_STRING", query)];
        stream.roundtrip(&TextRequest { params: &params, ..Default::default() }).split().1
    };
    for _ in 0..3 {
        page("");
    }
    let json = page("json");
    assert_eq!(json_totals(&json)["requests"], 4.0, "{json}");
    assert_eq!(json.matches("\"uptime_seconds\"").count(), 3, "totals and two loops: {json}");
    let samples = parse_openmetrics(&python, &page("openmetrics"));
    let requests: Vec<_> = samples.iter().filter(|s| s.1 == "ember_fcgi_requests_total").collect();
    assert_eq!(requests.len(), 2, "{samples:?}");
    assert_eq!((requests[0].2.as_str(), requests[1].2.as_str()), ("loop=0", "loop=1"));
    assert_eq!(requests[0].3 + requests[1].3, 5.0, "the loops' requests add up");
    for (stop, thread) in loops {
        stop.shutdown();
        thread.join().unwrap().unwrap();
    }
}
