//! The server before it runs: a bound listener, the handler and the limits. Start it with
//! [`Server::run`] (a tokio runtime of its own on this thread), [`Server::run_threads`] (one
//! such runtime per thread on the shared listener) or [`Server::serve`] (a future on your
//! tokio runtime's `LocalSet`).

use std::io;
use std::sync::Arc;

use ember_fcgi_core::Handler;
use ember_fcgi_host::Listener;
use ember_fcgi_host::runtime::{MemoryBudget, Settings, Setup};

use crate::nest::{self, BINDING_BYTES};

/// A FastCGI server for tokio. Each accepted connection gets one engine future that serves
/// its requests with the core driver, over request memory ([`Limits::capacities`](crate::Limits::capacities)) lent
/// from its loop's pool while requests are in flight; engines are `!Send` and stay on the
/// loop (thread) that accepted them. Handlers run inside tokio: they may await tokio's
/// timers, sockets, channels and `spawn_blocking`, and `tokio::task::spawn_local` (the
/// loops run in a `LocalSet`; with [`serve`](Self::serve), in yours).
///
/// Bounds: [`run`](Self::run) and [`serve`](Self::serve) need only `H: Handler` (the
/// handler need not be `Send`); [`run_threads`](Self::run_threads) needs
/// `H: Handler + Sync`, as every thread's loop calls the one handler by reference.
///
/// ```no_run
/// use ember_fcgi::prelude::*;
/// use ember_fcgi::server::{Limits, Listen};
/// use ember_fcgi::tokio::Server;
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

    /// Serves as a future inside the caller's tokio runtime, beside the application's other
    /// tasks, until a shutdown finished. The runtime needs io and time enabled
    /// (`enable_all()`); outside a tokio runtime this returns an error at once.
    ///
    /// The future is `!Send` (connection engines run inside it, polled when their socket,
    /// a deadline or their handler wakes them), so it cannot go to `tokio::spawn`: run it
    /// on a `tokio::task::LocalSet` (`local.spawn_local(server.serve())`,
    /// `local.run_until(..)`), or `block_on` it on a current-thread runtime. Its sockets
    /// sit in a poller of its own that tokio's reactor watches as one fd, and one tokio
    /// `Sleep` keeps the loop's next deadline; no tokio timer is armed per connection.
    ///
    /// ```no_run
    /// use ember_fcgi::prelude::*;
    /// use ember_fcgi::server::{Limits, Listen};
    /// use ember_fcgi::tokio::Server;
    ///
    /// struct Hello;
    /// impl Handler for Hello {
    ///     async fn handle(&self, _: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), HandlerError> {
    ///         tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    ///         res.send_response(200, content_type::TEXT, b"hello\n").await?;
    ///         Ok(())
    ///     }
    /// }
    ///
    /// #[tokio::main(flavor = "current_thread")]
    /// async fn main() -> Result<(), Box<dyn std::error::Error>> {
    ///     let server = Server::bind(&"127.0.0.1:9000".parse::<Listen>()?, Hello, Limits::default())?;
    ///     let stop = server.shutdown_handle();
    ///     let local = tokio::task::LocalSet::new();
    ///     let fastcgi = local.spawn_local(server.serve());
    ///     // ... the application's other tasks; later, stop.shutdown() ...
    ///     # stop.shutdown();
    ///     local.run_until(fastcgi).await??;
    ///     Ok(())
    /// }
    /// ```
    pub async fn serve(self) -> io::Result<()> {
        let settings = self.settings();
        nest::serve(Arc::new(self.setup.listener), self.setup.handler, settings).await
    }

    /// Serves on this thread until a shutdown finished, on a current-thread tokio runtime
    /// of its own (io and time enabled) with a `LocalSet`, which handlers' tokio work
    /// (timers, sockets, `spawn_local`, `spawn_blocking`) runs on too. When the shutdown
    /// finished the runtime is dropped with what tasks the handlers left, without waiting
    /// for blocking tasks still running.
    pub fn run(self) -> io::Result<()> {
        let settings = self.settings();
        run_loop(Arc::new(self.setup.listener), self.setup.handler, settings)
    }

    /// The memory ceiling of one loop ([`run`](Self::run) or [`serve`](Self::serve)):
    /// bytes per connection and in total, as on the other servers. With
    /// [`run_threads`](Self::run_threads)`(n)` the loops share `max_connections`, so the
    /// ceiling is [`MemoryBudget::total`] plus `(n - 1) *` [`MemoryBudget::fixed`].
    pub fn memory_budget(&self) -> MemoryBudget {
        ember_fcgi_host::poller::memory_budget::<H>(&self.setup.limits)
    }

    fn settings(&self) -> Settings {
        self.setup.settings(self.setup.limits.max_connections, false, BINDING_BYTES)
    }
}

impl<H: Handler + Sync> Server<H> {
    /// Serves on `threads` new threads (at least one), each running its own loop on its
    /// own current-thread tokio runtime (as [`run`](Self::run) does) that accepts from the
    /// shared listener; returns when a shutdown finished on all of them, or the first error
    /// after stopping the others. The limits, counters and shutdown handle are the
    /// server's, shared by all loops; a handler's tokio work runs on its loop's runtime.
    pub fn run_threads(self, threads: usize) -> io::Result<()> {
        let run = |listener, handler: &H, settings| run_loop(listener, handler, settings);
        self.setup.run_threads(threads, "ember-fcgi-tokio", false, BINDING_BYTES, run)
    }
}

/// One loop on a current-thread tokio runtime of its own, in a `LocalSet`.
fn run_loop<H: Handler>(listener: Arc<Listener>, handler: H, settings: Settings) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build()?;
    let local = tokio::task::LocalSet::new();
    let result = local.block_on(&runtime, nest::serve(listener, handler, settings));
    drop(local);
    runtime.shutdown_background();
    result
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
