//! Arbitrary bytes from the web server through the whole engine, twice: through
//! `serve_blocking` (reads of a few fuzzer-chosen sizes) and through `serve_connection`
//! polled with a no-op waker over always-ready in-memory I/O (a hang there panics).
//! Neither may panic; the output must be well-formed FastCGI records.
//!
//! Input layout: byte 0 picks the memory (bits 0-2), roles (3-4), the handler's read size
//! (5-6) and STDERR output (7); byte 1 the number of read sizes (bits 0-1, 1..=4), flushes
//! (bit 2) and an error return (bit 3); the next bytes are the read sizes (0 means "as
//! much as fits"); the rest is the byte stream.
#![no_main]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use ember_fcgi_core::prelude::*;
use ember_fcgi_core::wire::header::{Header, RecordType};
use ember_fcgi_core::{
    Buffers, Config, ConnectionBuffers, ConnectionError, ConnectionStatus, DefaultBuffers, Role, Roles,
    serve_blocking, serve_connection,
};
use libfuzzer_sys::fuzz_target;

/// Polls of `serve_connection` after which it counts as hung (a run needs a few hundred).
const MAX_POLLS: usize = 200_000;

/// Reads stdin (and data for a Filter) and writes it back, with optional STDERR output,
/// flushes, and an error return.
struct FuzzEcho {
    read_size: usize,
    flush_every: u32,
    stderr: bool,
    fail: bool,
}

impl Handler for FuzzEcho {
    async fn handle(&self, req: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), HandlerError> {
        if self.stderr {
            res.stderr().write_all(b"starting").await?;
        }
        let count = req.params().len();
        let first = req.params().iter().next().map(|(n, _)| n.len()).unwrap_or(0);
        let mut out = res.send_head(200, &[("Content-Type", content_type::TEXT)]).await?;
        out.write_all(&[count as u8, first as u8]).await?;
        let mut buf = [0u8; 64];
        let mut reads = 0u32;
        loop {
            let n = req.read(&mut buf[..self.read_size]).await?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n]).await?;
            reads += 1;
            if self.flush_every != 0 && reads.is_multiple_of(self.flush_every) {
                out.flush().await?;
            }
        }
        if req.role() == Role::Filter {
            let mut data = req.data();
            loop {
                let n = data.read(&mut buf[..self.read_size]).await?;
                if n == 0 {
                    break;
                }
                out.write_all(&buf[..n]).await?;
            }
        }
        if self.fail {
            res.set_app_status(3);
            return Err(StreamError::InvalidHeader.into());
        }
        Ok(())
    }
}

/// A blocking reader handing out the input in reads whose sizes cycle through `sizes`.
struct SliceReader<'a> {
    rest: &'a [u8],
    sizes: &'a [usize],
    next: usize,
}

impl SliceReader<'_> {
    fn take(&mut self, buf: &mut [u8]) -> usize {
        let size = self.sizes[self.next % self.sizes.len()];
        self.next += 1;
        let n = buf.len().min(size).min(self.rest.len());
        buf[..n].copy_from_slice(&self.rest[..n]);
        self.rest = &self.rest[n..];
        n
    }
}

impl embedded_io::ErrorType for SliceReader<'_> {
    type Error = Infallible;
}

impl embedded_io::Read for SliceReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        Ok(self.take(buf))
    }
}

impl embedded_io_async::Read for SliceReader<'_> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        Ok(self.take(buf))
    }
}

/// A writer collecting everything (blocking and async).
struct VecWriter<'a>(&'a mut Vec<u8>);

impl embedded_io::ErrorType for VecWriter<'_> {
    type Error = Infallible;
}

impl embedded_io::Write for VecWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

impl embedded_io_async::Write for VecWriter<'_> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    async fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

type Outcome = Result<(), ConnectionError<Infallible>>;

fn run<B: ConnectionBuffers + Default>(h: &FuzzEcho, config: &Config, input: &[u8], sizes: &[usize]) {
    // Blocking driver.
    let mut out = Vec::new();
    let mut buffers = B::default();
    let reader = SliceReader { rest: input, sizes, next: 0 };
    let result = serve_blocking(reader, VecWriter(&mut out), h, &mut buffers, config, &mut ember_fcgi_core::Spin);
    check(&result, &out, input);

    // Async driver over always-ready I/O: it must finish within a bounded number of polls.
    let mut out = Vec::new();
    let mut buffers = B::default();
    let status = ConnectionStatus::new();
    let result = {
        let reader = SliceReader { rest: input, sizes, next: 0 };
        let mut future =
            pin!(serve_connection(reader, VecWriter(&mut out), h, &mut buffers, config, &status));
        let mut cx = Context::from_waker(Waker::noop());
        let mut polls = 0;
        loop {
            if let Poll::Ready(r) = future.as_mut().poll(&mut cx) {
                break r;
            }
            polls += 1;
            assert!(polls < MAX_POLLS, "serve_connection hung over always-ready I/O");
        }
    };
    check(&result, &out, input);
    if result.is_ok() {
        assert_eq!(status.active_requests(), 0, "requests still counted active after a clean end");
    }
}

