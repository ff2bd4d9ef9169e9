//! The test client of the engine tests: input bytes and output parsing come from
//! `ember-fcgi-testkit`, written from the spec independently of this crate's wire code (so
//! an encoder bug cannot cancel itself out), and runners push a byte script through the
//! real driver in reads of any size.

use std::vec::Vec;

pub use ember_fcgi_testkit::mem::{Chunked, SharedSink, Sink};
pub use ember_fcgi_testkit::reply::{ends, stream};
pub use ember_fcgi_testkit::wire::{FILTER, RESPONDER};
use ember_fcgi_testkit::wire::{PARAMS, STDIN, begin_body, padded};
pub use ember_fcgi_testkit::{Record, nv::encode_byte_pairs as nv};

use crate::{Config, ConnectionBuffers, ConnectionError, Handler, serve_blocking};

/// One record with exactly `padding` bytes of padding.
pub fn record(kind: u8, id: u16, content: &[u8], padding: u8) -> Vec<u8> {
    padded(kind, id, content, padding)
}

/// BEGIN_REQUEST for `role` (a testkit role constant).
pub fn begin(id: u16, role: u16, keep_conn: bool) -> Vec<u8> {
    record(1, id, &begin_body(role, u8::from(keep_conn)), 0)
}

/// BEGIN, one PARAMS record with `pairs`, the empty PARAMS, `stdin` in one record and
/// the empty STDIN: what nginx sends.
pub fn request(id: u16, keep_conn: bool, pairs: &[(&[u8], &[u8])], stdin: &[u8]) -> Vec<u8> {
    let mut out = begin(id, RESPONDER, keep_conn);
    out.extend(record(PARAMS, id, &nv(pairs), 0));
    out.extend(record(PARAMS, id, b"", 0));
    if !stdin.is_empty() {
        out.extend(record(STDIN, id, stdin, 0));
    }
    out.extend(record(STDIN, id, b"", 0));
    out
}

/// Splits an output byte string into records; malformed output fails the test.
pub fn parse(bytes: &[u8]) -> Vec<Record> {
    ember_fcgi_testkit::parse(bytes).unwrap_or_else(|e| panic!("engine output: {e}"))
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
    let reader = Chunked::new(segments, chunk);
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
