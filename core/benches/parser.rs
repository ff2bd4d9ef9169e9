//! Throughput of the protocol engine over in-memory I/O, against `memcpy` of the same bytes
//! measured in the same run (so results read as a ratio):
//!
//! - `stdin_1mib`: one request whose 1 MiB body comes in 32 KiB STDIN records; the handler
//!   reads and discards it. Default buffers (4 KiB input) and a 32 KiB input buffer.
//! - `nginx_hello`: many GET requests as nginx sends them (22 params, one PARAMS record,
//!   FCGI_KEEP_CONN) on one connection, each answered with a hello response. Each request
//!   is a separate send (a read never spans two), as a web server waits for END_REQUEST.
//! - `memcpy/*`: `copy_from_slice` of the same input bytes.
//!
//! `cargo bench -p ember-fcgi-core --bench parser -- --warm-up-time 1 --measurement-time 3`

use std::cell::Cell;
use std::convert::Infallible;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ember_fcgi_core::prelude::*;
use ember_fcgi_core::{Buffers, Config, DefaultBuffers, serve_blocking};
use ember_fcgi_testkit::{BEGIN_REQUEST, PARAMS, RESPONDER, STDIN, begin_body, encode_pairs, push_padded};

const BODY: usize = 1 << 20;
const STDIN_RECORD: usize = 32 * 1024;
const REQUESTS: usize = 1000;

const NGINX_PARAMS: &[(&str, &str)] = &[
    ("SCRIPT_FILENAME", "/srv/www/index.php"),
    ("QUERY_STRING", "a=1&b=2"),
    ("REQUEST_METHOD", "GET"),
    ("CONTENT_TYPE", ""),
    ("CONTENT_LENGTH", ""),
    ("SCRIPT_NAME", "/index.php"),
    ("REQUEST_URI", "/index.php?a=1&b=2"),
    ("DOCUMENT_URI", "/index.php"),
    ("DOCUMENT_ROOT", "/srv/www"),
    ("SERVER_PROTOCOL", "HTTP/1.1"),
    ("REQUEST_SCHEME", "http"),
    ("GATEWAY_INTERFACE", "CGI/1.1"),
    ("SERVER_SOFTWARE", "nginx/1.22.1"),
    ("REMOTE_ADDR", "127.0.0.1"),
    ("REMOTE_PORT", "51234"),
    ("SERVER_ADDR", "127.0.0.1"),
    ("SERVER_PORT", "8080"),
    ("SERVER_NAME", "localhost"),
    ("REDIRECT_STATUS", "200"),
    ("HTTP_HOST", "localhost:8080"),
    ("HTTP_USER_AGENT", "curl/7.88.1"),
    ("HTTP_ACCEPT", "*/*"),
    ("HTTP_ACCEPT_ENCODING", "gzip, deflate, br"),
    ("HTTP_ACCEPT_LANGUAGE", "en-US,en;q=0.9"),
    ("HTTP_CONNECTION", "keep-alive"),
];

/// One record of request 1 without padding (the inputs measured before the testkit).
fn record(out: &mut Vec<u8>, kind: u8, content: &[u8]) {
    push_padded(out, kind, 1, content, 0);
}

fn begin(out: &mut Vec<u8>, keep_conn: bool) {
    record(out, BEGIN_REQUEST, &begin_body(RESPONDER, u8::from(keep_conn)));
}

/// The PARAMS stream of `pairs` in one record (as nginx sends it) and its terminator.
fn params(out: &mut Vec<u8>, pairs: &[(&str, &str)]) {
    record(out, PARAMS, &encode_pairs(pairs));
    record(out, PARAMS, b"");
}

/// One POST with a 1 MiB body in 32 KiB STDIN records.
fn upload_script() -> Vec<u8> {
    let mut out = Vec::new();
    begin(&mut out, false);
    params(&mut out, &[("REQUEST_METHOD", "POST"), ("CONTENT_LENGTH", "1048576")]);
    let chunk: Vec<u8> = (0..STDIN_RECORD).map(|i| i as u8).collect();
    for _ in 0..BODY / STDIN_RECORD {
        record(&mut out, STDIN, &chunk);
    }
    record(&mut out, STDIN, b"");
    out
}

/// `n` keep-conn GET requests; returns the script and the end of each request in it.
fn nginx_script(n: usize) -> (Vec<u8>, Vec<usize>) {
    let mut out = Vec::new();
    let mut ends = Vec::new();
    for _ in 0..n {
        begin(&mut out, true);
        params(&mut out, NGINX_PARAMS);
        record(&mut out, STDIN, b"");
        ends.push(out.len());
    }
    (out, ends)
}

/// Hands out `script` in reads that never cross an entry of `ends`.
struct Segments<'a> {
    script: &'a [u8],
    ends: &'a [usize],
    pos: usize,
    seg: usize,
}

impl embedded_io::ErrorType for Segments<'_> {
    type Error = Infallible;
}

