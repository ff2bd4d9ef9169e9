//! Any [`Service`] (`tower_service`) over `http` types as a [`Handler`] (feature
//! `tower`): an axum `Router`, a `tower::ServiceBuilder` stack, or a service of your own,
//! served unchanged on every server of this crate.
//!
//! ```no_run
//! use std::convert::Infallible;
//! use std::future::{Ready, ready};
//! use std::task::{Context, Poll};
//!
//! use ember_fcgi::http;
//! use ember_fcgi::server::{Limits, Listen};
//! use ember_fcgi::tower::{CgiVars, RemoteAddr, RequestBody, Service, ServiceHandler};
//!
//! /// Greets the client by address; cloned for each request.
//! #[derive(Clone)]
//! struct Hello;
//!
//! impl Service<http::Request<RequestBody>> for Hello {
//!     type Response = http::Response<String>;
//!     type Error = Infallible;
//!     type Future = Ready<Result<Self::Response, Infallible>>;
//!
//!     fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
//!         Poll::Ready(Ok(()))
//!     }
//!
//!     fn call(&mut self, req: http::Request<RequestBody>) -> Self::Future {
//!         let ip = req.extensions().get::<RemoteAddr>().map(|a| a.0.ip().to_string());
//!         let script = req.extensions().get::<CgiVars>().and_then(|v| v.get_str("SCRIPT_NAME"));
//!         let text = format!("Hello, {} ({} {:?})\n", ip.as_deref().unwrap_or("?"), req.uri(), script);
//!         ready(Ok(http::Response::new(text)))
//!     }
//! }
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let listen: Listen = "127.0.0.1:9000".parse()?;
//!     ember_fcgi::smol::Server::bind(&listen, ServiceHandler::new(Hello), Limits::default())?.run()?;
//!     Ok(())
//! }
//! ```
//!
//! An axum app is served the same way (axum's default `tokio` feature is not needed: a
//! `Router` runs on any executor as long as its handlers do no tokio I/O; on the smol
//! server they may await smol's):
//!
//! ```no_run
//! use axum::Router;
//! use axum::extract::{Extension, Path};
//! use axum::routing::get;
//! use ember_fcgi::server::{Limits, Listen};
//! use ember_fcgi::tower::{RemoteAddr, ServiceHandler};
//!
//! async fn hello(Path(name): Path<String>, Extension(client): Extension<RemoteAddr>) -> String {
//!     format!("Hello, {name}, from {client}\n")
//! }
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let app = Router::new().route("/hello/{name}", get(hello));
//!     let listen: Listen = "127.0.0.1:9000".parse()?;
//!     ember_fcgi::smol::Server::bind(&listen, ServiceHandler::new(app), Limits::default())?.run()?;
//!     Ok(())
//! }
//! ```
//!
//! ## The request
//! - Method, URI, version and headers come from the CGI variables through
//!   [`RequestExt::http_parts`](crate::http::RequestExt) (the mapping is in
//!   the [`http`](crate::http) module's docs); variables that do not make a valid HTTP
//!   request are answered 400, with the reason on FCGI_STDERR.
//! - The extensions hold every CGI variable as [`CgiVars`] (`SCRIPT_NAME`, `PATH_INFO`,
//!   `REMOTE_ADDR`, `HTTPS`, ...) and, when `REMOTE_ADDR` is an IP address, the client's
//!   address as [`RemoteAddr`]; with axum, `Extension<CgiVars>` and
//!   `Extension<RemoteAddr>` extract them.
//! - The body is a [`RequestBody`]: `Send + 'static`, streamed from FCGI_STDIN as the
//!   service polls it. The handler moves body bytes from the connection into it one chunk
//!   (at most 16 KiB) at a time and reads the next only once the service took the last,
//!   so a service that does not read its body costs one chunk beyond the connection's own
//!   memory (its window and input buffer then fill, and the connection's backpressure
//!   reaches the web server as with any handler that does not read). A body
//!   that ends short of `CONTENT_LENGTH` or an aborted request ends it with an error frame
//!   ([`StreamError`]); its `size_hint` is exact when `CONTENT_LENGTH` is set. A body the
//!   service drops unread is skipped ([`Request::discard_body`]).
//!
//! ## The service
//! Cloned for each request (an axum `Router` is an `Arc` inside), awaited until
//! `poll_ready` says it is ready, then called. An error from it, or an error frame its
//! response body yields before anything was written, ends the request with a CGI 500 and
//! the error's text on FCGI_STDERR (through [`HandlerError`]); an error frame later ends
//! the response where it stands, with the text on FCGI_STDERR. When the web server goes
//! away ([`Request::gone`]: it aborted the request, or the connection closed or failed),
//! the service's future and its response body are dropped at once. A panic is caught by
//! the server, as for any handler.
//!
//! ## The response
//! Its head is written with [`ResponseExt::send_http_head`](crate::http::ResponseExt):
//! `Status:`, then every header; `Transfer-Encoding` is dropped (a CGI response has none:
//! the web server frames the body), and `Content-Length` is added when the body's
//! `size_hint` is exact and the response has none (not for `HEAD` requests, 1xx, 204 or
//! 304). Data frames are written as the body yields them, and the output is flushed
//! whenever the body has nothing more ready, so server-sent events reach the client as they
//! are produced; trailers are dropped.

