//! `fcgi-idle`: opens N connections to a FastCGI server and holds them idle, then reports
//! the server's resident memory, to measure what an idle connection costs.
//!
//! With `--warm`, each connection first completes one keep-conn request (like nginx's
//! upstream keepalive pool), so the server's per-connection state is fully set up. With
//! `--mid-head BYTES`, each connection instead sends a request's BEGIN and a PARAMS record
//! with the usual params and a `BYTES`-long cookie, but not the end of its params: every
//! connection is busy in the middle of a request head. With `--mid-body BYTES`, each
//! connection sends a whole `POST` head (`CONTENT_LENGTH` 1 MiB, or `--body-length`) and
//! `BYTES` of its body, then waits: every connection is in the middle of an upload (with
//! `--uri /upload`, the axum example's streamed upload route).
//!
//! The JSON line also carries `capacities_bytes`, `Capacities::memory_bytes()` of the
//! default `Limits` (what the pool lends one busy connection), to compare RSS with.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use ember_fcgi_bench::load::request::{Request, params};
use ember_fcgi_testkit::nv::push_nv;
use ember_fcgi_testkit::wire::{PARAMS, STDIN, begin_bytes, push_record};

const USAGE: &str = "usage: fcgi-idle --connect HOST:PORT --connections N --pid SERVER_PID [--warm | --mid-head BYTES | --mid-body BYTES [--body-length N]] [--uri PATH] [--hold SECS]";

fn main() {
    match run() {
        Ok(()) => {}
        Err(e) => {
            eprintln!("fcgi-idle: {e}\n{USAGE}");
            std::process::exit(2);
        }
    }
}

/// Reads `VmRSS` and `VmHWM` (peak) of `pid` in KiB.
fn rss_kib(pid: u32) -> Result<(u64, u64), String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("reading /proc/{pid}/status: {e}"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .ok_or_else(|| format!("no {name} in /proc/{pid}/status"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

fn run() -> Result<(), String> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_env();
    let (mut addr, mut n, mut pid, mut warm, mut hold) = (None, 1000usize, None, false, 1u64);
    let mut mid_head: Option<usize> = None;
    let (mut mid_body, mut body_length, mut uri) = (None::<usize>, 1u64 << 20, None::<String>);
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("connect") => {
                addr = Some(parser.value().map_err(|e| e.to_string())?.string().map_err(|_| "bad address")?)
            }
            Long("connections") => {
                n = parser.value().map_err(|e| e.to_string())?.parse().map_err(|e| e.to_string())?
            }
            Long("pid") => {
                pid = Some(
                    parser.value().map_err(|e| e.to_string())?.parse::<u32>().map_err(|e| e.to_string())?,
                )
            }
            Long("warm") => warm = true,
            Long("mid-head") => {
                mid_head =
                    Some(parser.value().map_err(|e| e.to_string())?.parse().map_err(|e| e.to_string())?)
            }
            Long("mid-body") => {
                mid_body =
                    Some(parser.value().map_err(|e| e.to_string())?.parse().map_err(|e| e.to_string())?)
            }
            Long("body-length") => {
                body_length = parser.value().map_err(|e| e.to_string())?.parse().map_err(|e| e.to_string())?
            }
            Long("uri") => {
                uri = Some(parser.value().map_err(|e| e.to_string())?.string().map_err(|_| "bad --uri")?)
            }
            Long("hold") => {
                hold = parser.value().map_err(|e| e.to_string())?.parse().map_err(|e| e.to_string())?
            }
            _ => return Err(arg.unexpected().to_string()),
        }
    }
    let addr = addr.ok_or("--connect is required")?;
    let pid = pid.ok_or("--pid is required")?;
    let (rss_before, _) = rss_kib(pid)?;
    let request = Request::build(true, 25, 0);
    let mut bytes = Vec::new();
    {
        let mut iov = [std::io::IoSlice::new(&[]); 64];
        let k = request.fill(0, &mut iov);
        for s in &iov[..k] {
            bytes.extend_from_slice(s);
        }
    }
    if mid_body.is_some_and(|b| b as u64 >= body_length) {
        return Err("--mid-body must be less than --body-length".into());
    }
    let head = match (mid_head, mid_body) {
        (Some(_), Some(_)) => return Err("--mid-head and --mid-body exclude each other".into()),
        (Some(cookie), None) => Some(partial_head(cookie, uri.as_deref())),
        (None, Some(sent)) => Some(partial_body(sent, body_length, uri.as_deref())),
        (None, None) => None,
    };
    let mut conns = Vec::with_capacity(n);
    let mut buf = [0u8; 4096];
    for i in 0..n {
        let mut s = TcpStream::connect(&addr).map_err(|e| format!("connection {i}: {e}"))?;
        if warm {
            s.write_all(&bytes).map_err(|e| format!("connection {i}: {e}"))?;
            s.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
            // Read until the END_REQUEST record (type 3) has arrived.
            let mut got = Vec::new();
            loop {
                let k = s.read(&mut buf).map_err(|e| format!("connection {i}: {e}"))?;
                if k == 0 {
                    return Err(format!("connection {i}: closed by the server"));
                }
                got.extend_from_slice(&buf[..k]);
                if ends_with_end_request(&got) {
                    break;
                }
            }
        }
        if let Some(head) = &head {
            s.write_all(head).map_err(|e| format!("connection {i}: {e}"))?;
        }
        conns.push(s);
    }
    std::thread::sleep(Duration::from_secs(hold));
    let (rss, peak) = rss_kib(pid)?;
    // Check the connections are still open (the server did not drop them).
    let mut alive = 0;
    for s in &conns {
        s.set_nonblocking(true).map_err(|e| e.to_string())?;
        let mut one = [0u8; 1];
        match (&*s).read(&mut one) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => alive += 1,
            _ => {}
        }
    }
    let per_conn = (rss.saturating_sub(rss_before) * 1024) / n.max(1) as u64;
    let mid_head = mid_head.unwrap_or(0);
    let mid_body = mid_body.unwrap_or(0);
    let capacities = ember_fcgi_host::Limits::default().capacities.memory_bytes();
    println!(
        "{{\"connections\":{n},\"alive\":{alive},\"warm\":{warm},\"mid_head\":{mid_head},\"mid_body\":{mid_body},\"rss_before_kib\":{rss_before},\"rss_kib\":{rss},\"peak_rss_kib\":{peak},\"bytes_per_connection\":{per_conn},\"capacities_bytes\":{capacities}}}"
    );
    Ok(())
}

