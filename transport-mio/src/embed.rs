//! The readiness loop as a value the caller drives: register with a `Poll`, feed it events,
//! let it work, ask it how long to sleep. [`Server::run`](crate::Server::run) is this plus
//! its own `Poll`.
//!
//! One call of [`Registered::process`] does, in order: take woken connections off the wake
//! queue, start a graceful shutdown if one was asked for, accept (until `WouldBlock`, at
//! most a batch), poll every ready connection's future once, and fire due timers (timeouts,
//! and releasing the engines of idle connections, see [`IdleRelease`]). A
//! connection's future is polled only when its socket had an event or its waker fired, and
//! a poll makes a syscall only in a direction the socket may be ready in, so one slow peer
//! never holds up another. All of that is the host's connection runtime
//! ([`ember_fcgi_host::runtime`]); this module binds it to the caller's `Poll`.

use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::task::{Wake, Waker};
use std::time::Duration;

use ember_fcgi_core::Handler;
use ember_fcgi_host::Listener;
use ember_fcgi_host::runtime::{
    Event as ConnEvent, IdleRelease, MemoryBudget, Reactor, Runtime, Settings, Setup, ShutdownHandle, Stream,
    register_listener_exclusive,
};
use ember_fcgi_host::stats::Stats;
use mio::event::Event;
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

/// A server whose sockets are registered with a caller's `mio::Poll`: FastCGI inside an
/// existing event loop. It is `!Send` (handler futures are), so drive it on one thread.
///
/// Token layout: `tokens.start` is the listener, `tokens.start + 1` the waker, and the rest
/// of the range numbers the connections (it also caps them).
///
/// ```no_run
/// use std::time::Duration;
/// use ember_fcgi::prelude::*;
/// use ember_fcgi::server::{Limits, Listen};
/// use ember_fcgi::mio::Server;
/// use ember_fcgi::mio::mio::{Events, Poll}; // or `mio` itself, at the same version
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
/// let mut poll = Poll::new()?;
/// let listen: Listen = "127.0.0.1:9000".parse()?;
/// // Tokens 0..100 are the application's own; FastCGI gets 100..1124.
/// let mut fcgi = Server::bind(&listen, Hello, Limits::default())?.register(poll.registry(), 100..1124)?;
/// let mut events = Events::with_capacity(256);
/// loop {
///     fcgi.process(poll.registry());
///     if fcgi.is_finished() {
///         break;
///     }
///     // Sleep no longer than FastCGI's next timer (and your own).
///     let timeout = fcgi.timeout().map_or(Duration::from_secs(1), |t| t.min(Duration::from_secs(1)));
///     poll.poll(&mut events, Some(timeout))?;
///     for event in events.iter() {
///         if !fcgi.handle_event(event) {
///             // one of the application's own tokens
///         }
///     }
/// }
/// fcgi.deregister(poll.registry());
/// # Ok(())
/// # }
/// ```
pub struct Registered<H> {
    binding: Binding<'static, H>,
    local_addr: Option<SocketAddr>,
    shutdown: ShutdownHandle,
}

impl<H> std::fmt::Debug for Registered<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registered")
            .field("local_addr", &self.local_addr)
            .field("runtime", &self.binding.runtime)
            .finish_non_exhaustive()
    }
}

/// One runtime bound to a `Registry`: what [`Registered`] is (with a handler of its own),
/// and each loop of [`Server::run`](crate::Server::run) and
/// [`Server::run_threads`](crate::Server::run_threads) (which lends every loop the one
/// handler, hence the lifetime).
pub(crate) struct Binding<'a, H> {
    runtime: Runtime<'a, H, Stream>,
    listener_token: usize,
    waker_token: usize,
    first_conn_token: usize,
    tokens_end: usize,
    /// Our own waker, if we created it (kept alive while registered).
    _waker: Option<Arc<mio::Waker>>,
}

