//! End-to-end: fcgi-load against fcgi-baseline over TCP and Unix sockets, against
//! fcgi-smol-serve (the smol transport's `serve()` path that bench.sh compares with `run`),
//! and against fcgi-threads (`run_threads`, bench.sh's mio2 and smol2).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running baseline server, killed on drop.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    /// Starts fcgi-baseline (it says where it listens on stdout).
    fn start(listen: &str) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fcgi-baseline"))
            .args(["--listen", listen])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn fcgi-baseline");
        let addr = listening_on(child.stdout.take().unwrap());
        Server { child, addr }
    }

    /// Starts fcgi-smol-serve (it says where it listens on stderr).
    fn start_smol_serve() -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fcgi-smol-serve"))
            .args(["--listen", "127.0.0.1:0"])
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn fcgi-smol-serve");
        let addr = listening_on(child.stderr.take().unwrap());
        Server { child, addr }
    }

    /// Starts fcgi-threads with `args` (it says where it listens on stderr).
    fn start_threads(args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fcgi-threads"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn fcgi-threads");
        let addr = listening_on(child.stderr.take().unwrap());
        Server { child, addr }
    }

    /// Sends SIGTERM and waits (up to 5 s) for a successful exit.
    fn terminate(&mut self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let deadline = Instant::now() + Duration::from_secs(5);
        let status = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            assert!(Instant::now() < deadline, "server ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "{status:?}");
    }
}

/// The address of a `listening on ADDR` first line.
fn listening_on(output: impl std::io::Read) -> String {
    let mut line = String::new();
    BufReader::new(output).read_line(&mut line).unwrap();
    line.trim().strip_prefix("listening on ").expect("listening line").to_string()
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run fcgi-load; returns its exit code and the JSON line.
fn load(addr: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fcgi-load"))
        .args(["--connect", addr, "--json", "--warmup", "0.1", "--expect-body-prefix", "Hello, World!"])
        .args(args)
        .output()
        .expect("run fcgi-load");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let json = stdout.lines().find(|l| l.starts_with('{')).unwrap_or_default().to_string();
    (out.status.code().unwrap_or(-1), json)
}

/// Numeric value of `key` in a flat JSON object.
fn field(json: &str, key: &str) -> f64 {
    let pat = format!("\"{key}\":");
    let rest = &json[json.find(&pat).unwrap_or_else(|| panic!("{key} missing in {json}")) + pat.len()..];
    let end = rest.find([',', '}']).unwrap();
    rest[..end].parse().unwrap()
}

fn assert_clean(addr: &str, args: &[&str], requests: u64) {
    let (code, json) = load(addr, args);
    assert_eq!(field(&json, "errors"), 0.0, "{json}");
    assert_eq!(field(&json, "requests"), requests as f64, "{json}");
    assert!(field(&json, "rps") > 0.0 && field(&json, "p50_us") > 0.0, "{json}");
    assert_eq!(code, 0, "{json}");
}

#[test]
fn keep_conn_many_connections() {
    let s = Server::start("127.0.0.1:0");
    assert_clean(&s.addr, &["--requests", "2000", "--connections", "4"], 2000);
}

#[test]
fn connection_per_request() {
    let s = Server::start("127.0.0.1:0");
    assert_clean(&s.addr, &["--no-keep-conn", "--requests", "300", "--connections", "4"], 300);
}

#[test]
fn large_body() {
    let s = Server::start("127.0.0.1:0");
    assert_clean(&s.addr, &["--body", "1M", "--requests", "50", "--connections", "4"], 50);
}

#[test]
fn wrong_prefix_is_an_error() {
    let s = Server::start("127.0.0.1:0");
    let (code, json) = load(&s.addr, &["--requests", "5", "--warmup", "0", "--expect-body-prefix", "Bye"]);
    assert_eq!(code, 1, "{json}");
    assert_eq!(field(&json, "errors"), 5.0, "{json}");
    assert_eq!(field(&json, "requests"), 0.0, "{json}");
}

#[test]
fn unix_socket_and_sigterm() {
    let path = std::env::temp_dir().join(format!("fcgi-baseline-test-{}.sock", std::process::id()));
    let mut s = Server::start(&format!("unix:{}", path.display()));
    assert_clean(&s.addr, &["--requests", "200", "--connections", "2"], 200);
    assert_clean(&s.addr, &["--no-keep-conn", "--requests", "100"], 100);
    s.terminate();
    let _ = std::fs::remove_file(path);
}

#[test]
fn smol_serve_answers_and_stops_on_sigterm() {
    let mut s = Server::start_smol_serve();
    assert_clean(&s.addr, &["--requests", "500", "--connections", "4"], 500);
    assert_clean(&s.addr, &["--no-keep-conn", "--requests", "100"], 100);
    s.terminate();
}

#[test]
fn threads_answer_and_stop_on_sigterm() {
    for transport in ["mio", "smol"] {
        let mut s = Server::start_threads(&["--transport", transport, "--threads", "2"]);
        assert_clean(&s.addr, &["--requests", "500", "--connections", "8"], 500);
        assert_clean(&s.addr, &["--no-keep-conn", "--requests", "100", "--connections", "4"], 100);
        s.terminate();
    }
}

#[test]
fn bad_arguments_exit_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_fcgi-load")).arg("--connections").arg("3").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage:"));
}
