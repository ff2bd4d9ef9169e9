//! Error types: what a handler's stream call can fail with, what ends a connection.

use core::fmt;

/// Why a read or write on a request's streams failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamError {
    /// The web server aborted the request (FCGI_ABORT_REQUEST, or it closed the connection
    /// before the request's input was complete).
    Aborted,
    /// The connection failed (I/O or protocol error); nothing more can be sent.
    ConnectionClosed,
    /// FCGI_STDIN ended before `CONTENT_LENGTH` bytes arrived.
    BodyTruncated { expected: u64, received: u64 },
    /// FCGI_DATA ended before `FCGI_DATA_LENGTH` bytes arrived (Filter role).
    DataTruncated { expected: u64, received: u64 },
    /// The connection was closed because it stalled longer than the server allows (the
    /// web server sent no body byte, or accepted no response byte, in time).
    TimedOut,
    /// FCGI_DATA was read before FCGI_STDIN reached its end (the spec sends STDIN first).
    DataBeforeStdin,
    /// The stream is longer than the room it was read into: the slice given to
    /// `read_into_slice`, or the limit given to `read_to_vec`.
    BodyTooLarge,
    /// `read_into_slice` was given an empty slice for a stream that is not empty.
    EmptyBuffer,
    /// A header name or value passed to a response helper is not valid in a CGI head
    /// (empty or non-token name, CR or LF in a value, or a bad status code).
    InvalidHeader,
    /// A response helper that sends a head was called after the head (or raw output) was
    /// written: a response has one head.
    HeadAlreadySent,
}

impl StreamError {
    /// The message as text around at most two numbers: `Display` writes it, and
    /// [`HandlerError`](crate::HandlerError) copies it without `core::fmt` (so firmware whose
    /// handlers only fail with a `StreamError` links no formatting code for it).
    pub(crate) fn text(&self) -> ErrorText {
        let (head, first, middle, second, tail) = match *self {
            Self::Aborted => ("request aborted by the web server", None, "", None, ""),
            Self::ConnectionClosed => ("connection to the web server is closed", None, "", None, ""),
            Self::BodyTruncated { expected, received } => (
                "request body truncated: CONTENT_LENGTH is ",
                Some(expected),
                " but stdin ended after ",
                Some(received),
                " bytes",
            ),
            Self::DataTruncated { expected, received } => (
                "filter data truncated: FCGI_DATA_LENGTH is ",
                Some(expected),
                " but FCGI_DATA ended after ",
                Some(received),
                " bytes",
            ),
            Self::TimedOut => ("connection to the web server timed out", None, "", None, ""),
            Self::DataBeforeStdin => {
                ("FCGI_DATA read before FCGI_STDIN was read to its end", None, "", None, "")
            }
            Self::BodyTooLarge => {
                ("request body is larger than the buffer or limit it was read into", None, "", None, "")
            }
            Self::EmptyBuffer => ("request body read into an empty buffer", None, "", None, ""),
            Self::InvalidHeader => ("invalid CGI response header or status", None, "", None, ""),
            Self::HeadAlreadySent => ("the response head was already sent", None, "", None, ""),
        };
        ErrorText { head, first, middle, second, tail }
    }
}

/// An error message as static text around at most two decimal numbers.
pub(crate) struct ErrorText {
    pub(crate) head: &'static str,
    pub(crate) first: Option<u64>,
    pub(crate) middle: &'static str,
    pub(crate) second: Option<u64>,
    pub(crate) tail: &'static str,
}

impl ErrorText {
    /// Calls `out` with each piece of the text in order.
    pub(crate) fn pieces(&self, mut out: impl FnMut(&str)) {
        let mut digits = [0u8; 20];
        out(self.head);
        if let Some(n) = self.first {
            out(decimal(n, &mut digits));
        }
        out(self.middle);
        if let Some(n) = self.second {
            out(decimal(n, &mut digits));
        }
        out(self.tail);
    }
}

/// `value` in decimal, written at the end of `buf`.
pub(crate) fn decimal(mut value: u64, buf: &mut [u8; 20]) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    core::str::from_utf8(&buf[i..]).unwrap_or("0")
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut result = Ok(());
        self.text().pieces(|piece| {
            if result.is_ok() {
                result = f.write_str(piece);
            }
        });
        result
    }
}

impl core::error::Error for StreamError {}

