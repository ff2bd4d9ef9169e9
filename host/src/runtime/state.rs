//! A connection's life in the runtime: one state ([`ConnState`]) that only
//! [`ConnState::step`] changes, and why a connection is closed ([`CloseReason`]), which is
//! exactly what the log line and the counter of its close say
//! ([`events::connection_closed`](crate::events::connection_closed)).
//!
//! ```text
//!  accept --> Running ---Rest---> AtRest ---Release---> Released
//!              ^  ^                | |  ^                  |
//!              |  +-----Busy-------+ +--+ Rest (input      |
//!              |                          served: restarts)|
//!              +-----------------Resume--------------------+
//!
//!  Running | AtRest | Released --Linger--> Lingering --Close--> Closed
//!  Running | AtRest | Released --Close------------------------> Closed
//! ```
//!
//! (ARCHITECTURE.md has the same diagram with the function of each transition.)

use std::fmt;
use std::io;
use std::time::{Duration, Instant};

use ember_fcgi_core::{ConnectionError, ProtocolError};

/// Where a connection is in its life. The engine future exists exactly in `Running` and
/// `AtRest` ([`Self::has_engine`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConnState {
    /// The engine exists and works (a request is active, or input or output is under way),
    /// or has not been polled since it was made.
    Running,
    /// The engine exists and its last poll left the connection idle at a record boundary
    /// (no request, nothing buffered), since `since`, with no input read since then.
    AtRest { since: Instant },
    /// The engine future was dropped while at rest (idle release); a new one is made when
    /// input arrives.
    Released,
    /// Closing gracefully: no engine, the write side is shut down, input is discarded until
    /// EOF or `until`.
    Lingering { until: Option<Instant> },
    /// Closed: no engine; the entry leaves the slab (and its socket closes) right after.
    Closed,
}

/// What moves a connection from one [`ConnState`] to the next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// A poll of the engine left it working.
    Busy,
    /// A poll of the engine left it at rest at `now`; `served`: it read input in that poll
    /// (so a rest that had begun starts again).
    Rest { now: Instant, served: bool },
    /// The sweep drops the engine future of a connection at rest.
    Release,
    /// A released connection's socket is readable: a new engine future.
    Resume,
    /// A graceful close begins: FIN, then discard input until `until`.
    Linger { until: Option<Instant> },
    /// The connection closes now.
    Close,
}

impl ConnState {
    /// The one transition function of a connection. An illegal step is a bug: it fails a
    /// `debug_assert!` (in release builds the state stays as it was, save that `Close`
    /// always closes).
    pub(crate) fn step(self, step: Step) -> Self {
        use ConnState::{AtRest, Closed, Lingering, Released, Running};
        match (self, step) {
            (Running | AtRest { .. }, Step::Busy) => Running,
            (Running, Step::Rest { now, .. }) => AtRest { since: now },
            (AtRest { since }, Step::Rest { now, served }) => {
                AtRest { since: if served { now } else { since } }
            }
            (AtRest { .. }, Step::Release) => Released,
            (Released, Step::Resume) => Running,
            (Running | AtRest { .. } | Released, Step::Linger { until }) => Lingering { until },
            (Running | AtRest { .. } | Released | Lingering { .. }, Step::Close) => Closed,
            (from, step) => {
                debug_assert!(false, "illegal step of a connection: {step:?} while {from:?}");
                if step == Step::Close { Closed } else { from }
            }
        }
    }

    /// Whether the engine future exists in this state.
    pub(crate) fn has_engine(self) -> bool {
        matches!(self, Self::Running | Self::AtRest { .. })
    }
}