use core::fmt::{self, Display};
use core::future::poll_fn;
use core::pin::pin;
use core::task::{Context, Poll, Waker};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ::bytes::Buf;
use ::http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use ::http::{Extensions, Method, StatusCode};
use ::http_body::{Frame, SizeHint};
use ember_fcgi_core::embedded_io_async::{Read, Write};

use crate::http::bridge::{VarTable, decimal, parts_from, send_head_with};
use crate::{Handler, HandlerError, Params, Request, Response, ResponseBody, StreamError, content_type};

#[doc(no_inline)]
pub use ::bytes::Bytes;
#[doc(no_inline)]
pub use ::http_body::Body;
#[doc(no_inline)]
pub use ::tower_service::Service;

/// The most body bytes moved into a [`RequestBody`] at once.
const CHUNK: usize = 16 * 1024;
/// A body without a `CONTENT_LENGTH` (or a short one) is first read into this many bytes
/// inside the handler's future, so requests without a body allocate no buffer for it.
const PROBE: usize = 64;

/// A [`Service`] over `http::Request<RequestBody>` as a [`Handler`]: see the [module
/// docs](self).
#[derive(Clone, Debug)]
pub struct ServiceHandler<S> {
    service: S,
    /// Each request's extensions start as a clone of this empty map with room for several
    /// (see [`roomy_extensions`]).
    extensions: Extensions,
}

impl<S> ServiceHandler<S> {
    /// Serves `service`, a clone of it for each request.
    pub fn new(service: S) -> Self {
        Self { service, extensions: roomy_extensions() }
    }

    /// The service.
    pub fn get_ref(&self) -> &S {
        &self.service
    }

    /// The service back.
    pub fn into_inner(self) -> S {
        self.service
    }
}

impl<S: Default> Default for ServiceHandler<S> {
    fn default() -> Self {
        Self::new(S::default())
    }
}

/// An empty extensions map whose table has room for 7 entries: the bridge's two and what a
/// router adds (axum: three) fit without the table growing and being rebuilt, as it would
/// at the fourth entry. `Extensions` has no `with_capacity`; a cleared map keeps its table,
/// and a clone of it gets a table as large.
fn roomy_extensions() -> Extensions {
    let mut extensions = Extensions::new();
    extensions.insert(0u8);
    extensions.insert(0u16);
    extensions.insert(0u32);
    extensions.insert(0u64);
    extensions.clear();
    extensions
}

/// `ServiceHandler::new(service)`.
pub fn handler<S>(service: S) -> ServiceHandler<S> {
    ServiceHandler::new(service)
}

