//! End-to-end harness: the example binaries, a real nginx in front of them, libfcgi's
//! `cgi-fcgi`, and a minimal raw FastCGI client, all torn down on drop.
//!
//! ## How the example binaries are found
//! Cargo gives integration tests `CARGO_BIN_EXE_<name>` for binaries only, not examples,
//! and `cargo test --tests` does not build examples at all. So the first test that needs
//! one runs `$CARGO build --release --examples -p ember-fcgi` once per test binary (a
//! `OnceLock`), into the target directory this test executable lives in (found by walking
//! up from `current_exe()` to the directory holding `CACHEDIR.TAG`), and uses
//! `<target>/release/examples/NAME`. Release, because the 100 MiB bodies are hashed by the
//! examples. Set `EMBER_E2E_EXAMPLES=/path/to/dir` to use prebuilt binaries instead (no
//! cargo run).
//!
//! ## Missing tools
//! nginx (`$NGINX`, `/usr/sbin/nginx`, or `nginx` on `PATH`) and cgi-fcgi (`$CGI_FCGI`, or
//! `cgi-fcgi` on `PATH`) are optional locally: a test without them prints
//! `SKIPPED: nginx not found` past the output capture and passes. With `CI` set (and not
//! `0`/`false`) a missing tool fails the test instead.
#![allow(dead_code)] // each test file uses part of this

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------------------
// The test matrix

/// The server the example runs on (`--transport`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Mio,
    Smol,
}

impl Transport {
    pub fn arg(self) -> &'static str {
        match self {
            Self::Mio => "mio",
            Self::Smol => "smol",
        }
    }
}

/// How the web server reaches the example.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Socket {
    /// A loopback TCP port (port 0, the real one read from `listening on`).
    Tcp,
    /// A Unix socket in a temporary directory.
    Unix,
}

/// One cell of the matrix. `keepalive` selects the nginx variant (`fastcgi_keep_conn on` +
/// upstream `keepalive 8`, or a plain `fastcgi_pass`); clients other than nginx ignore it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Combo {
    pub transport: Transport,
    pub socket: Socket,
    pub keepalive: bool,
}

/// Expands to one `#[test]` per (transport, socket, keepalive) combination, each calling
/// `$body(Combo)`: `matrix_tests!(echo_basics);` gives `echo_basics::mio_tcp_keepalive` etc.
#[macro_export]
macro_rules! matrix_tests {
    ($($body:ident),+ $(,)?) => {$(
        mod $body {
            use super::support::{Combo, Socket::*, Transport::*};
            #[test] fn mio_tcp_keepalive() { super::$body(Combo { transport: Mio, socket: Tcp, keepalive: true }) }
            #[test] fn mio_tcp_plain() { super::$body(Combo { transport: Mio, socket: Tcp, keepalive: false }) }
            #[test] fn mio_unix_keepalive() { super::$body(Combo { transport: Mio, socket: Unix, keepalive: true }) }
            #[test] fn mio_unix_plain() { super::$body(Combo { transport: Mio, socket: Unix, keepalive: false }) }
            #[test] fn smol_tcp_keepalive() { super::$body(Combo { transport: Smol, socket: Tcp, keepalive: true }) }
            #[test] fn smol_tcp_plain() { super::$body(Combo { transport: Smol, socket: Tcp, keepalive: false }) }
            #[test] fn smol_unix_keepalive() { super::$body(Combo { transport: Smol, socket: Unix, keepalive: true }) }
            #[test] fn smol_unix_plain() { super::$body(Combo { transport: Smol, socket: Unix, keepalive: false }) }
        }
    )+};
}

/// Like [`matrix_tests!`] for clients with no keep-alive variant: (transport, socket) only.
#[macro_export]
macro_rules! socket_tests {
    ($($body:ident),+ $(,)?) => {$(
        mod $body {
            use super::support::{Combo, Socket::*, Transport::*};
            #[test] fn mio_tcp() { super::$body(Combo { transport: Mio, socket: Tcp, keepalive: false }) }
            #[test] fn mio_unix() { super::$body(Combo { transport: Mio, socket: Unix, keepalive: false }) }
            #[test] fn smol_tcp() { super::$body(Combo { transport: Smol, socket: Tcp, keepalive: false }) }
            #[test] fn smol_unix() { super::$body(Combo { transport: Smol, socket: Unix, keepalive: false }) }
        }
    )+};
}

