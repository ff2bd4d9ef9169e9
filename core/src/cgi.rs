//! CGI response helpers (RFC 3875 §6) on [`Response`]: the `Status:` line, headers,
//! bodies, streamed bodies and redirects. Everything is written straight into the output
//! stream: no intermediate buffer, no allocation.

use core::fmt;

use embedded_io_async::{Read, Write};

use crate::error::{StreamError, decimal};
use crate::handler::{Response, ResponseBody};

/// Common content types, so JSON and streaming responses need no string literals.
pub mod content_type {
    pub const TEXT: &str = "text/plain; charset=utf-8";
    pub const HTML: &str = "text/html; charset=utf-8";
    pub const JSON: &str = "application/json";
    pub const NDJSON: &str = "application/x-ndjson";
    pub const OCTET_STREAM: &str = "application/octet-stream";
}

/// The status codes with a name of their own, and the names (RFC 9110), as a table: a
/// search through it is smaller code than a `match` with an arm per code.
const REASONS: [(u16, &str); 31] = [
    (100, "Continue"),
    (200, "OK"),
    (201, "Created"),
    (202, "Accepted"),
    (204, "No Content"),
    (206, "Partial Content"),
    (301, "Moved Permanently"),
    (302, "Found"),
    (303, "See Other"),
    (304, "Not Modified"),
    (307, "Temporary Redirect"),
    (308, "Permanent Redirect"),
    (400, "Bad Request"),
    (401, "Unauthorized"),
    (403, "Forbidden"),
    (404, "Not Found"),
    (405, "Method Not Allowed"),
    (408, "Request Timeout"),
    (409, "Conflict"),
    (411, "Length Required"),
    (413, "Content Too Large"),
    (414, "URI Too Long"),
    (415, "Unsupported Media Type"),
    (422, "Unprocessable Content"),
    (429, "Too Many Requests"),
    (431, "Request Header Fields Too Large"),
    (500, "Internal Server Error"),
    (501, "Not Implemented"),
    (502, "Bad Gateway"),
    (503, "Service Unavailable"),
    (504, "Gateway Timeout"),
];

/// [`REASONS`] packed at compile time, which is all the image holds of it: each code and
/// where its name ends in [`REASON_TEXT`] (4 bytes an entry, where a `&str` alone is 8).
const REASON_ENDS: [(u16, u16); REASONS.len()] = {
    let mut ends = [(0, 0); REASONS.len()];
    let mut at = 0;
    let mut i = 0;
    while i < REASONS.len() {
        at += REASONS[i].1.len();
        ends[i] = (REASONS[i].0, at as u16);
        i += 1;
    }
    ends
};

/// The names of [`REASONS`], back to back.
const REASON_TEXT: &str = {
    const LEN: usize = REASON_ENDS[REASONS.len() - 1].1 as usize;
    const BYTES: [u8; LEN] = {
        let mut bytes = [0; LEN];
        let mut at = 0;
        let mut i = 0;
        while i < REASONS.len() {
            let name = REASONS[i].1.as_bytes();
            let mut j = 0;
            while j < name.len() {
                bytes[at] = name[j];
                at += 1;
                j += 1;
            }
            i += 1;
        }
        bytes
    };
    match core::str::from_utf8(&BYTES) {
        Ok(text) => text,
        Err(_) => panic!("the reason phrases are UTF-8"),
    }
};

/// The reason phrase sent after a status code (RFC 9110 names; a class name otherwise).
pub fn reason_phrase(status: u16) -> &'static str {
    let mut start = 0;
    for &(code, end) in &REASON_ENDS {
        let end = usize::from(end);
        if code == status {
            return REASON_TEXT.get(start..end).unwrap_or("");
        }
        start = end;
    }
    match status {
        100..=199 => "Informational",
        200..=299 => "Success",
        300..=399 => "Redirection",
        400..=499 => "Client Error",
        _ => "Server Error",
    }
}

