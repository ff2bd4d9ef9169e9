//! Graceful shutdown from any thread, through the loop's `mio::Waker`.

use std::sync::Arc;

use crate::waker::Shared;

/// Asks a running server to shut down gracefully: stop accepting, let in-flight requests
/// finish within `Limits::shutdown_timeout`, then return from `run` (or report
/// [`Registered::is_finished`](crate::Registered::is_finished)). Cheap to clone; usable
/// from signal-handling threads.
#[derive(Clone, Debug)]
pub struct ShutdownHandle {
    shared: Arc<Shared>,
}

impl ShutdownHandle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Starts the graceful shutdown; calling it again does nothing more. Works before the
    /// server runs too: it then stops as soon as it starts.
    pub fn shutdown(&self) {
        self.shared.request_shutdown();
    }

    /// Whether a shutdown was requested.
    pub fn is_shutdown_requested(&self) -> bool {
        self.shared.shutdown_requested()
    }
}
