//! A minimal FastCGI client for tests: record builders, a response parser, and runners
//! that push a byte script through the driver in chunks of any size.

use std::vec::Vec;

use crate::wire::body::{BeginRequestBody, Role};
use crate::wire::header::{Header, RecordType};
use crate::wire::nv::encode_pair;
use crate::{Config, ConnectionBuffers, ConnectionError, Handler, serve_blocking};

pub fn record(ty: u8, id: u16, content: &[u8], padding: u8) -> Vec<u8> {
    let mut out = Vec::new();
    let mut h = Header::new(RecordType::from_u8(ty), id, content.len() as u16);
    h.padding_length = padding;
    out.extend_from_slice(&h.encode());
    out.extend_from_slice(content);
    out.extend(std::iter::repeat_n(0u8, padding as usize));
    out
}

pub fn begin(id: u16, role: Role, keep_conn: bool) -> Vec<u8> {
    let body = BeginRequestBody { role, flags: u8::from(keep_conn) };
    record(1, id, &body.encode(), 0)
}

pub fn nv(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, v) in pairs {
        let mut buf = std::vec![0u8; n.len() + v.len() + 8];
        let len = encode_pair(n, v, &mut buf).unwrap();
        out.extend_from_slice(&buf[..len]);
    }
    out
}

/// BEGIN, one PARAMS record with `pairs`, the empty PARAMS, `stdin` in one record and
/// the empty STDIN: what nginx sends.
pub fn request(id: u16, keep_conn: bool, pairs: &[(&[u8], &[u8])], stdin: &[u8]) -> Vec<u8> {
    let mut out = begin(id, Role::Responder, keep_conn);
    out.extend(record(4, id, &nv(pairs), 0));
    out.extend(record(4, id, b"", 0));
    if !stdin.is_empty() {
        out.extend(record(5, id, stdin, 0));
    }
    out.extend(record(5, id, b"", 0));
    out
}

/// A response record as parsed by the test client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rec {
    pub ty: u8,
    pub id: u16,
    pub content: Vec<u8>,
}

/// Splits an output byte string into records; panics on malformed output (a test failure).
pub fn parse(mut bytes: &[u8]) -> Vec<Rec> {
    let mut recs = Vec::new();
    while !bytes.is_empty() {
        assert!(bytes.len() >= 8, "truncated header in output");
        let h = Header::parse(bytes[..8].try_into().unwrap());
        assert_eq!(h.version, 1);
        let len = h.content_length as usize;
        let end = 8 + len + h.padding_length as usize;
        assert!(bytes.len() >= end, "truncated record in output");
        recs.push(Rec { ty: h.record_type.to_u8(), id: h.request_id, content: bytes[8..8 + len].to_vec() });
        bytes = &bytes[end..];
    }
    recs
}

/// Concatenated content of records of type `ty` for `id`.
pub fn stream(recs: &[Rec], ty: u8, id: u16) -> Vec<u8> {
    recs.iter().filter(|r| r.ty == ty && r.id == id).flat_map(|r| r.content.clone()).collect()
}

/// END_REQUEST records as (id, app_status, protocol_status).
pub fn ends(recs: &[Rec]) -> Vec<(u16, u32, u8)> {
    recs.iter()
        .filter(|r| r.ty == 3)
        .map(|r| (r.id, u32::from_be_bytes(r.content[..4].try_into().unwrap()), r.content[4]))
        .collect()
}

/// A blocking reader that hands out each segment in reads of at most `chunk` bytes; a
/// read never spans two segments (a segment is what a web server sends in one go).
pub struct Chunked<'a> {
    pub segments: Vec<&'a [u8]>,
    pub chunk: usize,
}

impl embedded_io::ErrorType for Chunked<'_> {
    type Error = core::convert::Infallible;
}

impl embedded_io::Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        while self.segments.first().is_some_and(|s| s.is_empty()) {
            self.segments.remove(0);
        }
        let Some(segment) = self.segments.first_mut() else {
            return Ok(0);
        };
        let n = buf.len().min(self.chunk).min(segment.len());
        buf[..n].copy_from_slice(&segment[..n]);
        *segment = &segment[n..];
        Ok(n)
    }
}

/// A blocking writer that collects everything.
pub struct Sink<'a>(pub &'a mut Vec<u8>);

impl embedded_io::ErrorType for Sink<'_> {
    type Error = core::convert::Infallible;
}

impl embedded_io::Write for Sink<'_> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Runs `segments` through the blocking driver in reads of at most `chunk` bytes.
pub fn run_segments<B: ConnectionBuffers + Default, H: Handler>(
    handler: &H,
    config: &Config,
    segments: &[&[u8]],
    chunk: usize,
) -> (Vec<u8>, Result<(), ConnectionError<core::convert::Infallible>>) {
    let mut out = Vec::new();
    let mut buffers = B::default();
    let reader = Chunked { segments: segments.to_vec(), chunk };
    let result = serve_blocking(reader, Sink(&mut out), handler, &mut buffers, config, &mut crate::Spin);
    (out, result)
}

/// Runs one segment through the blocking driver in reads of at most `chunk` bytes.
pub fn run_with<B: ConnectionBuffers + Default, H: Handler>(
    handler: &H,
    config: &Config,
    script: &[u8],
    chunk: usize,
) -> (Vec<u8>, Result<(), ConnectionError<core::convert::Infallible>>) {
    run_segments::<B, H>(handler, config, &[script], chunk)
}

pub type Small = crate::Buffers<64, 256, 1024, 1>;

/// Runs with default buffers, whole script at once.
pub fn run<H: Handler>(
    handler: &H,
    script: &[u8],
) -> (Vec<u8>, Result<(), ConnectionError<core::convert::Infallible>>) {
    run_with::<crate::DefaultBuffers, H>(handler, &Config::default(), script, usize::MAX)
}

/// Runs with default buffers, one read per segment.
pub fn run_each<H: Handler>(
    handler: &H,
    segments: &[&[u8]],
) -> (Vec<u8>, Result<(), ConnectionError<core::convert::Infallible>>) {
    run_segments::<crate::DefaultBuffers, H>(handler, &Config::default(), segments, usize::MAX)
}
