//! Live counters of a server, the same for both transports, readable from any thread
//! (tests use them to check for leaks).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

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
    pub timed_out_body: AtomicU64,
    pub timed_out_send: AtomicU64,
    pub closed_by_shutdown: AtomicU64,
    pub closed_with_error: AtomicU64,
    pub handler_panics: AtomicU64,
    /// Connection engines that panicked outside a handler.
    pub engine_panics: AtomicU64,
    pub requests: AtomicU64,
    pub requests_aborted: AtomicU64,
    /// Requests cut off at `Limits::request_timeout`.
    pub request_timeouts: AtomicU64,
    /// Requests still running `Limits::slow_request_after` after their handler started.
    pub slow_requests: AtomicU64,
    /// Request memory lent to connections now (busy, or idle for less than
    /// `IdleRelease::memory_after`), in bytes.
    pub memory_lent: AtomicU64,
    /// Request memory allocated by the pools (lent or free, bytes).
    pub memory_allocated: AtomicU64,
    pub handler_errors: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// Bytes one connection costs besides request memory (set when a loop starts).
    pub memory_per_connection: AtomicU64,
    /// Request memory of one busy connection (`Limits::capacities`, set when a loop starts).
    pub request_memory: AtomicU64,
    /// Bytes allocated once per loop (added by each loop when it starts).
    pub memory_fixed: AtomicU64,
    /// Connections served at once (set by the transport when a loop starts).
    pub max_connections: AtomicU64,
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

    /// Adds `n` to a counter (bytes moved).
    pub fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Records a loop's memory figures: bytes per connection, request memory per busy
    /// connection and the connection cap (shared by every loop of a server), and the loop's
    /// own fixed allocations (summed over the loops).
    pub fn note_memory(
        &self,
        per_connection: usize,
        request_memory: usize,
        max_connections: usize,
        fixed: usize,
    ) {
        self.memory_per_connection.store(per_connection as u64, Ordering::Relaxed);
        self.request_memory.store(request_memory as u64, Ordering::Relaxed);
        self.max_connections.store(max_connections as u64, Ordering::Relaxed);
        self.memory_fixed.fetch_add(fixed as u64, Ordering::Relaxed);
    }
}

/// A live view of a server's counters; take it before `run`/`serve` (which consume the
/// server) to watch from another thread or task.
#[derive(Clone, Debug)]
pub struct Stats {
    counters: Arc<Counters>,
    started: Instant,
}

impl Default for Stats {
    fn default() -> Self {
        Self { counters: Arc::default(), started: Instant::now() }
    }
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
    /// Connections closed because a handler waited `body_timeout` for a body byte.
    pub timed_out_body: u64,
    /// Connections closed because the web server took no response byte for `send_timeout`.
    pub timed_out_send: u64,
    /// Connections still busy when `shutdown_timeout` ran out.
    pub closed_by_shutdown: u64,
    /// Connections ended by an I/O or protocol error.
    pub closed_with_error: u64,
    /// Handlers that panicked (the request got a 500, or its connection was closed).
    pub handler_panics: u64,
    /// Connection engines that panicked outside a handler (a bug in the server; each
    /// closed its connection).
    pub engine_panics: u64,
    /// Requests handed to the handler.
    pub requests: u64,
    /// Of those, requests the web server aborted (or whose connection failed).
    pub requests_aborted: u64,
    /// Requests cut off at `Limits::request_timeout` (a 504, or their connection closed).
    pub request_timeouts: u64,
    /// Requests still running `Limits::slow_request_after` after their handler started
    /// (each logged once).
    pub slow_requests: u64,
    /// Request memory lent to connections now (busy, or idle for less than
    /// `IdleRelease::memory_after`), in bytes.
    pub memory_lent: u64,
    /// Request memory the pools hold, lent or free (bytes); at most `Limits::memory_bound`.
    pub memory_allocated: u64,
    /// Requests whose handler returned an error other than an abort or a closed connection.
    pub handler_errors: u64,
    /// Bytes read from the web servers (skipped bodies included, lingering drains not).
    pub bytes_in: u64,
    /// Bytes written to the web servers.
    pub bytes_out: u64,
    /// The memory ceiling: `memory_fixed + (memory_per_connection + request_memory) *
    /// max_connections`.
    pub memory_budget: u64,
    /// Memory in use now, by the same measure: `memory_fixed + memory_per_connection *
    /// open_connections + memory_lent` (an upper bound on mio, which also releases the
    /// engines of idle connections).
    pub memory_in_use: u64,
    /// Bytes one connection costs besides request memory (its engine future and socket state).
    pub memory_per_connection: u64,
    /// Request memory of one busy connection (`Limits::capacities`).
    pub request_memory: u64,
    /// Connections served at once (`Limits::max_connections`, capped by the transport).
    pub max_connections: u64,
    /// Time since the server was built.
    pub uptime: Duration,
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
        let (open, per_connection, fixed) =
            (get(&c.open), get(&c.memory_per_connection), get(&c.memory_fixed));
        StatsSnapshot {
            open_connections: open,
            accepted: get(&c.accepted),
            refused_over_limit: get(&c.refused_over_limit),
            refused_not_allowed: get(&c.refused_not_allowed),
            accept_errors: get(&c.accept_errors),
            timed_out_idle: get(&c.timed_out_idle),
            timed_out_head: get(&c.timed_out_head),
            timed_out_body: get(&c.timed_out_body),
            timed_out_send: get(&c.timed_out_send),
            closed_by_shutdown: get(&c.closed_by_shutdown),
            closed_with_error: get(&c.closed_with_error),
            handler_panics: get(&c.handler_panics),
            engine_panics: get(&c.engine_panics),
            requests: get(&c.requests),
            requests_aborted: get(&c.requests_aborted),
            request_timeouts: get(&c.request_timeouts),
            slow_requests: get(&c.slow_requests),
            memory_lent: get(&c.memory_lent),
            memory_allocated: get(&c.memory_allocated),
            handler_errors: get(&c.handler_errors),
            bytes_in: get(&c.bytes_in),
            bytes_out: get(&c.bytes_out),
            memory_budget: fixed.saturating_add(
                per_connection.saturating_add(get(&c.request_memory)).saturating_mul(get(&c.max_connections)),
            ),
            memory_in_use: fixed
                .saturating_add(per_connection.saturating_mul(open))
                .saturating_add(get(&c.memory_lent)),
            memory_per_connection: per_connection,
            request_memory: get(&c.request_memory),
            max_connections: get(&c.max_connections),
            uptime: self.started.elapsed(),
        }
    }

    /// Connections open now.
    pub fn open_connections(&self) -> u64 {
        self.counters.open.load(Ordering::Relaxed)
    }
}

