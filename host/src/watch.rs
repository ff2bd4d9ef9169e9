//! Which timeout applies to a connection, and since when: one small state machine both
//! transports feed with the engine's [`ConnectionStatus`] after each poll.

use std::time::{Duration, Instant};

use ember_fcgi_core::ConnectionStatus;

use crate::limits::{Limits, deadline};

/// What a connection waits for, as far as timeouts go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// No active request: `idle_timeout`.
    Idle,
    /// A request's params are arriving: `head_timeout`.
    Head,
    /// A handler waits for body bytes that do not come: `body_timeout`.
    Body,
    /// Response bytes wait for the web server to take them: `send_timeout`.
    Send,
    /// Requests run and nothing stalls: no timeout.
    Busy,
}

impl Wait {
    /// What a connection waits for, by its engine's status; with the bytes moved in the
    /// direction watched (body bytes received, or bytes sent).
    pub fn of(status: &ConnectionStatus) -> (Self, u64) {
        if status.requests_in_head() > 0 {
            (Self::Head, 0)
        } else if status.active_requests() == 0 {
            (Self::Idle, 0)
        } else if status.is_sending() {
            (Self::Send, status.sent_bytes())
        } else if status.is_waiting_for_body() {
            (Self::Body, status.body_bytes())
        } else {
            (Self::Busy, 0)
        }
    }

    /// Where a running request is, in words, for the slow-request log.
    pub fn doing(self) -> &'static str {
        match self {
            Self::Body => "reading its body",
            Self::Send => "sending its response",
            Self::Head => "in its handler (another request's params arriving)",
            Self::Idle | Self::Busy => "in its handler",
        }
    }

    /// The limit that applies to this wait (`None` while busy).
    pub fn allowed(self, limits: &Limits) -> Option<Duration> {
        match self {
            Self::Idle => Some(limits.idle_timeout),
            Self::Head => Some(limits.head_timeout),
            Self::Body => Some(limits.body_timeout),
            Self::Send => Some(limits.send_timeout),
            Self::Busy => None,
        }
    }
}

/// The current wait of a connection and when it began; a wait restarts when bytes move.
#[derive(Clone, Copy, Debug)]
pub struct Watch {
    wait: Wait,
    since: Instant,
    /// Bytes moved in the direction watched (body bytes received, or bytes sent).
    moved: u64,
}

impl Watch {
    /// A new connection: idle since `now`.
    pub fn new(now: Instant) -> Self {
        Self { wait: Wait::Idle, since: now, moved: 0 }
    }

    /// Looks at the engine's status after a poll; `now` is asked only when the wait changed.
    pub fn observe(&mut self, status: &ConnectionStatus, now: impl FnOnce() -> Instant) {
        let (wait, moved) = Wait::of(status);
        if wait != self.wait || moved != self.moved {
            *self = Self { wait, since: now(), moved };
        }
    }

    /// When the current wait runs out (`None`: busy, or a limit too long to expire).
    pub fn deadline(&self, limits: &Limits) -> Option<Instant> {
        deadline(self.since, self.wait.allowed(limits)?)
    }

    /// The wait that ran out at `now`, if any.
    pub fn expired(&self, now: Instant, limits: &Limits) -> Option<Wait> {
        self.deadline(limits).filter(|at| *at <= now).map(|_| self.wait)
    }
}