// ---------------------------------------------------------------------------------------
// Tools and binaries

/// Whether missing tools fail tests (`CI` set, and not `0` or `false`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Writes straight to the test process's stderr, past the test harness's output capture.
pub fn loud(message: &str) {
    let _ = writeln!(io::stderr().lock(), "{message}");
}

fn find_tool(env: &str, fixed: &[&str], name: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        return Some(PathBuf::from(path)).filter(|p| p.is_file());
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).map(|dir| dir.join(name)).collect::<Vec<_>>())
        .unwrap_or_default();
    fixed.iter().map(PathBuf::from).chain(on_path).find(|p| p.is_file())
}

fn tool(env: &str, fixed: &[&str], name: &str, test: &str) -> Option<PathBuf> {
    let found = find_tool(env, fixed, name);
    if found.is_none() {
        if in_ci() {
            panic!("{name} not found (looked at ${env}, {fixed:?} and PATH) and CI is set: install it");
        }
        loud(&format!("\nSKIPPED: {name} not found ({test}); apt-get install -y {}", apt_package(name)));
    }
    found
}

fn apt_package(name: &str) -> &str {
    if name == "cgi-fcgi" { "libfcgi-bin" } else { name }
}

/// nginx, or `None` after printing `SKIPPED: nginx not found` (a panic when `CI` is set).
pub fn nginx(test: &str) -> Option<PathBuf> {
    tool("NGINX", &["/usr/sbin/nginx"], "nginx", test)
}

/// cgi-fcgi from libfcgi, or `None` after printing `SKIPPED` (a panic when `CI` is set).
pub fn cgi_fcgi(test: &str) -> Option<PathBuf> {
    tool("CGI_FCGI", &["/usr/bin/cgi-fcgi"], "cgi-fcgi", test)
}

/// The target directory holding this test executable: the nearest ancestor with
/// `CACHEDIR.TAG` (cargo writes one there), else `<exe>/../../..`.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.ancestors()
        .skip(1)
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| exe.ancestors().nth(3).expect("target/<profile>/deps/<exe>").to_path_buf())
}

/// The directory of the release example binaries, built on first use (see the module doc).
pub fn examples_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("EMBER_E2E_EXAMPLES") {
            return PathBuf::from(dir);
        }
        let target = target_dir();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
        loud(&format!("e2e: building the examples (release) into {}", target.display()));
        let started = Instant::now();
        let output = Command::new(cargo)
            .args(["build", "--release", "--examples", "-p", "ember-fcgi"])
            .env("CARGO_TARGET_DIR", &target)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("run cargo");
        assert!(
            output.status.success(),
            "cargo build --release --examples failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        loud(&format!("e2e: examples built in {:.1?}", started.elapsed()));
        target.join("release").join("examples")
    })
}

/// The path of example `name`.
pub fn example(name: &str) -> PathBuf {
    let path = examples_dir().join(name);
    assert!(path.is_file(), "example binary {} missing", path.display());
    path
}

// ---------------------------------------------------------------------------------------
// Temporary directories and ports

/// A fresh directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // Short: Unix socket paths are limited to 107 bytes.
        let path = std::env::temp_dir().join(format!("ember-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind 127.0.0.1:0").port()
}

// ---------------------------------------------------------------------------------------
// The example under test

