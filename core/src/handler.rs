//! The one handler trait, and the request and response a handler works with.
//!
//! A handler is straight-line async code, like the seeds' `handle()`: read params, read the
//! body from [`Request`] (an `embedded_io_async::Read`), write the response to
//! [`Response`] (an `embedded_io_async::Write`). The same handler runs on every transport.

use core::cell::{Ref, RefCell};
use core::future::{Future, poll_fn};
use core::pin::Pin;
use core::task::{Context, Poll};

use embedded_io_async::{ErrorType, Read, Write};

use crate::conn::{ConnState, InStream, OutStream, SlotView, state, state_mut};
use crate::error::StreamError;
use crate::handler_error::HandlerError;
use crate::params::{Arena, Params};
use crate::wire::Role;

/// Serves one request. Return `Ok(())` when the response is complete. An `Err` (any error
/// type converts into [`HandlerError`] with `?`) ends the request with app status 1 and its
/// text on FCGI_STDERR, answered with a CGI 500 if nothing was written yet; an abort by the
/// web server is not logged. A closure or `async fn` is a handler through [`handler_fn`](crate::handler_fn).
///
/// ```
/// use ember_fcgi_core::prelude::*;
///
/// struct Hello;
///
/// impl Handler for Hello {
///     async fn handle(&self, req: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), HandlerError> {
///         let name = req.params().get_str("QUERY_STRING").unwrap_or("");
///         let mut body = res.send_head(200, &[("Content-Type", "text/plain")]).await?;
///         body.write_all(b"Hello ").await?;
///         body.write_all(name.as_bytes()).await?;
///         Ok(())
///     }
/// }
/// ```
pub trait Handler {
    async fn handle(
        &self,
        request: &mut Request<'_>,
        response: &mut Response<'_>,
    ) -> Result<(), HandlerError>;
}

impl<H: Handler + ?Sized> Handler for &H {
    async fn handle(
        &self,
        request: &mut Request<'_>,
        response: &mut Response<'_>,
    ) -> Result<(), HandlerError> {
        (**self).handle(request, response).await
    }
}

/// What handlers need from the connection; object-safe so `Request` and `Response` carry
/// one lifetime and no generics.
pub(crate) trait Conn {
    fn poll_read(
        &self,
        slot: usize,
        stream: InStream,
        cx: &Context<'_>,
        buf: &mut [u8],
    ) -> Poll<Result<usize, StreamError>>;
    fn poll_write(
        &self,
        slot: usize,
        stream: OutStream,
        cx: &Context<'_>,
        data: &[u8],
    ) -> Poll<Result<usize, StreamError>>;
    fn poll_flush(&self, slot: usize, cx: &Context<'_>) -> Poll<Result<(), StreamError>>;
    fn write_now(&self, slot: usize, stream: OutStream, parts: &[&[u8]]) -> bool;
    fn view(&self, slot: usize) -> SlotView;
    /// `view(slot).aborted` without the rest of the view (asked once or twice per request).
    fn aborted(&self, slot: usize) -> bool;
    fn set_app_status(&self, slot: usize, status: u32);
    fn discard_body(&self, slot: usize);
    fn poll_gone(&self, slot: usize, cx: &Context<'_>) -> Poll<()>;
}

impl Conn for RefCell<ConnState<'_, '_>> {
    fn poll_read(
        &self,
        slot: usize,
        stream: InStream,
        cx: &Context<'_>,
        buf: &mut [u8],
    ) -> Poll<Result<usize, StreamError>> {
        state_mut(self).poll_read(slot, stream, cx, buf)
    }
    fn poll_write(
        &self,
        slot: usize,
        stream: OutStream,
        cx: &Context<'_>,
        data: &[u8],
    ) -> Poll<Result<usize, StreamError>> {
        state_mut(self).poll_write(slot, stream, cx, data)
    }
    fn poll_flush(&self, slot: usize, cx: &Context<'_>) -> Poll<Result<(), StreamError>> {
        state_mut(self).poll_flush(slot, cx)
    }
    fn write_now(&self, slot: usize, stream: OutStream, parts: &[&[u8]]) -> bool {
        state_mut(self).write_now(slot, stream, parts)
    }
    fn view(&self, slot: usize) -> SlotView {
        state(self).view(slot)
    }
    fn aborted(&self, slot: usize) -> bool {
        self.borrow().aborted(slot)
    }
    fn set_app_status(&self, slot: usize, status: u32) {
        state_mut(self).set_app_status(slot, status);
    }
    fn discard_body(&self, slot: usize) {
        state_mut(self).discard_body(slot);
    }
    fn poll_gone(&self, slot: usize, cx: &Context<'_>) -> Poll<()> {
        state_mut(self).poll_gone(slot, cx)
    }
}

/// The request being served: role, params, and the body (FCGI_STDIN) as a reader.
pub struct Request<'a> {
    conn: &'a dyn Conn,
    slot: usize,
    params: Ref<'a, Arena<'a>>,
}

impl<'a> Request<'a> {
    pub(crate) fn new(conn: &'a dyn Conn, slot: usize, params: Ref<'a, Arena<'a>>) -> Self {
        Self { conn, slot, params }
    }

