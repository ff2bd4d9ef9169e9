//! [`HandlerError`]: what a handler returns when it fails, so the application's own errors
//! (a database error, `io::Error`, [`StreamError`], [`CopyError`](crate::CopyError)) flow
//! out of a handler with `?`, and any text with [`HandlerError::msg`], without an allocator.

use core::any::Any;
use core::fmt;

use crate::error::StreamError;

/// Bytes of an error's text a [`HandlerError`] keeps (longer text is cut at a character
/// boundary and ends with `...`).
pub const HANDLER_ERROR_CAPACITY: usize = 120;

/// A handler's failure: the error's text in a fixed buffer, and whether it was only the
/// web server going away ([`StreamError::Aborted`] or [`StreamError::ConnectionClosed`]).
///
/// Any `E: core::error::Error + 'static` converts into it with `?`, and
/// [`HandlerError::msg`] makes one from any text. When a handler returns one, the driver
/// answers `Status: 500` if nothing was written yet (else the response just ends), writes
/// the text to FCGI_STDERR (nginx logs it) and sets app status 1; the std servers count it
/// in `handler_errors`. An abort is not a failure: nothing is logged or counted.
///
/// Like `anyhow::Error`, it is `Display` and `Debug` but not itself an `Error` (that would
/// clash with the blanket `From` through `impl From<T> for T`): where an
/// `&dyn core::error::Error` is wanted, use [`as_ref`](AsRef::as_ref).
///
/// ```
/// use core::fmt;
/// use ember_fcgi_core::prelude::*;
///
/// #[derive(Debug)]
/// struct NoSuchTable(&'static str);
///
/// impl fmt::Display for NoSuchTable {
///     fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
///         write!(f, "no such table: {}", self.0)
///     }
/// }
///
/// impl core::error::Error for NoSuchTable {}
///
/// fn lookup(table: &'static str) -> Result<&'static [u8], NoSuchTable> {
///     Err(NoSuchTable(table))
/// }
///
/// struct App;
///
/// impl Handler for App {
///     async fn handle(&self, req: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), HandlerError> {
///         if req.params().request_uri().is_none() {
///             return Err(HandlerError::msg("no REQUEST_URI")); // any text
///         }
///         let row = lookup("notes")?; // the application's error
///         res.send_response(200, content_type::TEXT, row).await?; // a StreamError
///         Ok(())
///     }
/// }
///
/// let e = HandlerError::from(NoSuchTable("notes"));
/// assert_eq!(e.to_string(), "no such table: notes");
/// assert!(!e.is_abort());
/// assert!(HandlerError::from(StreamError::Aborted).is_abort());
/// let source: &dyn core::error::Error = e.as_ref();
/// assert_eq!(source.to_string(), "no such table: notes");
/// ```
#[derive(Clone)]
pub struct HandlerError(Failure);

/// What a [`HandlerError`] holds; it is the `Error` its `as_ref` lends.
#[derive(Clone)]
struct Failure {
    text: [u8; HANDLER_ERROR_CAPACITY],
    len: u8,
    abort: bool,
}

impl HandlerError {
    /// An error with `message`'s text: a `&str`, a `String`, or any `Display` value (also
    /// one that is not `'static` or not an `Error`).
    pub fn msg<M: fmt::Display + ?Sized>(message: &M) -> Self {
        Self::from_display(&message)
    }

    /// The text of `error`, formatted once here (one copy of this code for every type).
    fn from_display(error: &dyn fmt::Display) -> Self {
        let mut text = Text::new();
        // `Text` never fails; a `Display` impl that fails leaves what it wrote so far.
        let _ = fmt::write(&mut text, format_args!("{error}"));
        text.finish(false)
    }

    /// A [`StreamError`]'s text, copied without `core::fmt`.
    fn from_stream(error: StreamError) -> Self {
        let mut text = Text::new();
        error.text().pieces(|piece| text.push(piece));
        text.finish(matches!(error, StreamError::Aborted | StreamError::ConnectionClosed))
    }