/// Why the runtime closes a connection (or turns one away). Each reason is logged (target
/// `ember_fcgi`) and counted exactly once, by
/// [`events::connection_closed`](crate::events::connection_closed):
///
/// | reason | close | counter | log level |
/// |---|---|---|---|
/// | `Finished` | graceful | none | none |
/// | `IdleTimeout` | graceful | `timed_out_idle` | debug |
/// | `HeadTimeout` | at once | `timed_out_head` | warn |
/// | `BodyTimeout` | at once (handlers see `TimedOut` first) | `timed_out_body` | warn |
/// | `SendTimeout` | at once (handlers see `TimedOut` first) | `timed_out_send` | warn |
/// | `ShutdownQuiet` | graceful | none | none |
/// | `ShutdownTimeout` | at once | `closed_by_shutdown` | warn (one line for all) |
/// | `Protocol` | at once | `closed_with_error` | warn |
/// | `Io` | at once | `closed_with_error` | debug |
/// | `HandlerPanicked` | at once | none here (`handler_panics`, counted with the panic) | debug (the panic: error) |
/// | `RequestTimeout` | at once | none here (`request_timeouts`, counted by the guard) | debug (the timeout: warn) |
/// | `EnginePanicked` | at once | `engine_panics` | error |
/// | `RefusedOverLimit` | before serving | `refused_over_limit` | warn |
/// | `RefusedNotAllowed` | before serving | `refused_not_allowed` | warn |
/// | `RegisterFailed` | before serving | `accept_errors` | warn |
#[derive(Debug)]
#[non_exhaustive]
pub enum CloseReason {
    /// The engine ended cleanly: the web server closed the connection at a record boundary,
    /// or a request without `FCGI_KEEP_CONN` was answered.
    Finished,
    /// No request for `idle_timeout`.
    IdleTimeout(Duration),
    /// A request's params took longer than `head_timeout`.
    HeadTimeout(Duration),
    /// A handler waited `body_timeout` for a body byte.
    BodyTimeout(Duration),
    /// The web server took no response byte for `send_timeout`.
    SendTimeout(Duration),
    /// A graceful shutdown found the connection quiet (no request, nothing to send).
    ShutdownQuiet,
    /// `shutdown_timeout` ran out with the connection still open.
    ShutdownTimeout,
    /// The web server broke the protocol.
    Protocol(ProtocolError),
    /// Reading or writing failed (the web server reset or closed the connection).
    Io(ConnectionError<io::Error>),
    /// A handler panicked after its response began: the response cannot be completed.
    HandlerPanicked,
    /// A request ran past `request_timeout` after its response began: the response cannot
    /// be completed.
    RequestTimeout(Duration),
    /// The engine panicked outside a handler (a bug in the server).
    EnginePanicked,
    /// `max_connections` are open (the limit given).
    RefusedOverLimit(usize),
    /// A TCP peer `FCGI_WEB_SERVER_ADDRS` does not list.
    RefusedNotAllowed,
    /// The binding could not register the socket with its poller.
    RegisterFailed(io::Error),
}

impl CloseReason {
    /// The reason for an engine that ended with `error`.
    pub(crate) fn from_error(error: ConnectionError<io::Error>) -> Self {
        match error {
            ConnectionError::Protocol(e) => Self::Protocol(e),
            other => Self::Io(other),
        }
    }

    /// Whether the close is graceful: FIN, then a bounded drain of the input
    /// ([`ConnState::Lingering`]); else the socket closes at once.
    pub(crate) fn lingers(&self) -> bool {
        matches!(self, Self::Finished | Self::IdleTimeout(_) | Self::ShutdownQuiet)
    }

