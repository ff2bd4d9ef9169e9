//! The server before it runs: a bound listener, the handler and the limits. Start it with
//! [`Server::run`] (its own thread and `Poll`) or [`Server::register`] (a `Poll` you own).

use std::io;
use std::ops::Range;
use std::sync::Arc;

use ember_fcgi_core::Handler;
use ember_fcgi_host::Listener;
use ember_fcgi_host::runtime::{MemoryBudget, Settings, Setup, Stream};
#[cfg(not(any(target_os = "linux", target_os = "android")))]
use mio::Events;
use mio::{Poll, Registry};

use crate::embed::{Binding, Registered};

/// Readiness events fetched per `Poll::poll` in [`Server::run`].
const EVENTS: usize = 1024;

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
        let settings = self.setup.settings(self.setup.limits.max_connections, true, EVENT_BYTES);
        run_loop(Arc::new(self.setup.listener), self.setup.handler, settings).map(|_| ())
    }
}

impl<H: Handler + Sync + 'static> Server<H> {
    /// Serves on `threads` new threads (at least one, named `ember-fcgi-mio-0`, ...), each
    /// running its own loop and `Poll` (as [`run`](Self::run) does) on the one listener;
    /// returns when a shutdown finished on all of them, or the first error after stopping
    /// the others.
    ///
    /// The loops are one server: they share the handler (by reference, hence `Sync`), the
    /// [`Limits`](crate::Limits), the allow-list, one [`Stats`](crate::Stats) table, one
    /// shutdown handle ([`shutdown_handle`](Self::shutdown_handle) stops them all) and one
    /// open-connection count, so `max_connections` bounds all loops together (one more is
    /// accepted and closed at once, whichever loop accepts it). Each loop has its own
    /// `Poll`, connections, buffer pool and timers; a connection stays on the loop that
    /// accepted it. The ceiling is [`memory_budget`](Self::memory_budget)'s total plus
    /// `(threads - 1) *` [`MemoryBudget::fixed`].
    ///
    /// Accepting: every loop's `Poll` holds the listener with `EPOLLEXCLUSIVE` (Linux 4.5+;
    /// mio has no flag for it, so the listener is added to the poll's epoll fd directly),
    /// so a new connection wakes one loop asleep in `Poll::poll`, not all of them; a loop
    /// that is busy at that moment finds the event when it next polls, without a wake-up,
    /// and the woken loop accepts until the queue is empty. This works for every listener
    /// (TCP, Unix, the inherited fd 0, systemd's sockets); `SO_REUSEPORT` (a listener per
    /// loop) would need sockets we bind ourselves, TCP only, and hashes each connection to
    /// one loop's queue even while that loop is blocked in a handler. Elsewhere (no
    /// `EPOLLEXCLUSIVE`) every loop wakes and one wins the `accept`.
    pub fn run_threads(self, threads: usize) -> io::Result<()> {
        let run = |listener, handler: &H, settings| run_loop(listener, handler, settings).map(|_| ());
        self.setup.run_threads(threads, "ember-fcgi-mio", true, EVENT_BYTES, run)
    }
}

/// Bytes of one loop's event buffer (for the memory budget).
const EVENT_BYTES: usize = EVENTS * std::mem::size_of::<mio::event::Event>();

