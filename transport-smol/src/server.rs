//! The server before it runs: a bound listener, the handler and the limits. Start it with
//! [`Server::run`] (this thread), [`Server::run_threads`] (one loop per thread on the shared
//! listener) or [`Server::serve`] (a future on your smol executor).

use std::io;
use std::sync::Arc;

use ember_fcgi_core::Handler;
use ember_fcgi_host::runtime::{MemoryBudget, Settings, Setup};

use crate::poller::{self, BINDING_BYTES};

/// A FastCGI server for smol. Each accepted connection gets one engine future that serves
/// its requests with the core driver, over request memory ([`Limits::capacities`](crate::Limits::capacities)) lent
/// from its loop's pool while requests are in flight; engines are `!Send` and stay on the
/// loop (thread) that accepted them.
///
/// Bounds: [`run`](Self::run) and [`serve`](Self::serve) need only `H: Handler` (the
/// handler need not be `Send`); [`run_threads`](Self::run_threads) needs
/// `H: Handler + Sync`, as every thread's loop calls the one handler by reference.
///
/// ```no_run
/// use ember_fcgi::prelude::*;
/// use ember_fcgi::server::{Limits, Listen};
/// use ember_fcgi::smol::Server;
///
/// struct Hello;
/// impl Handler for Hello {
///     async fn handle(&self, _: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), HandlerError> {
///         res.send_response(200, content_type::TEXT, b"hello\n").await?;
///         Ok(())
///     }
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server = Server::bind(&"127.0.0.1:9000".parse::<Listen>()?, Hello, Limits::default())?;
/// let stop = server.shutdown_handle(); // e.g. call stop.shutdown() on SIGTERM
/// server.run_threads(2)?;
/// # Ok(())
/// # }
/// ```
pub struct Server<H> {
    setup: Setup<H>,
}

impl<H> std::fmt::Debug for Server<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.setup.fmt(f)
    }
}

impl<H: Handler> Server<H> {
    ember_fcgi_host::server_methods!();

    /// Serves as a future on the caller's smol executor (a `LocalExecutor`, or
    /// `smol::block_on`), beside the application's other tasks, until a shutdown finished.
    /// The future is `!Send`: connection engines run inside it, polled when their socket,
    /// a deadline or their handler wakes them. Our sockets sit in a poller of our own that
    /// async-io watches as one fd; each wake-up of this future costs async-io's usual
    /// allocations, which [`run`](Self::run) avoids.
    pub async fn serve(self) -> io::Result<()> {
        let settings = self.settings();
        poller::serve(Arc::new(self.setup.listener), self.setup.handler, settings).await
    }

    /// Serves on this thread until a shutdown finished. The thread sleeps in our own
    /// poller, so a request on an open connection allocates nothing; async work the
    /// handler awaits (smol timers, sockets, files) is driven by async-io's own thread.
    pub fn run(self) -> io::Result<()> {
        let settings = self.settings();
        poller::run(Arc::new(self.setup.listener), self.setup.handler, settings)
    }

    /// The memory ceiling of one loop ([`run`](Self::run) or [`serve`](Self::serve)):
    /// bytes per connection and in total, as on the mio server. With
    /// [`run_threads`](Self::run_threads)`(n)` the loops share `max_connections`, so
    /// the ceiling is [`MemoryBudget::total`] plus `(n - 1) *` [`MemoryBudget::fixed`].
    pub fn memory_budget(&self) -> MemoryBudget {
        ember_fcgi_host::poller::memory_budget::<H>(&self.setup.limits)
    }

    fn settings(&self) -> Settings {
        self.setup.settings(self.setup.limits.max_connections, false, BINDING_BYTES)
    }
}

impl<H: Handler + Sync> Server<H> {
    /// Serves on `threads` new threads (at least one, named `ember-fcgi-smol-0`, ...),
    /// each running its own loop (as [`run`](Self::run) does) on the one listener;
    /// returns when a shutdown finished on all of them, or the first error after stopping
    /// the others.
    ///
    /// The loops are one server: they share the handler (by reference, hence `Sync`), the
    /// [`Limits`](crate::Limits), the allow-list, one [`Stats`](crate::Stats) table, one
    /// shutdown handle ([`shutdown_handle`](Self::shutdown_handle) stops them all) and one
    /// open-connection count, so `max_connections` bounds all loops together. Each loop
    /// has its own poller, connections, buffer pool and timers; a connection stays on the
    /// loop that accepted it.
    ///
    /// Accepting: each loop's poller holds the listener with `EPOLLEXCLUSIVE` (Linux), so
    /// a new connection wakes one loop asleep in its poller, not all of them; a loop
    /// that is busy at that moment finds the event when it next polls, without a wake-up.
    /// This works for every listener (TCP, Unix, inherited fd 0, systemd's), which
    /// `SO_REUSEPORT` (one listener per loop) would not: it needs sockets we bind
    /// ourselves, and it ties each connection to one loop's queue by hash even while that
    /// loop is blocked. Elsewhere every loop is woken and one wins the `accept`.
    pub fn run_threads(self, threads: usize) -> io::Result<()> {
        let run_loop = |listener, handler: &H, settings| poller::run(listener, handler, settings);
        self.setup.run_threads(threads, "ember-fcgi-smol", false, BINDING_BYTES, run_loop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send_sync<T: Send + Sync>() {}

    #[test]
    fn handles_cross_threads() {
        send_sync::<crate::ShutdownHandle>();
        send_sync::<crate::Stats>();
        send_sync::<Server<Hello>>();
    }

    struct Hello;

    impl Handler for Hello {
        async fn handle(
            &self,
            _: &mut ember_fcgi_core::Request<'_>,
            _: &mut ember_fcgi_core::Response<'_>,
        ) -> Result<(), ember_fcgi_core::HandlerError> {
            Ok(())
        }
    }
}
