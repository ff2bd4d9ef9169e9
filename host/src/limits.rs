//! The limits every transport enforces: memory per request, connections, timeouts.

use std::time::{Duration, Instant};

use ember_fcgi_core::{Capacities, Config};

/// Server limits, the same on every std transport. Any `Duration` is valid, including
/// `Duration::MAX` (never). Start from `Default` and change what differs:
///
/// ```
/// use std::time::Duration;
/// use ember_fcgi_host::Limits;
///
/// let limits = Limits::default().with_max_connections(256).with_idle_timeout(Duration::from_secs(30));
/// assert_eq!(limits.max_connections, 256);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Protocol settings (accepted roles). `protocol.max_conns` is set from
    /// `max_connections` by the transport, so GET_VALUES reports the truth.
    pub protocol: Config,
    /// Memory of one busy connection: buffers, params store, body windows and requests
    /// per connection (see [`Capacities`]); taken from a pool when a request begins and
    /// returned soon after the connection is idle again (`IdleRelease::memory_after`).
    /// Default: [`Limits::SERVER_CAPACITIES`].
    pub capacities: Capacities,
    /// Connections served at once; one more is accepted and closed at once. Default 1024.
    pub max_connections: usize,
    /// A connection with no active request for this long is closed. Default 120 s.
    pub idle_timeout: Duration,
    /// A request must deliver all its params within this time of its BEGIN_REQUEST, or the
    /// connection is closed (slowloris). Default 10 s.
    pub head_timeout: Duration,
    /// A handler waiting for body bytes that get no byte for this long: its reads fail
    /// with `TimedOut` and the connection is closed. Default 60 s (nginx's
    /// `fastcgi_send_timeout`).
    pub body_timeout: Duration,
    /// Response bytes waiting while the web server accepts none for this long: the
    /// handler's writes fail with `TimedOut` and the connection is closed. Default 60 s
    /// (nginx's `fastcgi_read_timeout`).
    pub send_timeout: Duration,
    /// After a graceful shutdown starts, in-flight requests get this long. Default 10 s.
    pub shutdown_timeout: Duration,
    /// After the last response on a closing connection, unread input is drained for at
    /// most this long (so the web server sees no reset). Default 1 s.
    pub close_linger: Duration,
    /// A request must end within this time of its handler's start (its params are whole;
    /// `head_timeout` bounds the time before): past it the handler's future is dropped and
    /// the request answered `504 Gateway Timeout` if nothing was written, else its
    /// connection closed (no END_REQUEST). Counted in `request_timeouts`, logged at warn.
    /// Default `Duration::MAX` (never).
    pub request_timeout: Duration,
    /// A request still running this long after its handler started is logged once (warn:
    /// method, URI, elapsed time, and whether it waits for its body, runs or sends) and
    /// counted in `slow_requests`. Default `Duration::MAX` (off).
    pub slow_request_after: Duration,
}

impl Limits {
    /// Default memory of a busy connection on a server: 16 KiB in, 16 KiB out, 128 KiB of
    /// params (one full 64 KiB PARAMS record, as nginx sends for a request with its default
    /// `large_client_header_buffers`, with room for hundreds of params), a 16 KiB body
    /// window, one request at a time (what nginx, Apache, lighttpd and Caddy use).
    pub const SERVER_CAPACITIES: Capacities = Capacities::new()
        .with_input(16 * 1024)
        .with_output(16 * 1024)
        .with_params(128 * 1024)
        .with_window(16 * 1024)
        .with_requests(1);
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            protocol: Config::default(),
            capacities: Self::SERVER_CAPACITIES,
            max_connections: 1024,
            idle_timeout: Duration::from_secs(120),
            head_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            shutdown_timeout: Duration::from_secs(10),
            close_linger: Duration::from_secs(1),
            request_timeout: Duration::MAX,
            slow_request_after: Duration::MAX,
        }
    }
}

impl Limits {
    /// With the protocol settings (accepted roles).
    pub const fn with_protocol(mut self, protocol: Config) -> Self {
        self.protocol = protocol;
        self
    }

    /// With the memory of one busy connection.
    pub const fn with_capacities(mut self, capacities: Capacities) -> Self {
        self.capacities = capacities;
        self
    }

    /// With at most `max_connections` connections served at once.
    pub const fn with_max_connections(mut self, max_connections: usize) -> Self {
        self.max_connections = max_connections;
        self
    }

    /// With the idle timeout.
    pub const fn with_idle_timeout(mut self, idle_timeout: Duration) -> Self {
        self.idle_timeout = idle_timeout;
        self
    }

    /// With the head (params) timeout.
    pub const fn with_head_timeout(mut self, head_timeout: Duration) -> Self {
        self.head_timeout = head_timeout;
        self
    }

    /// With the body timeout.
    pub const fn with_body_timeout(mut self, body_timeout: Duration) -> Self {
        self.body_timeout = body_timeout;
        self
    }

    /// With the send timeout.
    pub const fn with_send_timeout(mut self, send_timeout: Duration) -> Self {
        self.send_timeout = send_timeout;
        self
    }

    /// With the graceful shutdown's deadline.
    pub const fn with_shutdown_timeout(mut self, shutdown_timeout: Duration) -> Self {
        self.shutdown_timeout = shutdown_timeout;
        self
    }

    /// With the close linger.
    pub const fn with_close_linger(mut self, close_linger: Duration) -> Self {
        self.close_linger = close_linger;
        self
    }

    /// With the whole-request deadline (see [`Limits::request_timeout`]).
    pub const fn with_request_timeout(mut self, request_timeout: Duration) -> Self {
        self.request_timeout = request_timeout;
        self
    }

    /// With the age past which a running request is logged as slow.
    pub const fn with_slow_request_after(mut self, slow_request_after: Duration) -> Self {
        self.slow_request_after = slow_request_after;
        self
    }

    /// The protocol config with FCGI_MAX_CONNS set from `max_connections`.
    pub fn protocol_config(&self) -> Config {
        self.protocol.with_max_conns(u32::try_from(self.max_connections).unwrap_or(u32::MAX))
    }

    /// The ceiling of request memory: `max_connections` busy connections.
    pub fn memory_bound(&self) -> usize {
        self.capacities.memory_bytes().saturating_mul(self.max_connections)
    }
}

/// `from + after`, or `None` when that is beyond what `Instant` holds (a limit of
/// `Duration::MAX` never expires).
pub fn deadline(from: Instant, after: Duration) -> Option<Instant> {
    from.checked_add(after)
}
