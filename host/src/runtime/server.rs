//! What both transports' `Server` holds before it runs, and the builder methods they share
//! ([`server_methods!`](crate::server_methods)).

use std::io;
use std::os::fd::AsFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use ember_fcgi_core::Handler;

use super::{IdleRelease, Settings, ShutdownHandle};
use crate::stats::Stats;
use crate::{Limits, Listener, WebServerAddrs};

/// A server before it runs: the bound listener, the handler, and how it is to serve. Each
/// transport's `Server` is one of these plus the way it runs.
pub struct Setup<H> {
    pub listener: Listener,
    pub handler: H,
    pub limits: Limits,
    /// TCP peers allowed (by default `FCGI_WEB_SERVER_ADDRS`).
    pub allow: WebServerAddrs,
    pub shutdown: ShutdownHandle,
    pub stats: Stats,
    pub release: IdleRelease,
}

impl<H> std::fmt::Debug for Setup<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listener", &self.listener.describe())
            .field("limits", &self.limits)
            .field("web_server_addrs", &self.allow)
            .field("idle_release", &self.release)
            .finish_non_exhaustive()
    }
}

impl<H> Setup<H> {
    /// Serves an already bound listener (made non-blocking here); `FCGI_WEB_SERVER_ADDRS`
    /// is read from the environment. Fails if `limits.capacities` are not valid.
    pub fn new(listener: Listener, handler: H, limits: Limits) -> io::Result<Self> {
        limits.capacities.check().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        listener.set_nonblocking()?;
        Ok(Self {
            listener,
            handler,
            limits,
            allow: WebServerAddrs::from_env(),
            shutdown: ShutdownHandle::new(),
            stats: Stats::default(),
            release: IdleRelease::default(),
        })
    }

    /// The settings of one loop of this server.
    pub fn settings(&self, max_connections: usize, reports_fin: bool, binding_bytes: usize) -> Settings {
        Settings {
            limits: self.limits,
            max_connections,
            allow: self.allow.clone(),
            release: self.release,
            stats: self.stats.clone(),
            shutdown: Arc::clone(self.shutdown.state()),
            reports_fin,
            binding_bytes,
        }
    }
}

impl<H: Handler + Sync> Setup<H> {
    /// Runs `threads` loops (at least one), each on a new thread named `{name}-{n}`:
    /// `run_loop(listener, &handler, settings)` on the one listener, with one handler by
    /// reference, and one `Limits`, allow-list, `Stats` (so one open-connection count: the
    /// runtime checks `max_connections` against it, for all loops together) and shutdown
    /// state for all of them. Returns when every loop returned: `Ok` after a shutdown
    /// finished on all, or the first error (a loop that fails or panics shuts the others
    /// down).
    ///
    /// A binding should register the listener with [`register_listener_exclusive`] in each
    /// loop's poller, so a new connection wakes one sleeping loop, not all of them.
    pub fn run_threads<F>(
        self,
        threads: usize,
        name: &str,
        reports_fin: bool,
        binding_bytes: usize,
        run_loop: F,
    ) -> io::Result<()>
    where
        F: Fn(Arc<Listener>, &H, Settings) -> io::Result<()> + Sync,
    {
        let max = self.limits.max_connections;
        let settings: Vec<Settings> =
            (0..threads.max(1)).map(|_| self.settings(max, reports_fin, binding_bytes)).collect();
        let Setup { listener, handler, shutdown, .. } = self;
        let (listener, handler, run_loop) = (Arc::new(listener), &handler, &run_loop);
        std::thread::scope(move |scope| {
            let mut workers = Vec::with_capacity(settings.len());
            let mut result = Ok(());
            for (n, settings) in settings.into_iter().enumerate() {
                let (listener, stop) = (Arc::clone(&listener), shutdown.clone());
                let spawned =
                    std::thread::Builder::new().name(format!("{name}-{n}")).spawn_scoped(scope, move || {
                        let run = AssertUnwindSafe(|| run_loop(listener, handler, settings));
                        let result = catch_unwind(run)
                            .unwrap_or_else(|_| Err(io::Error::other(format!("{name}: a loop panicked"))));
                        if result.is_err() {
                            stop.shutdown();
                        }
                        result
                    });
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
                    .unwrap_or_else(|_| Err(io::Error::other(format!("{name}: a loop thread panicked"))));
                if result.is_ok() {
                    result = joined;
                }
            }
            result
        })
    }
}

