//! Counters of what the sockets did, readable from anywhere (a handler, a log task).

use core::sync::atomic::Ordering::Relaxed;

// portable-atomic: `fetch_add` exists on every target, those without compare-and-swap
// included (thumbv6m, riscv32imc), given the firmware enables its `critical-section` or
// `unsafe-assume-single-core` feature there (see the crate docs).
use portable_atomic::AtomicU32;

use ember_fcgi_core::ConnectionError;

use crate::io::IoError;

/// Connection counters shared by the slots that serve one port (put it in a `static`).
#[derive(Debug, Default)]
pub struct Stats {
    accepted: AtomicU32,
    closed: AtomicU32,
    timed_out: AtomicU32,
    failed: AtomicU32,
    refused: AtomicU32,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    /// Connections accepted.
    pub accepted: u32,
    /// Connections that ended gracefully (peer closed, or a request without keep-conn done).
    pub closed: u32,
    /// Connections closed by a timeout (idle, head, body, send or request).
    pub timed_out: u32,
    /// Connections that ended in a reset or a protocol error.
    pub failed: u32,
    /// Connections reset at accept: the peer is not in `Limits::allowed_peers`.
    pub refused: u32,
}

impl Stats {
    /// All zero.
    pub const fn new() -> Self {
        Self {
            accepted: AtomicU32::new(0),
            closed: AtomicU32::new(0),
            timed_out: AtomicU32::new(0),
            failed: AtomicU32::new(0),
            refused: AtomicU32::new(0),
        }
    }

    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            accepted: self.accepted.load(Relaxed),
            closed: self.closed.load(Relaxed),
            timed_out: self.timed_out.load(Relaxed),
            failed: self.failed.load(Relaxed),
            refused: self.refused.load(Relaxed),
        }
    }

    pub(crate) fn accepted(&self) {
        self.accepted.fetch_add(1, Relaxed);
    }

    pub(crate) fn refused(&self) {
        self.refused.fetch_add(1, Relaxed);
    }

    pub(crate) fn ended(&self, result: &Result<(), ConnectionError<IoError>>) {
        let counter = match result {
            Ok(()) => &self.closed,
            Err(ConnectionError::Read(IoError::TimedOut) | ConnectionError::TimedOut) => &self.timed_out,
            Err(_) => &self.failed,
        };
        counter.fetch_add(1, Relaxed);
    }
}