    /// Whether handlers are told the connection timed out (their next read or write fails
    /// with `TimedOut`) and given one last poll before the engine is dropped.
    pub(crate) fn expires_handlers(&self) -> bool {
        matches!(self, Self::BodyTimeout(_) | Self::SendTimeout(_))
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Finished => f.write_str("finished"),
            Self::IdleTimeout(t) => write!(f, "idle for idle_timeout ({t:?})"),
            Self::HeadTimeout(t) => write!(f, "request params took longer than head_timeout ({t:?})"),
            Self::BodyTimeout(t) => write!(f, "no request body byte for body_timeout ({t:?})"),
            Self::SendTimeout(t) => write!(f, "no response byte taken for send_timeout ({t:?})"),
            Self::ShutdownQuiet => f.write_str("quiet at shutdown"),
            Self::ShutdownTimeout => f.write_str("still open when shutdown_timeout ran out"),
            Self::Protocol(e) => write!(f, "protocol error: {e}"),
            Self::Io(e) => write!(f, "{e}"),
            Self::HandlerPanicked => f.write_str("its handler panicked after the response began"),
            Self::RequestTimeout(t) => {
                write!(f, "a request ran past request_timeout ({t:?}) after its response began")
            }
            Self::EnginePanicked => f.write_str("its connection task panicked"),
            Self::RefusedOverLimit(max) => write!(f, "max_connections ({max}) are open"),
            Self::RefusedNotAllowed => f.write_str("not in FCGI_WEB_SERVER_ADDRS"),
            Self::RegisterFailed(e) => write!(f, "registering the socket failed: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ConnState::{AtRest, Closed, Lingering, Released, Running};
    use super::*;

    fn t(ms: u64) -> Instant {
        thread_local!(static BASE: Instant = Instant::now());
        BASE.with(|b| *b + Duration::from_millis(ms))
    }

    #[test]
    fn running_comes_to_rest_and_back() {
        assert_eq!(Running.step(Step::Busy), Running);
        assert_eq!(Running.step(Step::Rest { now: t(1), served: true }), AtRest { since: t(1) });
        assert_eq!(Running.step(Step::Rest { now: t(1), served: false }), AtRest { since: t(1) });
        assert_eq!(AtRest { since: t(1) }.step(Step::Busy), Running);
    }

    #[test]
    fn a_rest_restarts_only_when_input_was_served() {
        let rest = AtRest { since: t(1) };
        assert_eq!(rest.step(Step::Rest { now: t(5), served: false }), rest);
        assert_eq!(rest.step(Step::Rest { now: t(5), served: true }), AtRest { since: t(5) });
    }

    #[test]
    fn release_and_resume() {
        assert_eq!(AtRest { since: t(1) }.step(Step::Release), Released);
        assert_eq!(Released.step(Step::Resume), Running);
        assert!(!Released.has_engine());
        assert!(Running.has_engine() && AtRest { since: t(1) }.has_engine());
    }

    #[test]
    fn linger_then_close() {
        let until = Some(t(9));
        for from in [Running, AtRest { since: t(1) }, Released] {
            assert_eq!(from.step(Step::Linger { until }), Lingering { until });
            assert_eq!(from.step(Step::Close), Closed);
        }
        assert_eq!(Lingering { until }.step(Step::Close), Closed);
        assert!(!Lingering { until }.has_engine() && !Closed.has_engine());
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "illegal step")]
    fn releasing_a_running_engine_is_illegal() {
        let _ = Running.step(Step::Release);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "illegal step")]
    fn a_lingering_connection_never_runs_again() {
        let _ = Lingering { until: None }.step(Step::Busy);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "illegal step")]
    fn resuming_an_engine_that_exists_is_illegal() {
        let _ = AtRest { since: t(1) }.step(Step::Resume);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "illegal step")]
    fn a_closed_connection_stays_closed() {
        let _ = Closed.step(Step::Close);
    }

    #[test]
    fn reasons_say_how_they_close() {
        assert!(CloseReason::Finished.lingers() && CloseReason::ShutdownQuiet.lingers());
        assert!(CloseReason::IdleTimeout(Duration::ZERO).lingers());
        assert!(!CloseReason::HandlerPanicked.lingers() && !CloseReason::EnginePanicked.lingers());
        assert!(CloseReason::BodyTimeout(Duration::ZERO).expires_handlers());
        assert!(!CloseReason::HeadTimeout(Duration::ZERO).expires_handlers());
        let io = CloseReason::from_error(ConnectionError::WriteZero);
        assert!(matches!(io, CloseReason::Io(ConnectionError::WriteZero)));
    }
}
