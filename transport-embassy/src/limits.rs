//! The time bounds a connection is held to, and the web servers allowed to connect.

use embassy_net::IpAddress;
use embassy_time::Duration;

/// Timeouts of one embassy connection (see the crate docs for what each bounds), and the
/// peers it accepts. Build with [`new`](Self::new) and the `with_*` methods (usable in a
/// `static`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// A connection with no active request is closed after this long.
    pub idle_timeout: Duration,
    /// A request's BEGIN and all of its params must arrive within this.
    pub head_timeout: Duration,
    /// A handler that waits for body bytes and gets none for this long: the connection is
    /// closed, and the handler's reads and writes fail with `StreamError::TimedOut`.
    pub body_timeout: Duration,
    /// Response bytes that wait this long while the web server accepts none: the
    /// connection is closed, as for `body_timeout`.
    pub send_timeout: Duration,
    /// A handler that runs longer than this is dropped: the client gets a 504 if nothing
    /// was written yet, else the connection is closed. Timed from the handler's start (the
    /// head before it is bounded by `head_timeout`). `Duration::MAX`: never (the default).
    pub request_timeout: Duration,
    /// After a graceful close, how long unread input is drained before the socket is dropped.
    pub close_linger: Duration,
    /// embassy-net's socket timeout: a peer that acknowledges nothing for this long is gone.
    pub tcp_timeout: Option<Duration>,
    /// How often a connection looks again at its deadlines (they move while it waits, as
    /// requests start and end and bytes arrive): the timeouts fire at most this late.
    pub check_interval: Duration,
    /// The web servers allowed to connect (others are reset at accept); every peer by default.
    pub allowed_peers: AllowedPeers,
}

impl Limits {
    /// 60 s idle, 10 s head, 60 s body and send, no request timeout, 1 s linger, 30 s TCP,
    /// checked every 500 ms, every peer allowed.
    pub const fn new() -> Self {
        Self {
            idle_timeout: Duration::from_secs(60),
            head_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            request_timeout: Duration::MAX,
            close_linger: Duration::from_secs(1),
            tcp_timeout: Some(Duration::from_secs(30)),
            check_interval: Duration::from_millis(500),
            allowed_peers: AllowedPeers::any(),
        }
    }

    /// With the idle timeout.
    pub const fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// With the head (params) timeout.
    pub const fn with_head_timeout(mut self, timeout: Duration) -> Self {
        self.head_timeout = timeout;
        self
    }

    /// With the body (stalled upload) timeout.
    pub const fn with_body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
        self
    }

    /// With the send (stalled download) timeout.
    pub const fn with_send_timeout(mut self, timeout: Duration) -> Self {
        self.send_timeout = timeout;
        self
    }

    /// With the whole-request timeout.
    pub const fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// With the linger of a graceful close.
    pub const fn with_close_linger(mut self, linger: Duration) -> Self {
        self.close_linger = linger;
        self
    }

    /// With embassy-net's socket timeout.
    pub const fn with_tcp_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.tcp_timeout = timeout;
        self
    }

    /// With the interval between looks at the deadlines.
    pub const fn with_check_interval(mut self, interval: Duration) -> Self {
        self.check_interval = interval;
        self
    }

    /// With the web servers allowed to connect.
    pub const fn with_allowed_peers(mut self, peers: AllowedPeers) -> Self {
        self.allowed_peers = peers;
        self
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::new()
    }
}

/// The web servers allowed to connect (as `FCGI_WEB_SERVER_ADDRS` on std): every peer
/// ([`any`](Self::any), the default), or at most [`MAX`](Self::MAX) addresses, checked
/// against the remote endpoint when a connection is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllowedPeers {
    /// Whether the list applies (else every peer is allowed).
    restricted: bool,
    addresses: [Option<IpAddress>; Self::MAX],
}

impl AllowedPeers {
    /// How many addresses the list holds.
    pub const MAX: usize = 4;

    /// Every peer.
    pub const fn any() -> Self {
        Self { restricted: false, addresses: [None; Self::MAX] }
    }

    /// Only these peers (none if the slice is empty: fail closed).
    ///
    /// # Panics
    /// With more than [`MAX`](Self::MAX) addresses (at compile time in a `static`).
    pub const fn only(peers: &[IpAddress]) -> Self {
        assert!(peers.len() <= Self::MAX, "AllowedPeers holds at most AllowedPeers::MAX addresses");
        let mut addresses = [None; Self::MAX];
        let mut i = 0;
        while i < peers.len() {
            addresses[i] = Some(peers[i]);
            i += 1;
        }
        Self { restricted: true, addresses }
    }

    /// Whether a peer at `address` may connect.
    pub fn allows(&self, address: IpAddress) -> bool {
        !self.restricted || self.addresses.contains(&Some(address))
    }
}

impl Default for AllowedPeers {
    fn default() -> Self {
        Self::any()
    }
}