/// One loop with its own `Poll` on `listener` until a graceful shutdown completes; returns
/// how many readiness events of the listener woke it (for the tests of `EPOLLEXCLUSIVE`).
pub(crate) fn run_loop<'a, H: Handler + 'a>(
    listener: Arc<Listener>,
    handler: H,
    settings: Settings,
) -> io::Result<u64> {
    #[allow(unused_mut)] // mutable only for `Poll::poll` (not Linux)
    let mut poll = Poll::new()?;
    let tokens = 0..settings.max_connections.saturating_add(2).max(3);
    let mut server = Binding::new(listener, handler, settings, poll.registry(), tokens, None)?;
    let mut listener_events = 0;
    // On Linux the loop waits on the poll's epoll fd itself (mio's `Poll::poll` goes
    // through libc's cancellation-point wrapper and its own event type: some 100
    // instructions per request more); the tokens are epoll's data either way.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let result = {
        let mut events = ember_fcgi_host::runtime::EpollEvents::with_capacity(EVENTS);
        loop {
            server.process(poll.registry());
            if server.is_finished() {
                break Ok(listener_events);
            }
            if let Err(e) = events.wait(poll.registry(), server.timeout()) {
                break Err(e);
            }
            for (token, event) in events.iter() {
                listener_events += u64::from(server.note_raw(token as usize, event));
            }
        }
    };
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let result = {
        let mut events = Events::with_capacity(EVENTS);
        loop {
            server.process(poll.registry());
            if server.is_finished() {
                break Ok(listener_events);
            }
            match poll.poll(&mut events, server.timeout()) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(e),
            }
            for event in events.iter() {
                listener_events += u64::from(server.is_listener(event));
                server.handle_event(event);
            }
        }
    };
    server.close(poll.registry());
    result
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    use ember_fcgi_core::{HandlerError, Request, Response};
    use ember_fcgi_host::{Limits, Listen};

    use super::*;

    struct Nothing;

    impl Handler for Nothing {
        async fn handle(&self, _: &mut Request<'_>, _: &mut Response<'_>) -> Result<(), HandlerError> {
            Ok(())
        }
    }

    /// The voluntary context switches of this process's threads named `name` (Linux).
    fn switches(name: &str) -> Vec<u64> {
        let mut found = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if comm.trim_end() != name {
                continue;
            }
            let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
            let line = status.lines().find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"));
            found.push(line.and_then(|n| n.trim().parse().ok()).unwrap_or(0));
        }
        found
    }

    /// With two loops asleep in `epoll_wait`, a new connection wakes one of them. Without
    /// `EPOLLEXCLUSIVE` both wake for every connection (the one that loses the race finds
    /// no event left and sleeps again, unseen but for its context switches), so each loop
    /// would switch at least once per connection; with it, a loop that accepts nothing is
    /// not woken at all.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn a_new_connection_wakes_one_loop() {
        const CONNECTIONS: u64 = 40;
        let listener = Listener::bind(&Listen::Tcp("127.0.0.1:0".parse().unwrap())).unwrap();
        let addr = listener.local_addr().unwrap();
        let setup = Setup::new(listener, Nothing, Limits::default()).unwrap();
        let (stats, stop) = (setup.stats.clone(), setup.shutdown.clone());
        let woken = Mutex::new(Vec::new());
        let (before, after) = std::thread::scope(|scope| {
            let server = scope.spawn(|| {
                setup.run_threads(2, "excl", true, EVENT_BYTES, |listener, handler: &Nothing, settings| {
                    let events = run_loop(listener, handler, settings)?;
                    woken.lock().unwrap().push(events);
                    Ok(())
                })
            });
            std::thread::sleep(Duration::from_millis(50));
            let before = [switches("excl-0"), switches("excl-1")].concat();
            for n in 1..=CONNECTIONS {
                drop(std::net::TcpStream::connect(addr).unwrap());
                let start = Instant::now();
                while stats.snapshot().accepted < n || stats.open_connections() > 0 {
                    assert!(start.elapsed() < Duration::from_secs(10), "connection {n} not served");
                    std::thread::sleep(Duration::from_millis(2));
                }
                // Both loops asleep again (no connection, no timer) before the next one.
                std::thread::sleep(Duration::from_millis(20));
            }
            let after = [switches("excl-0"), switches("excl-1")].concat();
            stop.shutdown();
            server.join().unwrap().unwrap();
            (before, after)
        });
        let woken = woken.into_inner().unwrap();
        let wakeups: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
        eprintln!(
            "{CONNECTIONS} connections: listener events per loop {woken:?}, context switches per loop {wakeups:?}"
        );
        assert_eq!((woken.len(), wakeups.len()), (2, 2));
        assert!(woken.iter().sum::<u64>() >= CONNECTIONS, "a listener event per connection: {woken:?}");
        let least = wakeups.iter().min().copied().unwrap_or(0);
        assert!(least < CONNECTIONS / 4, "every loop woken for every connection: {wakeups:?}");
    }
}
