//! `fcgi-engine N`: the protocol engine alone, no sockets: serves N keep-conn requests as
//! fcgi-load sends them (25 nginx params, no body) to the hello handler through
//! `serve_blocking` over in-memory I/O, one request per read, in `DefaultBuffers` (so the
//! same program builds against older releases for a before/after figure). Run under callgrind by `scripts/instructions.sh` to count the engine's
//! instructions per request apart from any transport.

use std::convert::Infallible;
use std::io::IoSlice;

use ember_fcgi_bench::load::request::Request as LoadRequest;
use ember_fcgi_core::prelude::*;
use ember_fcgi_core::{Config, DefaultBuffers, Spin, serve_blocking};

const USAGE: &str = "usage: fcgi-engine REQUESTS";

/// The hello example's handler.
struct Hello;

impl Handler for Hello {
    async fn handle(&self, _req: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), HandlerError> {
        res.send_response(200, "text/plain", b"Hello, World!\n").await?;
        Ok(())
    }
}

/// Hands out `requests` copies of one request, never more than one request per read (as a
/// web server waits for each END_REQUEST before sending the next request).
struct Script<'a> {
    request: &'a [u8],
    left: usize,
    pos: usize,
}

impl embedded_io::ErrorType for Script<'_> {
    type Error = Infallible;
}

impl embedded_io::Read for Script<'_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        if self.left == 0 {
            return Ok(0);
        }
        let n = buf.len().min(self.request.len() - self.pos);
        buf[..n].copy_from_slice(&self.request[self.pos..self.pos + n]);
        self.pos += n;
        if self.pos == self.request.len() {
            (self.pos, self.left) = (0, self.left - 1);
        }
        Ok(n)
    }
}

/// Counts the bytes written.
struct Count(usize);

impl embedded_io::ErrorType for Count {
    type Error = Infallible;
}

impl embedded_io::Write for Count {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

fn main() -> std::process::ExitCode {
    let requests = match std::env::args().nth(1).map(|n| n.parse::<usize>()) {
        Some(Ok(n)) => n,
        _ => {
            eprintln!("{USAGE}");
            return std::process::ExitCode::from(2);
        }
    };
    let load = LoadRequest::build(true, 25, 0);
    let mut iov = [IoSlice::new(&[]); 4];
    let n = load.fill(0, &mut iov);
    let request: Vec<u8> = iov[..n].iter().flat_map(|s| s.iter().copied()).collect();

    let mut buffers = Box::new(DefaultBuffers::new());
    let mut written = Count(0);
    let script = Script { request: &request, left: requests, pos: 0 };
    match serve_blocking(script, &mut written, &Hello, &mut *buffers, &Config::default(), &mut Spin) {
        Ok(()) => {
            println!("{requests} requests, {} bytes written", written.0);
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fcgi-engine: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