impl<S, B> Handler for ServiceHandler<S>
where
    S: Service<::http::Request<RequestBody>, Response = ::http::Response<B>> + Clone,
    S::Error: Display,
    B: Body,
    B::Error: Display,
{
    async fn handle(&self, req: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), HandlerError> {
        // One copy of the variables (the `CgiVars` extension), which the URI and the
        // header values share, and one pass over it for the variables the head is made of.
        let (table, at) = VarTable::copy(&req.params());
        let (mut parts, known) = match parts_from(&table, at) {
            Ok(head) => head,
            Err(error) => {
                res.send_response(400, content_type::TEXT, b"Bad Request\n").await?;
                let text = format!("{error}\n");
                res.stderr().write_all(text.as_bytes()).await?;
                return Ok(());
            }
        };
        let remote = RemoteAddr::from_values(known.remote_addr, known.remote_port);
        let declared = known.content_length.and_then(parse_decimal);
        parts.extensions = self.extensions.clone();
        if let Some(addr) = remote {
            parts.extensions.insert(addr);
        }
        parts.extensions.insert(CgiVars { table });
        let is_head = parts.method == Method::HEAD;
        // The body's first read, tried at once: a body that has already ended (a GET
        // behind nginx: its empty FCGI_STDIN came with the params) needs no channel.
        // (Only where the pump's first read goes into the probe anyway.)
        let mut probe = [0u8; PROBE];
        let first = if declared.is_none_or(|n| n <= PROBE as u64) {
            let mut read = pin!(req.read(&mut probe));
            poll_fn(|cx| Poll::Ready(read.as_mut().poll(cx))).await
        } else {
            Poll::Pending
        };
        let (sender, body) = match first {
            Poll::Ready(Ok(0)) => (None, RequestBody { slot: None, remaining: declared }),
            _ => {
                let (sender, body) = channel(declared);
                (Some(sender), body)
            }
        };
        let request = ::http::Request::from_parts(parts, body);
        let mut work = pin!(respond(self.service.clone(), request, is_head, res));
        let mut watch = pin!(pump(req, sender, declared, first, probe));
        poll_fn(|cx| {
            if let Poll::Ready(result) = work.as_mut().poll(cx) {
                return Poll::Ready(result);
            }
            // The request went away: the service's future and its body are dropped.
            watch.as_mut().poll(cx).map(|()| Err(HandlerError::from(StreamError::Aborted)))
        })
        .await
    }
}

/// Awaits the service's readiness, calls it, and writes its response.
async fn respond<S, B>(
    mut service: S,
    request: ::http::Request<RequestBody>,
    is_head: bool,
    res: &mut Response<'_>,
) -> Result<(), HandlerError>
where
    S: Service<::http::Request<RequestBody>, Response = ::http::Response<B>>,
    S::Error: Display,
    B: Body,
    B::Error: Display,
{
    poll_fn(|cx| service.poll_ready(cx)).await.map_err(|e| HandlerError::msg(&e))?;
    let response = service.call(request).await.map_err(|e| HandlerError::msg(&e))?;
    let (mut parts, body) = response.into_parts();
    let mut body = pin!(body);
    // One look at each name (cheaper than a hash lookup for each, with a few headers).
    let (mut has_length, mut has_encoding) = (false, false);
    for name in parts.headers.keys() {
        has_length |= name == CONTENT_LENGTH;
        has_encoding |= name == TRANSFER_ENCODING;
    }
    if has_encoding {
        parts.headers.remove(TRANSFER_ENCODING);
    }
    let mut digits = [0u8; 20];
    let length = match body.size_hint().exact() {
        Some(len) if !has_length && !is_head && !bodiless(parts.status) => Some(decimal(&mut digits, len)),
        _ => None,
    };
    // A frame the body has at once goes out with the head; an error frame before the head
    // is a 500 (the driver writes it, nothing having been written).
    // A body that says it has ended is not polled again (as hyper does): each poll goes
    // through every layer the router wrapped it in.
    let first = if body.is_end_stream() {
        Poll::Ready(None)
    } else {
        poll_fn(|cx| Poll::Ready(body.as_mut().poll_frame(cx))).await
    };
    let first = match first {
        Poll::Ready(Some(Err(error))) => return Err(HandlerError::msg(&error)),
        Poll::Ready(Some(Ok(frame))) => Some(frame.into_data().ok()),
        Poll::Ready(None) => None,
        Poll::Pending => Some(None),
    };
    let mut out = send_head_with(res, parts.status, &parts.headers, length).await?;
    let Some(first) = first else { return Ok(()) };
    if let Some(data) = first {
        write_buf(&mut out, data).await?;
        if body.is_end_stream() {
            return Ok(());
        }
    }
    let mut flushed = false;
    loop {
        // `None`: the body has nothing ready and output waits: flush it first.
        let step = poll_fn(|cx| match body.as_mut().poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(Some(frame)),
            Poll::Pending if flushed => Poll::Pending,
            Poll::Pending => Poll::Ready(None),
        })
        .await;
        match step {
            None => {
                out.flush().await?;
                flushed = true;
            }
            Some(None) => return Ok(()),
            Some(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    write_buf(&mut out, data).await?;
                    flushed = false;
                }
                if body.is_end_stream() {
                    return Ok(());
                }
            }
            Some(Some(Err(error))) => return Err(HandlerError::msg(&error)),
        }
    }
}