/// Whether a figure only grows (a counter) or goes up and down (a gauge).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// One figure of a snapshot, as every status format renders it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Field {
    /// snake_case name, without prefix or `_total` (e.g. `connections_accepted`).
    pub name: &'static str,
    pub kind: Kind,
    /// One line for humans (the OpenMetrics `# HELP`).
    pub help: &'static str,
    pub value: f64,
}

impl StatsSnapshot {
    /// Every figure, in display order: the one table the status formats render, so a new
    /// figure is one line here.
    pub fn fields(&self) -> Vec<Field> {
        use Kind::{Counter, Gauge};
        let f = |name, kind, help, value: u64| Field { name, kind, help, value: value as f64 };
        vec![
            Field {
                name: "uptime_seconds",
                kind: Gauge,
                help: "Seconds since the server started.",
                value: self.uptime.as_secs_f64(),
            },
            f("connections_open", Gauge, "Connections open now.", self.open_connections),
            f("connections_max", Gauge, "Connections served at once at most.", self.max_connections),
            f("connections_accepted", Counter, "Connections accepted and served.", self.accepted),
            f(
                "connections_refused_over_limit",
                Counter,
                "Connections closed at once because max_connections were open.",
                self.refused_over_limit,
            ),
            f(
                "connections_refused_not_allowed",
                Counter,
                "TCP connections from peers FCGI_WEB_SERVER_ADDRS does not list.",
                self.refused_not_allowed,
            ),
            f("accept_errors", Counter, "Failed accept calls.", self.accept_errors),
            f(
                "connections_timed_out_idle",
                Counter,
                "Connections closed after idle_timeout.",
                self.timed_out_idle,
            ),
            f(
                "connections_timed_out_head",
                Counter,
                "Connections closed because params took longer than head_timeout.",
                self.timed_out_head,
            ),
            f(
                "connections_timed_out_body",
                Counter,
                "Connections closed because a handler waited body_timeout for a body byte.",
                self.timed_out_body,
            ),
            f(
                "connections_timed_out_send",
                Counter,
                "Connections closed because the web server took no response byte for send_timeout.",
                self.timed_out_send,
            ),
            f(
                "connections_closed_by_shutdown",
                Counter,
                "Connections still busy when shutdown_timeout ran out.",
                self.closed_by_shutdown,
            ),
            f(
                "connections_closed_with_error",
                Counter,
                "Connections ended by an I/O or protocol error.",
                self.closed_with_error,
            ),
            f("requests", Counter, "Requests handed to the handler.", self.requests),
            f("requests_aborted", Counter, "Requests the web server aborted.", self.requests_aborted),
            f(
                "request_timeouts",
                Counter,
                "Requests cut off at request_timeout (504, or their connection closed).",
                self.request_timeouts,
            ),
            f("slow_requests", Counter, "Requests still running at slow_request_after.", self.slow_requests),
            f("handler_errors", Counter, "Requests whose handler returned an error.", self.handler_errors),
            f(
                "handler_panics",
                Counter,
                "Handlers that panicked (500, or their connection closed).",
                self.handler_panics,
            ),
            f(
                "engine_panics",
                Counter,
                "Connection engines that panicked outside a handler (their connection closed).",
                self.engine_panics,
            ),
            f("received_bytes", Counter, "Bytes read from the web servers.", self.bytes_in),
            f("sent_bytes", Counter, "Bytes written to the web servers.", self.bytes_out),
            f(
                "memory_budget_bytes",
                Gauge,
                "The memory ceiling: fixed plus (per-connection + request memory) times connections_max.",
                self.memory_budget,
            ),
            f(
                "memory_in_use_bytes",
                Gauge,
                "Fixed plus per-connection bytes times connections_open plus request memory lent.",
                self.memory_in_use,
            ),
            f(
                "memory_per_connection_bytes",
                Gauge,
                "Bytes one connection costs besides request memory.",
                self.memory_per_connection,
            ),
            f("memory_request_bytes", Gauge, "Request memory of one busy connection.", self.request_memory),
            f(
                "memory_lent_bytes",
                Gauge,
                "Request memory lent to connections now (busy or just idle).",
                self.memory_lent,
            ),
            f(
                "memory_allocated_bytes",
                Gauge,
                "Request memory the pools hold, lent or free.",
                self.memory_allocated,
            ),
        ]
    }
}
