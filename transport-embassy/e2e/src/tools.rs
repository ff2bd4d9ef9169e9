//! Finding the external programs the proofs need.

use std::path::PathBuf;
use std::process::Command;

/// The program `$env`, else the first existing `candidates`, else `name` on `PATH`.
/// Panics (failing the test) when none is found: these tests are `#[ignore]`d in a
/// plain `cargo test` and run by `scripts/test-embassy.sh`, which must not pass without them.
pub fn require(env: &str, candidates: &[&str], name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env) {
        return path.into();
    }
    for candidate in candidates {
        let path = PathBuf::from(candidate);
        if path.exists() {
            return path;
        }
    }
    let found = Command::new("sh").arg("-c").arg(format!("command -v {name}")).output();
    match found {
        Ok(out) if out.status.success() => PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()),
        _ => panic!("NOT RUN: {name} not found (set ${env}, or run scripts/setup.sh)"),
    }
}

/// Panics unless this process runs as root (network namespaces and TAP devices need it).
pub fn require_root() {
    let out = Command::new("id").arg("-u").output().expect("run id -u");
    let uid = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(uid == "0", "NOT RUN: network namespaces need root (uid is {uid})");
    assert!(std::path::Path::new("/dev/net/tun").exists(), "NOT RUN: /dev/net/tun is missing");
}

/// Runs `program args`, panicking with its output if it fails.
pub fn run(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {}: {}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A child process killed (and reaped) on drop, also when the test panics.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `command` with its output in a temporary file and waits until it prints
/// `ready` (see [`wait_for_line`]); the process is killed when the result is dropped.
pub fn start_logged(
    command: &mut std::process::Command,
    ready: &str,
    timeout: std::time::Duration,
) -> (KillOnDrop, tempfile::NamedTempFile) {
    let log = tempfile::NamedTempFile::new().expect("log file");
    let mut child = KillOnDrop(
        command
            .stdin(std::process::Stdio::null())
            .stdout(log.reopen().expect("log"))
            .stderr(log.reopen().expect("log"))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {:?}: {e}", command.get_program())),
    );
    wait_for_line(&mut child, log.path(), ready, timeout);
    (child, log)
}

/// Waits until `path` contains `needle`; panics after `timeout` or if `child` exits,
/// with the file's text.
pub fn wait_for_line(
    child: &mut KillOnDrop,
    path: &std::path::Path,
    needle: &str,
    timeout: std::time::Duration,
) {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return;
        }
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!("process exited with {status} before printing {needle:?}:\n{text}");
        }
        assert!(std::time::Instant::now() < deadline, "no {needle:?} within {timeout:?}:\n{text}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