/// Statuses whose responses have no body, so no `Content-Length` is added.
fn bodiless(status: StatusCode) -> bool {
    status.is_informational() || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED
}

async fn write_buf(out: &mut ResponseBody<'_>, mut data: impl Buf) -> Result<(), StreamError> {
    while data.has_remaining() {
        let chunk = data.chunk();
        let n = chunk.len();
        out.write_all(chunk).await?;
        data.advance(n);
    }
    Ok(())
}

/// Moves the request body into the channel, a chunk once the last was taken; then waits
/// until the request is gone (returns only then). `first` is the first read, already
/// tried into `probe`; without a `sender` the body had ended there.
async fn pump(
    req: &mut Request<'_>,
    sender: Option<BodySender>,
    declared: Option<u64>,
    first: Poll<Result<usize, StreamError>>,
    mut probe: [u8; PROBE],
) {
    let Some(sender) = sender else { return req.gone().await };
    let mut scratch = Vec::new();
    let mut small = declared.is_none_or(|n| n <= PROBE as u64);
    match first {
        Poll::Ready(Ok(n)) => {
            sender.put(Bytes::copy_from_slice(&probe[..n]));
            small = small && declared.is_some();
        }
        Poll::Ready(Err(error)) => {
            sender.finish(Some(error));
            return req.gone().await;
        }
        Poll::Pending => {}
    }
    loop {
        let room = {
            let mut gone = pin!(req.gone());
            poll_fn(|cx| match sender.poll_room(cx) {
                Poll::Ready(room) => Poll::Ready(Some(room)),
                Poll::Pending => gone.as_mut().poll(cx).map(|()| None),
            })
            .await
        };
        match room {
            Some(true) => {}
            // The service dropped the body: skip the rest.
            Some(false) => {
                req.discard_body();
                break;
            }
            None => return,
        }
        let buf: &mut [u8] = if small {
            &mut probe
        } else {
            if scratch.is_empty() {
                let len = declared.map_or(CHUNK, |n| usize::try_from(n).unwrap_or(CHUNK).min(CHUNK));
                scratch = vec![0; len];
            }
            &mut scratch
        };
        match req.read(buf).await {
            Ok(0) => {
                sender.finish(None);
                break;
            }
            Ok(n) => {
                sender.put(Bytes::copy_from_slice(&buf[..n]));
                // More than a probe's worth may follow a body without CONTENT_LENGTH.
                small = small && declared.is_some();
            }
            Err(error) => {
                sender.finish(Some(error));
                break;
            }
        }
    }
    drop(scratch);
    req.gone().await;
}

// ---- the body channel -------------------------------------------------------------------

/// One chunk in flight between the handler (sender) and the service's [`RequestBody`].
#[derive(Default)]
struct Slot {
    chunk: Option<Bytes>,
    end: End,
    receiver_dropped: bool,
    receiver: Option<Waker>,
    sender: Option<Waker>,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum End {
    #[default]
    Open,
    Done,
    Failed(StreamError),
}

fn lock(slot: &Mutex<Slot>) -> MutexGuard<'_, Slot> {
    slot.lock().unwrap_or_else(PoisonError::into_inner)
}

fn register(waker: &mut Option<Waker>, cx: &Context<'_>) {
    match waker {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *waker = Some(cx.waker().clone()),
    }
}

fn wake(waker: Option<Waker>) {
    if let Some(waker) = waker {
        waker.wake();
    }
}

