//! Graceful shutdown from any thread: a flag, and a poke for every serving loop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use crate::pool::Ready;

/// The shutdown state of one server, shared by its loops and handles.
#[derive(Debug, Default)]
pub(crate) struct Shutdown {
    requested: AtomicBool,
    loops: Mutex<Vec<Weak<Ready>>>,
}

impl Shutdown {
    pub(crate) fn flag(&self) -> &AtomicBool {
        &self.requested
    }

    pub(crate) fn is_requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }

    /// Sets the flag and wakes every loop.
    pub(crate) fn request(&self) {
        self.requested.store(true, Ordering::Release);
        let loops = self.loops.lock().unwrap_or_else(PoisonError::into_inner);
        for ready in loops.iter().filter_map(Weak::upgrade) {
            ready.poke();
        }
    }

    /// A loop starts: it is poked on shutdown (it checks the flag after this, so a request
    /// made before it started is not missed).
    pub(crate) fn register(&self, ready: &Arc<Ready>) {
        let mut loops = self.loops.lock().unwrap_or_else(PoisonError::into_inner);
        loops.retain(|r| r.strong_count() > 0);
        loops.push(Arc::downgrade(ready));
    }
}

/// Asks a running server to shut down gracefully: stop accepting (the listener is closed),
/// let in-flight requests finish within `Limits::shutdown_timeout`, close idle keep-alive
/// connections, then return from `run`, `run_threads` or `serve`. Cheap to clone; usable
/// from any thread, e.g. one that waits for SIGTERM.
#[derive(Clone, Debug)]
pub struct ShutdownHandle {
    shutdown: Arc<Shutdown>,
}

impl ShutdownHandle {
    pub(crate) fn new(shutdown: Arc<Shutdown>) -> Self {
        Self { shutdown }
    }

    /// Starts the graceful shutdown; calling it again does nothing more. Works before the
    /// server runs too: it then stops as soon as it starts.
    pub fn shutdown(&self) {
        self.shutdown.request();
    }

    /// Whether a shutdown was requested.
    pub fn is_shutdown_requested(&self) -> bool {
        self.shutdown.is_requested()
    }
}
