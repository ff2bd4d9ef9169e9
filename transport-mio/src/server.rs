//! The server before it runs: a bound listener, the handler and the limits. Start it with
//! [`Server::run`] (its own thread and `Poll`) or [`Server::register`] (a `Poll` you own).

use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;

use ember_fcgi_core::Handler;
use ember_fcgi_host::runtime::{IdleRelease, MemoryBudget, ShutdownHandle, Stream};
use ember_fcgi_host::stats::Stats;
use ember_fcgi_host::{BindError, Limits, Listen, Listener, WebServerAddrs};
use mio::{Events, Poll, Registry};

use crate::embed::{Parts, Registered};

/// Readiness events fetched per `Poll::poll` in [`Server::run`].
const EVENTS: usize = 1024;

/// A FastCGI server on one thread and one `mio::Poll`. Its memory is bounded before it
/// starts (see [`Server::memory_budget`]): a small engine per connection (set by the
/// handler type `H`) plus request memory ([`Limits::capacities`]) lent from a pool to the
/// connections that are serving requests.
///
/// `Server` is `Send` when `H` is, so it can be built on one thread and run on another;
/// once running, connection futures stay on the loop's thread.
///
/// ```no_run
/// use ember_fcgi::prelude::*;
/// use ember_fcgi::host::{Limits, Listen};
/// use ember_fcgi::mio::Server;
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
/// let server = Server::bind(&Listen::Inherited, Hello, Limits::default())?;
/// println!("{}", server.memory_budget());
/// let stop = server.shutdown_handle(); // e.g. call stop.shutdown() on SIGTERM
/// server.run()?;
/// # Ok(())
/// # }
/// ```
pub struct Server<H> {
    listener: Listener,
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
            .finish_non_exhaustive()
    }
}

impl<H: Handler + 'static> Server<H> {
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
            listener,
            handler,
            limits,
            allow: WebServerAddrs::from_env(),
            shutdown: ShutdownHandle::new(),
            stats: Stats::default(),
            release: IdleRelease::default(),
        })
    }
}

impl<H: Handler + 'static> Server<H> {
    /// Replaces the TCP peer allow-list (by default `FCGI_WEB_SERVER_ADDRS`).
    pub fn with_web_server_addrs(mut self, allow: WebServerAddrs) -> Self {
        self.allow = allow;
        self
    }

    /// When the engine futures of idle connections are dropped to save memory;
    /// by default after 100 ms idle while more than 256 connections are open. See
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

    /// The memory ceiling when run with [`Server::run`]: bytes per connection and in total.
    pub fn memory_budget(&self) -> MemoryBudget {
        let events = EVENTS * std::mem::size_of::<mio::event::Event>();
        MemoryBudget::of::<H, Stream>(&self.limits, self.limits.max_connections, events, None)
    }

    /// A handle that starts a graceful shutdown from any thread (also before `run`).
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Live counters; clone before `run` to watch from another thread.
    pub fn stats(&self) -> Stats {
        self.stats.clone()
    }

    /// Registers the listener and a `mio::Waker` with `registry` and returns the loop to
    /// drive; see [`Registered`] for the token layout and an example.
    ///
    /// mio allows one `Waker` per `Poll`: if your loop has its own, use
    /// [`Self::register_with_waker`].
    pub fn register(self, registry: &Registry, tokens: Range<usize>) -> io::Result<Registered<H>> {
        Registered::new(self.into_parts(), registry, tokens, None)
    }

    /// Like [`Self::register`], but wakes the poll with your `waker` (and reserves
    /// `tokens.start + 1` unused). Call [`Registered::process`] after every `Poll::poll`,
    /// whatever woke it.
    pub fn register_with_waker(
        self,
        registry: &Registry,
        tokens: Range<usize>,
        waker: Arc<mio::Waker>,
    ) -> io::Result<Registered<H>> {
        Registered::new(self.into_parts(), registry, tokens, Some(waker))
    }

    /// Runs the server on this thread until a graceful shutdown completes.
    pub fn run(self) -> io::Result<()> {
        let mut poll = Poll::new()?;
        let tokens = 0..self.limits.max_connections.saturating_add(2).max(3);
        let mut server = self.register(poll.registry(), tokens)?;
        let mut events = Events::with_capacity(EVENTS);
        loop {
            server.process(poll.registry());
            if server.is_finished() {
                break;
            }
            match poll.poll(&mut events, server.timeout()) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for event in events.iter() {
                server.handle_event(event);
            }
        }
        server.deregister(poll.registry());
        Ok(())
    }

    fn into_parts(self) -> Parts<H> {
        let Self { listener, handler, limits, allow, shutdown, stats, release } = self;
        Parts { listener, handler, limits, allow, shutdown, stats, release }
    }
}