/// Where an example listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl Endpoint {
    /// The address as nginx's `server` / `fastcgi_pass` take it.
    pub fn nginx_address(&self) -> String {
        match self {
            Self::Tcp(addr) => addr.to_string(),
            Self::Unix(path) => format!("unix:{}", path.display()),
        }
    }

    /// The address as `cgi-fcgi -connect` takes it (a path has no colon).
    pub fn cgi_fcgi_address(&self) -> String {
        match self {
            Self::Tcp(addr) => addr.to_string(),
            Self::Unix(path) => path.display().to_string(),
        }
    }

    pub fn connect(&self) -> Box<dyn Stream> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let attempt: io::Result<Box<dyn Stream>> = match self {
                Self::Tcp(addr) => TcpStream::connect(addr).map(|s| Box::new(s) as Box<dyn Stream>),
                Self::Unix(path) => UnixStream::connect(path).map(|s| Box::new(s) as Box<dyn Stream>),
            };
            match attempt {
                Ok(stream) => {
                    stream.set_timeout(Some(Duration::from_secs(30)));
                    return stream;
                }
                Err(e) if Instant::now() > deadline => panic!("connect to {self:?}: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

/// A connected socket of either kind.
pub trait Stream: Read + Write + Send {
    fn set_timeout(&self, timeout: Option<Duration>);
    fn shutdown_write(&self);
}

impl Stream for TcpStream {
    fn set_timeout(&self, timeout: Option<Duration>) {
        let _ = self.set_read_timeout(timeout);
        let _ = self.set_write_timeout(timeout);
    }
    fn shutdown_write(&self) {
        let _ = self.shutdown(std::net::Shutdown::Write);
    }
}

impl Stream for UnixStream {
    fn set_timeout(&self, timeout: Option<Duration>) {
        let _ = self.set_read_timeout(timeout);
        let _ = self.set_write_timeout(timeout);
    }
    fn shutdown_write(&self) {
        let _ = self.shutdown(std::net::Shutdown::Write);
    }
}

/// A running example, killed on drop; its stderr is collected for failure reports.
pub struct App {
    child: Child,
    pub endpoint: Endpoint,
    pub log: Arc<Mutex<String>>,
    name: String,
    _dir: TempDir,
}

impl App {
    /// Starts example `name` with `--transport`, `--listen` per `combo`, and `extra` args;
    /// returns once it printed `listening on ADDR`.
    pub fn start(name: &str, combo: Combo, extra: &[&OsStr]) -> Self {
        let dir = TempDir::new("app");
        let listen = match combo.socket {
            Socket::Tcp => "127.0.0.1:0".to_owned(),
            Socket::Unix => format!("unix:{}", dir.path().join("app.sock").display()),
        };
        let mut command = Command::new(example(name));
        command
            .args(["--transport", combo.transport.arg(), "--listen", &listen])
            .args(extra)
            .stdin(Stdio::null());
        Self::spawn(name, command, dir, None)
    }

    /// Runs a prepared command (stdin as the caller set it) and waits for `listening on`;
    /// `inherited` is where it listens if it says `fd:0`.
    pub fn spawn(name: &str, mut command: Command, dir: TempDir, inherited: Option<Endpoint>) -> Self {
        let mut child = command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn example");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("listening on ")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(addr.to_owned());
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(50));
                panic!("{name} did not print `listening on`; stderr:\n{}", log.lock().unwrap());
            }
        };
        let endpoint = match (addr.strip_prefix("unix:"), inherited) {
            (_, Some(endpoint)) if addr == "fd:0" => endpoint,
            (Some(path), _) => Endpoint::Unix(path.into()),
            (None, _) => Endpoint::Tcp(addr.parse().unwrap_or_else(|_| panic!("bad address {addr:?}"))),
        };
        Self { child, endpoint, log, name: name.to_owned(), _dir: dir }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM (graceful shutdown).
    pub fn terminate(&self) {
        let status = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status().expect("kill");
        assert!(status.success());
    }

    /// Waits up to `limit` for the process to exit; its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            if Instant::now() > deadline {
                panic!("{} did not exit within {limit:?}; stderr:\n{}", self.name, self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Peak resident memory (VmHWM) in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("/proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM")
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            loud(&format!("---- {} stderr ----\n{}", self.name, self.log()));
        }
    }
}

// ---------------------------------------------------------------------------------------
// nginx

/// What goes into a generated nginx config.
#[derive(Clone, Debug)]
pub struct NginxConf<'a> {
    /// Directory for the pid file, logs and the temp paths.
    pub dir: &'a Path,
    /// `listen` port on 127.0.0.1.
    pub port: u16,
    /// The FastCGI app, as `fastcgi_pass` takes it: `127.0.0.1:9000` or `unix:/path`.
    pub upstream: &'a str,
    /// `fastcgi_keep_conn on` + `upstream { keepalive 8; }`, or a plain `fastcgi_pass`.
    pub keepalive: bool,
    /// nginx's default (`true`) spools the whole request body before passing it on;
    /// `false` adds `fastcgi_request_buffering off;` to stream it as it arrives.
    pub request_buffering: bool,
}