/// BEGIN_REQUEST records per id, walking the input as the engine does.
fn begins_in(mut rest: &[u8]) -> BTreeMap<u16, usize> {
    let mut counts = BTreeMap::new();
    while rest.len() >= 8 {
        let h = Header::parse(rest[..8].try_into().unwrap());
        if h.record_type == RecordType::BeginRequest {
            *counts.entry(h.request_id).or_insert(0) += 1;
        }
        let skip = (8 + usize::from(h.content_length) + usize::from(h.padding_length)).min(rest.len());
        rest = &rest[skip..];
    }
    counts
}

/// Output is whole records of application types; per id, responses are
/// `(STDOUT | STDERR)* END` with each stream closed at most once, complete responses close
/// STDOUT, rejections carry no stream, and no id ends more often than it began.
fn check(result: &Outcome, out: &[u8], input: &[u8]) {
    assert!(matches!(result, Ok(()) | Err(ConnectionError::Protocol(_))), "{result:?}");
    #[derive(Default)]
    struct Open {
        stdout_closed: bool,
        stderr_closed: bool,
        streams: usize,
    }
    let mut open: BTreeMap<u16, Open> = BTreeMap::new();
    let mut ends: BTreeMap<u16, usize> = BTreeMap::new();
    let mut rest = out;
    while !rest.is_empty() {
        assert!(rest.len() >= 8, "truncated header in output");
        let h = Header::parse(rest[..8].try_into().unwrap());
        assert_eq!((h.version, h.padding_length, rest[7]), (1, 0, 0), "bad output header");
        let len = usize::from(h.content_length);
        assert!(rest.len() >= 8 + len, "truncated record in output");
        let content = &rest[8..8 + len];
        rest = &rest[8 + len..];
        match (h.record_type, h.request_id) {
            (RecordType::GetValuesResult | RecordType::UnknownType, 0) => {}
            (RecordType::Stdout | RecordType::Stderr, id) if id != 0 => {
                let o = open.entry(id).or_default();
                let closed = if h.record_type == RecordType::Stdout {
                    &mut o.stdout_closed
                } else {
                    &mut o.stderr_closed
                };
                assert!(!*closed, "stream record after the stream ended");
                *closed = content.is_empty();
                o.streams += 1;
            }
            (RecordType::EndRequest, id) if id != 0 => {
                assert_eq!(len, 8);
                assert!(content[4] <= 3 && content[5..] == [0, 0, 0]);
                let o = open.remove(&id).unwrap_or_default();
                if content[4] == 0 {
                    assert!(o.stdout_closed, "END_REQUEST before the empty STDOUT");
                } else {
                    assert_eq!(o.streams, 0, "rejected request with output");
                }
                *ends.entry(id).or_insert(0) += 1;
            }
            other => panic!("unexpected output record {other:?}"),
        }
    }
    let begins = begins_in(input);
    for (id, n) in ends {
        assert!(n <= begins.get(&id).copied().unwrap_or(0), "more END_REQUEST than BEGIN_REQUEST for {id}");
    }
}

fuzz_target!(|data: &[u8]| {
    let [setup, count_byte, rest @ ..] = data else {
        return;
    };
    let (setup, count_byte) = (*setup, *count_byte);
    let count = usize::from(count_byte % 4) + 1;
    if rest.len() < count {
        return;
    }
    let (size_bytes, input) = rest.split_at(count);
    let sizes: Vec<usize> =
        size_bytes.iter().map(|&b| if b == 0 { usize::MAX } else { usize::from(b) }).collect();
    let roles = match (setup >> 3) & 3 {
        0 => Roles::RESPONDER,
        1 => Roles::ALL,
        2 => Roles::RESPONDER | Roles::FILTER,
        _ => Roles::AUTHORIZER,
    };
    let config = Config::new().with_roles(roles).with_max_conns(7);
    let handler = FuzzEcho {
        read_size: [1, 7, 64, 13][usize::from(setup >> 5) & 3],
        flush_every: if count_byte & 4 != 0 { 3 } else { 0 },
        stderr: setup & 0x80 != 0,
        fail: count_byte & 8 != 0,
    };
    match setup & 7 {
        0 | 5 => run::<DefaultBuffers>(&handler, &config, input, &sizes),
        1 | 6 => run::<Buffers<16, 128, 128, 1>>(&handler, &config, input, &sizes),
        2 => run::<Buffers<64, 256, 512, 2>>(&handler, &config, input, &sizes),
        3 => run::<Buffers<16, 128, 256, 3>>(&handler, &config, input, &sizes),
        _ => run::<Buffers<32, 200, 64, 8>>(&handler, &config, input, &sizes),
    }
});
