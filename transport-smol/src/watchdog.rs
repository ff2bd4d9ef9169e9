//! A connection's timeouts: `idle_timeout`, `head_timeout`, and the shutdown signal, from
//! one lazily armed `smol::Timer`.
//!
//! The watchdog runs in the connection's own task, polled right after the driver, so it
//! sees every change of the [`ConnectionStatus`] and notes when the phase (idle, receiving
//! a head, busy) changed. The timer is re-armed only when a deadline moves *earlier* than
//! the armed one; a deadline that moved later is found when the timer fires early, and the
//! timer is then re-armed. A busy keep-alive connection thus touches the timer about once
//! per `head_timeout`, not once per request, and idle connections sleep until their own
//! deadline: nothing wakes them periodically.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use ember_fcgi_core::ConnectionStatus;
use ember_fcgi_host::{Limits, events};
use smol::Timer;

use crate::socket::Socket;
use crate::stats::Counters;

/// What the connection is doing, as far as timeouts go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// No active request.
    Idle,
    /// A request's params are still arriving.
    Head,
    /// Requests are being served; no timeout applies.
    Busy,
}

impl Phase {
    fn of(status: &ConnectionStatus) -> Self {
        if status.requests_in_head() > 0 {
            Self::Head
        } else if status.active_requests() == 0 {
            Self::Idle
        } else {
            Self::Busy
        }
    }
}

/// Why the watchdog closes the connection at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Expired {
    /// A request's params did not arrive within `head_timeout`.
    Head,
    /// The connection was told to close but could not finish within `close_linger`
    /// (e.g. the web server does not read our output).
    Stuck,
}

/// Resolves when the connection must be closed at once. On `idle_timeout` and on shutdown
/// it only sets `closing`, so the driver finishes gracefully (see [`crate::io::Reader`]).
#[derive(Debug)]
pub(crate) struct Watchdog<'a> {
    status: &'a ConnectionStatus,
    closing: &'a Cell<bool>,
    draining: &'a AtomicBool,
    limits: &'a Limits,
    counters: &'a Counters,
    /// The connection's socket (its peer is logged on a timeout).
    socket: &'a Socket,
    timer: &'a mut Timer,
    phase: Phase,
    since: Instant,
    armed: Option<Instant>,
}

impl<'a> Watchdog<'a> {
    pub(crate) fn new(
        status: &'a ConnectionStatus,
        closing: &'a Cell<bool>,
        draining: &'a AtomicBool,
        limits: &'a Limits,
        counters: &'a Counters,
        socket: &'a Socket,
        timer: &'a mut Timer,
    ) -> Self {
        let phase = Phase::of(status);
        let since = Instant::now();
        Self { status, closing, draining, limits, counters, socket, timer, phase, since, armed: None }
    }

    /// The instant the current phase runs out, if it can.
    fn deadline(&self) -> Option<Instant> {
        let allowed: Duration = match self.phase {
            Phase::Idle if self.closing.get() => self.limits.close_linger,
            Phase::Idle => self.limits.idle_timeout,
            Phase::Head => self.limits.head_timeout,
            Phase::Busy => return None,
        };
        self.since.checked_add(allowed)
    }

    /// Starts a graceful close and makes the driver look again.
    fn close_gracefully(&mut self, cx: &Context<'_>) {
        self.closing.set(true);
        self.since = Instant::now();
        cx.waker().wake_by_ref();
    }
}

impl Future for Watchdog<'_> {
    type Output = Expired;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Expired> {
        let this = self.get_mut();
        if !this.closing.get() && this.draining.load(Ordering::Acquire) {
            this.close_gracefully(cx);
        }
        let phase = Phase::of(this.status);
        if phase != this.phase {
            this.phase = phase;
            this.since = Instant::now();
        }
        loop {
            let Some(deadline) = this.deadline() else {
                return Poll::Pending;
            };
            if this.armed.is_none_or(|at| deadline < at) {
                this.timer.set_at(deadline);
                this.armed = Some(deadline);
            }
            if Pin::new(&mut *this.timer).poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.armed = None;
            if Instant::now() < deadline {
                continue; // fired for an earlier deadline; re-arm for this one
            }
            match this.phase {
                Phase::Head => {
                    events::timed_out_head(this.counters, &this.socket.peer(), this.limits.head_timeout);
                    return Poll::Ready(Expired::Head);
                }
                Phase::Idle if !this.closing.get() => {
                    events::timed_out_idle(this.counters, &this.socket.peer(), this.limits.idle_timeout);
                    this.close_gracefully(cx);
                }
                Phase::Idle => return Poll::Ready(Expired::Stuck),
                Phase::Busy => return Poll::Pending,
            }
        }
    }
}