/// The bytes of an HTTP token (RFC 9110 §5.6.2), one bit per ASCII byte.
const TOKEN_BITS: [u32; 4] = {
    let mut bits = [0u32; 4];
    let mut b = 0;
    while b < 128 {
        let c = b as u8;
        if c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            )
        {
            bits[b / 32] |= 1 << (b % 32);
        }
        b += 1;
    }
    bits
};

/// Whether `name` is an HTTP token (RFC 9110 §5.6.2).
fn is_token(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b < 128 && TOKEN_BITS[usize::from(b / 32)] >> (b % 32) & 1 == 1)
}

/// Headers [`Response::send_head`] writes in one step when the output buffer has room.
const HEAD_NOW_HEADERS: usize = 6;

/// Whether `value` can go into a header line (no CR, LF or NUL).
fn is_field_value(value: &[u8]) -> bool {
    !value.iter().any(|b| matches!(b, b'\r' | b'\n' | 0))
}

/// Whether `location` is a URI with a scheme (RFC 3986 §3.1): a client redirect.
fn has_scheme(location: &str) -> bool {
    match location.split_once(':') {
        Some((scheme, _)) => {
            scheme.as_bytes().first().is_some_and(u8::is_ascii_alphabetic)
                && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        }
        None => false,
    }
}

/// Whether `location` is a local path (abs-path, not `//`): a local redirect.
fn is_local_path(location: &str) -> bool {
    location.starts_with('/') && !location.starts_with("//")
}

/// The three digits of a status in 100..=999.
fn status_digits(status: u16) -> [u8; 3] {
    [b'0' + (status / 100) as u8, b'0' + (status / 10 % 10) as u8, b'0' + (status % 10) as u8]
}

/// Pieces of a head with `headers` headers: five of the status line, four per header, and
/// the empty line.
fn head_pieces(headers: usize) -> usize {
    5 + 4 * headers + 1
}

/// Piece `at` of a head (see [`head_pieces`]).
fn head_piece<'p, V: AsRef<[u8]>>(
    digits: &'p [u8; 3],
    status: u16,
    headers: &'p [(&str, V)],
    at: usize,
) -> &'p [u8] {
    match at {
        0 => b"Status: ",
        1 => digits,
        2 => b" ",
        3 => reason_phrase(status).as_bytes(),
        4 => b"\r\n",
        _ => match headers.get((at - 5) / 4) {
            Some((name, value)) => match (at - 5) % 4 {
                0 => name.as_bytes(),
                1 => b": ",
                2 => value.as_ref(),
                _ => b"\r\n",
            },
            None => b"\r\n",
        },
    }
}

/// Why copying a source into the response stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum CopyError<E> {
    /// Reading the source failed.
    Source(E),
    /// Writing the response failed.
    Response(StreamError),
}

