//! Live counters of a server, the same for both transports, readable from any thread
//! (tests use them to check for leaks).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The counters, shared by every serving loop of a server (written by the transports).
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct Counters {
    pub open: AtomicU64,
    pub accepted: AtomicU64,
    pub refused_over_limit: AtomicU64,
    pub refused_not_allowed: AtomicU64,
    pub accept_errors: AtomicU64,
    pub timed_out_idle: AtomicU64,
    pub timed_out_head: AtomicU64,
    pub closed_by_shutdown: AtomicU64,
    pub closed_with_error: AtomicU64,
    pub handler_panics: AtomicU64,
    pub requests: AtomicU64,
    pub requests_aborted: AtomicU64,
    pub handler_errors: AtomicU64,
}

impl Counters {
    /// Adds one to a counter.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one from a counter.
    pub fn drop_one(counter: &AtomicU64) {
        counter.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Adds one to a counter.
#[doc(hidden)]
pub fn bump(counter: &AtomicU64) {
    Counters::bump(counter);
}

/// A live view of a server's counters; take it before `run`/`serve` (which consume the
/// server) to watch from another thread or task.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    counters: Arc<Counters>,
}

/// The counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Connections open now (serving or lingering before close).
    pub open_connections: u64,
    /// Connections accepted and served.
    pub accepted: u64,
    /// Connections accepted and closed at once because `max_connections` were open.
    pub refused_over_limit: u64,
    /// TCP connections closed at once because `FCGI_WEB_SERVER_ADDRS` does not list the peer.
    pub refused_not_allowed: u64,
    /// Failed `accept` calls (e.g. out of file descriptors; accepting is retried shortly).
    pub accept_errors: u64,
    /// Connections closed after `idle_timeout` with no active request.
    pub timed_out_idle: u64,
    /// Connections closed because a request's params took longer than `head_timeout`.
    pub timed_out_head: u64,
    /// Connections still busy when `shutdown_timeout` ran out.
    pub closed_by_shutdown: u64,
    /// Connections ended by an I/O or protocol error (or closed at once because the web
    /// server stopped reading while they were closing).
    pub closed_with_error: u64,
    /// Connections closed because their handler panicked (smol; mio does not catch panics).
    pub handler_panics: u64,
    /// Requests handed to the handler.
    pub requests: u64,
    /// Of those, requests the web server aborted (or whose connection failed).
    pub requests_aborted: u64,
    /// Requests whose handler returned an error (not counting aborts): each was answered
    /// with a 500 if nothing was written yet, and its text went to FCGI_STDERR.
    pub handler_errors: u64,
}

impl Stats {
    /// The counters themselves, for the transports that write them.
    #[doc(hidden)]
    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let c = &*self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            open_connections: get(&c.open),
            accepted: get(&c.accepted),
            refused_over_limit: get(&c.refused_over_limit),
            refused_not_allowed: get(&c.refused_not_allowed),
            accept_errors: get(&c.accept_errors),
            timed_out_idle: get(&c.timed_out_idle),
            timed_out_head: get(&c.timed_out_head),
            closed_by_shutdown: get(&c.closed_by_shutdown),
            closed_with_error: get(&c.closed_with_error),
            handler_panics: get(&c.handler_panics),
            requests: get(&c.requests),
            requests_aborted: get(&c.requests_aborted),
            handler_errors: get(&c.handler_errors),
        }
    }

    /// Connections open now.
    pub fn open_connections(&self) -> u64 {
        self.counters.open.load(Ordering::Relaxed)
    }
}
