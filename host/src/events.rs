//! What a transport reports about its connections: each function counts the event in
//! [`Counters`] (where it has a counter) and logs it through the `log` facade, so both
//! transports say the same thing at the same level.
//!
//! Levels: `error` for what needs an operator (accept failing, a handler panicking),
//! `warn` for requests or connections turned away or cut short by a limit, a protocol
//! error or a handler error, `info` for startup and shutdown, `debug` for the ordinary end
//! of a connection (idle timeout, peer reset, aborted request). At `warn` a healthy server
//! logs nothing after startup.

use std::fmt::Display;
use std::time::Duration;

use ember_fcgi_core::{ConnectionError, HandlerError, Request};

use crate::limits::Limits;
use crate::stats::Counters;

/// The log target of every event, whichever transport reports it.
pub const TARGET: &str = "ember_fcgi";

/// A loop starts serving.
pub fn started(listener: &dyn Display, limits: &Limits, per_connection: usize, budget: usize) {
    log::info!(
        target: TARGET,
        "serving FastCGI on {listener}: max_connections {}, idle_timeout {:?}, head_timeout {:?}, \
         {per_connection} bytes per connection, memory budget {budget} bytes",
        limits.max_connections,
        limits.idle_timeout,
        limits.head_timeout,
    );
}

/// A connection was accepted and closed at once: `max_connections` are open.
pub fn refused_over_limit(counters: &Counters, peer: &dyn Display, max: usize) {
    Counters::bump(&counters.refused_over_limit);
    log::warn!(target: TARGET, "refused a connection from {peer}: max_connections ({max}) are open");
}

/// A TCP peer not listed in `FCGI_WEB_SERVER_ADDRS` was turned away.
pub fn refused_not_allowed(counters: &Counters, peer: &dyn Display) {
    Counters::bump(&counters.refused_not_allowed);
    log::warn!(target: TARGET, "refused a connection from {peer}: not in FCGI_WEB_SERVER_ADDRS");
}

/// `accept` failed for lack of resources (e.g. file descriptors); retried shortly.
pub fn accept_failed(counters: &Counters, error: &std::io::Error) {
    Counters::bump(&counters.accept_errors);
    log::error!(target: TARGET, "accept failed: {error}; retrying shortly");
}

/// A request's params did not all arrive within `head_timeout`: closed at once.
pub fn timed_out_head(counters: &Counters, peer: &dyn Display, limit: Duration) {
    Counters::bump(&counters.timed_out_head);
    log::warn!(target: TARGET, "closed the connection from {peer}: request params took longer than head_timeout ({limit:?})");
}

/// A handler waited `body_timeout` for a body byte: its read failed, the connection closes.
pub fn timed_out_body(counters: &Counters, peer: &dyn Display, limit: Duration) {
    Counters::bump(&counters.timed_out_body);
    log::warn!(target: TARGET, "closed the connection from {peer}: no request body byte for body_timeout ({limit:?})");
}

/// The web server took no response byte for `send_timeout`: the connection closes.
pub fn timed_out_send(counters: &Counters, peer: &dyn Display, limit: Duration) {
    Counters::bump(&counters.timed_out_send);
    log::warn!(target: TARGET, "closed the connection from {peer}: no response byte taken for send_timeout ({limit:?})");
}

/// A connection had no request for `idle_timeout`: closed gracefully.
pub fn timed_out_idle(counters: &Counters, peer: &dyn Display, limit: Duration) {
    Counters::bump(&counters.timed_out_idle);
    log::debug!(target: TARGET, "closing the connection from {peer}: idle for idle_timeout ({limit:?})");
}

/// A connection ended with an error: a protocol error is logged at `warn`, an I/O error
/// (the web server reset or closed the connection) at `debug`.
pub fn connection_failed<E: Display>(counters: &Counters, peer: &dyn Display, error: &ConnectionError<E>) {
    Counters::bump(&counters.closed_with_error);
    match error {
        ConnectionError::Protocol(_) => log::warn!(target: TARGET, "connection from {peer} closed: {error}"),
        _ => log::debug!(target: TARGET, "connection from {peer} closed: {error}"),
    }
}

/// A handler returned an error: counted and logged at `warn` with the request's method,
/// URI and client, unless the web server aborted the request or the connection failed
/// (`debug`: nothing to fix in the application).
pub fn handler_failed(counters: &Counters, error: &HandlerError, request: &Request<'_>) {
    let params = request.params();
    let (method, uri) = (params.request_method().unwrap_or("-"), params.request_uri().unwrap_or("-"));
    let client = params.remote_addr().unwrap_or("-");
    match error.is_abort() || request.aborted() {
        true => {
            log::debug!(target: TARGET, "handler for {method} {uri} (client {client}) stopped: {}", error.message());
        }
        false => {
            Counters::bump(&counters.handler_errors);
            log::warn!(target: TARGET, "handler error for {method} {uri} (client {client}): {}", error.message());
        }
    }
}

/// Connection tasks panicked outside a handler (a bug in the server): `count` connections
/// were closed.
pub fn connection_panicked(counters: &Counters, count: u64) {
    counters.handler_panics.fetch_add(count, std::sync::atomic::Ordering::Relaxed);
    log::error!(target: TARGET, "a connection task panicked: {count} connection(s) closed");
}

/// A handler panicked: its request got a 500 if nothing was sent yet (`answered`), else its
/// connection is closed.
pub fn handler_panicked(counters: &Counters, request: &Request<'_>, answered: bool) {
    Counters::bump(&counters.handler_panics);
    let params = request.params();
    let (method, uri) = (params.request_method().unwrap_or("-"), params.request_uri().unwrap_or("-"));
    let outcome = if answered { "answered 500" } else { "its connection is closed" };
    log::error!(target: TARGET, "the handler for {method} {uri} panicked: {outcome}");
}

/// A graceful shutdown began.
pub fn shutting_down(connections: usize, limit: Duration) {
    log::info!(target: TARGET, "shutting down: {connections} connection(s) open get up to {limit:?}");
}

/// The shutdown timeout ran out: `count` busy connections were closed.
pub fn closed_by_shutdown(counters: &Counters, count: u64) {
    counters.closed_by_shutdown.fetch_add(count, std::sync::atomic::Ordering::Relaxed);
    if count > 0 {
        log::warn!(target: TARGET, "shutdown_timeout ran out: closed {count} busy connection(s)");
    }
}
