//! The time bounds a connection is held to.

use embassy_time::Duration;

/// Timeouts of one embassy connection (see the crate docs for what each bounds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A connection with no active request is closed after this long.
    pub idle_timeout: Duration,
    /// A request's BEGIN and all of its params must arrive within this.
    pub head_timeout: Duration,
    /// After a graceful close, how long unread input is drained before the socket is dropped.
    pub close_linger: Duration,
    /// embassy-net's socket timeout: a peer that acknowledges nothing for this long is gone.
    pub tcp_timeout: Option<Duration>,
    /// How often a waiting read looks again at the idle and head deadlines (they change
    /// while it waits, when a handler finishes): the timeouts fire at most this late.
    pub check_interval: Duration,
}

impl Limits {
    /// 60 s idle, 10 s head, 1 s linger, 30 s TCP, checked every 500 ms.
    pub const fn new() -> Self {
        Self {
            idle_timeout: Duration::from_secs(60),
            head_timeout: Duration::from_secs(10),
            close_linger: Duration::from_secs(1),
            tcp_timeout: Some(Duration::from_secs(30)),
            check_interval: Duration::from_millis(500),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::new()
    }
}
