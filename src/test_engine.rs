//! Test support for the facade's unit tests: one request written as nginx sends it, run
//! through the real engine (`serve_blocking` over byte slices).

use crate::embedded_io::{ErrorType, Read, Write};
use crate::{Buffers, Config, Handler, serve_blocking};

/// One record of `ty` for request id 1, no padding.
fn record(out: &mut Vec<u8>, ty: u8, content: &[u8]) {
    let len = u16::try_from(content.len()).expect("short test record");
    out.extend_from_slice(&[1, ty, 0, 1]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(content);
}

/// A keep-conn-less request of `role` (1 Responder, 2 Authorizer) with these params and
/// body records (each chunk one FCGI_STDIN record), then the empty end records.
pub(crate) fn script(role: u8, params: &[(&str, &str)], body: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    record(&mut out, 1, &[0, role, 0, 0, 0, 0, 0, 0]);
    let mut nv = Vec::new();
    for (n, v) in params {
        nv.push(u8::try_from(n.len()).expect("short name"));
        nv.push(u8::try_from(v.len()).expect("short value"));
        nv.extend_from_slice(n.as_bytes());
        nv.extend_from_slice(v.as_bytes());
    }
    record(&mut out, 4, &nv);
    record(&mut out, 4, b"");
    for chunk in body {
        record(&mut out, 5, chunk);
    }
    record(&mut out, 5, b"");
    out
}

/// Feeds the engine a script.
struct Source<'a>(&'a [u8]);

impl ErrorType for Source<'_> {
    type Error = core::convert::Infallible;
}

impl Read for Source<'_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let n = buf.len().min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

/// Collects what the engine writes.
struct Sink(Vec<u8>);

impl ErrorType for Sink {
    type Error = core::convert::Infallible;
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Runs `handler` on `input` with 4 KiB buffers and `config`; returns the bytes written.
pub(crate) fn run<H: Handler>(handler: &H, input: &[u8], config: &Config) -> Vec<u8> {
    let mut buffers = Buffers::<4096, 4096, 4096, 1>::new();
    let mut sink = Sink(Vec::new());
    serve_blocking(Source(input), &mut sink, handler, &mut buffers, config, &mut crate::Spin)
        .expect("served");
    sink.0
}