impl embedded_io::Read for Segments<'_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        while self.seg < self.ends.len() && self.ends[self.seg] <= self.pos {
            self.seg += 1;
        }
        let end = self.ends.get(self.seg).copied().unwrap_or(self.script.len());
        let n = buf.len().min(end - self.pos);
        buf[..n].copy_from_slice(&self.script[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl embedded_io_async::Read for Segments<'_> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        embedded_io::Read::read(self, buf)
    }
}

/// Counts what is written, keeps nothing.
struct Count<'a>(&'a mut usize);

impl embedded_io::ErrorType for Count<'_> {
    type Error = Infallible;
}

impl embedded_io::Write for Count<'_> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        *self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

impl embedded_io_async::Write for Count<'_> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        embedded_io::Write::write(self, buf)
    }
    async fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

/// Reads the body and discards it; remembers its length and answers with one byte.
struct Discard(Cell<usize>);

impl Handler for Discard {
    async fn handle(&self, req: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), HandlerError> {
        let mut buf = [0u8; 8192];
        let mut total = 0usize;
        loop {
            let n = req.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            total += n;
        }
        self.0.set(total);
        res.raw_output().write_all(&[total as u8]).await?;
        Ok(())
    }
}

struct Hello;

impl Handler for Hello {
    async fn handle(&self, _req: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), HandlerError> {
        let mut out = res.send_head(200, &[("Content-Type", "text/plain")]).await?;
        out.write_all(b"Hello, World!\n").await?;
        Ok(())
    }
}

fn serve<B: ember_fcgi_core::ConnectionBuffers, H: Handler>(
    buffers: &mut B,
    handler: &H,
    script: &[u8],
    ends: &[usize],
) -> usize {
    let mut written = 0;
    let reader = Segments { script, ends, pos: 0, seg: 0 };
    serve_blocking(
        reader,
        Count(&mut written),
        handler,
        buffers,
        &Config::default(),
        &mut ember_fcgi_core::Spin,
    )
    .unwrap();
    written
}

fn bench(c: &mut Criterion) {
    let upload = upload_script();
    let (nginx, nginx_ends) = nginx_script(REQUESTS);
    eprintln!(
        "stdin_1mib: {} input bytes; nginx_hello: {} requests, {} input bytes ({} per request)",
        upload.len(),
        REQUESTS,
        nginx.len(),
        nginx.len() / REQUESTS
    );

    // The size of the async driver's future for the hello handler (buffers are borrowed).
    {
        let (one, one_ends) = nginx_script(1);
        let mut buffers = DefaultBuffers::new();
        let mut written = 0;
        let status = ember_fcgi_core::ConnectionStatus::new();
        let config = Config::default();
        let reader = Segments { script: &one, ends: &one_ends, pos: 0, seg: 0 };
        let future = ember_fcgi_core::serve_connection(
            reader,
            Count(&mut written),
            &Hello,
            &mut buffers,
            &config,
            &status,
        );
        eprintln!("serve_connection future (Hello, in-memory I/O): {} bytes", std::mem::size_of_val(&future));
    }

    // Sanity: every request is answered, and the body is read whole.
    let (one, one_ends) = nginx_script(1);
    let hello_one = serve(&mut DefaultBuffers::new(), &Hello, &one, &one_ends);
    let hello_out = serve(&mut DefaultBuffers::new(), &Hello, &nginx, &nginx_ends);
    assert_eq!(hello_out, REQUESTS * hello_one, "one hello response per request");
    let discard = Discard(Cell::new(0));
    assert_eq!(serve(&mut DefaultBuffers::new(), &discard, &upload, &[]), 8 + 1 + 8 + 16);
    assert_eq!(discard.0.get(), BODY, "the handler read the whole body");

    let mut group = c.benchmark_group("stdin_1mib");
    group.throughput(Throughput::Bytes(upload.len() as u64));
    let mut default = Box::new(DefaultBuffers::new());
    group.bench_function("engine/default_buffers", |b| {
        b.iter(|| serve(&mut *default, &discard, black_box(&upload), &[]))
    });
    let mut big_in = Box::new(Buffers::<32768, 4096, 4096, 1>::new());
    group.bench_function("engine/in_32k", |b| {
        b.iter(|| serve(&mut *big_in, &discard, black_box(&upload), &[]))
    });
    let mut dst = vec![0u8; upload.len()];
    group.bench_function("memcpy", |b| {
        b.iter(|| {
            dst.copy_from_slice(black_box(&upload));
            black_box(&mut dst);
        })
    });
    group.finish();

    let mut group = c.benchmark_group("nginx_hello");
    group.sample_size(50);
    group.throughput(Throughput::Bytes(nginx.len() as u64));
    group.bench_function("engine", |b| {
        b.iter(|| serve(&mut *default, &Hello, black_box(&nginx), &nginx_ends))
    });
    let mut dst = vec![0u8; nginx.len()];
    group.bench_function("memcpy", |b| {
        b.iter(|| {
            dst.copy_from_slice(black_box(&nginx));
            black_box(&mut dst);
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
