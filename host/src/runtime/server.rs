//! What both transports' `Server` holds before it runs, and the builder methods they share
//! ([`server_methods!`](crate::server_methods)).

use std::io;
use std::sync::Arc;

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