fn channel(declared: Option<u64>) -> (BodySender, RequestBody) {
    let slot = Arc::new(Mutex::new(Slot::default()));
    (BodySender { slot: slot.clone() }, RequestBody { slot: Some(slot), remaining: declared })
}

struct BodySender {
    slot: Arc<Mutex<Slot>>,
}

impl BodySender {
    /// Ready with `true` once the slot is empty, `false` if the receiver is gone.
    fn poll_room(&self, cx: &Context<'_>) -> Poll<bool> {
        let mut slot = lock(&self.slot);
        if slot.receiver_dropped {
            Poll::Ready(false)
        } else if slot.chunk.is_none() {
            Poll::Ready(true)
        } else {
            register(&mut slot.sender, cx);
            Poll::Pending
        }
    }

    /// Fills the (empty) slot.
    fn put(&self, chunk: Bytes) {
        let mut slot = lock(&self.slot);
        if !slot.receiver_dropped {
            slot.chunk = Some(chunk);
        }
        let waker = slot.receiver.take();
        drop(slot);
        wake(waker);
    }

    /// Ends the body: complete (`None`) or with an error.
    fn finish(&self, error: Option<StreamError>) {
        let mut slot = lock(&self.slot);
        if slot.end == End::Open {
            slot.end = error.map_or(End::Done, End::Failed);
        }
        let waker = slot.receiver.take();
        drop(slot);
        wake(waker);
    }
}

impl Drop for BodySender {
    /// The request ended (answered, or gone) before its body did: a service still holding
    /// the body sees it end with `Aborted`.
    fn drop(&mut self) {
        self.finish(Some(StreamError::Aborted));
    }
}

/// The body of a request a [`ServiceHandler`] serves: FCGI_STDIN as an
/// [`Body`] (`http_body`) of [`Bytes`] chunks, `Send + 'static` (axum's
/// `axum::body::Body::new` takes it). Errors are [`StreamError`]s: `BodyTruncated` when
/// the body ends short of `CONTENT_LENGTH`, `Aborted` when the request goes away first.
/// [`Default`] is an empty body (for calling a service in tests).
pub struct RequestBody {
    /// `None`: a body that has ended (or the empty body of `Default`).
    slot: Option<Arc<Mutex<Slot>>>,
    /// What is left of `CONTENT_LENGTH`.
    remaining: Option<u64>,
}

impl Default for RequestBody {
    /// An empty body.
    fn default() -> RequestBody {
        RequestBody { slot: None, remaining: Some(0) }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = StreamError;

    fn poll_frame(
        mut self: core::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StreamError>>> {
        let Some(shared) = &self.slot else { return Poll::Ready(None) };
        let mut slot = lock(shared);
        if let Some(chunk) = slot.chunk.take() {
            let waker = slot.sender.take();
            drop(slot);
            wake(waker);
            if let Some(remaining) = &mut self.remaining {
                *remaining = remaining.saturating_sub(chunk.len() as u64);
            }
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        match slot.end {
            End::Done => Poll::Ready(None),
            End::Failed(error) => {
                slot.end = End::Done;
                Poll::Ready(Some(Err(error)))
            }
            End::Open => {
                register(&mut slot.receiver, cx);
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.slot.as_ref().is_none_or(|shared| {
            let slot = lock(shared);
            slot.chunk.is_none() && slot.end == End::Done
        })
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(remaining) => SizeHint::with_exact(remaining),
            None => SizeHint::default(),
        }
    }
}

impl Drop for RequestBody {
    /// The service is done with the body: the handler skips the rest.
    fn drop(&mut self) {
        if let Some(shared) = &self.slot {
            let mut slot = lock(shared);
            slot.receiver_dropped = true;
            slot.chunk = None;
            let waker = slot.sender.take();
            drop(slot);
            wake(waker);
        }
    }
}

impl fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestBody").field("remaining", &self.remaining).finish_non_exhaustive()
    }
}

// ---- extensions -------------------------------------------------------------------------

/// Every CGI variable of the request (`SCRIPT_NAME`, `PATH_INFO`, `REMOTE_ADDR`,
/// `DOCUMENT_ROOT`, `HTTPS`, `HTTP_*`, ...), owned, in the order the web server sent
/// them; in the extensions of each request a [`ServiceHandler`] serves (axum:
/// `Extension<CgiVars>`). Cloning shares them.
///
/// ```
/// # use ember_fcgi::tower::CgiVars;
/// fn mount_point(vars: &CgiVars) -> &str {
///     vars.get_str("SCRIPT_NAME").unwrap_or("")
/// }
/// ```
#[derive(Clone)]
pub struct CgiVars {
    /// One shared allocation (which the request's URI and header values share too).
    table: VarTable,
}

/// `CONTENT_LENGTH` as [`Params::content_length`] reads it: `None` when empty or not a
/// decimal number (digits only: `u64`'s parser alone would take a leading `+`).
fn parse_decimal(bytes: &[u8]) -> Option<u64> {
    let text = core::str::from_utf8(bytes).ok().filter(|text| !text.starts_with('+'))?;
    text.parse().ok()
}

impl CgiVars {
    /// A copy of `params`.
    pub fn from_params(params: &Params<'_>) -> Self {
        Self { table: VarTable::from_params(params) }
    }

    /// The value of `name` (the last one if it was sent twice, as [`Params::get`]).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.iter().filter(|(n, _)| *n == name.as_bytes()).last().map(|(_, v)| v)
    }

    /// The value of `name` if it is valid UTF-8.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| core::str::from_utf8(v).ok())
    }

