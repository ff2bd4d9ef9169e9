//! `fcgi-load`: a single-threaded mio event loop driving many FastCGI connections,
//! one request in flight per connection, as nginx does.

pub mod args;
pub mod check;
pub mod request;

use std::io::{self, IoSlice, Read, Write};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};

use crate::hist::Histogram;
use crate::net::Stream;
use args::Config;
use check::Check;
use ember_fcgi_testkit::decode::Decoder;
use request::Request;

/// Read buffer shared by all connections (the decoder keeps no references into it).
const READ_BUF: usize = 64 * 1024;
/// Slices per vectored write.
const IOV: usize = 16;
/// Timeouts are scanned for, and the clock checked, at least this often.
const TICK: Duration = Duration::from_millis(100);
/// Pause before a failed connection starts over, so a dead server is not hammered.
const RETRY_DELAY: Duration = Duration::from_millis(10);

/// Outcome of a run.
pub struct Report {
    /// Measured requests that completed successfully.
    pub requests: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Measured wall time (after warmup).
    pub duration: Duration,
    /// Latencies of successful measured requests, in nanoseconds.
    pub latency: Histogram,
}

impl Report {
    pub fn rps(&self) -> f64 {
        let s = self.duration.as_secs_f64();
        if s > 0.0 { self.requests as f64 / s } else { 0.0 }
    }

    fn us(&self, q: f64) -> f64 {
        self.latency.quantile(q) as f64 / 1000.0
    }

    /// Human-readable summary lines.
    pub fn human(&self, cfg: &Config) -> String {
        let mut s = format!(
            "fcgi-load {}: {} connection(s), {}, {} params, body {} B\n\
             requests: {} ok, {} errors in {:.3} s\n\
             req/s:    {:.1}\n\
             latency:  p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us\n",
            cfg.addr,
            cfg.connections,
            if cfg.keep_conn { "keep-conn" } else { "no-keep-conn" },
            cfg.params,
            cfg.body,
            self.requests,
            self.errors,
            self.duration.as_secs_f64(),
            self.rps(),
            self.us(0.5),
            self.us(0.99),
            self.us(0.999),
            self.latency.max() as f64 / 1000.0,
        );
        if let Some(e) = &self.first_error {
            s += &format!("first error: {e}\n");
        }
        s
    }

    /// One JSON object on one line (hand-formatted; all values are numbers or booleans).
    pub fn json(&self, cfg: &Config) -> String {
        format!(
            "{{\"connections\":{},\"keep_conn\":{},\"body_bytes\":{},\"params\":{},\"requests\":{},\"errors\":{},\
             \"duration_s\":{:.6},\"rps\":{:.1},\"p50_us\":{:.1},\"p99_us\":{:.1},\"p999_us\":{:.1},\"max_us\":{:.1}}}",
            cfg.connections,
            cfg.keep_conn,
            cfg.body,
            cfg.params,
            self.requests,
            self.errors,
            self.duration.as_secs_f64(),
            self.rps(),
            self.us(0.5),
            self.us(0.99),
            self.us(0.999),
            self.latency.max() as f64 / 1000.0,
        )
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    /// No request; the stream (if any) is an idle keep-conn connection.
    Idle,
    /// Request reserved, waiting for the connect to complete.
    Connecting,
    /// Request being written and/or its response awaited.
    Active,
}

struct Conn {
    stream: Option<Stream>,
    phase: Phase,
    /// Bytes of the request written so far.
    sent: u64,
    /// When the first request byte was written.
    started: Instant,
    deadline: Instant,
    /// Whether this request counts (started after warmup).
    measured: bool,
    dec: Decoder,
    check: Check,
}

struct Loader<'c> {
    cfg: &'c Config,
    req: Request,
    poll: Poll,
    conns: Vec<Conn>,
    buf: Box<[u8]>,
    /// Idle connections to restart after an error, with the earliest restart time (in order).
    retry: Vec<(usize, Instant)>,
    measure_start: Instant,
    /// Measured requests started so far (bounded by `--requests`).
    issued: u64,
    /// Connections not idle.
    busy: usize,
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    last_done: Instant,
    hist: Histogram,
}