impl<E: fmt::Display> fmt::Display for CopyError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Source(e) => write!(f, "reading the body source failed: {e}"),
            Self::Response(e) => write!(f, "writing the response failed: {e}"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> core::error::Error for CopyError<E> {}

impl<'a> Response<'a> {
    /// Writes the CGI head: `Status: NNN Reason`, each header, and the empty line, and
    /// returns the writer of the body. `InvalidHeader` (nothing written) for a status
    /// outside 100..=999 or a bad header; `HeadAlreadySent` if a head (or raw output) went
    /// out before.
    ///
    /// ```
    /// # use ember_fcgi_core::prelude::*;
    /// # async fn f(res: &mut Response<'_>) -> Result<(), StreamError> {
    /// let mut body = res.send_head(200, &[("Content-Type", content_type::TEXT)]).await?;
    /// body.write_all(b"streamed ").await?;
    /// body.write_all(b"body\n").await?;
    /// # Ok(()) }
    /// ```
    ///
    /// There is no way to write body bytes before the head:
    ///
    /// ```compile_fail,E0599
    /// # use ember_fcgi_core::prelude::*;
    /// # async fn f(res: &mut Response<'_>) -> Result<(), StreamError> {
    /// res.write_all(b"a body before its head").await?; // Response has no write_all
    /// # Ok(()) }
    /// ```
    pub fn send_head<'r>(
        &'r mut self,
        status: u16,
        headers: &[(&str, &str)],
    ) -> impl Future<Output = Result<ResponseBody<'r>, StreamError>> {
        self.head(status, headers)
    }

    /// [`send_head`](Self::send_head) with header values as bytes (HTTP allows non-UTF-8
    /// values, e.g. `http::HeaderValue`); a value with CR, LF or NUL is still `InvalidHeader`.
    ///
    /// ```
    /// # use ember_fcgi_core::prelude::*;
    /// # async fn f(res: &mut Response<'_>) -> Result<(), StreamError> {
    /// assert_eq!(
    ///     res.send_head_bytes(200, &[("X-Evil", b"a\r\nSet-Cookie: x")]).await.err(),
    ///     Some(StreamError::InvalidHeader)
    /// );
    /// res.send_head_bytes(200, &[("Content-Disposition", b"attachment; filename=\"caf\xe9.txt\"")]).await?;
    /// # Ok(()) }
    /// ```
    pub fn send_head_bytes<'r>(
        &'r mut self,
        status: u16,
        headers: &[(&str, &[u8])],
    ) -> impl Future<Output = Result<ResponseBody<'r>, StreamError>> {
        self.head(status, headers)
    }

    // Not an `async fn`: its future would hold the arguments twice (as passed, and moved
    // into the body); the block holds them once.
    #[allow(clippy::manual_async_fn)]
    fn head<'r, V: AsRef<[u8]>>(
        &'r mut self,
        status: u16,
        headers: &[(&str, V)],
    ) -> impl Future<Output = Result<ResponseBody<'r>, StreamError>> {
        async move {
            self.check_no_head()?;
            if !(100..=999).contains(&status)
                || !headers.iter().all(|(n, v)| is_token(n) && is_field_value(v.as_ref()))
            {
                return Err(StreamError::InvalidHeader);
            }
            let digits = status_digits(status);
            self.status = status;
            let mut out = self.stdout();
            if head_now(&mut out, &digits, status, headers, b"") {
                return Ok(out);
            }
            // Piece by piece, with one await for all of them.
            for at in 0..head_pieces(headers.len()) {
                out.write_all(head_piece(&digits, status, headers, at)).await?;
            }
            Ok(out)
        }
    }

    /// A complete response: head with `Content-Type` and `Content-Length`, then `body`.
    pub async fn send_response(
        &mut self,
        status: u16,
        content_type: &str,
        body: &[u8],
    ) -> Result<(), StreamError> {
        self.check_no_head()?;
        let mut digits = [0u8; 20];
        let length = decimal(body.len() as u64, &mut digits);
        let headers = [("Content-Type", content_type), ("Content-Length", length)];
        // Head and body in one step when they fit the output buffer now.
        // The names are tokens; only the caller's content type needs a look.
        if (100..=999).contains(&status)
            && is_field_value(content_type.as_bytes())
            && head_now(&mut self.stdout(), &status_digits(status), status, &headers, body)
        {
            self.status = status;
            return Ok(());
        }
        self.send_head(status, &headers).await?.write_all(body).await
    }

    /// A streamed response: the head, then each chunk (flushed after each when
    /// `flush_each`, so the client sees them as they are produced). No Content-Length.
    pub async fn send_chunks<I>(
        &mut self,
        status: u16,
        content_type: &str,
        chunks: I,
        flush_each: bool,
    ) -> Result<(), StreamError>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        let mut body = self.send_head(status, &[("Content-Type", content_type)]).await?;
        for chunk in chunks {
            body.write_all(chunk.as_ref()).await?;
            if flush_each {
                body.flush().await?;
            }
        }
        Ok(())
    }

    /// A redirect by RFC 3875 §6.2: a local path (`/x?y`) gives a local redirect (only a
    /// `Location` line, which the web server resolves); an absolute URI gives a client
    /// redirect (the web server answers 302). Anything else is `InvalidHeader`.
    pub async fn send_redirect(&mut self, location: &str) -> Result<(), StreamError> {
        self.check_no_head()?;
        if !is_field_value(location.as_bytes()) || !(is_local_path(location) || has_scheme(location)) {
            return Err(StreamError::InvalidHeader);
        }
        if has_scheme(location) {
            self.status = 302;
        }
        let mut out = self.stdout();
        for part in [b"Location: ".as_slice(), location.as_bytes(), b"\r\n\r\n"] {
            out.write_all(part).await?;
        }
        Ok(())
    }

    /// A client redirect with an explicit 3xx status and a short document (RFC 3875
    /// §6.2.4), e.g. 301 or 308. `location` must be an absolute URI.
    pub async fn send_redirect_with_status(
        &mut self,
        status: u16,
        location: &str,
    ) -> Result<(), StreamError> {
        if !(300..=399).contains(&status) || !is_field_value(location.as_bytes()) || !has_scheme(location) {
            return Err(StreamError::InvalidHeader);
        }
        let mut body =
            self.send_head(status, &[("Location", location), ("Content-Type", content_type::TEXT)]).await?;
        for part in [b"Redirecting to ".as_slice(), location.as_bytes(), b"\n"] {
            body.write_all(part).await?;
        }
        Ok(())
    }
}

