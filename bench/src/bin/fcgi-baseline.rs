//! No-parse baseline FastCGI server: finds request ends by scanning record headers only
//! and answers each with pre-built bytes, giving the ceiling real servers are compared to.

use std::io::{self, Read, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ember_fcgi_bench::net::{Addr, Listener, Stream};
use ember_fcgi_testkit::decode::{Decoder, Event};
use ember_fcgi_testkit::{self as proto, BEGIN_REQUEST, END_REQUEST, KEEP_CONN, STDIN, STDOUT};
use mio::{Events, Interest, Poll, Token};

const USAGE: &str = "usage: fcgi-baseline --listen HOST:PORT|[V6]:PORT|unix:PATH";
const BODY: &[u8] = b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nHello, World!\n";
const LISTENER: Token = Token(usize::MAX);

/// STDOUT with the body, empty STDOUT, END_REQUEST(0, REQUEST_COMPLETE), all for `id`.
fn response(id: u16) -> Vec<u8> {
    let mut v = Vec::new();
    proto::push_record(&mut v, STDOUT, id, BODY);
    proto::push_record(&mut v, STDOUT, id, &[]);
    proto::push_record(&mut v, END_REQUEST, id, &proto::end_body(0, proto::REQUEST_COMPLETE));
    v
}

struct Conn {
    stream: Stream,
    dec: Decoder,
    /// Type of the record being decoded.
    kind: u8,
    request_id: u16,
    /// BEGIN_REQUEST body bytes seen so far (only the flags byte matters).
    begin: [u8; 8],
    begin_len: usize,
    /// Response bytes the socket did not take yet.
    out: Vec<u8>,
    /// Close once `out` is flushed (keep-conn was not requested).
    closing: bool,
}

impl Conn {
    /// Feed received bytes; queues a response at each empty STDIN record.
    fn consume(&mut self, mut input: &[u8], resp1: &[u8]) -> io::Result<()> {
        while let Some(ev) = self.dec.next(&mut input) {
            match ev {
                Event::Header(h) => {
                    self.kind = h.kind;
                    if h.kind == BEGIN_REQUEST {
                        self.request_id = h.request_id;
                        self.begin_len = 0;
                    } else if h.kind == STDIN && h.content_len == 0 {
                        if self.request_id == 1 {
                            self.send(resp1)?;
                        } else {
                            self.send(&response(self.request_id))?;
                        }
                        if self.begin[2] & KEEP_CONN == 0 {
                            self.closing = true;
                            return Ok(());
                        }
                    }
                }
                Event::Content(c) if self.kind == BEGIN_REQUEST => {
                    let n = c.len().min(8 - self.begin_len);
                    self.begin[self.begin_len..self.begin_len + n].copy_from_slice(&c[..n]);
                    self.begin_len += n;
                }
                Event::Content(_) | Event::End => {}
            }
        }
        Ok(())
    }

    /// Write directly when nothing is pending, keeping whatever the socket refuses.
    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.out.is_empty() {
            let n = write_some(&mut self.stream, bytes)?;
            self.out.extend_from_slice(&bytes[n..]);
        } else {
            self.out.extend_from_slice(bytes);
        }
        Ok(())
    }

    /// Flush pending output after a writable event.
    fn flush(&mut self) -> io::Result<()> {
        let n = write_some(&mut self.stream, &self.out)?;
        self.out.drain(..n);
        Ok(())
    }
}

/// Write until done or WouldBlock; returns bytes written.
fn write_some(s: &mut Stream, bytes: &[u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < bytes.len() {
        match s.write(&bytes[done..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Handle one event; `Ok(false)` means the connection is finished.
fn drive(c: &mut Conn, readable: bool, buf: &mut [u8], resp1: &[u8]) -> io::Result<bool> {
    if !c.out.is_empty() {
        c.flush()?;
    }
    while readable && !c.closing {
        let n = match c.stream.read(buf) {
            Ok(0) => return Ok(false),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        c.consume(&buf[..n], resp1)?;
        if n < buf.len() {
            break;
        }
    }
    Ok(!(c.closing && c.out.is_empty()))
}

fn serve(addr: &Addr) -> io::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }
    let mut poll = Poll::new()?;
    let mut listener = Listener::bind(addr)?;
    poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
    println!("listening on {}", listener.local_addr(addr)?);
    io::stdout().flush()?;

    let resp1 = response(1);
    let mut buf = vec![0u8; 64 * 1024];
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut events = Events::with_capacity(1024);
    while !stop.load(Ordering::Relaxed) {
        match poll.poll(&mut events, Some(Duration::from_secs(1))) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for ev in events.iter() {
            if ev.token() == LISTENER {
                loop {
                    let mut stream = match listener.accept() {
                        Ok(s) => s,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            eprintln!("fcgi-baseline: accept: {e}");
                            break;
                        }
                    };
                    let i = free.pop().unwrap_or_else(|| {
                        conns.push(None);
                        conns.len() - 1
                    });
                    poll.registry().register(
                        &mut stream,
                        Token(i),
                        Interest::READABLE | Interest::WRITABLE,
                    )?;
                    conns[i] = Some(Conn {
                        stream,
                        dec: Decoder::new(),
                        kind: 0,
                        request_id: 0,
                        begin: [0; 8],
                        begin_len: 0,
                        out: Vec::new(),
                        closing: false,
                    });
                }
                continue;
            }
            let i = ev.token().0;
            let Some(c) = conns[i].as_mut() else { continue };
            let readable = ev.is_readable() || ev.is_read_closed() || ev.is_error();
            if !matches!(drive(c, readable, &mut buf, &resp1), Ok(true)) {
                conns[i] = None; // dropping closes the socket, which also deregisters it
                free.push(i);
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let addr = match (args.next().as_deref(), args.next(), args.next()) {
        (Some("--listen"), Some(a), None) => a,
        (Some(a), None, None) if a.starts_with("--listen=") => a["--listen=".len()..].to_string(),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let addr = match Addr::parse(&addr) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("fcgi-baseline: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match serve(&addr) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fcgi-baseline: {e}");
            ExitCode::FAILURE
        }
    }
}