/// Run the load described by `cfg` to completion.
pub fn run(cfg: &Config) -> io::Result<Report> {
    let now = Instant::now();
    let conns = (0..cfg.connections)
        .map(|_| Conn {
            stream: None,
            phase: Phase::Idle,
            sent: 0,
            started: now,
            deadline: now,
            measured: false,
            dec: Decoder::new(),
            check: Check::new(),
        })
        .collect();
    let mut l = Loader {
        cfg,
        req: Request::build(cfg.keep_conn, cfg.params, cfg.body),
        poll: Poll::new()?,
        conns,
        buf: vec![0; READ_BUF].into_boxed_slice(),
        retry: Vec::new(),
        measure_start: now + cfg.warmup,
        issued: 0,
        busy: 0,
        ok: 0,
        errors: 0,
        first_error: None,
        last_done: now + cfg.warmup,
        hist: Histogram::new(),
    };
    let end = cfg.duration.map(|d| l.measure_start + d);
    let mut events = Events::with_capacity(1024);
    let mut next_tick = now + TICK;
    for i in 0..cfg.connections {
        l.start(i);
    }
    let mut timed_out = false;
    loop {
        let limit_hit = cfg.requests.is_some_and(|n| l.issued >= n) && l.busy == 0 && l.retry.is_empty();
        if limit_hit {
            break;
        }
        let now = Instant::now();
        if end.is_some_and(|e| now >= e) {
            timed_out = true;
            break;
        }
        if now >= next_tick {
            l.expire(now);
            next_tick = now + TICK;
        }
        while let Some(&(i, at)) = l.retry.first() {
            if at > now {
                break;
            }
            l.retry.remove(0);
            l.start(i);
        }
        let mut wake = next_tick;
        if let Some(e) = end {
            wake = wake.min(e);
        }
        if let Some(&(_, at)) = l.retry.first() {
            wake = wake.min(at);
        }
        let wait = wake.saturating_duration_since(now);
        match l.poll.poll(&mut events, Some(wait)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for ev in events.iter() {
            let readable = ev.is_readable() || ev.is_read_closed() || ev.is_error();
            l.on_event(ev.token().0, readable);
        }
    }
    let duration = match (timed_out, end) {
        (true, Some(e)) => e.saturating_duration_since(l.measure_start),
        _ => l.last_done.saturating_duration_since(l.measure_start),
    };
    Ok(Report { requests: l.ok, errors: l.errors, first_error: l.first_error, duration, latency: l.hist })
}

impl Loader<'_> {
    /// Start the next request on idle connection `i`, connecting first if needed.
    fn start(&mut self, i: usize) {
        let now = Instant::now();
        let measured = now >= self.measure_start;
        if measured && self.cfg.requests.is_some_and(|n| self.issued >= n) {
            return;
        }
        self.issued += measured as u64;
        self.busy += 1;
        let c = &mut self.conns[i];
        debug_assert_eq!(c.phase, Phase::Idle);
        c.measured = measured;
        c.deadline = now + self.cfg.timeout;
        if c.stream.is_some() {
            self.begin(i);
            return;
        }
        c.phase = Phase::Connecting;
        let r = Stream::connect(&self.cfg.addr).and_then(|mut s| {
            self.poll.registry().register(&mut s, Token(i), Interest::READABLE | Interest::WRITABLE)?;
            Ok(s)
        });
        match r {
            Ok(s) => c.stream = Some(s),
            Err(e) => self.fail(i, &format!("connect: {e}")),
        }
    }

    /// Connected: reset response state and write the request.
    fn begin(&mut self, i: usize) {
        let c = &mut self.conns[i];
        c.phase = Phase::Active;
        c.sent = 0;
        c.dec = Decoder::new();
        c.check.reset();
        c.started = Instant::now();
        self.write(i);
    }

    fn on_event(&mut self, i: usize, readable: bool) {
        match self.conns[i].phase {
            Phase::Connecting => match self.conns[i].stream.as_ref().map(Stream::check_connected) {
                Some(Ok(true)) => self.begin(i),
                Some(Ok(false)) | None => {}
                Some(Err(e)) => self.fail(i, &format!("connect: {e}")),
            },
            Phase::Active => {
                if self.conns[i].sent < self.req.encoded_len() {
                    self.write(i);
                }
                if readable && self.conns[i].phase == Phase::Active {
                    self.read(i);
                }
            }
            // An idle keep-conn connection closed by the server, or a stray event: drop it.
            Phase::Idle => {
                if readable {
                    self.conns[i].stream = None;
                }
            }
        }
    }

    /// Write until done, a short write, or WouldBlock (a writable event resumes it).
    fn write(&mut self, i: usize) {
        let len = self.req.encoded_len();
        let c = &mut self.conns[i];
        let Some(s) = c.stream.as_mut() else { return };
        while c.sent < len {
            let mut iov = [IoSlice::new(&[]); IOV];
            let n = self.req.fill(c.sent, &mut iov);
            let want: usize = iov[..n].iter().map(|s| s.len()).sum();
            match s.write_vectored(&iov[..n]) {
                Ok(0) => return self.fail(i, "write returned 0"),
                Ok(k) => {
                    c.sent += k as u64;
                    if k < want {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail(i, &format!("write: {e}")),
            }
        }
    }

    /// Read and validate until a short read or WouldBlock; completes the request on END_REQUEST.
    fn read(&mut self, i: usize) {
        loop {
            let c = &mut self.conns[i];
            let Some(s) = c.stream.as_mut() else { return };
            let n = match s.read(&mut self.buf) {
                Ok(0) => return self.fail(i, "connection closed before END_REQUEST"),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return self.fail(i, &format!("read: {e}")),
            };
            let mut input = &self.buf[..n];
            let mut done = false;
            while let Some(ev) = c.dec.next(&mut input) {
                match c.check.on_event(ev, self.cfg.expect_body_prefix.as_deref()) {
                    Ok(false) => {}
                    Ok(true) => {
                        done = true;
                        break;
                    }
                    Err(e) => return self.fail(i, e),
                }
            }
            if done {
                if !input.is_empty() {
                    return self.fail(i, "data after END_REQUEST");
                }
                if c.sent < self.req.encoded_len() {
                    return self.fail(i, "response before the request was fully sent");
                }
                self.complete(i);
                if self.conns[i].phase != Phase::Active {
                    return;
                }
            }
            if n < self.buf.len() {
                return;
            }
        }
    }

    /// A valid response arrived: record it, then reuse or close the connection and go on.
    fn complete(&mut self, i: usize) {
        let now = Instant::now();
        let c = &mut self.conns[i];
        if c.measured {
            self.hist.record(now.saturating_duration_since(c.started).as_nanos() as u64);
            self.ok += 1;
            self.last_done = now;
        }
        c.phase = Phase::Idle;
        self.busy -= 1;
        if !self.cfg.keep_conn {
            c.stream = None;
        }
        self.start(i);
    }

    /// Count an error, drop the connection and schedule a fresh request on it.
    fn fail(&mut self, i: usize, why: &str) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(why.to_string());
        }
        let c = &mut self.conns[i];
        c.stream = None;
        if c.phase != Phase::Idle {
            self.busy -= 1;
        }
        c.phase = Phase::Idle;
        self.retry.push((i, Instant::now() + RETRY_DELAY));
    }

    /// Fail requests past their deadline.
    fn expire(&mut self, now: Instant) {
        for i in 0..self.conns.len() {
            if self.conns[i].phase != Phase::Idle && now >= self.conns[i].deadline {
                self.fail(i, "timeout");
            }
        }
    }
}
