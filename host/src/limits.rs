//! The limits every transport enforces, with defaults for a small host.

use std::time::Duration;

use ember_fcgi_core::Config;

/// Server limits. Memory per connection is set by the transport's buffer type; these bound
/// how many connections exist and how long they may linger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Protocol settings (accepted roles). `protocol.max_conns` is set from
    /// `max_connections` by the transport, so GET_VALUES reports the truth.
    pub protocol: Config,
    /// Connections served at once; one more is accepted and closed at once. Default 1024.
    pub max_connections: usize,
    /// A connection with no active request for this long is closed. Default 120 s.
    pub idle_timeout: Duration,
    /// A request must deliver all its params within this time of its BEGIN_REQUEST, or the
    /// connection is closed (slowloris). Default 10 s.
    pub head_timeout: Duration,
    /// After a graceful shutdown starts, in-flight requests get this long. Default 10 s.
    pub shutdown_timeout: Duration,
    /// After the last response on a closing connection, unread input is drained for at
    /// most this long (so the web server sees no reset). Default 1 s.
    pub close_linger: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            protocol: Config::default(),
            max_connections: 1024,
            idle_timeout: Duration::from_secs(120),
            head_timeout: Duration::from_secs(10),
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
}