impl ResponseBody<'_> {
    /// Copies an async source (a file, a socket, another stream) into the body until it
    /// ends; returns the bytes copied. Uses a 512-byte stack buffer.
    pub async fn copy_from<R: Read>(&mut self, source: &mut R) -> Result<u64, CopyError<R::Error>> {
        let mut buf = [0u8; 512];
        let mut total = 0u64;
        loop {
            let n = source.read(&mut buf).await.map_err(CopyError::Source)?;
            if n == 0 {
                return Ok(total);
            }
            self.write_all(&buf[..n]).await.map_err(CopyError::Response)?;
            total += n as u64;
        }
    }
}

/// The whole head in one step if the output buffer has room for it now (the common case;
/// saves a call per piece). Not async, so its slices never live in the future. `body`
/// (possibly empty) follows the head in the same step.
fn head_now<V: AsRef<[u8]>>(
    out: &mut ResponseBody<'_>,
    digits: &[u8; 3],
    status: u16,
    headers: &[(&str, V)],
    body: &[u8],
) -> bool {
    if headers.len() > HEAD_NOW_HEADERS {
        return false;
    }
    // Straight-line, not `head_piece` in a loop: this is every response's hot path.
    let mut parts: [&[u8]; 7 + 4 * HEAD_NOW_HEADERS] = [&[]; 7 + 4 * HEAD_NOW_HEADERS];
    parts[..5].copy_from_slice(&[b"Status: ", digits, b" ", reason_phrase(status).as_bytes(), b"\r\n"]);
    let mut n = 5;
    for (name, value) in headers {
        parts[n..n + 4].copy_from_slice(&[name.as_bytes(), b": ", value.as_ref(), b"\r\n"]);
        n += 4;
    }
    parts[n] = b"\r\n";
    parts[n + 1] = body;
    out.write_now(&parts[..n + 2])
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_validation() {
        assert!(
            is_token("Content-Type")
                && is_token("X-a_b")
                && !is_token("")
                && !is_token("Bad Name")
                && !is_token("a:b")
        );
        assert!(
            is_field_value(b"text/plain")
                && is_field_value(b"caf\xe9")
                && !is_field_value(b"a\r\nSet-Cookie: x")
                && !is_field_value(b"a\nb")
                && !is_field_value(b"a\0b")
        );
        assert!(
            has_scheme("https://example.com/")
                && has_scheme("mailto:x@y")
                && !has_scheme("/local")
                && !has_scheme("1x:y")
        );
        assert!(!has_scheme("no-colon"));
        assert!(is_local_path("/a?b=c") && !is_local_path("//evil.example/") && !is_local_path("rel"));
    }

    #[test]
    fn test_reason_and_digits() {
        assert_eq!(reason_phrase(404), "Not Found");
        assert_eq!(reason_phrase(299), "Success");
        assert_eq!(reason_phrase(599), "Server Error");
        let mut b = [0; 20];
        assert_eq!(decimal(0, &mut b), "0");
        assert_eq!(decimal(u64::MAX, &mut b), "18446744073709551615");
    }
}
