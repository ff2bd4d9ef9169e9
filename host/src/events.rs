//! What a transport reports about its connections: each function counts the event in
//! [`Counters`] (where it has a counter) and logs it through the `log` facade, so both
//! transports say the same thing at the same level.
//!
//! Levels: `error` for what needs an operator (accept failing, a handler panicking),
//! `warn` for requests or connections turned away or cut short by a limit, a protocol
//! error or a handler error, `info` for startup and shutdown, `debug` for the ordinary end
//! of a connection (idle timeout, peer reset, aborted request). At `warn` a healthy server
//! logs nothing after startup.

use std::fmt::{self, Display};
use std::time::Duration;

use ember_fcgi_core::{HandlerError, Params, Request};

use crate::limits::Limits;
use crate::runtime::CloseReason;
use crate::stats::Counters;

/// The log target of every event, whichever transport reports it.
pub const TARGET: &str = "ember_fcgi";

/// The target of the access log: one line per finished request, at `info`, written only
/// when a logger enables this target at that level.
pub const ACCESS_TARGET: &str = "ember_fcgi::access";

/// A request's URI for logs: `REQUEST_URI`, else `SCRIPT_NAME` and `?QUERY_STRING`, else
/// `-`. Written straight into the log line (nothing allocated).
pub struct Uri<'a>(pub Params<'a>);

impl Display for Uri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let params = &self.0;
        if let Some(uri) = params.request_uri() {
            return f.write_str(uri);
        }
        let Some(script) = params.script_name() else {
            return f.write_str("-");
        };
        f.write_str(script)?;
        match params.query_string() {
            "" => Ok(()),
            query => write!(f, "?{query}"),
        }
    }
}

/// A request's method for logs (`-` if the web server sent none).
fn method<'a>(params: &Params<'a>) -> &'a str {
    params.request_method().unwrap_or("-")
}

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

/// `accept` failed for lack of resources (e.g. file descriptors); retried shortly.
pub fn accept_failed(counters: &Counters, error: &std::io::Error) {
    Counters::bump(&counters.accept_errors);
    log::error!(target: TARGET, "accept failed: {error}; retrying shortly");
}

/// The runtime closed a connection, or turned one away, for `reason`: counted and logged
/// as the table of [`CloseReason`] says (one place for every close).
pub fn connection_closed(counters: &Counters, peer: &dyn Display, reason: &CloseReason) {
    use CloseReason as R;
    let counter = match reason {
        R::Finished | R::ShutdownQuiet | R::HandlerPanicked | R::RequestTimeout(_) => None,
        R::IdleTimeout(_) => Some(&counters.timed_out_idle),
        R::HeadTimeout(_) => Some(&counters.timed_out_head),
        R::BodyTimeout(_) => Some(&counters.timed_out_body),
        R::SendTimeout(_) => Some(&counters.timed_out_send),
        R::ShutdownTimeout => Some(&counters.closed_by_shutdown),
        R::Protocol(_) | R::Io(_) => Some(&counters.closed_with_error),
        R::EnginePanicked => Some(&counters.engine_panics),
        R::RefusedOverLimit(_) => Some(&counters.refused_over_limit),
        R::RefusedNotAllowed => Some(&counters.refused_not_allowed),
        R::RegisterFailed(_) => Some(&counters.accept_errors),
    };
    if let Some(counter) = counter {
        Counters::bump(counter);
    }
    match reason {
        R::Finished | R::ShutdownQuiet => {}
        // Logged once for all by `closed_by_shutdown`.
        R::ShutdownTimeout => {}
        R::IdleTimeout(_) => log::debug!(target: TARGET, "closing the connection from {peer}: {reason}"),
        R::Io(_) | R::HandlerPanicked | R::RequestTimeout(_) => {
            log::debug!(target: TARGET, "closed the connection from {peer}: {reason}");
        }
        R::EnginePanicked => log::error!(target: TARGET, "closed the connection from {peer}: {reason}"),
        R::RefusedOverLimit(_) | R::RefusedNotAllowed | R::RegisterFailed(_) => {
            log::warn!(target: TARGET, "refused a connection from {peer}: {reason}");
        }
        _ => log::warn!(target: TARGET, "closed the connection from {peer}: {reason}"),
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

/// A handler panicked: its request got a 500 if nothing was sent yet (`answered`), else its
/// connection is closed.
pub fn handler_panicked(counters: &Counters, request: &Request<'_>, answered: bool) {
    Counters::bump(&counters.handler_panics);
    let params = request.params();
    let (method, uri) = (params.request_method().unwrap_or("-"), params.request_uri().unwrap_or("-"));
    let outcome = if answered { "answered 500" } else { "its connection is closed" };
    log::error!(target: TARGET, "the handler for {method} {uri} panicked: {outcome}");
}

/// A request ran past `request_timeout`: counted and logged at `warn` with its method and
/// URI; it was answered 504 if nothing was sent yet (`answered`), else its connection is
/// closed.
pub fn request_timed_out(counters: &Counters, request: &Request<'_>, limit: Duration, answered: bool) {
    Counters::bump(&counters.request_timeouts);
    let params = request.params();
    let outcome = if answered { "answered 504" } else { "its connection is closed" };
    log::warn!(
        target: TARGET,
        "request {} {} ran past request_timeout ({limit:?}): {outcome}",
        method(&params),
        Uri(params),
    );
}

/// A request is still running `elapsed` after its handler started (`slow_request_after`):
/// counted and logged once at `warn`, with what its connection waits for.
pub fn request_slow(counters: &Counters, params: &Params<'_>, elapsed: Duration, wait: crate::Wait) {
    Counters::bump(&counters.slow_requests);
    log::warn!(
        target: TARGET,
        "slow request: {} {} running for {elapsed:?}, {}",
        method(params),
        Uri(*params),
        crate::watch::doing(wait),
    );
}

/// A request finished: its access-log line (target [`ACCESS_TARGET`], `info`): client,
/// method and URI, status (`-` when unknown: raw CGI output), bytes of FCGI_STDOUT (head
/// and body), duration in milliseconds, FastCGI request id.
pub fn access(request: &Request<'_>, status: Option<u16>, bytes: u64, elapsed: Duration) {
    struct Status(Option<u16>);
    impl Display for Status {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self.0 {
                Some(status) => write!(f, "{status}"),
                None => f.write_str("-"),
            }
        }
    }
    let params = request.params();
    log::info!(
        target: ACCESS_TARGET,
        "{} \"{} {}\" {} {bytes} {:.3}ms id={}",
        params.remote_addr().unwrap_or("-"),
        method(&params),
        Uri(params),
        Status(status),
        elapsed.as_secs_f64() * 1000.0,
        request.request_id(),
    );
}

/// A graceful shutdown began.
pub fn shutting_down(connections: usize, limit: Duration) {
    log::info!(target: TARGET, "shutting down: {connections} connection(s) open get up to {limit:?}");
}

/// The shutdown timeout ran out: `count` busy connections are closed (each counted by
/// [`connection_closed`] with [`CloseReason::ShutdownTimeout`]).
pub fn closed_by_shutdown(count: u64) {
    if count > 0 {
        log::warn!(target: TARGET, "shutdown_timeout ran out: closed {count} busy connection(s)");
    }
}
