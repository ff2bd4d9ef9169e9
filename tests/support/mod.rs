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
/// A loopback port that was free a moment ago and that this process has not handed out
/// before (tests run in parallel: two that drew the same port would race for it).
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    loop {
        let port =
            TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind 127.0.0.1:0").port();
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
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

// ---------------------------------------------------------------------------------------
// lighttpd, Apache httpd (mod_proxy_fcgi) and Caddy, for tests/servers.rs

/// The other web servers of the README's "Deploying" section, each in the foreground from a
/// generated config in a temporary directory, on a free loopback port, killed on drop.
///
/// Each config is a test-only preamble (port, logs, temp paths) followed by the *snippet*
/// the README shows, generated by the `*_snippet` functions; `tests/servers.rs` checks the
/// README against them with the README's paths.
///
/// Tools: `$LIGHTTPD` or `/usr/sbin/lighttpd`, `$APACHE2` or `/usr/sbin/apache2` (modules
/// from `$APACHE_MODULES`, default `/usr/lib/apache2/modules`), `$CADDY` or
/// `/usr/bin/caddy`, else on `PATH`; missing ones skip or fail like nginx (see the top).
pub mod web {
    use std::fmt::Write as _;
    use std::net::TcpStream;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use super::{App, Combo, Endpoint, Socket, TempDir, free_port, loud, tool};

    /// A web server in front of the FastCGI app.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Kind {
        Lighttpd,
        Apache,
        Caddy,
    }

    impl Kind {
        /// The binary, or `None` after printing `SKIPPED: <tool> not found` (a panic when
        /// `CI` is set).
        pub fn find(self, test: &str) -> Option<PathBuf> {
            match self {
                Self::Lighttpd => tool("LIGHTTPD", &["/usr/sbin/lighttpd"], "lighttpd", test),
                Self::Apache => tool("APACHE2", &["/usr/sbin/apache2"], "apache2", test),
                Self::Caddy => tool("CADDY", &["/usr/bin/caddy"], "caddy", test),
            }
        }

        /// How `SERVER_SOFTWARE` starts when this server sent the request.
        pub fn software(self) -> &'static str {
            match self {
                Self::Lighttpd => "lighttpd/",
                Self::Apache => "Apache/",
                Self::Caddy => "Caddy/",
            }
        }

        /// The status the client gets for a CGI response that is a `Location` header alone
        /// (RFC 3875 §6.2.2/§6.2.3 ask for a local redirect or `302 Found`): lighttpd answers
        /// 302; Apache's mod_proxy_fcgi and Caddy 2.6's fastcgi transport pass the
        /// `Location` on with the CGI default `200 OK`.
        pub fn location_only_status(self) -> u16 {
            match self {
                Self::Lighttpd => 302,
                Self::Apache | Self::Caddy => 200,
            }
        }
    }

    /// `server.modules` and `fastcgi.server` for an app that is already listening.
    pub fn lighttpd_snippet(app: &Endpoint) -> String {
        let address = match app {
            Endpoint::Tcp(addr) => format!("\"host\" => \"{}\", \"port\" => {},", addr.ip(), addr.port()),
            Endpoint::Unix(path) => format!("\"socket\" => \"{}\",", path.display()),
        };
        format!(
            "server.modules += ( \"mod_fastcgi\" )
fastcgi.server = ( \"/\" => ((
    {address}
    \"check-local\" => \"disable\",
)))
"
        )
    }

    /// `fastcgi.server` with lighttpd starting the app itself (`bin-path`, split at
    /// whitespace into the program and its arguments) with a listening Unix socket as its
    /// fd 0 (FCGI_LISTENSOCK_FILENO); lighttpd names the socket `<socket>-0`.
    pub fn lighttpd_spawn_snippet(socket: &Path, bin_path: &str) -> String {
        format!(
            "server.modules += ( \"mod_fastcgi\" )
fastcgi.server = ( \"/\" => ((
    \"socket\" => \"{}\",
    \"bin-path\" => \"{bin_path}\",
    \"max-procs\" => 1,
    \"check-local\" => \"disable\",
)))
",
            socket.display()
        )
    }

    /// mod_proxy_fcgi's `ProxyPass` for the whole site, reusing connections.
    pub fn apache_snippet(app: &Endpoint) -> String {
        let target = match app {
            Endpoint::Tcp(addr) => format!("fcgi://{addr}/"),
            Endpoint::Unix(path) => format!("unix:{}|fcgi://localhost/", path.display()),
        };
        format!("ProxyPass \"/\" \"{target}\" enablereuse=on\n")
    }

    /// The body of a Caddy site block: `reverse_proxy` with the FastCGI transport.
    pub fn caddy_snippet(app: &Endpoint) -> String {
        let upstream = match app {
            Endpoint::Tcp(addr) => addr.to_string(),
            Endpoint::Unix(path) => format!("unix/{}", path.display()),
        };
        format!("\treverse_proxy {upstream} {{\n\t\ttransport fastcgi\n\t}}\n")
    }

    fn lighttpd_conf(dir: &Path, port: u16, snippet: &str) -> String {
        let dir = dir.display();
        format!(
            "# Generated by ember-fcgi tests/support: a preamble, then the README's snippet.
server.document-root = \"{dir}\"
server.bind = \"127.0.0.1\"
server.port = {port}
server.errorlog = \"{dir}/error.log\"
server.upload-dirs = ( \"{dir}\" )

{snippet}"
        )
    }

    /// Whether this process is root (Apache then drops to `nobody` for the requests).
    fn is_root() -> bool {
        std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
    }

    fn apache_modules() -> PathBuf {
        std::env::var_os("APACHE_MODULES").map_or_else(|| "/usr/lib/apache2/modules".into(), PathBuf::from)
    }

    fn apache_conf(dir: &Path, port: u16, snippet: &str) -> String {
        let modules = apache_modules();
        let d = dir.display();
        let mut text = format!(
            "# Generated by ember-fcgi tests/support: a preamble, then the README's snippet.
ServerRoot \"{d}\"
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
PidFile \"{d}/httpd.pid\"
DefaultRuntimeDir \"{d}\"
ErrorLog \"{d}/error.log\"
LogLevel warn
DocumentRoot \"{d}\"
"
        );
        // mod_unixd is compiled into Debian's apache2; load it where it is a module.
        for (name, file) in [
            ("mpm_event_module", "mod_mpm_event.so"),
            ("unixd_module", "mod_unixd.so"),
            ("authz_core_module", "mod_authz_core.so"),
            ("proxy_module", "mod_proxy.so"),
            ("proxy_fcgi_module", "mod_proxy_fcgi.so"),
        ] {
            let path = modules.join(file);
            if path.is_file() {
                let _ = writeln!(text, "LoadModule {name} \"{}\"", path.display());
            } else {
                assert!(
                    name == "unixd_module",
                    "Apache module {} missing (set $APACHE_MODULES)",
                    path.display()
                );
            }
        }
        if is_root() {
            // Started as root, Apache must switch to another user to serve requests.
            text.push_str("User #65534\nGroup #65534\n");
        }
        text.push('\n');
        text + snippet
    }

    fn caddy_conf(port: u16, snippet: &str) -> String {
        format!(
            "# Generated by ember-fcgi tests/support: a preamble, then the README's snippet.
{{
\tadmin off
\tauto_https off
}}

http://127.0.0.1:{port} {{
\tbind 127.0.0.1
{snippet}}}
"
        )
    }

    /// A running web server, stopped on drop (SIGTERM, then SIGKILL after 3 s; processes
    /// it started, such as lighttpd's `bin-path` app, are killed too if still there).
    pub struct WebServer {
        pub kind: Kind,
        child: Child,
        pub port: u16,
        dir: TempDir,
    }

    impl WebServer {
        /// Starts `binary` in front of the app at `app` with the README's snippet for it;
        /// returns once it accepts connections.
        pub fn start(kind: Kind, binary: &Path, app: &Endpoint) -> Self {
            let snippet = match kind {
                Kind::Lighttpd => lighttpd_snippet(app),
                Kind::Apache => apache_snippet(app),
                Kind::Caddy => caddy_snippet(app),
            };
            Self::launch(kind, binary, TempDir::new(&format!("{kind:?}").to_lowercase()), &snippet)
        }

        /// Starts lighttpd with `bin-path` = `command`: lighttpd creates
        /// `<dir>/lighty.sock-0` and starts the app with it as fd 0.
        pub fn start_lighttpd_spawning(binary: &Path, command: &str) -> Self {
            let dir = TempDir::new("lighttpd");
            let snippet = lighttpd_spawn_snippet(&dir.path().join("lighty.sock"), command);
            Self::launch(Kind::Lighttpd, binary, dir, &snippet)
        }

        fn launch(kind: Kind, binary: &Path, dir: TempDir, snippet: &str) -> Self {
            let output = dir.path().join("output.log");
            for _attempt in 0..5 {
                let port = unique_port();
                let (file, conf) = match kind {
                    Kind::Lighttpd => ("lighttpd.conf", lighttpd_conf(dir.path(), port, snippet)),
                    Kind::Apache => ("httpd.conf", apache_conf(dir.path(), port, snippet)),
                    Kind::Caddy => ("Caddyfile", caddy_conf(port, snippet)),
                };
                let conf_path = dir.path().join(file);
                std::fs::write(&conf_path, conf).expect("write the web server config");
                for stale in ["error.log", "httpd.pid"] {
                    let _ = std::fs::remove_file(dir.path().join(stale));
                }
                let mut command = Command::new(binary);
                match kind {
                    Kind::Lighttpd => command.arg("-D").arg("-f").arg(&conf_path),
                    // One process, in the foreground.
                    Kind::Apache => command.arg("-X").arg("-f").arg(&conf_path),
                    Kind::Caddy => command
                        .args(["run", "--adapter", "caddyfile", "--config"])
                        .arg(&conf_path)
                        // Caddy keeps its state (autosave.json, certificates) under these.
                        .env("HOME", dir.path())
                        .env("XDG_CONFIG_HOME", dir.path().join("config"))
                        .env("XDG_DATA_HOME", dir.path().join("data")),
                };
                let log = std::fs::File::create(&output).expect("create output.log");
                let mut child = command
                    .current_dir(dir.path())
                    .stdin(Stdio::null())
                    .stdout(log.try_clone().expect("dup output.log"))
                    .stderr(log)
                    .spawn()
                    .unwrap_or_else(|e| panic!("spawn {}: {e}", binary.display()));
                let deadline = Instant::now() + Duration::from_secs(10);
                loop {
                    // Ready when the port accepts, and only through our server's sockets:
                    // Caddy binds with SO_REUSEPORT, so another process (or another test)
                    // on the same port would silently share its connections.
                    if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                        let ours = sockets_of(child.id());
                        let mut listeners = listening_sockets(port, false);
                        if !listeners.iter().any(|inode| ours.contains(inode)) {
                            listeners = listening_sockets(port, true);
                        }
                        if !listeners.is_empty() && listeners.iter().all(|inode| ours.contains(inode)) {
                            return Self { kind, child, port, dir };
                        }
                        if listeners.iter().any(|inode| ours.contains(inode)) {
                            loud(&format!(
                                "{kind:?}: another process listens on port {port} too, trying another"
                            ));
                            let _ = child.kill();
                            let _ = child.wait();
                            break;
                        }
                    }
                    if let Some(status) = child.try_wait().expect("try_wait") {
                        let logs = Self::read_logs(dir.path());
                        if logs.to_lowercase().contains("address already in use") {
                            loud(&format!("{kind:?}: port {port} was taken, trying another"));
                            break; // someone took the port: try another
                        }
                        panic!("{kind:?} exited with {status}:\n{logs}");
                    }
                    if Instant::now() > deadline {
                        let _ = child.kill();
                        let _ = child.wait();
                        panic!(
                            "{kind:?} did not accept on {port} within 10 s:\n{}",
                            Self::read_logs(dir.path())
                        );
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            panic!("{kind:?}: no free port after 5 attempts");
        }

        pub fn url(&self, path_and_query: &str) -> String {
            format!("http://127.0.0.1:{}{path_and_query}", self.port)
        }

        pub fn dir(&self) -> &Path {
            self.dir.path()
        }

        pub fn pid(&self) -> u32 {
            self.child.id()
        }

        fn read_logs(dir: &Path) -> String {
            let mut text = String::new();
            for name in ["lighttpd.conf", "httpd.conf", "Caddyfile", "output.log", "error.log"] {
                if let Ok(content) = std::fs::read_to_string(dir.join(name)) {
                    let _ = write!(text, "---- {name} ----\n{content}\n");
                }
            }
            text
        }

        /// The config, the server's stdout/stderr (`output.log`: Caddy's log, and the
        /// stderr of the app lighttpd spawns) and its `error.log`.
        pub fn logs(&self) -> String {
            Self::read_logs(self.dir.path())
        }

        /// What the server wrote to stdout and stderr.
        pub fn output(&self) -> String {
            std::fs::read_to_string(self.dir.path().join("output.log")).unwrap_or_default()
        }

        /// Fails if the server logged a problem: an Apache `error` level or worse, a Caddy
        /// `error` entry, or any lighttpd error.log line other than start and stop.
        pub fn assert_clean_log(&self) {
            let output = self.output();
            let error_log = std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default();
            let bad: Vec<&str> = match self.kind {
                Kind::Lighttpd => error_log
                    .lines()
                    .filter(|l| !l.contains("server started") && !l.contains("server stopped"))
                    .collect(),
                Kind::Apache => error_log
                    .lines()
                    .filter(|l| [":error]", ":crit]", ":alert]", ":emerg]"].iter().any(|lvl| l.contains(lvl)))
                    .collect(),
                Kind::Caddy => output.lines().filter(|l| l.contains("\"level\":\"error\"")).collect(),
            };
            assert!(bad.is_empty(), "{:?} logged errors:\n{}", self.kind, bad.join("\n"));
        }

        /// The processes this server started (and theirs), with their command lines.
        pub fn descendants(&self) -> Vec<(u32, Vec<String>)> {
            descendants(self.child.id())
        }
    }

    impl Drop for WebServer {
        fn drop(&mut self) {
            let pid = self.child.id();
            let spawned = descendants(pid);
            // SIGTERM first: lighttpd then stops the app it spawned.
            signal("TERM", pid);
            let deadline = Instant::now() + Duration::from_secs(3);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if matches!(self.child.try_wait(), Ok(None)) {
                loud(&format!("{:?} (pid {pid}) did not stop within 3 s of SIGTERM: killing it", self.kind));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
            for (pid, cmdline) in spawned {
                if process_state(pid).is_some_and(|s| s != 'Z') && command_line(pid) == cmdline {
                    signal("KILL", pid);
                }
            }
            if std::thread::panicking() {
                loud(&format!("==== {:?} ====\n{}", self.kind, self.logs()));
            }
        }
    }

    /// A loopback port no other test of this process was given (see [`free_port`]).
    fn unique_port() -> u16 {
        free_port()
    }

    /// The socket inodes listening on TCP `port` (any address), from `/proc/net/tcp{,6}`.
    /// The kernel lists listening sockets first; with `all` false the reading stops at the
    /// first other one (a machine may have tens of thousands of TIME_WAIT sockets, and
    /// parsing them all takes the unoptimized test build half a second).
    fn listening_sockets(port: u16, all: bool) -> Vec<u64> {
        use std::io::BufRead as _;
        let mut inodes = Vec::new();
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            let Ok(file) = std::fs::File::open(table) else { continue };
            for line in std::io::BufReader::with_capacity(1 << 16, file).lines().skip(1) {
                let Ok(line) = line else { break };
                let fields: Vec<&str> = line.split_whitespace().collect();
                if fields.get(3) != Some(&"0A") {
                    if all {
                        continue;
                    }
                    break;
                }
                let local_port = fields.get(1).and_then(|a| a.rsplit_once(':')).map(|(_, p)| p);
                if local_port.and_then(|p| u16::from_str_radix(p, 16).ok()) == Some(port)
                    && let Some(inode) = fields.get(9).and_then(|i| i.parse().ok())
                {
                    inodes.push(inode);
                }
            }
        }
        inodes
    }

    /// The socket inodes among the open files of process `pid`.
    fn sockets_of(pid: u32) -> Vec<u64> {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return Vec::new() };
        fds.filter_map(|fd| {
            let target = std::fs::read_link(fd.ok()?.path()).ok()?;
            target.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
    }

    fn signal(name: &str, pid: u32) {
        let _ = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// A process's state letter (`R`, `S`, `Z`, ...), `None` once it is gone.
    pub fn process_state(pid: u32) -> Option<char> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat.rsplit_once(')')?.1.trim_start().chars().next()
    }

    fn parent(pid: u32) -> Option<u32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
    }

    fn command_line(pid: u32) -> Vec<String> {
        let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        raw.split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect()
    }

    /// All live descendants of `root`, from `/proc`.
    fn descendants(root: u32) -> Vec<(u32, Vec<String>)> {
        let pids: Vec<u32> = std::fs::read_dir("/proc")
            .map(|dir| dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
            .unwrap_or_default();
        let links: Vec<(u32, u32)> = pids.iter().filter_map(|&pid| Some((pid, parent(pid)?))).collect();
        let mut found = vec![root];
        let mut i = 0;
        while i < found.len() {
            let of = found[i];
            found.extend(links.iter().filter(|(_, ppid)| *ppid == of).map(|(pid, _)| *pid));
            i += 1;
        }
        found.into_iter().skip(1).map(|pid| (pid, command_line(pid))).collect()
    }

    /// An example behind one of these servers (dropped in order: the server, then the app).
    pub struct WebStack {
        pub server: WebServer,
        pub app: App,
    }

    impl WebStack {
        /// `None` (after `SKIPPED`) when the server's binary is missing.
        pub fn start(kind: Kind, test: &str, example: &str, combo: Combo) -> Option<Self> {
            let binary = kind.find(test)?;
            let app = App::start(example, combo, &[]);
            if let (Kind::Apache, Socket::Unix, Endpoint::Unix(path)) = (kind, combo.socket, &app.endpoint)
                && is_root()
            {
                // Apache serves as `nobody` here, and connecting needs write permission.
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).expect("chmod socket");
            }
            let server = WebServer::start(kind, &binary, &app.endpoint);
            Some(Self { server, app })
        }

        pub fn url(&self, path_and_query: &str) -> String {
            self.server.url(path_and_query)
        }
    }
}
