//! Which timeout applies to a connection, and since when: one small state machine both
//! transports feed with the engine's [`ConnectionStatus`] after each poll.

use std::time::{Duration, Instant};

use ember_fcgi_core::{ConnectionStatus, Wait};

use crate::limits::{Limits, deadline};

/// Where a running request is, in words, for the slow-request log.
pub fn doing(wait: Wait) -> &'static str {
    match wait {
        Wait::Body => "reading its body",
        Wait::Send => "sending its response",
        Wait::Head => "in its handler (another request's params arriving)",
        Wait::Idle | Wait::Busy => "in its handler",
    }
}

/// The limit that applies to `wait` (`None` while busy).
pub fn allowed(wait: Wait, limits: &Limits) -> Option<Duration> {
    match wait {
        Wait::Idle => Some(limits.idle_timeout),
        Wait::Head => Some(limits.head_timeout),
        Wait::Body => Some(limits.body_timeout),
        Wait::Send => Some(limits.send_timeout),
        Wait::Busy => None,
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
        let (wait, moved) = status.wait();
        if wait != self.wait || moved != self.moved {
            *self = Self { wait, since: now(), moved };
        }
    }

    /// When the current wait runs out (`None`: busy, or a limit too long to expire).
    pub fn deadline(&self, limits: &Limits) -> Option<Instant> {
        deadline(self.since, allowed(self.wait, limits)?)
    }

    /// The wait that ran out at `now`, if any.
    pub fn expired(&self, now: Instant, limits: &Limits) -> Option<Wait> {
        self.deadline(limits).filter(|at| *at <= now).map(|_| self.wait)
    }
}