    /// The params (CGI variables) of the request.
    pub fn params(&self) -> Params<'_> {
        self.params.params()
    }

    /// The params behind a handle that does not borrow the request: for a wrapper that
    /// logs the request while the handler it runs holds `&mut Request`. Drop it before the
    /// wrapper returns (the slot reuses the params for its next request).
    pub fn params_handle(&self) -> ParamsHandle<'a> {
        ParamsHandle(Ref::clone(&self.params))
    }

    /// The role the web server asked for.
    pub fn role(&self) -> Role {
        self.conn.view(self.slot).role
    }

    /// The FastCGI request id (1 with nginx).
    pub fn request_id(&self) -> u16 {
        self.conn.view(self.slot).request_id
    }

    /// Whether the web server keeps the connection open after this request.
    pub fn keep_conn(&self) -> bool {
        self.conn.view(self.slot).keep_conn
    }

    /// Whether the web server aborted the request or the connection failed.
    pub fn aborted(&self) -> bool {
        self.conn.aborted(self.slot)
    }

    /// Body bytes read so far.
    pub fn stdin_received(&self) -> u64 {
        self.conn.view(self.slot).stdin_received
    }

    /// The FCGI_DATA stream (Filter role); empty for other roles. Read FCGI_STDIN to its
    /// end first: the web server sends the two streams in that order.
    pub fn data(&mut self) -> DataReader<'_> {
        DataReader { conn: self.conn, slot: self.slot }
    }

    /// Reads the rest of the body into the slice or array `buf` (never a `Vec`, see
    /// [`BodyBuffer`]) and returns how many bytes it holds; `BodyTooLarge` if the body does
    /// not fit, `EmptyBuffer` if `buf` is empty and the body is not.
    pub async fn read_into_slice<B: BodyBuffer + ?Sized>(
        &mut self,
        buf: &mut B,
    ) -> Result<usize, StreamError> {
        read_into_slice(self, buf.as_mut_bytes()).await
    }

    /// Says the handler will not read the body (FCGI_STDIN, and FCGI_DATA for a Filter):
    /// what is buffered is dropped, the rest is skipped as it arrives, and reads return
    /// `Ok(0)`. Without it, an unread body holds back the connection's input once the
    /// request's window is full.
    pub fn discard_body(&mut self) {
        self.conn.discard_body(self.slot);
    }

    /// Completes when the request goes away: the web server aborted it, closed the
    /// connection (EOF), or the connection failed or timed out. Await it beside long work
    /// (a long poll, a stream) to stop when the client has left.
    pub async fn gone(&self) {
        poll_fn(|cx| self.conn.poll_gone(self.slot, cx)).await
    }
}

