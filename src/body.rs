//! Reading a whole request body into a `Vec<u8>`, bounded by a limit of the caller's.

use ember_fcgi_core::embedded_io_async::Read;
use ember_fcgi_core::{DataReader, Request, StreamError};

/// Bytes read per step while the length is not known in advance.
const STEP: usize = 8 * 1024;
/// The most reserved up front for an announced `CONTENT_LENGTH` (it may lie); a longer
/// body grows the `Vec` as it arrives.
const MAX_RESERVE: usize = 1 << 20;

/// `read_to_vec` on a request's body ([`Request`]) and a Filter's data ([`DataReader`]).
///
/// ```
/// use ember_fcgi::prelude::*;
///
/// let app = handler_fn(async |req: &mut Request<'_>, res: &mut Response<'_>| {
///     let body = req.read_to_vec(1 << 20).await?; // at most 1 MiB, else BodyTooLarge
///     res.send_response(200, content_type::TEXT, &body).await?;
///     Ok(())
/// });
/// # let _ = app;
/// ```
pub trait ReadToVec {
    /// Reads the rest of the stream into a new `Vec`: `Err(BodyTruncated)` if it ends short
    /// of `CONTENT_LENGTH`, `Err(BodyTooLarge)` if it is longer than `limit` bytes: at once
    /// when `CONTENT_LENGTH` says so (nothing is read), else once `limit + 1` bytes arrived;
    /// the rest of the body is then skipped (as [`Request::discard_body`]).
    fn read_to_vec(&mut self, limit: usize) -> impl Future<Output = Result<Vec<u8>, StreamError>>;
}

impl ReadToVec for Request<'_> {
    async fn read_to_vec(&mut self, limit: usize) -> Result<Vec<u8>, StreamError> {
        let declared = self.params().content_length().unwrap_or(0);
        let result = if declared > limit as u64 {
            Err(StreamError::BodyTooLarge)
        } else {
            read_to_vec(self, declared, limit).await
        };
        if result == Err(StreamError::BodyTooLarge) {
            self.discard_body();
        }
        result
    }
}

impl ReadToVec for DataReader<'_> {
    fn read_to_vec(&mut self, limit: usize) -> impl Future<Output = Result<Vec<u8>, StreamError>> {
        read_to_vec(self, 0, limit)
    }
}

/// Reads into a `Vec` sized for `expected` bytes (capped at `limit` and [`MAX_RESERVE`]),
/// growing it when the stream is longer.
async fn read_to_vec<R: Read<Error = StreamError>>(
    reader: &mut R,
    expected: u64,
    limit: usize,
) -> Result<Vec<u8>, StreamError> {
    let reserve = usize::try_from(expected).unwrap_or(usize::MAX).min(limit).min(MAX_RESERVE);
    // One byte more for the read that finds the end (or tells a body of exactly `limit`
    // bytes from a longer one) without growing the `Vec`.
    let mut body = Vec::with_capacity(reserve + 1);
    loop {
        let filled = body.len();
        let room = (limit - filled).saturating_add(1).min(STEP.max(body.capacity() - filled));
        body.resize(filled + room, 0);
        let n = reader.read(&mut body[filled..]).await?;
        body.truncate(filled + n);
        match n {
            0 => return Ok(body),
            _ if body.len() > limit => return Err(StreamError::BodyTooLarge),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ember_fcgi_core::embedded_io_async::ErrorType;

    /// A stream of `len` bytes `i as u8`, handed out at most `chunk` at a time.
    struct Source {
        len: usize,
        at: usize,
        chunk: usize,
    }

    impl ErrorType for Source {
        type Error = StreamError;
    }

    impl Read for Source {
        async fn read(&mut self, buf: &mut [u8]) -> Result<usize, StreamError> {
            let n = buf.len().min(self.chunk).min(self.len - self.at);
            for (i, b) in buf[..n].iter_mut().enumerate() {
                *b = (self.at + i) as u8;
            }
            self.at += n;
            Ok(n)
        }
    }

    fn read(len: usize, chunk: usize, expected: u64, limit: usize) -> Result<Vec<u8>, StreamError> {
        let mut source = Source { len, at: 0, chunk };
        futures_lite::future::block_on(read_to_vec(&mut source, expected, limit))
    }

    #[test]
    fn reads_whole_streams_up_to_the_limit() {
        let want: Vec<u8> = (0..20_000).map(|i| i as u8).collect();
        assert_eq!(read(20_000, 3_000, 20_000, 20_000).unwrap(), want, "exactly the limit");
        assert_eq!(read(20_000, 3_000, 0, 1 << 20).unwrap(), want, "length not known");
        assert_eq!(read(20_000, 20_000, 5, 1 << 20).unwrap(), want, "shorter length announced");
        assert_eq!(read(0, 10, 0, 0).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn a_stream_over_the_limit_is_too_large() {
        assert_eq!(read(20_001, 3_000, 20_001, 20_000), Err(StreamError::BodyTooLarge));
        assert_eq!(read(1, 1, 0, 0), Err(StreamError::BodyTooLarge));
    }

    #[test]
    fn reading_stops_one_byte_past_the_limit() {
        let mut source = Source { len: 1 << 20, at: 0, chunk: 1 << 20 };
        let got = futures_lite::future::block_on(read_to_vec(&mut source, 1 << 20, 100));
        assert_eq!(got, Err(StreamError::BodyTooLarge));
        assert_eq!(source.at, 101);
    }
}