/// Adds `listener` to the epoll instance `epoll` (a loop's poller) for edge-triggered
/// readability with `EPOLLEXCLUSIVE`, the event's data being `data` (the token or key the
/// binding's poller reports back). When several loops' pollers hold the same listener
/// this way, a new connection wakes one loop asleep in `epoll_wait` rather than every
/// loop (the kernel still queues the event on each busy loop it passes, which finds it
/// without a wake-up, so no connection waits for a loop that was not told). Works for any
/// listening socket: TCP we bound, the inherited fd 0, systemd's sockets, Unix sockets.
///
/// Linux only (4.5+): elsewhere, or if the kernel refuses the flag, it returns an error
/// and the binding registers the listener its usual way. The caller removes it with an
/// ordinary `EPOLL_CTL_DEL` (what mio's `deregister` and polling's `delete` do).
pub fn register_listener_exclusive(epoll: impl AsFd, listener: &Listener, data: u64) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::event::epoll;
        let flags = epoll::EventFlags::IN | epoll::EventFlags::ET | epoll::EventFlags::EXCLUSIVE;
        epoll::add(epoll, listener, epoll::EventData::new_u64(data), flags).map_err(io::Error::from)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = (epoll.as_fd(), listener, data);
        Err(io::Error::new(io::ErrorKind::Unsupported, "EPOLLEXCLUSIVE is Linux only"))
    }
}

/// The builder methods every transport's `Server<H>` has, written once: expand it inside
/// `impl<H: Handler> Server<H>` of a `Server` whose field `setup` is a [`Setup<H>`].
#[macro_export]
macro_rules! server_methods {
    () => {
        /// Binds `listen` (TCP, a Unix socket path, or `Listen::Inherited` for the socket a
        /// FastCGI launcher passed as fd 0). `FCGI_WEB_SERVER_ADDRS` is read from the
        /// environment.
        pub fn bind(
            listen: &$crate::Listen,
            handler: H,
            limits: $crate::Limits,
        ) -> ::std::result::Result<Self, $crate::BindError> {
            let listener = $crate::Listener::bind(listen)?;
            Self::from_listener(listener, handler, limits)
                .map_err(|e| $crate::BindError::Io(listen.clone(), e))
        }

        /// Serves an already bound listener (made non-blocking here). `FCGI_WEB_SERVER_ADDRS`
        /// is read from the environment. Fails if `limits.capacities` are not valid.
        pub fn from_listener(
            listener: $crate::Listener,
            handler: H,
            limits: $crate::Limits,
        ) -> ::std::io::Result<Self> {
            Ok(Self { setup: $crate::runtime::Setup::new(listener, handler, limits)? })
        }

        /// Replaces the TCP peer allow-list (by default `FCGI_WEB_SERVER_ADDRS`).
        pub fn with_web_server_addrs(mut self, allow: $crate::WebServerAddrs) -> Self {
            self.setup.allow = allow;
            self
        }

        /// When idle connections give back their request memory (by default 5 ms after
        /// they come to rest) and their engine futures (by default after 100 ms idle while
        /// more than 256 connections of a loop hold one). See `IdleRelease`;
        /// `IdleRelease::NEVER` keeps the engines.
        pub fn with_idle_release(mut self, release: $crate::runtime::IdleRelease) -> Self {
            self.setup.release = release;
            self
        }

        /// The TCP address listened on (useful with port 0); `None` for Unix sockets.
        pub fn local_addr(&self) -> ::std::option::Option<::std::net::SocketAddr> {
            self.setup.listener.local_addr()
        }

        /// The limits this server enforces.
        pub fn limits(&self) -> &$crate::Limits {
            &self.setup.limits
        }

        /// A handle that starts a graceful shutdown from any thread (also before it runs).
        pub fn shutdown_handle(&self) -> $crate::runtime::ShutdownHandle {
            self.setup.shutdown.clone()
        }

        /// Live counters (open connections, accepted, refused, timed out, requests, ...);
        /// clone before running to watch from another thread.
        pub fn stats(&self) -> $crate::stats::Stats {
            self.setup.stats.clone()
        }
    };
}