impl embedded_io::Error for StreamError {
    fn kind(&self) -> embedded_io::ErrorKind {
        use embedded_io::ErrorKind;
        match self {
            Self::Aborted => ErrorKind::ConnectionAborted,
            Self::ConnectionClosed => ErrorKind::ConnectionReset,
            Self::BodyTruncated { .. } | Self::DataTruncated { .. } => ErrorKind::InvalidData,
            Self::TimedOut => ErrorKind::TimedOut,
            Self::DataBeforeStdin | Self::InvalidHeader | Self::EmptyBuffer | Self::HeadAlreadySent => {
                ErrorKind::InvalidInput
            }
            Self::BodyTooLarge => ErrorKind::OutOfMemory,
        }
    }
}

/// A violation of FastCGI 1.0 by the web server; the connection is closed without a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A record header with a version other than 1.
    UnsupportedVersion(u8),
    /// FCGI_BEGIN_REQUEST with request id 0 (reserved for management records).
    BeginWithManagementId,
    /// FCGI_BEGIN_REQUEST whose content is not 8 bytes long.
    BeginBodyLength(u16),
    /// FCGI_BEGIN_REQUEST for a request id that is already active.
    DuplicateBegin(u16),
    /// FCGI_STDIN or FCGI_DATA before FCGI_PARAMS ended.
    StreamBeforeParams(u16),
    /// FCGI_PARAMS ended inside a name-value pair.
    TruncatedParams(u16),
    /// FCGI_DATA for a Filter before its FCGI_STDIN ended (the spec sends STDIN first).
    DataBeforeStdin(u16),
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnsupportedVersion(v) => write!(f, "record with unsupported FastCGI version {v}"),
            Self::BeginWithManagementId => f.write_str("FCGI_BEGIN_REQUEST with request id 0"),
            Self::BeginBodyLength(len) => {
                write!(f, "FCGI_BEGIN_REQUEST with {len}-byte content (must be 8)")
            }
            Self::DuplicateBegin(id) => {
                write!(f, "FCGI_BEGIN_REQUEST for request {id}, which is already active")
            }
            Self::StreamBeforeParams(id) => {
                write!(f, "request {id}: FCGI_STDIN or FCGI_DATA before FCGI_PARAMS ended")
            }
            Self::TruncatedParams(id) => {
                write!(f, "request {id}: FCGI_PARAMS ended inside a name-value pair")
            }
            Self::DataBeforeStdin(id) => {
                write!(f, "request {id}: FCGI_DATA before FCGI_STDIN ended")
            }
        }
    }
}

impl core::error::Error for ProtocolError {}

/// Why [`crate::serve_connection`] stopped serving a connection early.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectionError<E> {
    /// Reading from the web server failed.
    Read(E),
    /// Writing to the web server failed.
    Write(E),
    /// The transport accepted no bytes (a `write` returned 0).
    WriteZero,
    /// The web server broke the protocol.
    Protocol(ProtocolError),
    /// The transport gave up on a stalled connection ([`crate::ConnectionStatus::expire`]).
    TimedOut,
}

impl<E: fmt::Display> fmt::Display for ConnectionError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read(e) => write!(f, "reading from the web server failed: {e}"),
            Self::Write(e) => write!(f, "writing to the web server failed: {e}"),
            Self::WriteZero => f.write_str("the connection accepted no bytes"),
            Self::Protocol(e) => write!(f, "protocol error: {e}"),
            Self::TimedOut => f.write_str("the connection stalled and timed out"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> core::error::Error for ConnectionError<E> {}

#[cfg(test)]
mod test {
    use super::*;
    use core::fmt::Write;

    fn show(e: impl fmt::Display) -> heapless::String<160> {
        let mut s = heapless::String::new();
        write!(s, "{e}").unwrap();
        s
    }

    #[test]
    fn test_display_says_what_was_wrong() {
        assert_eq!(
            show(StreamError::BodyTruncated { expected: 10, received: 4 }),
            "request body truncated: CONTENT_LENGTH is 10 but stdin ended after 4 bytes"
        );
        assert_eq!(show(ProtocolError::UnsupportedVersion(2)), "record with unsupported FastCGI version 2");
        assert_eq!(
            show(ConnectionError::<StreamError>::Protocol(ProtocolError::DuplicateBegin(7))),
            "protocol error: FCGI_BEGIN_REQUEST for request 7, which is already active"
        );
    }
}
