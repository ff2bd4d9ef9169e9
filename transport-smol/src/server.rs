//! The server before it runs: a bound listener, the handler and the limits. Start it with
//! [`Server::run`] (this thread), [`Server::run_threads`] (one loop per thread on the shared
//! listener) or [`Server::serve`] (a future on your smol executor).

use std::io;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use ember_fcgi_core::Handler;
use ember_fcgi_host::runtime::{IdleRelease, Settings, ShutdownHandle};
use ember_fcgi_host::stats::Stats;
use ember_fcgi_host::{BindError, Limits, Listen, Listener, WebServerAddrs};

use crate::poller::{self, BINDING_BYTES};

/// A FastCGI server for smol. Each accepted connection gets one engine future that serves
/// its requests with the core driver, over request memory ([`Limits::capacities`]) lent
/// from its loop's pool while requests are in flight; engines are `!Send` and stay on the
/// loop (thread) that accepted them.
///
/// Bounds: [`run`](Self::run) and [`serve`](Self::serve) need only `H: Handler` (the
/// handler need not be `Send`); [`run_threads`](Self::run_threads) needs
/// `H: Handler + Sync`, as every thread's loop calls the one handler by reference.
///
/// ```no_run
/// use ember_fcgi::prelude::*;
/// use ember_fcgi::smol::{Limits, Listen, Server};
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
    listener: Arc<Listener>,
    handler: H,
    limits: Limits,
    allow: WebServerAddrs,
    shutdown: ShutdownHandle,
    stats: Stats,
    release: IdleRelease,
}

impl<H> std::fmt::Debug for Server<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listener", &self.listener.describe())
            .field("limits", &self.limits)
            .field("web_server_addrs", &self.allow)
            .field("idle_release", &self.release)
            .finish_non_exhaustive()
    }
}

impl<H: Handler> Server<H> {
    /// Binds `listen` (TCP, a Unix socket path, or `Listen::Inherited` for the socket a
    /// FastCGI launcher passed as fd 0). `FCGI_WEB_SERVER_ADDRS` is read from the
    /// environment.
    pub fn bind(listen: &Listen, handler: H, limits: Limits) -> Result<Self, BindError> {
        let listener = Listener::bind(listen)?;
        Self::from_listener(listener, handler, limits).map_err(|e| BindError::Io(listen.clone(), e))
    }

    /// Serves an already bound listener (made non-blocking here). `FCGI_WEB_SERVER_ADDRS`
    /// is read from the environment. Fails if `limits.capacities` are not valid.
    pub fn from_listener(listener: Listener, handler: H, limits: Limits) -> io::Result<Self> {
        limits.capacities.check().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        listener.set_nonblocking()?;
        Ok(Self {
            listener: Arc::new(listener),
            handler,
            limits,
            allow: WebServerAddrs::from_env(),
            shutdown: ShutdownHandle::new(),
            stats: Stats::default(),
            release: IdleRelease::default(),
        })
    }

    /// Replaces the TCP peer allow-list (by default `FCGI_WEB_SERVER_ADDRS`).
    pub fn with_web_server_addrs(mut self, allow: WebServerAddrs) -> Self {
        self.allow = allow;
        self
    }

    /// When the engine futures of idle connections are dropped to save memory; by default
    /// after 100 ms idle while more than 256 connections of a loop hold one. See
    /// [`IdleRelease`]; [`IdleRelease::NEVER`] turns it off.
    pub fn with_idle_release(mut self, release: IdleRelease) -> Self {
        self.release = release;
        self
    }

    /// The TCP address listened on (useful with port 0); `None` for Unix sockets.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr()
    }

    /// The limits this server enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// A handle that starts a graceful shutdown from any thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Live counters (open connections, accepted, refused, timed out, requests, ...).
    pub fn stats(&self) -> Stats {
        self.stats.clone()
    }

    /// Serves as a future on the caller's smol executor (a `LocalExecutor`, or
    /// `smol::block_on`), beside the application's other tasks, until a shutdown finished.
    /// The future is `!Send`: connection engines run inside it, polled when their socket,
    /// a deadline or their handler wakes them. Our sockets sit in a poller of our own that
    /// async-io watches as one fd; each wake-up of this future costs async-io's usual
    /// allocations, which [`run`](Self::run) avoids.
    pub async fn serve(self) -> io::Result<()> {
        let settings = self.settings();
        poller::serve(self.listener, self.handler, settings).await
    }

    /// Serves on this thread until a shutdown finished. The thread sleeps in our own
    /// poller, so a request on an open connection allocates nothing; async work the
    /// handler awaits (smol timers, sockets, files) is driven by async-io's own thread.
    pub fn run(self) -> io::Result<()> {
        let settings = self.settings();
        poller::run(self.listener, self.handler, settings)
    }

    fn settings(&self) -> Settings {
        Settings {
            limits: self.limits,
            max_connections: self.limits.max_connections,
            allow: self.allow.clone(),
            release: self.release,
            stats: self.stats.clone(),
            shutdown: Arc::clone(self.shutdown.state()),
            reports_fin: false,
            binding_bytes: BINDING_BYTES,
        }
    }
}

impl<H: Handler + Sync> Server<H> {
    /// Serves on `threads` new threads (at least one), each running its own loop (as
    /// [`run`](Self::run) does) that accepts from the shared listener; returns when a
    /// shutdown finished on all of them, or the first error after stopping the others.
    pub fn run_threads(self, threads: usize) -> io::Result<()> {
        let settings: Vec<Settings> = (0..threads.max(1)).map(|_| self.settings()).collect();
        let Self { listener, handler, shutdown, .. } = self;
        let handler = &handler;
        std::thread::scope(move |scope| {
            let mut workers = Vec::with_capacity(settings.len());
            let mut result = Ok(());
            for (n, settings) in settings.into_iter().enumerate() {
                let (listener, stop) = (Arc::clone(&listener), shutdown.clone());
                let spawned = std::thread::Builder::new().name(format!("ember-fcgi-smol-{n}")).spawn_scoped(
                    scope,
                    move || {
                        let run = AssertUnwindSafe(|| poller::run(listener, handler, settings));
                        let result = catch_unwind(run)
                            .unwrap_or_else(|_| Err(io::Error::other("an ember-fcgi-smol loop panicked")));
                        if result.is_err() {
                            stop.shutdown();
                        }
                        result
                    },
                );
                match spawned {
                    Ok(worker) => workers.push(worker),
                    Err(error) => {
                        shutdown.shutdown();
                        result = Err(error);
                        break;
                    }
                }
            }
            drop(listener); // the loops hold it; it closes when they stop accepting
            for worker in workers {
                let joined = worker
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("an ember-fcgi-smol thread panicked")));
                if result.is_ok() {
                    result = joined;
                }
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send_sync<T: Send + Sync>() {}

    #[test]
    fn handles_cross_threads() {
        send_sync::<ShutdownHandle>();
        send_sync::<Stats>();
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