    /// Every variable as (name, value), in the order sent.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&[u8], &[u8])> + '_ {
        self.table.iter()
    }

    /// How many variables there are.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.table.len() == 0
    }
}

impl fmt::Debug for CgiVars {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.iter().map(|(n, v)| (String::from_utf8_lossy(n), String::from_utf8_lossy(v))))
            .finish()
    }
}

/// The client's address: `REMOTE_ADDR` and `REMOTE_PORT` (port 0 when absent), in the
/// extensions of each request a [`ServiceHandler`] serves whose `REMOTE_ADDR` is an IP
/// address; what axum's `ConnectInfo<SocketAddr>` is behind its own server (axum:
/// `Extension<RemoteAddr>`). It is the web server's client, not the FastCGI peer (which is
/// the web server).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RemoteAddr(pub SocketAddr);

impl RemoteAddr {
    /// The address in `params`, if `REMOTE_ADDR` is an IP address (`[` `]` around an IPv6
    /// address are allowed); the port is `REMOTE_PORT`, or 0 when it is absent or not a port.
    pub fn from_params(params: &Params<'_>) -> Option<Self> {
        Self::from_values(params.get("REMOTE_ADDR"), params.get("REMOTE_PORT"))
    }

    /// From the values of `REMOTE_ADDR` and `REMOTE_PORT`.
    fn from_values(addr: Option<&[u8]>, port: Option<&[u8]>) -> Option<Self> {
        let addr = addr?;
        let ip = match dotted_quad(addr) {
            Some(ip) => IpAddr::V4(ip),
            // IPv6, or not an address: std's parser decides.
            None => {
                let addr = core::str::from_utf8(addr).ok()?;
                let addr = addr.strip_prefix('[').and_then(|a| a.strip_suffix(']')).unwrap_or(addr);
                addr.parse().ok()?
            }
        };
        let port = port.and_then(self::port).unwrap_or(0);
        Some(Self(SocketAddr::new(ip, port)))
    }
}

/// `text` as an IPv4 address if it is one in the form std's parser takes (four decimal
/// octets, no leading zeros): the common case, in one pass instead of the general
/// parser's. `None` leaves the decision to std's parser.
fn dotted_quad(text: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let (mut at, mut value, mut digits) = (0, 0u16, 0);
    for &b in text {
        if b.is_ascii_digit() {
            // At most three digits, and no leading zero.
            if digits == 3 || (digits == 1 && value == 0) {
                return None;
            }
            value = value * 10 + u16::from(b - b'0');
            digits += 1;
        } else if b == b'.' && digits > 0 && at < 3 {
            octets[at] = u8::try_from(value).ok()?;
            (at, value, digits) = (at + 1, 0, 0);
        } else {
            return None;
        }
    }
    if digits == 0 || at != 3 {
        return None;
    }
    octets[3] = u8::try_from(value).ok()?;
    Some(Ipv4Addr::from(octets))
}

