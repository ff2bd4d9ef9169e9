//! A connection's timeouts (idle, head, body stall, send stall, and the linger of a
//! closing connection) and the shutdown signal, from one lazily armed `smol::Timer`.
//!
//! The watchdog runs in the connection's own task, polled right after the driver, so it
//! sees every change of the [`ConnectionStatus`]; which timeout applies and since when is
//! the host's [`Watch`]. The timer is re-armed only when a deadline moves *earlier* than
//! the armed one; a deadline that moved later is found when the timer fires early, and the
//! timer is then re-armed. A busy keep-alive connection thus touches the timer about once
//! per timeout period, not once per request, and idle connections sleep until their own
//! deadline: nothing wakes them periodically.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use ember_fcgi_core::ConnectionStatus;
use ember_fcgi_host::{Limits, Wait, Watch, deadline, events};
use smol::Timer;

use crate::socket::Socket;
use crate::stats::Counters;

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
/// it only sets `closing`, so the driver finishes gracefully (see [`crate::io::Reader`]);
/// on a body or send stall it expires the engine's status, so the handlers' calls fail with
/// `TimedOut` and the driver returns.
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
    watch: Watch,
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
        let watch = Watch::new(Instant::now());
        Self { status, closing, draining, limits, counters, socket, timer, watch, armed: None }
    }

    /// The instant the current wait runs out, if it can.
    fn deadline(&self) -> Option<Instant> {
        if self.closing.get() && self.watch.wait() == Wait::Idle {
            return deadline(self.watch.since(), self.limits.close_linger);
        }
        self.watch.deadline(self.limits)
    }

    /// Starts a graceful close and makes the driver look again.
    fn close_gracefully(&mut self, cx: &Context<'_>) {
        self.closing.set(true);
        self.watch.restart(Instant::now());
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
        this.watch.observe(this.status, Instant::now);
        loop {
            if this.status.is_expired() {
                return Poll::Pending; // the driver is returning
            }
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
            match this.watch.wait() {
                Wait::Head => {
                    events::timed_out_head(this.counters, &this.socket.peer(), this.limits.head_timeout);
                    return Poll::Ready(Expired::Head);
                }
                Wait::Idle if !this.closing.get() => {
                    events::timed_out_idle(this.counters, &this.socket.peer(), this.limits.idle_timeout);
                    this.close_gracefully(cx);
                }
                Wait::Idle => return Poll::Ready(Expired::Stuck),
                stalled @ (Wait::Body | Wait::Send) => {
                    let peer = this.socket.peer();
                    if stalled == Wait::Body {
                        events::timed_out_body(this.counters, &peer, this.limits.body_timeout);
                    } else {
                        events::timed_out_send(this.counters, &peer, this.limits.send_timeout);
                    }
                    this.status.expire();
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Wait::Busy => return Poll::Pending,
            }
        }
    }
}