/// The runtime's view of the caller's `Poll`: connection `key` is token
/// `first_conn_token + key`.
struct MioReactor<'r> {
    registry: &'r Registry,
    first_conn_token: usize,
}

impl Reactor for MioReactor<'_> {
    /// The socket itself: closing it removes it from epoll (the fd is not shared: accepted
    /// with CLOEXEC, never duplicated), so no `EPOLL_CTL_DEL` is needed.
    type Socket = Stream;

    fn register(&self, stream: Stream, key: usize) -> io::Result<Stream> {
        let token = Token(self.first_conn_token + key);
        let fd = stream.as_fd().as_raw_fd();
        self.registry.register(&mut SourceFd(&fd), token, Interest::READABLE | Interest::WRITABLE)?;
        Ok(stream)
    }

    fn deregister_listener(&self, listener: &Listener) {
        // Closing the socket right after removes it from the poll anyway.
        let _ = self.registry.deregister(&mut SourceFd(&listener.as_fd().as_raw_fd()));
    }
}

/// Wakes the `Poll` through its `mio::Waker`.
struct Notify(Arc<mio::Waker>);

impl Wake for Notify {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // A failed wake (the poll was closed) leaves nobody to wake.
        let _ = self.0.wake();
    }
}

impl<'a, H: Handler + 'a> Binding<'a, H> {
    /// Registers the listener (with `EPOLLEXCLUSIVE` where there is one: see
    /// [`Server::run_threads`](crate::Server::run_threads)) and the waker, and sets up the
    /// runtime; `settings.max_connections` is capped by the token range.
    pub(crate) fn new(
        listener: Arc<Listener>,
        handler: H,
        mut settings: Settings,
        registry: &Registry,
        tokens: Range<usize>,
        waker: Option<Arc<mio::Waker>>,
    ) -> io::Result<Self> {
        let available = tokens.end.saturating_sub(tokens.start);
        if available < 3 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "token range {}..{} is too small: a server needs 2 tokens plus one per connection",
                    tokens.start, tokens.end
                ),
            ));
        }
        let (listener_token, waker_token) = (tokens.start, tokens.start + 1);
        let own_waker = match waker {
            Some(_) => None,
            None => Some(Arc::new(mio::Waker::new(registry, Token(waker_token))?)),
        };
        let Some(loop_waker) = waker.or_else(|| own_waker.clone()) else {
            return Err(io::Error::other("no waker"));
        };
        // mio has no flag for EPOLLEXCLUSIVE: the listener goes into the poll's epoll fd
        // directly, under its token (what mio reports back), and leaves it through mio's
        // ordinary `deregister`.
        if register_listener_exclusive(registry, &listener, listener_token as u64).is_err() {
            let fd = listener.as_fd().as_raw_fd();
            registry.register(&mut SourceFd(&fd), Token(listener_token), Interest::READABLE)?;
        }
        settings.max_connections = settings.max_connections.min(available - 2);
        let runtime = Runtime::new(listener, handler, settings);
        runtime.wakes().set_notify(&Waker::from(Arc::new(Notify(loop_waker))));
        Ok(Self {
            runtime,
            listener_token,
            waker_token,
            first_conn_token: tokens.start + 2,
            tokens_end: tokens.end,
            _waker: own_waker,
        })
    }

    fn reactor<'r>(&self, registry: &'r Registry) -> MioReactor<'r> {
        MioReactor { registry, first_conn_token: self.first_conn_token }
    }

    /// See [`Registered::handle_event`].
    pub(crate) fn handle_event(&mut self, event: &Event) -> bool {
        let token = event.token().0;
        if token == self.listener_token {
            self.runtime.note_listener();
            return true;
        }
        if token == self.waker_token {
            return true;
        }
        if !(self.first_conn_token..self.tokens_end).contains(&token) {
            return false;
        }
        let failed = event.is_error();
        let read_closed = event.is_read_closed() || failed;
        self.runtime.note_event(
            token - self.first_conn_token,
            ConnEvent {
                readable: event.is_readable() || read_closed,
                writable: event.is_writable() || event.is_write_closed() || failed,
                read_closed,
            },
        );
        true
    }

    /// An event of `token` read from the poll's epoll fd directly (`server::run_loop`);
    /// true if it was the listener's.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub(crate) fn note_raw(&mut self, token: usize, event: ConnEvent) -> bool {
        if token == self.listener_token {
            self.runtime.note_listener();
            return true;
        }
        if (self.first_conn_token..self.tokens_end).contains(&token) {
            self.runtime.note_event(token - self.first_conn_token, event);
        }
        false
    }

    /// Whether `event` is the listener's.
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    pub(crate) fn is_listener(&self, event: &Event) -> bool {
        event.token().0 == self.listener_token
    }

    pub(crate) fn process(&mut self, registry: &Registry) {
        let reactor = self.reactor(registry);
        self.runtime.process(&reactor);
    }

    pub(crate) fn timeout(&self) -> Option<Duration> {
        self.runtime.timeout()
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.runtime.is_finished()
    }

    /// Closes every connection and the listener and removes them from the poll.
    pub(crate) fn close(mut self, registry: &Registry) {
        let reactor = self.reactor(registry);
        self.runtime.close_everything(&reactor);
    }
}