/// The params of a request, held apart from it ([`Request::params_handle`]).
pub struct ParamsHandle<'a>(Ref<'a, Arena<'a>>);

impl ParamsHandle<'_> {
    /// The params (CGI variables) of the request.
    pub fn params(&self) -> Params<'_> {
        self.0.params()
    }
}

impl core::fmt::Debug for ParamsHandle<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ParamsHandle").finish_non_exhaustive()
    }
}

impl ErrorType for Request<'_> {
    type Error = StreamError;
}

impl Read for Request<'_> {
    /// Reads body bytes; `Ok(0)` at the end, `BodyTruncated` if it ended short of
    /// `CONTENT_LENGTH`. Bytes beyond `CONTENT_LENGTH` are passed through.
    fn read(&mut self, buf: &mut [u8]) -> impl Future<Output = Result<usize, StreamError>> {
        poll_fn(move |cx| self.conn.poll_read(self.slot, InStream::Stdin, cx, buf))
    }
}

/// Reader of the FCGI_DATA stream of a Filter request.
pub struct DataReader<'a> {
    conn: &'a dyn Conn,
    slot: usize,
}

impl DataReader<'_> {
    /// Data bytes read so far.
    pub fn received(&self) -> u64 {
        self.conn.view(self.slot).data_received
    }

    /// Reads the rest of the data stream into the slice or array `buf`, as
    /// [`Request::read_into_slice`] does.
    pub async fn read_into_slice<B: BodyBuffer + ?Sized>(
        &mut self,
        buf: &mut B,
    ) -> Result<usize, StreamError> {
        read_into_slice(self, buf.as_mut_bytes()).await
    }
}

impl ErrorType for DataReader<'_> {
    type Error = StreamError;
}

impl Read for DataReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> impl Future<Output = Result<usize, StreamError>> {
        poll_fn(move |cx| self.conn.poll_read(self.slot, InStream::Data, cx, buf))
    }
}

/// Room a whole body is read into: a byte slice or array of the caller's. A `Vec<u8>` is
/// not one on purpose: `&mut Vec<u8>` would coerce to a slice of its length, usually 0.
///
/// ```
/// # use ember_fcgi_core::prelude::*;
/// async fn read(req: &mut Request<'_>) -> Result<(), StreamError> {
///     let mut form = [0u8; 1024];
///     let n = req.read_into_slice(&mut form).await?; // an array, or `&mut buf[..]`
///     let _form = &form[..n];
///     Ok(())
/// }
/// ```
///
/// ```compile_fail,E0277
/// # use ember_fcgi_core::prelude::*;
/// async fn read(req: &mut Request<'_>) -> Result<usize, StreamError> {
///     let mut body = Vec::new();
///     req.read_into_slice(&mut body).await // a Vec is not a BodyBuffer
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "a body is read into a byte slice or array, not into `{Self}`",
    note = "on std, `read_to_vec(limit)` (ember_fcgi::prelude) reads the whole body into a new `Vec<u8>`"
)]
pub trait BodyBuffer {
    /// The bytes to fill.
    fn as_mut_bytes(&mut self) -> &mut [u8];
}

impl BodyBuffer for [u8] {
    fn as_mut_bytes(&mut self) -> &mut [u8] {
        self
    }
}

impl<const N: usize> BodyBuffer for [u8; N] {
    fn as_mut_bytes(&mut self) -> &mut [u8] {
        self
    }
}

async fn read_into_slice<R: Read<Error = StreamError>>(
    reader: &mut R,
    buf: &mut [u8],
) -> Result<usize, StreamError> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]).await? {
            0 => return Ok(filled),
            n => filled += n,
        }
    }
    let mut probe = [0u8; 1];
    match reader.read(&mut probe).await? {
        0 => Ok(filled),
        _ if buf.is_empty() => Err(StreamError::EmptyBuffer),
        _ => Err(StreamError::BodyTooLarge),
    }
}