/// Whether `bytes` (whole records from offset 0) end with an END_REQUEST record.
fn ends_with_end_request(mut bytes: &[u8]) -> bool {
    let mut last = 0u8;
    while bytes.len() >= 8 {
        let len = u16::from_be_bytes([bytes[4], bytes[5]]) as usize + bytes[6] as usize;
        if bytes.len() < 8 + len {
            return false;
        }
        last = bytes[1];
        bytes = &bytes[8 + len..];
    }
    bytes.is_empty() && last == 3
}

/// The usual params (with a body of `body` bytes: a `POST`), `REQUEST_URI`, `SCRIPT_NAME`
/// and `DOCUMENT_URI` set to `uri` when given.
fn pairs(body: u64, uri: Option<&str>) -> Vec<u8> {
    let mut pairs = Vec::new();
    for (name, value) in params(25, body) {
        let value = match (name.as_str(), uri) {
            ("REQUEST_URI" | "SCRIPT_NAME" | "DOCUMENT_URI", Some(uri)) => uri.to_owned(),
            _ => value,
        };
        push_nv(&mut pairs, name.as_bytes(), value.as_bytes());
    }
    pairs
}

/// BEGIN_REQUEST and one PARAMS record (the usual params and a `cookie`-byte cookie),
/// without the empty PARAMS record that would end the head.
fn partial_head(cookie: usize, uri: Option<&str>) -> Vec<u8> {
    let mut out = begin_bytes(1, true);
    let mut pairs = pairs(0, uri);
    push_nv(&mut pairs, b"HTTP_COOKIE", &vec![b'c'; cookie]);
    push_record(&mut out, PARAMS, 1, &pairs);
    out
}

/// A whole `POST` head declaring `length` body bytes, then the first `sent` of them (in
/// STDIN records of at most 32 KiB), without the rest or the empty STDIN record.
fn partial_body(sent: usize, length: u64, uri: Option<&str>) -> Vec<u8> {
    let mut out = begin_bytes(1, true);
    push_record(&mut out, PARAMS, 1, &pairs(length, uri));
    push_record(&mut out, PARAMS, 1, &[]);
    let body = vec![b'b'; sent];
    for chunk in body.chunks(32 * 1024) {
        push_record(&mut out, STDIN, 1, chunk);
    }
    out
}
