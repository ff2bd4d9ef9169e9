//! The bridge to the [`http`] crate (feature `http`): a request's
//! [`request::Parts`] built from its CGI variables, and a [`Response`] written as a CGI
//! response. The `http` crate itself is re-exported here (`ember_fcgi::http::Response`,
//! `ember_fcgi::http::StatusCode`, ...), so an app needs no dependency line of its own.
//!
//! ```
//! use ember_fcgi::http::{self, RequestExt, ResponseExt};
//! use ember_fcgi::prelude::*;
//!
//! async fn app(req: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), HandlerError> {
//!     let parts = req.http_parts()?;
//!     let response = match (parts.method.as_str(), parts.uri.path()) {
//!         ("GET", "/") => http::Response::builder()
//!             .header(http::header::CONTENT_TYPE, "text/plain")
//!             .body(b"home\n".as_slice())?,
//!         _ => http::Response::builder().status(http::StatusCode::NOT_FOUND).body(b"".as_slice())?,
//!     };
//!     res.send_http(response).await?;
//!     Ok(())
//! }
//! # let _ = ember_fcgi::handler_fn(app);
//! ```
//!
//! ## Request: CGI variables (RFC 3875 §4.1) to HTTP
//!
//! | `Parts` field | from |
//! |---|---|
//! | `method` | `REQUEST_METHOD`; `GET` when absent (some Authorizer requests) |
//! | `uri` scheme | `REQUEST_SCHEME` (nginx, Apache, lighttpd), else `https` when `HTTPS` is `on` or `1`, else `http` |
//! | `uri` authority | `HTTP_HOST`, else `SERVER_NAME` with `SERVER_PORT` unless it is the scheme's default; no authority at all (origin-form URI) when neither is set |
//! | `uri` path and query | `REQUEST_URI` as the client sent it (not RFC 3875, but set by every common server); else `SCRIPT_NAME` + `PATH_INFO` (percent-encoded again, as RFC 3875 decodes them) and `?QUERY_STRING` if not empty |
//! | `version` | `SERVER_PROTOCOL` (`HTTP/1.0`, `HTTP/1.1`, `HTTP/2.0`, `HTTP/2`, `HTTP/3`, `HTTP/0.9`); `HTTP/1.1` when absent or other |
//! | `headers` | each `HTTP_*` variable, named in lower case with `_` turned back into `-` (`HTTP_USER_AGENT` is `user-agent`); `CONTENT_TYPE` and `CONTENT_LENGTH` as `content-type` and `content-length` when not empty |
//!
//! Edge cases:
//! - **Dash or underscore.** CGI names cannot tell `X-A` from `X_A`: both become `x-a`.
//!   nginx drops request headers with an underscore unless `underscores_in_headers on`, so
//!   behind nginx the names are exact.
//! - **Duplicated headers.** A variable the web server sent twice gives two values of one
//!   header, in the order sent (`HeaderMap::get_all`). nginx 1.22 (Debian 12's) passes a
//!   request header that comes twice as two variables: two `Cookie:` lines arrive as two
//!   `HTTP_COOKIE` params, and so as two `cookie` values here, not joined into one.
//! - **No body length.** Authorizer requests, and GETs from most servers, have no (or an
//!   empty) `CONTENT_LENGTH`: there is then no `content-length` header.
//! - `HTTP_CONTENT_TYPE` and `HTTP_CONTENT_LENGTH`, which RFC 3875 says a server should not
//!   send, are used only when `CONTENT_TYPE` and `CONTENT_LENGTH` are absent.
//! - A method, header name or value that `http` rejects is a [`RequestError`] (answer 400).
//!
//! ## Response: HTTP to a CGI response (RFC 3875 §6)
//!
//! [`ResponseExt::send_http_head`] writes `Status: NNN Reason` first, then every header
//! value on a line of its own (so repeated `Set-Cookie` lines stay separate), then the
//! empty line; [`ResponseExt::send_http`] adds `Content-Length` when the response has
//! none, and the body.
//! - **`Status` vs `Location`.** The `Status:` line is always written, so the web server
//!   passes the status and a `Location` header on to the client as they are (a
//!   client redirect with document, RFC 3875 §6.2.4: use 301, 302, 303, 307 or 308 with
//!   it). A CGI *local* redirect (a `Location` path without `Status`, which the web server
//!   serves itself) is [`Response::send_redirect`](crate::Response::send_redirect).
//! - A `status` header in the map is refused (`InvalidHeader`, nothing written): the
//!   status is the response's `StatusCode`.
//! - Header names are written as `http` stores them, in lower case; CGI header names are
//!   case-insensitive, and the web server writes them as it likes.

#[doc(no_inline)]
pub use ::http::*;

pub(crate) mod bridge;
pub use bridge::{RequestError, RequestExt, ResponseExt, request_parts};

#[cfg(test)]
mod tests;
