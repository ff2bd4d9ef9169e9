//! The server before it runs: a bound listener, the handler and the limits. Start it with
//! [`Server::run`] (its own thread and `Poll`) or [`Server::register`] (a `Poll` you own).

use std::io;
use std::ops::Range;
use std::sync::Arc;

use ember_fcgi_core::Handler;
use ember_fcgi_host::runtime::{MemoryBudget, Setup, Stream};
use mio::{Events, Poll, Registry};

use crate::embed::Registered;

/// Readiness events fetched per `Poll::poll` in [`Server::run`].
const EVENTS: usize = 1024;
/// Bytes of [`Server::run`]'s event buffer, in the memory budget (logged and reported).
pub(crate) const EVENT_BYTES: usize = EVENTS * std::mem::size_of::<mio::event::Event>();

/// A FastCGI server on one thread and one `mio::Poll`. Its memory is bounded before it
/// starts (see [`Server::memory_budget`]): a small engine per connection (set by the
/// handler type `H`) plus request memory ([`Limits::capacities`](crate::Limits::capacities)) lent from a pool to the
/// connections that are serving requests.
///
/// `Server` is `Send` when `H` is, so it can be built on one thread and run on another;
/// once running, connection futures stay on the loop's thread.
///
/// ```no_run
/// use ember_fcgi::prelude::*;
/// use ember_fcgi::server::{Limits, Listen};
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
    setup: Setup<H>,
}

impl<H> std::fmt::Debug for Server<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.setup.fmt(f)
    }
}

impl<H: Handler + 'static> Server<H> {
    ember_fcgi_host::server_methods!();

    /// The memory ceiling when run with [`Server::run`]: bytes per connection and in total.
    pub fn memory_budget(&self) -> MemoryBudget {
        MemoryBudget::of::<H, Stream>(
            &self.setup.limits,
            self.setup.limits.max_connections,
            EVENT_BYTES,
            None,
        )
    }

    /// Registers the listener and a `mio::Waker` with `registry` and returns the loop to
    /// drive; see [`Registered`] for the token layout and an example.
    ///
    /// mio allows one `Waker` per `Poll`: if your loop has its own, use
    /// [`Self::register_with_waker`].
    pub fn register(self, registry: &Registry, tokens: Range<usize>) -> io::Result<Registered<H>> {
        Registered::new(self.setup, registry, tokens, None)
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
        Registered::new(self.setup, registry, tokens, Some(waker))
    }

    /// Runs the server on this thread until a graceful shutdown completes.
    pub fn run(self) -> io::Result<()> {
        let mut poll = Poll::new()?;
        let tokens = 0..self.setup.limits.max_connections.saturating_add(2).max(3);
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
}