impl<H: Handler + 'static> Registered<H> {
    /// Registers the listener and the waker; see [`crate::Server::register`].
    pub(crate) fn new(
        setup: Setup<H>,
        registry: &Registry,
        tokens: Range<usize>,
        waker: Option<Arc<mio::Waker>>,
    ) -> io::Result<Self> {
        let local_addr = setup.listener.local_addr();
        let settings = setup.settings(setup.limits.max_connections, true, 0);
        let Setup { listener, handler, shutdown, .. } = setup;
        let binding = Binding::new(Arc::new(listener), handler, settings, registry, tokens, waker)?;
        Ok(Self { binding, local_addr, shutdown })
    }

    /// Takes note of one readiness event; returns false if the token is not this server's.
    /// Cheap: the work happens in [`Self::process`].
    pub fn handle_event(&mut self, event: &Event) -> bool {
        self.binding.handle_event(event)
    }

    /// Does the work the events and timers call for: accept, poll ready connections,
    /// expire deadlines, advance a shutdown. Call it after each `Poll::poll`.
    pub fn process(&mut self, registry: &Registry) {
        self.binding.process(registry);
    }

    /// How long the caller may sleep in `Poll::poll` before calling [`Self::process`]
    /// again: zero when work is waiting, `None` when only an event can bring work.
    pub fn timeout(&self) -> Option<Duration> {
        self.binding.timeout()
    }

    /// Whether a graceful shutdown completed: every connection is closed. Stop driving
    /// the server then and call [`Self::deregister`].
    pub fn is_finished(&self) -> bool {
        self.binding.is_finished()
    }

    /// Closes every connection and the listener and removes them from the poll (a Unix
    /// socket file is removed too).
    pub fn deregister(self, registry: &Registry) {
        self.binding.close(registry);
    }

    /// Starts a graceful shutdown now (as [`ShutdownHandle::shutdown`] does from afar).
    pub fn shutdown(&mut self) {
        self.shutdown.shutdown();
    }

    /// A handle that starts a graceful shutdown from any thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Live counters.
    pub fn stats(&self) -> Stats {
        self.binding.runtime.stats().clone()
    }

    /// The TCP address listened on (`None` for Unix sockets).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// Connections served at once: `max_connections`, capped by the token range.
    pub fn max_connections(&self) -> usize {
        self.binding.runtime.max_connections()
    }

    /// The memory ceiling of this server and its current use (see [`MemoryBudget`]).
    pub fn memory_budget(&self) -> MemoryBudget {
        self.binding.runtime.memory_budget()
    }

    /// When engines of idle connections are released (see [`IdleRelease`]).
    pub fn idle_release(&self) -> IdleRelease {
        self.binding.runtime.idle_release()
    }
}
