//! `fcgi-idle`: opens N connections to a FastCGI server and holds them idle, then reports
//! the server's resident memory, to measure what an idle connection costs.
//!
//! With `--warm`, each connection first completes one keep-conn request (like nginx's
//! upstream keepalive pool), so the server's per-connection state is fully set up. With
//! `--mid-head BYTES`, each connection instead sends a request's BEGIN and a PARAMS record
//! with the usual params and a `BYTES`-long cookie, but not the end of its params: every
//! connection is busy in the middle of a request head.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use ember_fcgi_bench::load::request::{Request, params};
use ember_fcgi_testkit::nv::push_nv;
use ember_fcgi_testkit::wire::{PARAMS, begin_bytes, push_record};

const USAGE: &str = "usage: fcgi-idle --connect HOST:PORT --connections N --pid SERVER_PID [--warm | --mid-head BYTES] [--hold SECS]";

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
    let head = mid_head.map(partial_head);
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
    println!(
        "{{\"connections\":{n},\"alive\":{alive},\"warm\":{warm},\"mid_head\":{mid_head},\"rss_before_kib\":{rss_before},\"rss_kib\":{rss},\"peak_rss_kib\":{peak},\"bytes_per_connection\":{per_conn}}}"
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

/// BEGIN_REQUEST and one PARAMS record (the usual params and a `cookie`-byte cookie),
/// without the empty PARAMS record that would end the head.
fn partial_head(cookie: usize) -> Vec<u8> {
    let mut out = begin_bytes(1, true);
    let mut pairs = Vec::new();
    for (name, value) in params(25, 0) {
        push_nv(&mut pairs, name.as_bytes(), value.as_bytes());
    }
    push_nv(&mut pairs, b"HTTP_COOKIE", &vec![b'c'; cookie]);
    push_record(&mut out, PARAMS, 1, &pairs);
    out
}
