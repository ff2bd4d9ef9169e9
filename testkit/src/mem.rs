//! In-memory blocking I/O for driving a connection without sockets: [`Chunked`] hands out
//! bytes in reads of bounded size, never spanning two segments (a segment is what a peer
//! sends in one go); [`Sink`] collects what is written, and [`SharedSink`] does so for an
//! async writer whose output the test reads while the connection future lives.

use std::cell::RefCell;
use std::convert::Infallible;

/// A reader over `segments` in reads of at most `chunk` bytes.
#[derive(Clone, Debug)]
pub struct Chunked<'a> {
    pub segments: Vec<&'a [u8]>,
    pub chunk: usize,
}

impl<'a> Chunked<'a> {
    pub fn new(segments: &[&'a [u8]], chunk: usize) -> Self {
        assert!(chunk > 0, "reads of 0 bytes would look like EOF");
        Self { segments: segments.iter().rev().copied().collect(), chunk }
    }
}

impl embedded_io::ErrorType for Chunked<'_> {
    type Error = Infallible;
}

impl embedded_io::Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        // Segments are kept in reverse, so the next one is popped off the end.
        while self.segments.last().is_some_and(|s| s.is_empty()) {
            self.segments.pop();
        }
        let Some(segment) = self.segments.last_mut() else { return Ok(0) };
        let n = buf.len().min(self.chunk).min(segment.len());
        buf[..n].copy_from_slice(&segment[..n]);
        *segment = &segment[n..];
        Ok(n)
    }
}

/// A writer that appends everything to a vector.
#[derive(Debug)]
pub struct Sink<'a>(pub &'a mut Vec<u8>);

impl embedded_io::ErrorType for Sink<'_> {
    type Error = Infallible;
}

impl embedded_io::Write for Sink<'_> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

/// An async writer that appends everything to a shared vector.
#[derive(Debug)]
pub struct SharedSink<'a>(pub &'a RefCell<Vec<u8>>);

impl embedded_io_async::ErrorType for SharedSink<'_> {
    type Error = Infallible;
}

impl embedded_io_async::Write for SharedSink<'_> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        self.0.borrow_mut().extend_from_slice(buf);
        Ok(buf.len())
    }
    async fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use embedded_io::Read as _;

    use super::*;

    #[test]
    fn reads_never_span_segments() {
        let mut r = Chunked::new(&[b"abc", b"", b"de"], 2);
        let mut buf = [0u8; 8];
        let mut reads = Vec::new();
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            reads.push(buf[..n].to_vec());
        }
        assert_eq!(reads, [b"ab".to_vec(), b"c".to_vec(), b"de".to_vec()]);
    }
}
