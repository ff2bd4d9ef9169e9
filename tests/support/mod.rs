//! End-to-end harness: the example binaries, run behind the web servers and tools of
//! `ember-fcgi-testkit` (nginx, lighttpd, Apache, Caddy, `cgi-fcgi`, its FastCGI client),
//! all torn down on drop.
//!
//! ## How the example binaries are found
//! Cargo gives integration tests `CARGO_BIN_EXE_<name>` for binaries only, not examples,
//! and `cargo test --tests` does not build examples at all. So the first test that needs
//! one runs `$CARGO build --release --examples --all-features -p ember-fcgi` once per test binary (a
//! `OnceLock`), into the target directory this test executable lives in (found by walking
//! up from `current_exe()` to the directory holding `CACHEDIR.TAG`), and uses
//! `<target>/release/examples/NAME`. Release, because the 100 MiB bodies are hashed by the
//! examples. Set `EMBER_E2E_EXAMPLES=/path/to/dir` to use prebuilt binaries instead (no
//! cargo run).
//!
//! ## Missing tools
//! A test whose tool (nginx, lighttpd, apache2, caddy, cgi-fcgi) is missing fails, in CI
//! and outside it, saying to run `scripts/setup.sh` (see `ember_fcgi_testkit::tools`): no
//! test passes without having run.
#![allow(dead_code, unused_imports)] // each test file uses part of this (and of its re-exports)

use std::ffi::OsStr;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

pub use ember_fcgi_testkit::tools::{self, loud};
pub use ember_fcgi_testkit::web::cgi_fcgi::run_cgi_fcgi;
pub use ember_fcgi_testkit::web::{Endpoint, FASTCGI_PARAMS, Nginx, TempDir, free_port};
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
// The example binaries

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
            .args(["build", "--release", "--examples", "--all-features", "-p", "ember-fcgi"])
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
// The example under test

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

    /// Its exit status if it exited (reaped), `None` while it runs.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("try_wait")
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

/// An example behind nginx, as one value (dropped in order: nginx, then the app).
pub struct Stack {
    pub nginx: Nginx,
    pub app: App,
}

impl Stack {
    /// Starts `example` per `combo` behind nginx (a missing nginx fails the test).
    pub fn start(example: &str, combo: Combo, extra: &[&OsStr]) -> Self {
        let binary = tools::nginx();
        let app = App::start(example, combo, extra);
        let nginx = Nginx::start(&binary, &app.endpoint, combo.keepalive);
        Self { nginx, app }
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
// lighttpd, Apache httpd and Caddy (the launchers are `ember_fcgi_testkit::web::servers`)

pub mod web {
    use std::os::unix::fs::PermissionsExt;

    pub use ember_fcgi_testkit::web::process::process_state;
    pub use ember_fcgi_testkit::web::servers::*;

    use super::{App, Combo, Endpoint, Socket};

    /// An example behind one of these servers (dropped in order: the server, then the app).
    pub struct WebStack {
        pub server: WebServer,
        pub app: App,
    }

    impl WebStack {
        /// Starts `example` per `combo` behind `kind` (a missing server fails the test).
        pub fn start(kind: Kind, example: &str, combo: Combo) -> Self {
            let binary = kind.binary();
            let app = App::start(example, combo, &[]);
            if let (Kind::Apache, Socket::Unix, Endpoint::Unix(path)) = (kind, combo.socket, &app.endpoint)
                && is_root()
            {
                // Apache serves as `nobody` here, and connecting needs write permission.
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).expect("chmod socket");
            }
            let server = WebServer::start(kind, &binary, &app.endpoint);
            Self { server, app }
        }

        pub fn url(&self, path_and_query: &str) -> String {
            self.server.url(path_and_query)
        }
    }
}
