//! Zero-downtime restart by handoff (SIGUSR2, `ember_fcgi::server::handoff`), end to end:
//! the `echo` example behind a real nginx (upstream `keepalive`, `fastcgi_keep_conn on`)
//! under continuous load from a few client threads, handed over three times (each
//! successor hands over to the next). Asserts that no request failed, that each process
//! that handed over exits, and that the first one, before it exits, finishes a request
//! that was in flight (its body still arriving) through all three handoffs.
//!
//! A keep-alive connection the old process closes just as nginx sends a request on it is
//! retried by nginx (GET on a cached connection); those retries are allowed, as the
//! client sees no error, and counted in the output; any other nginx error fails the test.
//!
//! nginx missing fails the test (`scripts/setup.sh` installs it).

mod support;

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ember_fcgi_testkit::web::process::{process_state, signal};
use ember_fcgi_testkit::wire::{REQUEST_COMPLETE, STDIN, head_bytes, record};
use support::{App, Combo, Nginx, Socket, TempDir, Transport, agent, example, tools};

/// Kills the successors (which are no children of the test) when the test ends.
struct Successors(Vec<u32>);

impl Drop for Successors {
    fn drop(&mut self) {
        for pid in &self.0 {
            signal("KILL", *pid);
        }
    }
}

/// Waits for the `n`th `handoff: successor pid N is ready` line in the log; N. Fails on a
/// `handoff failed` line beyond the `failed` ones expected.
fn nth_successor(app: &App, n: usize, failed: usize) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = app.log();
        let pids: Vec<u32> = log
            .lines()
            .filter_map(|l| l.strip_prefix("handoff: successor pid "))
            .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
            .collect();
        if let Some(pid) = pids.get(n - 1) {
            return *pid;
        }
        assert!(log.matches("handoff failed").count() <= failed, "a handoff failed:\n{log}");
        assert!(Instant::now() < deadline, "no handoff #{n} within 30 s; log:\n{log}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `pid` is gone (or a zombie nobody reaps: the successors' parent has exited).
fn gone(pid: u32) -> bool {
    matches!(process_state(pid), None | Some('Z'))
}

fn handoff_under_load(combo: Combo) {
    let nginx_binary = tools::nginx();
    let extra: [&OsStr; 2] = ["--shutdown-timeout".as_ref(), "60".as_ref()];
    let mut app = App::start("echo", combo, &extra);
    let nginx = Nginx::start(&nginx_binary, &app.endpoint, true);
    let mut successors = Successors(Vec::new());

    // The load: a few clients, each sending GETs through nginx back to back.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let (stop, ok, failures) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failures));
            let url = nginx.url(&format!("/load?client={i}"));
            std::thread::spawn(move || {
                let agent = agent();
                while !stop.load(Ordering::Relaxed) {
                    match agent.get(&url).call() {
                        Ok(r) if r.status() == 200 => {
                            let body = r.into_string().unwrap_or_default();
                            if body.contains("REQUEST_METHOD=GET") {
                                ok.fetch_add(1, Ordering::Relaxed);
                            } else {
                                failures.lock().unwrap().push(format!("bad body {body:?}"));
                            }
                        }
                        Ok(r) => failures.lock().unwrap().push(format!("status {}", r.status())),
                        Err(e) => failures.lock().unwrap().push(e.to_string()),
                    }
                }
            })
        })
        .collect();
    let served = |ok: &AtomicU64, more: u64| {
        let until = ok.load(Ordering::Relaxed) + more;
        let deadline = Instant::now() + Duration::from_secs(30);
        while ok.load(Ordering::Relaxed) < until {
            assert!(Instant::now() < deadline, "the load stalled");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    served(&ok, 200);

    // A request in flight in the first process: the head and half its body, straight
    // to the app (so it is that process's connection), the rest after the handoffs.
    let mut slow = app.endpoint.connect();
    slow.send(&head_bytes(1, false, "/slow", "", "10"));
    slow.send(&record(STDIN, 1, b"01234"));
    std::thread::sleep(Duration::from_millis(200));

    let mut current = app.pid();
    for n in 1..=3 {
        signal("USR2", current);
        let next = nth_successor(&app, n, 0);
        successors.0.push(next);
        assert_ne!(next, current);
        served(&ok, 200);
        if n > 1 {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !gone(current) {
                assert!(Instant::now() < deadline, "process {current} did not exit after handing over");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        current = next;
    }
    assert!(
        app.exited().is_none(),
        "the first process must still be draining its in-flight request; log:\n{}",
        app.log()
    );
    slow.send(&record(STDIN, 1, b"56789"));
    slow.send(&record(STDIN, 1, b""));
    let reply = slow.reply(1);
    let body = reply.body_str();
    assert_eq!((reply.protocol_status, reply.app_status), (REQUEST_COMPLETE, 0), "{reply:?}");
    assert!(body.contains("STDIN-LENGTH=10\n"), "{body}");
    assert!(body.contains("REQUEST_URI=/slow\n") || body.contains("SCRIPT_NAME=/slow\n"), "{body}");
    assert_eq!(app.wait_exit(Duration::from_secs(20)), Some(0), "the first process exits after draining");

    served(&ok, 200);
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().expect("client thread");
    }
    let failures = failures.lock().unwrap();
    let total = ok.load(Ordering::Relaxed);
    assert!(
        failures.is_empty(),
        "{} of {total} requests failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    assert!(total >= 1000, "only {total} requests");
    // A keep-alive connection the old process closes at rest as nginx sends a request on
    // it: nginx logs it and sends the request again (the request is idempotent, the
    // connection was cached), so the client never sees it. Any other error is a failure.
    let log = nginx.error_log();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("[error]") || l.contains("[crit]")).collect();
    // How nginx reports a cached connection the old process closed: EOF before the reply,
    // or, when its write raced the close, a reset or a broken pipe.
    let closed_under_it =
        ["upstream prematurely closed connection", "(104: Connection reset by peer)", "(32: Broken pipe)"];
    let retried = errors.iter().filter(|l| closed_under_it.iter().any(|c| l.contains(c))).count();
    assert_eq!(retried, errors.len(), "nginx error.log:\n{}", errors.join("\n"));
    eprintln!("{combo:?}: {total} requests through 3 handoffs, none failed ({retried} retried by nginx)");
}

#[test]
fn handoff_under_load_mio_tcp() {
    handoff_under_load(Combo { transport: Transport::Mio, socket: Socket::Tcp, keepalive: true });
}

#[test]
fn handoff_under_load_smol_unix() {
    handoff_under_load(Combo { transport: Transport::Smol, socket: Socket::Unix, keepalive: true });
}

/// Waits for `text` in the app's log.
fn wait_for_log(app: &App, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !app.log().contains(text) {
        assert!(Instant::now() < deadline, "no {text:?} in the log within 30 s:\n{}", app.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Puts a new executable at `path` the way a deployment does: written beside it by
/// `shell_write` (a shell command given the new file's path as `$1`), then renamed over it.
/// A child process writes it: a file this multi-threaded test process held open for
/// writing could be inherited by another test's fork, and exec would fail with ETXTBSY.
fn replace_executable(path: &Path, shell_write: &str) {
    let new = path.with_extension("new");
    let status = Command::new("sh")
        .args(["-c", &format!("{shell_write} && chmod 755 \"$1\""), "sh"])
        .arg(&new)
        .status()
        .expect("sh");
    assert!(status.success(), "writing {}", new.display());
    std::fs::rename(&new, path).expect("rename over the old executable");
}

/// A successor that exits at once (a broken new version) leaves the old process serving,
/// which says why; then a working version moved over the executable takes over (the old
/// process's `/proc/self/exe` reads `PATH (deleted)` by then: the file at PATH is started).
#[test]
fn a_failed_successor_leaves_the_old_process_serving() {
    let dir = TempDir::new("restart-upgrade");
    let exe = dir.path().join("app");
    let copy_hello = format!("cp '{}' \"$1\"", example("hello").display());
    replace_executable(&exe, &copy_hello);
    let mut command = Command::new(&exe);
    command.args(["--listen", "127.0.0.1:0"]).stdin(Stdio::null());
    let mut app = App::spawn("hello (a copy)", command, dir, None);
    let mut successors = Successors(Vec::new());
    assert!(app.endpoint.connect().get("/", "").contains("Hello"));

    replace_executable(&exe, r#"printf '#!/bin/sh\nexit 3\n' > "$1""#);
    signal("USR2", app.pid());
    wait_for_log(&app, "handoff failed, still serving: the successor");
    assert!(app.log().contains("exited before it was ready: exit status: 3"), "{}", app.log());
    assert!(app.exited().is_none(), "the old process goes on");
    assert!(app.endpoint.connect().get("/", "").contains("Hello"), "and serves");

    replace_executable(&exe, &copy_hello);
    signal("USR2", app.pid());
    successors.0.push(nth_successor(&app, 1, 1));
    assert_eq!(app.wait_exit(Duration::from_secs(20)), Some(0), "the old process exits after handing over");
    assert!(app.endpoint.connect().get("/", "").contains("Hello"), "the new version serves");
}