/// The response: the CGI helpers of [`crate::cgi`] that send a head (and maybe a body),
/// FCGI_STDERR via [`Response::stderr`], and the app status. Body bytes are written through
/// the [`ResponseBody`] that [`send_head`](Response::send_head) returns, so none can
/// precede the head, and a second head is refused (`HeadAlreadySent`). A handler that
/// writes its own CGI head says so with [`raw_output`](Response::raw_output).
pub struct Response<'a> {
    conn: &'a dyn Conn,
    slot: usize,
    /// The status of the head, once a typed head was written (0: none, or raw output).
    pub(crate) status: u16,
}

impl<'a> Response<'a> {
    pub(crate) fn new(conn: &'a dyn Conn, slot: usize) -> Self {
        Self { conn, slot, status: 0 }
    }

    /// The status of the head written, for logs: what a typed head sent (`send_head`,
    /// `send_response`, ...; 302 for a client redirect), or what [`note_status`]
    /// recorded; `None` before a head, for raw output and for a local redirect (the core
    /// does not parse what `raw_output` writes).
    ///
    /// [`note_status`]: Self::note_status
    pub fn status(&self) -> Option<u16> {
        (self.status != 0).then_some(self.status)
    }

    /// Records the status of a head written through [`raw_output`](Self::raw_output), so
    /// [`status`](Self::status) (and a server's access log) knows it. Writes nothing.
    pub fn note_status(&mut self, status: u16) {
        self.status = status;
    }

    /// The error stream (logged by nginx as "FastCGI sent in stderr").
    pub fn stderr(&mut self) -> Stderr<'_> {
        Stderr { conn: self.conn, slot: self.slot }
    }

    /// Whether the web server aborted the request or the connection failed.
    pub fn aborted(&self) -> bool {
        self.conn.aborted(self.slot)
    }

    /// Sets `appStatus` of END_REQUEST (the CGI exit status; default 0).
    pub fn set_app_status(&mut self, status: u32) {
        self.conn.set_app_status(self.slot, status);
    }

    /// The `appStatus` END_REQUEST will carry.
    pub(crate) fn app_status(&self) -> u32 {
        self.conn.view(self.slot).app_status
    }

    /// Bytes written to FCGI_STDOUT so far (head and body).
    pub fn bytes_written(&self) -> u64 {
        self.conn.view(self.slot).stdout_written
    }

    /// FCGI_STDOUT as it is, for a handler that writes the CGI head itself (`Status:`,
    /// headers, an empty line, then the body): nothing checks what it writes. The typed
    /// helpers ([`send_head`](Self::send_head), [`send_response`](Self::send_response), ...)
    /// are the way that cannot produce a response the web server rejects.
    pub fn raw_output(&mut self) -> ResponseBody<'_> {
        self.stdout()
    }

    /// FCGI_STDOUT, for the helpers once they have checked or written the head.
    pub(crate) fn stdout(&mut self) -> ResponseBody<'_> {
        ResponseBody { conn: self.conn, slot: self.slot }
    }

    /// `Err(HeadAlreadySent)` once anything went to FCGI_STDOUT.
    pub(crate) fn check_no_head(&self) -> Result<(), StreamError> {
        if self.bytes_written() == 0 { Ok(()) } else { Err(StreamError::HeadAlreadySent) }
    }
}

/// The body of a response: FCGI_STDOUT as a writer, from [`Response::send_head`] (after
/// the head) or [`Response::raw_output`]. Writes are buffered and cut into records by the
/// engine; `flush` sends what is buffered.
pub struct ResponseBody<'a> {
    conn: &'a dyn Conn,
    slot: usize,
}