/// The params nginx sends, in this order (Debian's `fastcgi_params`, inlined so the config
/// needs no file outside its directory).
pub const FASTCGI_PARAMS: &[(&str, &str)] = &[
    ("QUERY_STRING", "$query_string"),
    ("REQUEST_METHOD", "$request_method"),
    ("CONTENT_TYPE", "$content_type"),
    ("CONTENT_LENGTH", "$content_length"),
    ("SCRIPT_NAME", "$fastcgi_script_name"),
    ("REQUEST_URI", "$request_uri"),
    ("DOCUMENT_URI", "$document_uri"),
    ("DOCUMENT_ROOT", "$document_root"),
    ("SERVER_PROTOCOL", "$server_protocol"),
    ("REQUEST_SCHEME", "$scheme"),
    ("GATEWAY_INTERFACE", "CGI/1.1"),
    ("SERVER_SOFTWARE", "nginx/$nginx_version"),
    ("REMOTE_ADDR", "$remote_addr"),
    ("REMOTE_PORT", "$remote_port"),
    ("SERVER_ADDR", "$server_addr"),
    ("SERVER_PORT", "$server_port"),
    ("SERVER_NAME", "$server_name"),
    ("REDIRECT_STATUS", "200"),
];

/// A self-contained nginx config that runs unprivileged in the foreground as one process
/// (`daemon off; master_process off;`), keeps every file it writes under `conf.dir`, and
/// passes every request to the FastCGI app. `scripts/demo.sh` writes the same config.
pub fn nginx_conf(conf: &NginxConf<'_>) -> String {
    let dir = conf.dir.display();
    let mut text = format!(
        "# Generated by ember-fcgi tests/support (scripts/demo.sh writes the same shape).
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log notice;

events {{
    worker_connections 1024;
}}

http {{
    access_log off;
    client_body_temp_path {dir}/client_body_temp;
    fastcgi_temp_path {dir}/fastcgi_temp;
    proxy_temp_path {dir}/proxy_temp;
    uwsgi_temp_path {dir}/uwsgi_temp;
    scgi_temp_path {dir}/scgi_temp;
    client_max_body_size 0;
"
    );
    let pass = if conf.keepalive {
        let _ = write!(
            text,
            "
    upstream ember {{
        server {};
        keepalive 8;
    }}
",
            conf.upstream
        );
        "ember".to_owned()
    } else {
        conf.upstream.to_owned()
    };
    let _ = write!(
        text,
        "
    server {{
        listen 127.0.0.1:{};
        location / {{
            fastcgi_pass {pass};
",
        conf.port
    );
    if conf.keepalive {
        text.push_str("            fastcgi_keep_conn on;\n");
    }
    if !conf.request_buffering {
        text.push_str("            fastcgi_request_buffering off;\n");
    }
    for (name, value) in FASTCGI_PARAMS {
        let _ = writeln!(text, "            fastcgi_param {name:<18} {value};");
    }
    text.push_str("        }\n    }\n}\n");
    text
}

/// A running nginx in front of an [`App`], killed on drop.
pub struct Nginx {
    child: Child,
    pub port: u16,
    dir: TempDir,
}

impl Nginx {
    /// Starts `binary` with a config generated for `upstream`; returns once it accepts.
    pub fn start(binary: &Path, upstream: &Endpoint, keepalive: bool) -> Self {
        Self::start_with(binary, upstream, keepalive, true)
    }

    /// [`Nginx::start`] choosing `fastcgi_request_buffering`.
    pub fn start_with(binary: &Path, upstream: &Endpoint, keepalive: bool, request_buffering: bool) -> Self {
        let dir = TempDir::new("nginx");
        let upstream = upstream.nginx_address();
        for _attempt in 0..5 {
            let port = free_port();
            let conf = nginx_conf(&NginxConf {
                dir: dir.path(),
                port,
                upstream: &upstream,
                keepalive,
                request_buffering,
            });
            let conf_path = dir.path().join("nginx.conf");
            std::fs::write(&conf_path, conf).expect("write nginx.conf");
            let error_log = dir.path().join("error.log");
            let _ = std::fs::remove_file(&error_log);
            let mut child = Command::new(binary)
                .arg("-p")
                .arg(dir.path())
                .arg("-c")
                .arg(&conf_path)
                .arg("-e")
                .arg(&error_log)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn nginx");
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Self { child, port, dir };
                }
                if let Some(status) = child.try_wait().expect("try_wait") {
                    let log = std::fs::read_to_string(&error_log).unwrap_or_default();
                    if log.contains("Address already in use") {
                        break; // someone took the port: try another
                    }
                    panic!("nginx exited with {status}; error.log:\n{log}");
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("nginx did not accept on {port} within 10 s");
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        panic!("nginx: no free port after 5 attempts");
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://127.0.0.1:{}{path_and_query}", self.port)
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// Fails if nginx logged anything at `error` level or worse (an upstream that closed
    /// early, sent a bad header, timed out, or wrote to FCGI_STDERR).
    pub fn assert_clean_log(&self) {
        let log = self.error_log();
        let bad: Vec<&str> = log
            .lines()
            .filter(|l| ["[error]", "[crit]", "[alert]", "[emerg]"].iter().any(|lvl| l.contains(lvl)))
            .collect();
        assert!(bad.is_empty(), "nginx error.log has errors:\n{}", bad.join("\n"));
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            loud(&format!("---- nginx error.log ----\n{}", self.error_log()));
        }
    }
}

/// An example behind nginx, as one value (dropped in order: nginx, then the app).
pub struct Stack {
    pub nginx: Nginx,
    pub app: App,
}

impl Stack {
    /// `None` (after `SKIPPED`) when nginx is missing.
    pub fn start(test: &str, example: &str, combo: Combo, extra: &[&OsStr]) -> Option<Self> {
        let binary = nginx(test)?;
        let app = App::start(example, combo, extra);
        let nginx = Nginx::start(&binary, &app.endpoint, combo.keepalive);
        Some(Self { nginx, app })
    }

    pub fn url(&self, path_and_query: &str) -> String {
        self.nginx.url(path_and_query)
    }
}

// ---------------------------------------------------------------------------------------
// HTTP client

/// A ureq agent that does not follow redirects (the tests check them).
pub fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .redirects(0)
        .timeout_connect(Duration::from_secs(5))
        .timeout_read(Duration::from_secs(120))
        .timeout_write(Duration::from_secs(120))
        .build()
}

/// An HTTP response with any status.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub location: Option<String>,
    pub content_type: Option<String>,
    pub body: String,
}

/// Sends a request, turning 4xx/5xx into a [`Reply`] like any other status.
pub fn send(result: Result<ureq::Response, ureq::Error>) -> Reply {
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("HTTP request failed: {e}"),
    };
    Reply {
        status: response.status(),
        location: response.header("Location").map(str::to_owned),
        content_type: response.header("Content-Type").map(str::to_owned),
        body: response.into_string().expect("read body"),
    }
}

/// Echo's `NAME=VALUE` lines.
#[derive(Debug)]
pub struct EchoOutput(pub Vec<(String, String)>);

impl EchoOutput {
    pub fn parse(body: &str) -> Self {
        Self(
            body.lines()
                .map(|l| {
                    l.split_once('=').map(|(n, v)| (n.to_owned(), v.to_owned())).expect("NAME=VALUE line")
                })
                .collect(),
        )
    }

    /// The value of the last line named `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn names(&self) -> Vec<&str> {
        self.0.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// Asserts `STDIN-LENGTH` and `STDIN-SHA256`.
    pub fn assert_stdin(&self, length: u64, sha256: &str) {
        assert_eq!(self.get("STDIN-LENGTH"), Some(length.to_string().as_str()), "{self:?}");
        assert_eq!(self.get("STDIN-SHA256"), Some(sha256), "{self:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Bodies

/// `len` deterministic pseudo-random bytes, generated on the fly.
pub struct PatternReader {
    remaining: u64,
    state: u64,
}

impl PatternReader {
    pub fn new(len: u64, seed: u64) -> Self {
        Self { remaining: len, state: seed | 1 }
    }
}

impl Read for PatternReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        for chunk in buf[..n].chunks_mut(8) {
            // xorshift64
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            chunk.copy_from_slice(&self.state.to_le_bytes()[..chunk.len()]);
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Hashes what is read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    pub count: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        Self { inner, hasher: Sha256::new(), count: 0 }
    }

    pub fn hex(self) -> String {
        hex(&self.hasher.finalize())
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// The body and its SHA-256 as `PatternReader::new(len, seed)` produces it.
pub fn pattern(len: usize, seed: u64) -> (Vec<u8>, String) {
    let mut body = vec![0; len];
    PatternReader::new(len as u64, seed).read_exact(&mut body).unwrap();
    let sha = sha256_hex(&body);
    (body, sha)
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of the empty string.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

// ---------------------------------------------------------------------------------------
// NDJSON of the dirlist example (its exact shape; no JSON library needed)

/// One `{"name":..,"type":..,"size":..,"mtime":..}` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub kind: String,
    pub size: u64,
    pub mtime: i64,
}

/// Parses dirlist's records, asserting their exact shape.
pub fn parse_ndjson(body: &str) -> Vec<Entry> {
    body.lines().map(parse_record).collect()
}

fn parse_record(line: &str) -> Entry {
    let rest = line.strip_prefix("{\"name\":\"").unwrap_or_else(|| panic!("bad record {line:?}"));
    let mut name = String::new();
    let mut chars = rest.char_indices();
    let end = loop {
        match chars.next() {
            Some((_, '\\')) => match chars.next() {
                Some((_, 'n')) => name.push('\n'),
                Some((_, c)) => name.push(c),
                None => panic!("bad escape in {line:?}"),
            },
            Some((i, '"')) => break i,
            Some((_, c)) => name.push(c),
            None => panic!("unterminated name in {line:?}"),
        }
    };
    let rest = &rest[end + 1..];
    let rest = rest.strip_prefix(",\"type\":\"").unwrap_or_else(|| panic!("no type in {line:?}"));
    let (kind, rest) = rest.split_once('"').unwrap();
    let rest = rest.strip_prefix(",\"size\":").unwrap_or_else(|| panic!("no size in {line:?}"));
    let (size, rest) = rest.split_once(',').unwrap();
    let rest = rest.strip_prefix("\"mtime\":").unwrap_or_else(|| panic!("no mtime in {line:?}"));
    let mtime = rest.strip_suffix('}').unwrap_or_else(|| panic!("record does not end with }} {line:?}"));
    Entry {
        name,
        kind: kind.to_owned(),
        size: size.parse().expect("size"),
        mtime: mtime.parse().expect("mtime"),
    }
}

// ---------------------------------------------------------------------------------------
// cgi-fcgi

/// Runs `cgi-fcgi -bind -connect ADDR` with exactly `env` as its environment (it sends
/// its whole environment as the params) and `stdin` as the body; returns its stdout.
pub fn run_cgi_fcgi(binary: &Path, endpoint: &Endpoint, env: &[(&str, &str)], stdin: &[u8]) -> Vec<u8> {
    let mut child = Command::new(binary)
        .args(["-bind", "-connect", &endpoint.cgi_fcgi_address()])
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cgi-fcgi");
    let mut input = child.stdin.take().unwrap();
    let body = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&body);
    });
    let output = child.wait_with_output().expect("cgi-fcgi output");
    writer.join().unwrap();
    assert!(
        output.status.success(),
        "cgi-fcgi failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

// ---------------------------------------------------------------------------------------
// A minimal FastCGI client, for what nginx and cgi-fcgi never send (other roles, several
// requests on one connection, record-level checks).

pub mod fcgi {
    use super::Stream;

    pub const RESPONDER: u16 = 1;
    pub const AUTHORIZER: u16 = 2;
    pub const FILTER: u16 = 3;

    pub const BEGIN_REQUEST: u8 = 1;
    pub const END_REQUEST: u8 = 3;
    pub const PARAMS: u8 = 4;
    pub const STDIN: u8 = 5;
    pub const STDOUT: u8 = 6;
    pub const STDERR: u8 = 7;
    pub const DATA: u8 = 8;

    /// One request to send.
    #[derive(Debug, Clone)]
    pub struct Request<'a> {
        pub id: u16,
        pub role: u16,
        pub keep_conn: bool,
        pub params: &'a [(&'a str, &'a str)],
        pub stdin: &'a [u8],
        pub data: &'a [u8],
    }

    impl Default for Request<'_> {
        fn default() -> Self {
            Self { id: 1, role: RESPONDER, keep_conn: false, params: &[], stdin: b"", data: b"" }
        }
    }

    /// What came back for one request.
    #[derive(Debug, Default)]
    pub struct Reply {
        pub stdout: Vec<u8>,
        pub stderr: Vec<u8>,
        /// Non-empty STDOUT records (a flushed write shows up as a record of its own).
        pub stdout_records: usize,
        pub app_status: u32,
        pub protocol_status: u8,
    }

    impl Reply {
        pub fn stdout_text(&self) -> String {
            String::from_utf8_lossy(&self.stdout).into_owned()
        }

        /// The CGI head and the body.
        pub fn split(&self) -> (String, String) {
            let text = self.stdout_text();
            let (head, body) = text.split_once("\r\n\r\n").expect("CGI head");
            (head.to_owned(), body.to_owned())
        }
    }

    pub fn record(kind: u8, id: u16, content: &[u8]) -> Vec<u8> {
        assert!(content.len() <= 65535);
        let len = content.len() as u16;
        let pad = (8 - content.len() % 8) % 8;
        let mut out = vec![1, kind];
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&[pad as u8, 0]);
        out.extend_from_slice(content);
        out.extend(std::iter::repeat_n(0, pad));
        out
    }

    fn nv_len(out: &mut Vec<u8>, len: usize) {
        if len < 128 {
            out.push(len as u8);
        } else {
            out.extend_from_slice(&(len as u32 | 0x8000_0000).to_be_bytes());
        }
    }

    pub fn encode_params(params: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, value) in params {
            nv_len(&mut out, name.len());
            nv_len(&mut out, value.len());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(value.as_bytes());
        }
        out
    }

    fn stream(out: &mut Vec<u8>, kind: u8, id: u16, bytes: &[u8]) {
        for chunk in bytes.chunks(65535) {
            out.extend(record(kind, id, chunk));
        }
        out.extend(record(kind, id, b""));
    }

    /// The bytes of a whole request.
    pub fn encode(request: &Request<'_>) -> Vec<u8> {
        let mut begin = request.role.to_be_bytes().to_vec();
        begin.extend_from_slice(&[u8::from(request.keep_conn), 0, 0, 0, 0, 0]);
        let mut out = record(BEGIN_REQUEST, request.id, &begin);
        stream(&mut out, PARAMS, request.id, &encode_params(request.params));
        stream(&mut out, STDIN, request.id, request.stdin);
        if request.role == FILTER {
            stream(&mut out, DATA, request.id, request.data);
        }
        out
    }

    /// Reads records until END_REQUEST for `id`.
    pub fn read_reply(stream: &mut dyn Stream, id: u16) -> Reply {
        let mut reply = Reply::default();
        loop {
            let mut header = [0u8; 8];
            stream.read_exact(&mut header).expect("record header");
            assert_eq!(header[0], 1, "version");
            let rid = u16::from_be_bytes([header[2], header[3]]);
            let len = u16::from_be_bytes([header[4], header[5]]) as usize;
            let mut content = vec![0; len + header[6] as usize];
            stream.read_exact(&mut content).expect("record content");
            content.truncate(len);
            assert_eq!(rid, id, "record for another request id");
            match header[1] {
                STDOUT if len > 0 => {
                    reply.stdout.extend_from_slice(&content);
                    reply.stdout_records += 1;
                }
                STDOUT => {}
                STDERR => reply.stderr.extend_from_slice(&content),
                END_REQUEST => {
                    reply.app_status = u32::from_be_bytes(content[..4].try_into().unwrap());
                    reply.protocol_status = content[4];
                    return reply;
                }
                other => panic!("unexpected record type {other}"),
            }
        }
    }

    /// Sends `request` on `stream` and reads its reply.
    pub fn roundtrip(stream: &mut dyn Stream, request: &Request<'_>) -> Reply {
        stream.write_all(&encode(request)).expect("send request");
        read_reply(stream, request.id)
    }
}
