//! Opt-in status and ping pages, like PHP-FPM's `pm.status_path` and `ping.path`: a handler
//! wrapper that answers two paths the operator picks and passes every other request on. It
//! works the same on every transport, since it only reads [`Stats`].
//!
//! The path matched is `DOCUMENT_URI` (nginx, Caddy: the path after rewrites, without the
//! query), or when that is missing the path part of `REQUEST_URI` (lighttpd, Apache). The
//! status format is chosen by the query string: `?json`, `?openmetrics`, else plain text
//! (see [`Format`]).
//!
//! ```no_run
//! use ember_fcgi_core::prelude::*;
//! use ember_fcgi_host::status::StatusPages;
//! # struct App;
//! # impl Handler for App {
//! #     async fn handle(&self, _: &mut Request<'_>, _: &mut Response<'_>) -> Result<(), HandlerError> { Ok(()) }
//! # }
//! # fn stats_of_the_server() -> ember_fcgi_host::stats::Stats { Default::default() }
//! let pages = StatusPages::new(App).with_status_path("/status").with_ping_path("/ping");
//! let board = pages.board();
//! // ... build the server with `pages` as its handler, then:
//! board.add(stats_of_the_server()); // `server.stats()`, once per serving loop
//! ```

mod render;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};

use ember_fcgi_core::{Handler, HandlerError, Request, Response, StreamError};

pub use render::{Format, METRIC_PREFIX};

use crate::stats::{Stats, StatsSnapshot};

/// The servers (serving loops) whose counters a status page shows; filled after the servers
/// are built, since the handler is built first. Cheap to clone: clones share the list.
#[derive(Clone, Debug, Default)]
pub struct StatsBoard {
    loops: Arc<RwLock<Vec<Stats>>>,
}

impl StatsBoard {
    /// Adds one loop's counters (`Server::stats()`); with several, the page shows their
    /// totals and each loop as `loop N` in the order added.
    pub fn add(&self, stats: Stats) {
        self.loops.write().unwrap_or_else(PoisonError::into_inner).push(stats);
    }

    /// A snapshot of each loop, in the order added.
    pub fn snapshots(&self) -> Vec<StatsSnapshot> {
        self.loops.read().unwrap_or_else(PoisonError::into_inner).iter().map(Stats::snapshot).collect()
    }
}

/// The user's handler plus a status page and a ping page at the paths given (each off until
/// set). Requests for other paths go to the inner handler untouched.
#[derive(Clone, Debug)]
pub struct StatusPages<H> {
    inner: H,
    status_path: Option<String>,
    ping_path: Option<String>,
    ping_response: String,
    board: StatsBoard,
}

impl<H> StatusPages<H> {
    /// Wraps `inner`; no page is served until a path is set.
    pub fn new(inner: H) -> Self {
        Self {
            inner,
            status_path: None,
            ping_path: None,
            ping_response: "pong\n".into(),
            board: StatsBoard::default(),
        }
    }

    /// Serves the status page at `path` (e.g. `/status`).
    pub fn with_status_path(mut self, path: impl Into<String>) -> Self {
        self.status_path = Some(path.into());
        self
    }

    /// Serves `200 pong` at `path` (e.g. `/ping`), for health checks.
    pub fn with_ping_path(mut self, path: impl Into<String>) -> Self {
        self.ping_path = Some(path.into());
        self
    }

    /// The ping page's body instead of `pong\n`.
    pub fn with_ping_response(mut self, body: impl Into<String>) -> Self {
        self.ping_response = body.into();
        self
    }

    /// Where to register the servers' [`Stats`] (shared with this handler and its clones).
    pub fn board(&self) -> StatsBoard {
        self.board.clone()
    }

    /// The wrapped handler.
    pub fn inner(&self) -> &H {
        &self.inner
    }

    fn page(&self, path: &str) -> Option<Page> {
        if self.status_path.as_deref() == Some(path) {
            Some(Page::Status)
        } else if self.ping_path.as_deref() == Some(path) {
            Some(Page::Ping)
        } else {
            None
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Page {
    Status,
    Ping,
}

/// The request's path as the pages match it: `DOCUMENT_URI`, else `REQUEST_URI` up to `?`.
pub fn request_path<'a>(request: &'a Request<'_>) -> Option<&'a str> {
    let params = request.params();
    match params.get_str("DOCUMENT_URI").filter(|p| !p.is_empty()) {
        Some(path) => Some(path),
        None => params.request_uri().map(|uri| uri.split_once('?').map_or(uri, |(path, _)| path)),
    }
}

impl<H: Handler> Handler for StatusPages<H> {
    /// Decides at the start whether the request is for a page: if not (and always when no
    /// page is set), the inner handler's future is polled as it is, with nothing around it
    /// but the choice.
    #[inline]
    fn handle(
        &self,
        request: &mut Request<'_>,
        response: &mut Response<'_>,
    ) -> impl Future<Output = Result<(), HandlerError>> {
        let page = match (&self.status_path, &self.ping_path) {
            (None, None) => None,
            _ => request_path(request).and_then(|path| self.page(path)),
        };
        match page {
            None => Either::Inner { future: self.inner.handle(request, response) },
            Some(page) => Either::Page { future: self.serve_page(page, request, response) },
        }
    }
}

impl<H> StatusPages<H> {
    async fn serve_page(
        &self,
        page: Page,
        request: &mut Request<'_>,
        response: &mut Response<'_>,
    ) -> Result<(), HandlerError> {
        match page {
            Page::Ping => Ok(send(response, "text/plain; charset=utf-8", &self.ping_response).await?),
            Page::Status => {
                let format = Format::from_query(request.params().query_string());
                let body = format.render(&self.board.snapshots());
                Ok(send(response, format.content_type(), &body).await?)
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// The inner handler's future or a page's.
    #[project = EitherProj]
    enum Either<I, P> {
        Inner { #[pin] future: I },
        Page { #[pin] future: P },
    }
}

impl<I: Future, P: Future<Output = I::Output>> Future for Either<I, P> {
    type Output = I::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<I::Output> {
        match self.project() {
            EitherProj::Inner { future } => future.poll(cx),
            EitherProj::Page { future } => future.poll(cx),
        }
    }
}

/// `200` with `body`, its length, and `Cache-Control: no-store`.
async fn send(response: &mut Response<'_>, content_type: &str, body: &str) -> Result<(), StreamError> {
    let length = body.len().to_string();
    let headers =
        [("Content-Type", content_type), ("Content-Length", &length), ("Cache-Control", "no-store")];
    let mut out = response.send_head(200, &headers).await?;
    out.write_all(body.as_bytes()).await
}
