//! libfcgi's `cgi-fcgi`, a client that sends its environment as the params.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use super::Endpoint;

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