/// `REMOTE_PORT` as a port: plain digits in one pass, anything else as std parses it.
fn port(text: &[u8]) -> Option<u16> {
    if !text.is_empty() && text.len() <= 5 && text.iter().all(u8::is_ascii_digit) {
        let value = text.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'));
        return u16::try_from(value).ok();
    }
    core::str::from_utf8(text).ok()?.parse().ok()
}

impl Display for RemoteAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn remote_addr_as_std_parses_it() {
        let cases = [
            "127.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "10.1.22.255",
            "256.1.1.1",
            "1.2.3",
            "1.2.3.4.5",
            "01.2.3.4",
            "1.2.3.04",
            "1..3.4",
            "1.2.3.",
            ".1.2.3",
            "1.2.3.4 ",
            "+1.2.3.4",
            "1.2.3.1000",
            "::1",
            "[::1]",
            "fe80::1",
            "::ffff:1.2.3.4",
            "",
            "localhost",
        ];
        for text in cases {
            let expected = text
                .strip_prefix('[')
                .and_then(|a| a.strip_suffix(']'))
                .unwrap_or(text)
                .parse::<IpAddr>()
                .ok()
                .map(|ip| RemoteAddr(SocketAddr::new(ip, 8080)));
            assert_eq!(RemoteAddr::from_values(Some(text.as_bytes()), Some(b"8080")), expected, "{text:?}");
            if let Ok(ip) = text.parse::<Ipv4Addr>() {
                assert_eq!(dotted_quad(text.as_bytes()), Some(ip), "{text:?}");
            }
        }
        assert_eq!(RemoteAddr::from_values(Some(b"1.2.3.4"), Some(b"x")).map(|a| a.0.port()), Some(0));
        for text in ["0", "80", "65535", "65536", "99999", "123456", "+80", "", "8a", "00080"] {
            assert_eq!(port(text.as_bytes()), text.parse::<u16>().ok(), "{text:?}");
        }
        assert_eq!(RemoteAddr::from_values(None, Some(b"1")), None);
    }

    /// A body of one frame that counts how often it is polled.
    struct Counted<'a> {
        data: Option<Bytes>,
        polls: &'a std::cell::Cell<usize>,
    }

    impl Body for Counted<'_> {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: core::pin::Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.polls.set(self.polls.get() + 1);
            Poll::Ready(self.data.take().map(|d| Ok(Frame::data(d))))
        }

        fn is_end_stream(&self) -> bool {
            self.data.is_none()
        }
    }

    #[test]
    fn a_body_at_its_end_is_not_polled_again() {
        use crate::test_engine::{run, script};
        /// Answers every request with a [`Counted`] body.
        #[derive(Clone)]
        struct Once<'a>(&'a std::cell::Cell<usize>);

        impl<'a> Service<::http::Request<RequestBody>> for Once<'a> {
            type Response = ::http::Response<Counted<'a>>;
            type Error = std::convert::Infallible;
            type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

            fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
                Poll::Ready(Ok(()))
            }

            fn call(&mut self, _: ::http::Request<RequestBody>) -> Self::Future {
                let body = Counted { data: Some(Bytes::from_static(b"once\n")), polls: self.0 };
                std::future::ready(Ok(::http::Response::new(body)))
            }
        }

        let polls = std::cell::Cell::new(0);
        let handler = ServiceHandler::new(Once(&polls));
        let output = run(&handler, &script(1, &[], &[]), &crate::Config::default());
        let text = String::from_utf8_lossy(&output);
        assert!(text.contains("Status: 200 OK\r\n\r\nonce\n"), "{text:?}");
        assert_eq!(polls.get(), 1);
    }

    #[test]
    fn each_request_starts_with_empty_extensions() {
        let template = roomy_extensions();
        assert!(template.is_empty());
        let mut first = template.clone();
        first.insert(RemoteAddr(SocketAddr::from(([127, 0, 0, 1], 1))));
        assert!(template.clone().get::<RemoteAddr>().is_none() && template.is_empty());
        assert_eq!(first.len(), 1);
    }
}