    /// The error's text (at most [`HANDLER_ERROR_CAPACITY`] bytes).
    pub fn message(&self) -> &str {
        self.0.message()
    }

    /// Whether it was the web server aborting the request or the connection closing: not
    /// the application's failure, so it is neither logged nor counted.
    pub fn is_abort(&self) -> bool {
        self.0.abort
    }
}

impl Failure {
    fn message(&self) -> &str {
        // Only whole characters are ever copied in, so this never fails.
        core::str::from_utf8(&self.text[..usize::from(self.len)]).unwrap_or("")
    }
}

impl<E: core::error::Error + 'static> From<E> for HandlerError {
    fn from(error: E) -> Self {
        let any: &dyn Any = &error;
        match any.downcast_ref::<StreamError>() {
            Some(stream) => Self::from_stream(*stream),
            None => Self::from_display(&error),
        }
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerError")
            .field("message", &self.message())
            .field("abort", &self.0.abort)
            .finish()
    }
}

impl AsRef<dyn core::error::Error + Send + Sync + 'static> for HandlerError {
    fn as_ref(&self) -> &(dyn core::error::Error + Send + Sync + 'static) {
        &self.0
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("HandlerError").field(&self.message()).finish()
    }
}

impl core::error::Error for Failure {}

/// A writer into a fixed buffer that keeps whole characters and notes a cut.
struct Text {
    buf: [u8; HANDLER_ERROR_CAPACITY],
    len: usize,
    cut: bool,
}

impl Text {
    fn new() -> Self {
        Self { buf: [0; HANDLER_ERROR_CAPACITY], len: 0, cut: false }
    }

    /// Appends what fits of `s`, whole characters only.
    fn push(&mut self, s: &str) {
        if self.cut {
            return;
        }
        let room = HANDLER_ERROR_CAPACITY - self.len;
        let mut take = s.len().min(room);
        while !s.is_char_boundary(take) {
            take -= 1;
        }
        self.buf[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        if take < s.len() {
            self.cut = true;
        }
    }

    /// The error, its text ending with `...` if it was cut.
    fn finish(mut self, abort: bool) -> HandlerError {
        if self.cut {
            // Replaces whole characters as needed.
            while self.len + 3 > HANDLER_ERROR_CAPACITY || !self.at_boundary() {
                self.len -= 1;
            }
            self.buf[self.len..self.len + 3].copy_from_slice(b"...");
            self.len += 3;
        }
        HandlerError(Failure { text: self.buf, len: self.len as u8, abort })
    }

    fn at_boundary(&self) -> bool {
        self.len == 0 || (self.buf[self.len] & 0xC0) != 0x80
    }
}

impl fmt::Write for Text {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push(s);
        Ok(())
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::cgi::CopyError;

    #[test]
    fn test_keeps_text_and_abort() {
        assert_eq!(HandlerError::msg("disk full").message(), "disk full");
        let e = HandlerError::from(StreamError::BodyTruncated { expected: 9, received: 2 });
        assert!(!e.is_abort());
        assert_eq!(e.message(), "request body truncated: CONTENT_LENGTH is 9 but stdin ended after 2 bytes");
        assert!(HandlerError::from(StreamError::ConnectionClosed).is_abort());
        let copy: CopyError<StreamError> = CopyError::Source(StreamError::DataBeforeStdin);
        assert_eq!(
            HandlerError::from(copy).message(),
            "reading the body source failed: FCGI_DATA read before FCGI_STDIN was read to its end"
        );
    }

    #[test]
    fn test_long_text_is_cut_at_a_char_boundary() {
        let long = "é".repeat(100); // 200 bytes
        let e = HandlerError::msg(long.as_str());
        let msg = e.message();
        assert!(msg.ends_with("...") && msg.len() <= HANDLER_ERROR_CAPACITY, "{msg}");
        assert_eq!(msg.trim_end_matches("...").chars().count(), (HANDLER_ERROR_CAPACITY - 3) / 2);
        let exact = "x".repeat(HANDLER_ERROR_CAPACITY);
        assert_eq!(HandlerError::msg(&exact).message(), exact);
    }
}