impl ResponseBody<'_> {
    /// Writes all of `data` to FCGI_STDOUT: `Write::write_all`, as one future type whose
    /// poll every call shares (the trait's default is inlined into each caller's future).
    pub fn write_all<'w>(&'w mut self, data: &'w [u8]) -> WriteAll<'w> {
        WriteAll { conn: self.conn, slot: self.slot, stream: OutStream::Stdout, data }
    }

    /// The error stream (logged by nginx as "FastCGI sent in stderr").
    pub fn stderr(&mut self) -> Stderr<'_> {
        Stderr { conn: self.conn, slot: self.slot }
    }

    /// Bytes written to FCGI_STDOUT so far (head and body).
    pub fn bytes_written(&self) -> u64 {
        self.conn.view(self.slot).stdout_written
    }

    /// Writes all of `parts` to FCGI_STDOUT now if the output buffer has room for them;
    /// false (nothing written) otherwise: then write them with `write_all`.
    pub(crate) fn write_now(&mut self, parts: &[&[u8]]) -> bool {
        self.conn.write_now(self.slot, OutStream::Stdout, parts)
    }
}

impl ErrorType for ResponseBody<'_> {
    type Error = StreamError;
}

impl Write for ResponseBody<'_> {
    fn write(&mut self, buf: &[u8]) -> impl Future<Output = Result<usize, StreamError>> {
        poll_fn(move |cx| self.conn.poll_write(self.slot, OutStream::Stdout, cx, buf))
    }

    fn flush(&mut self) -> impl Future<Output = Result<(), StreamError>> {
        poll_fn(move |cx| self.conn.poll_flush(self.slot, cx))
    }
}

impl core::fmt::Debug for ResponseBody<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ResponseBody").field("slot", &self.slot).finish_non_exhaustive()
    }
}

/// Writer of the FCGI_STDERR stream.
pub struct Stderr<'a> {
    conn: &'a dyn Conn,
    slot: usize,
}

impl Stderr<'_> {
    /// Writes all of `data` to FCGI_STDERR (see [`ResponseBody::write_all`]).
    pub fn write_all<'w>(&'w mut self, data: &'w [u8]) -> WriteAll<'w> {
        WriteAll { conn: self.conn, slot: self.slot, stream: OutStream::Stderr, data }
    }
}

/// The future of [`ResponseBody::write_all`] and [`Stderr::write_all`]: completes when all
/// of its bytes are in the output buffer.
#[must_use = "futures do nothing unless awaited"]
pub struct WriteAll<'a> {
    conn: &'a dyn Conn,
    slot: usize,
    stream: OutStream,
    data: &'a [u8],
}

impl Future for WriteAll<'_> {
    type Output = Result<(), StreamError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        while !self.data.is_empty() {
            match self.conn.poll_write(self.slot, self.stream, cx, self.data) {
                Poll::Ready(Ok(n)) if n > 0 => self.data = &self.data[n.min(self.data.len())..],
                // A non-empty write takes a byte or waits; 0 would mean no progress ever.
                Poll::Ready(Ok(_)) => return Poll::Ready(Err(StreamError::ConnectionClosed)),
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl core::fmt::Debug for WriteAll<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("WriteAll").field("stream", &self.stream).field("left", &self.data.len()).finish()
    }
}

impl ErrorType for Stderr<'_> {
    type Error = StreamError;
}

impl Write for Stderr<'_> {
    fn write(&mut self, buf: &[u8]) -> impl Future<Output = Result<usize, StreamError>> {
        poll_fn(move |cx| self.conn.poll_write(self.slot, OutStream::Stderr, cx, buf))
    }

    fn flush(&mut self) -> impl Future<Output = Result<(), StreamError>> {
        poll_fn(move |cx| self.conn.poll_flush(self.slot, cx))
    }
}

macro_rules! debug_by_slot {
    ($($ty:ident),+) => {$(
        impl core::fmt::Debug for $ty<'_> {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                let view = self.conn.view(self.slot);
                f.debug_struct(stringify!($ty))
                    .field("request_id", &view.request_id)
                    .field("role", &view.role)
                    .field("aborted", &view.aborted)
                    .finish_non_exhaustive()
            }
        }
    )+};
}

debug_by_slot!(Request, DataReader, Response, Stderr);
