//! [`ConnectionStatus`]: what a transport sees of a connection, for its timeouts and for
//! returning a resting connection's memory.

use core::cell::Cell;

/// What a transport may watch of a connection to enforce its timeouts: how many requests
/// are active, and how many of them are still receiving their head (BEGIN..end of PARAMS);
/// whether the connection is idle at a record boundary (see
/// [`is_idle_at_boundary`](Self::is_idle_at_boundary)); and how much of the coming input
/// the engine will throw away (see [`discardable`](Self::discardable)).
#[derive(Debug, Default)]
pub struct ConnectionStatus {
    pub(super) active: Cell<u16>,
    pub(super) in_head: Cell<u16>,
    pub(super) idle_at_boundary: Cell<bool>,
    pub(super) discardable: Cell<u32>,
    pub(super) discarded: Cell<u32>,
    pub(super) waiting_for_body: Cell<bool>,
    pub(super) body_bytes: Cell<u64>,
    pub(super) sending: Cell<bool>,
    pub(super) sent_bytes: Cell<u64>,
    pub(super) expired: Cell<bool>,
}

impl ConnectionStatus {
    pub const fn new() -> Self {
        Self {
            active: Cell::new(0),
            in_head: Cell::new(0),
            idle_at_boundary: Cell::new(false),
            discardable: Cell::new(0),
            discarded: Cell::new(0),
            waiting_for_body: Cell::new(false),
            body_bytes: Cell::new(0),
            sending: Cell::new(false),
            sent_bytes: Cell::new(0),
            expired: Cell::new(false),
        }
    }

    /// Whether some handler waits for body bytes that have not arrived (for a body-stall
    /// timeout: watch [`body_bytes`](Self::body_bytes) while this holds).
    pub fn is_waiting_for_body(&self) -> bool {
        self.waiting_for_body.get()
    }

    /// Body bytes (FCGI_STDIN and FCGI_DATA content) received for this connection's
    /// requests so far; grows while the web server sends a body.
    pub fn body_bytes(&self) -> u64 {
        self.body_bytes.get()
    }

    /// Whether response bytes wait to be sent (for a send-stall timeout: watch
    /// [`sent_bytes`](Self::sent_bytes) while this holds).
    pub fn is_sending(&self) -> bool {
        self.sending.get()
    }

    /// Bytes written to the web server so far.
    pub fn sent_bytes(&self) -> u64 {
        self.sent_bytes.get()
    }

    /// The transport gives up on this connection (a stall timeout expired): from the next
    /// poll on, handlers' reads and writes fail with [`StreamError::TimedOut`](crate::StreamError::TimedOut) and the
    /// driver returns [`ConnectionError::TimedOut`](crate::ConnectionError::TimedOut).
    pub fn expire(&self) {
        self.expired.set(true);
    }

    /// Whether [`expire`](Self::expire) was called.
    pub fn is_expired(&self) -> bool {
        self.expired.get()
    }

    /// While the driver waits in a read: how many of the next input bytes it will skip
    /// unseen (the rest of a record no handler reads, e.g. the body of a request whose
    /// handler has already answered, or padding). A reader may throw up to that many away
    /// itself, e.g. with one vectored read into a scratch buffer before the driver's buffer,
    /// instead of passing them through the driver's (small) input buffer; it reports them
    /// with [`discard`](Self::discard) before its read returns.
    pub fn discardable(&self) -> usize {
        self.discardable.get() as usize
    }

    /// The reader threw away the next `n` input bytes (at most [`discardable`](Self::discardable));
    /// the driver accounts for them when the read returns (with data, or 0 at end of input).
    pub fn discard(&self, n: usize) {
        let n = u32::try_from(n).unwrap_or(u32::MAX).min(self.discardable.get());
        self.discardable.set(self.discardable.get() - n);
        self.discarded.set(self.discarded.get() + n);
    }

    pub(crate) fn set_discardable(&self, n: usize) {
        self.discardable.set(u32::try_from(n).unwrap_or(u32::MAX));
    }

    pub(crate) fn take_discarded(&self) -> usize {
        self.discardable.set(0);
        self.discarded.replace(0) as usize
    }

    /// Whether the last poll of [`serve_connection`](crate::serve_connection) left the
    /// connection idle at a record boundary: no request active, no unparsed input (the
    /// parser waits for the first byte of a record header), no output unsent or unflushed,
    /// no error, no end of input, no close pending; only a read of the socket is pending.
    ///
    /// Then the connection future holds nothing a fresh one would not: a transport whose
    /// reader is cancel-safe (a pending read has taken no bytes) may drop the future,
    /// together with its buffers, and later call `serve_connection` again on the same
    /// socket (with zeroed buffers and this status) when input arrives; the web server
    /// cannot tell. Valid until the future is polled again.
    pub fn is_idle_at_boundary(&self) -> bool {
        self.idle_at_boundary.get()
    }

    pub(crate) fn set_idle_at_boundary(&self, idle: bool) {
        self.idle_at_boundary.set(idle);
    }

    /// Requests accepted and not ended: from BEGIN_REQUEST until their END_REQUEST is
    /// queued, or until they end without one (connection failed, or input cut by EOF).
    pub fn active_requests(&self) -> u16 {
        self.active.get()
    }

    /// Requests whose params have not all arrived yet.
    pub fn requests_in_head(&self) -> u16 {
        self.in_head.get()
    }
}

/// What a connection waits for, as far as a server's timeouts go (see
/// [`ConnectionStatus::wait`]): which of its timeouts applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// No active request: `idle_timeout`.
    Idle,
    /// Some request's params have not all arrived: `head_timeout`.
    Head,
    /// Response bytes wait for the web server to take them: `send_timeout`.
    Send,
    /// A handler waits for body bytes that do not come: `body_timeout`.
    Body,
    /// Requests run and nothing stalls: no timeout.
    Busy,
}

impl ConnectionStatus {
    /// What the connection waits for now, and the bytes moved in the direction it watches
    /// (body bytes received, or bytes sent): a wait starts again when they move.
    pub fn wait(&self) -> (Wait, u64) {
        if self.requests_in_head() > 0 {
            (Wait::Head, 0)
        } else if self.active_requests() == 0 {
            (Wait::Idle, 0)
        } else if self.is_sending() {
            (Wait::Send, self.sent_bytes())
        } else if self.is_waiting_for_body() {
            (Wait::Body, self.body_bytes())
        } else {
            (Wait::Busy, 0)
        }
    }
}
