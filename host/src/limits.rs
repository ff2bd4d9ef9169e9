//! The limits every transport enforces: memory per request, connections, timeouts.

use std::time::{Duration, Instant};

use ember_fcgi_core::{Capacities, Config};

/// Server limits, the same on every std transport. Any `Duration` is valid, including
/// `Duration::MAX` (never).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
}

impl Limits {
    /// Default memory of a busy connection on a server: 16 KiB in, 16 KiB out, 128 KiB of
    /// params (one full 64 KiB PARAMS record, as nginx sends for a request with its default
    /// `large_client_header_buffers`, with room for hundreds of params), a 16 KiB body
    /// window, one request at a time (what nginx, Apache, lighttpd and Caddy use).
    pub const SERVER_CAPACITIES: Capacities = Capacities {
        input: 16 * 1024,
        output: 16 * 1024,
        params: 128 * 1024,
        window: 16 * 1024,
        requests: 1,
    };
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
        }
    }
}

impl Limits {
    /// The protocol config with FCGI_MAX_CONNS set from `max_connections`.
    pub fn protocol_config(&self) -> Config {
        Config { max_conns: u32::try_from(self.max_connections).unwrap_or(u32::MAX), ..self.protocol }
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
