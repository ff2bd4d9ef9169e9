//! The readiness loop as a value the caller drives: register with a `Poll`, feed it events,
//! let it work, ask it how long to sleep. [`Server::run`](crate::Server::run) is this plus
//! its own `Poll`.
//!
//! One call of [`Registered::process`] does, in order: take woken connections off the wake
//! queue, start a graceful shutdown if one was asked for, accept (until `WouldBlock`, at
//! most a batch), poll every ready connection's future once, and fire due timers (timeouts,
//! and releasing the engines of idle connections, see [`crate::IdleRelease`]). A
//! connection's future is polled only when its socket had an event or its waker fired, and
//! a poll makes a syscall only in a direction the socket may be ready in, so one slow peer
//! never holds up another.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ember_fcgi_core::Handler;
use ember_fcgi_host::{BufferPool, Limits, Wait, WebServerAddrs, deadline, events};
use mio::event::Event;
use mio::{Registry, Token};
use slab::Slab;

use crate::budget::MemoryBudget;
use crate::conn::{Entry, Expiry, LoopShared, Phase};
use crate::io::{Drain, Scratch, Stream, scratch};
use crate::listen::Acceptor;
use crate::shutdown::ShutdownHandle;
use crate::stats::{Counters, Stats};
use crate::waker::Shared;

/// Connections accepted per `process` call before others get a turn.
const ACCEPT_BATCH: usize = 256;
/// Pause before accepting again after `accept` failed (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Queue slots reserved up front at most (beyond it, queues grow on demand).
const MAX_PREALLOCATED: usize = 1 << 16;
/// Timers are looked at no more often than this: a sweep visits every connection, and the
/// release deadlines of many connections made idle one after another are close together.
const SWEEP_GAP: Duration = Duration::from_millis(10);
/// Stands for "never" where an `Instant` is needed.
const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

/// Everything a server needs to start its loop; built by [`crate::Server`].
pub(crate) struct Parts<H> {
    pub(crate) acceptor: Acceptor,
    pub(crate) local_addr: Option<SocketAddr>,
    pub(crate) handler: H,
    pub(crate) limits: Limits,
    pub(crate) allow: WebServerAddrs,
    pub(crate) shared: Arc<Shared>,
    pub(crate) stats: Stats,
    pub(crate) release: IdleRelease,
}

/// When the engines of idle connections are released, returning their memory.
///
/// A connection's engine future holds the driver's state and the handler's future (its
/// request memory is already back in the pool while it is idle). Once the engine reports the connection idle at a record boundary
/// (no request, nothing buffered: [`ConnectionStatus::is_idle_at_boundary`]) for
/// [`after`](Self::after), and more than [`keep`](Self::keep) connections hold an engine,
/// the server drops that engine; the connection then costs about 300 bytes (see
/// [`MemoryBudget::per_idle_connection`]) and gets a fresh engine (one allocation) when
/// its socket is readable again. The web server sees no difference.
///
/// So a busy connection (requests less than `after` apart), and every connection while at
/// most `keep` are open, never allocates; thousands of idle keep-alive connections cost
/// little. [`IdleRelease::NEVER`] keeps every engine for the connection's life.
///
/// [`ConnectionStatus::is_idle_at_boundary`]: ember_fcgi_core::ConnectionStatus::is_idle_at_boundary
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdleRelease {
    /// How long an engine must have been idle before it may be released. Default 100 ms.
    pub after: Duration,
    /// Engines released only while more connections than this hold one. Default 256.
    pub keep: usize,
}

impl IdleRelease {
    /// Never release an engine.
    pub const NEVER: Self = Self { after: Duration::MAX, keep: usize::MAX };
}

impl Default for IdleRelease {
    fn default() -> Self {
        Self { after: Duration::from_millis(100), keep: 256 }
    }
}

/// A server whose sockets are registered with a caller's `mio::Poll`: FastCGI inside an
/// existing event loop. It is `!Send` (handler futures are), so drive it on one thread.
///
/// Token layout: `tokens.start` is the listener, `tokens.start + 1` the waker, and the rest
/// of the range numbers the connections (it also caps them).
///
/// ```no_run
/// use std::time::Duration;
/// use ember_fcgi::prelude::*;
/// use ember_fcgi::host::{Limits, Listen};
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
    acceptor: Option<Acceptor>,
    local_addr: Option<SocketAddr>,
    loop_shared: Rc<LoopShared<H>>,
    limits: Limits,
    allow: WebServerAddrs,
    shared: Arc<Shared>,
    stats: Stats,
    conns: Slab<Entry>,
    /// Connections to poll in this round (each at most once, see `Entry::scheduled`).
    run_queue: Vec<usize>,
    /// Swap space for the wake queue (keeps its capacity).
    woken: Vec<usize>,
    listener_token: usize,
    waker_token: usize,
    first_conn_token: usize,
    tokens_end: usize,
    max_conns: usize,
    /// Our own waker, if we created it (kept alive while registered).
    _waker: Option<Arc<mio::Waker>>,
    accept_ready: bool,
    accept_retry_at: Option<Instant>,
    /// The earliest connection deadline (may be early: then a sweep finds nothing).
    next_sweep: Option<Instant>,
    /// When the last sweep ran (the next one waits at least [`SWEEP_GAP`]).
    last_sweep: Option<Instant>,
    release: IdleRelease,
    /// Where the connections' readers throw input the engines skip.
    scratch: Scratch,
    shutdown_deadline: Option<Instant>,
    finished: bool,
}

impl<H> std::fmt::Debug for Registered<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registered")
            .field("local_addr", &self.local_addr)
            .field("connections", &self.conns.len())
            .field("max_connections", &self.max_conns)
            .field("shutting_down", &self.shutdown_deadline.is_some())
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl<H: Handler + 'static> Registered<H> {
    /// Registers the listener and the waker; see [`crate::Server::register`].
    pub(crate) fn new(
        parts: Parts<H>,
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
        let Parts { mut acceptor, local_addr, handler, limits, allow, shared, stats, release } = parts;
        let (listener_token, waker_token) = (tokens.start, tokens.start + 1);
        let max_conns = limits.max_connections.min(available - 2);
        let own_waker = match waker {
            Some(_) => None,
            None => Some(Arc::new(mio::Waker::new(registry, Token(waker_token))?)),
        };
        let Some(loop_waker) = waker.or_else(|| own_waker.clone()) else {
            return Err(io::Error::other("no waker"));
        };
        acceptor.register(registry, Token(listener_token))?;
        let capacity = max_conns.min(MAX_PREALLOCATED);
        shared.attach(loop_waker, capacity);
        let mut config = limits.protocol_config();
        config.max_conns = u32::try_from(max_conns).unwrap_or(u32::MAX);
        let counters = Arc::clone(stats.counters());
        let pool = BufferPool::new(limits.capacities, max_conns, Arc::clone(&counters));
        let budget = MemoryBudget::of::<H>(&limits, max_conns, 0, None);
        counters.note_memory(budget.per_connection, budget.request_memory, max_conns, budget.fixed);
        events::started(&acceptor.describe(), &limits, budget.per_connection, budget.total());
        Ok(Self {
            acceptor: Some(acceptor),
            local_addr,
            loop_shared: Rc::new(LoopShared { handler, counters, pool, config }),
            limits,
            allow,
            shared,
            stats,
            conns: Slab::with_capacity(capacity),
            run_queue: Vec::with_capacity(capacity),
            woken: Vec::with_capacity(capacity),
            listener_token,
            waker_token,
            first_conn_token: tokens.start + 2,
            tokens_end: tokens.end,
            max_conns,
            _waker: own_waker,
            accept_ready: true,
            accept_retry_at: None,
            next_sweep: None,
            last_sweep: None,
            release,
            scratch: scratch(),
            shutdown_deadline: None,
            finished: false,
        })
    }

    /// Takes note of one readiness event; returns false if the token is not this server's.
    /// Cheap: the work happens in [`Self::process`].
    pub fn handle_event(&mut self, event: &Event) -> bool {
        let token = event.token().0;
        if token == self.listener_token {
            self.accept_ready = true;
            return true;
        }
        if token == self.waker_token {
            return true;
        }
        if !(self.first_conn_token..self.tokens_end).contains(&token) {
            return false;
        }
        let key = token - self.first_conn_token;
        if let Some(entry) = self.conns.get_mut(key) {
            entry.io.note_event(event);
            // A released connection wakes only for input (or EOF, or an error).
            if !entry.is_released() || entry.io.may_read() {
                schedule(&mut self.run_queue, entry, key);
            }
        }
        true
    }

    /// Does the work the events and timers call for: accept, poll ready connections,
    /// expire deadlines, advance a shutdown. Call it after each `Poll::poll`.
    pub fn process(&mut self, registry: &Registry) {
        let now = Instant::now();
        let shutdown = self.shared.begin(&mut self.woken);
        for key in self.woken.drain(..) {
            if let Some(entry) = self.conns.get_mut(key) {
                entry.clear_wake();
                schedule(&mut self.run_queue, entry, key);
            }
        }
        if shutdown && self.shutdown_deadline.is_none() {
            self.begin_shutdown(registry, now);
        }
        if self.accept_ready && self.accept_retry_at.is_none_or(|t| t <= now) {
            self.accept_retry_at = None;
            self.accept(registry, now);
        }
        let mut i = 0;
        while let Some(&key) = self.run_queue.get(i) {
            self.poll_connection(key, now);
            i += 1;
        }
        self.run_queue.clear();
        let now = Instant::now();
        if self.sweep_at().is_some_and(|t| t <= now) {
            self.sweep(now);
        }
        if let Some(deadline) = self.shutdown_deadline {
            if deadline <= now {
                self.close_all();
            }
            self.finished = self.conns.is_empty();
        }
        self.shared.end();
    }

    /// How long the caller may sleep in `Poll::poll` before calling [`Self::process`]
    /// again: zero when work is waiting, `None` when only an event can bring work.
    pub fn timeout(&self) -> Option<Duration> {
        let accept_now = self.accept_ready && self.acceptor.is_some() && self.accept_retry_at.is_none();
        if self.finished
            || accept_now
            || !self.run_queue.is_empty()
            || self.shared.has_work(self.shutdown_deadline.is_some())
        {
            return Some(Duration::ZERO);
        }
        let retry = self.accept_retry_at.filter(|_| self.accept_ready);
        let next = [self.sweep_at(), self.shutdown_deadline, retry].into_iter().flatten().min()?;
        Some(next.saturating_duration_since(Instant::now()))
    }

    /// Whether a graceful shutdown completed: every connection is closed. Stop driving
    /// the server then and call [`Self::deregister`].
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Closes every connection and the listener and removes them from the poll (a Unix
    /// socket file is removed too).
    pub fn deregister(mut self, registry: &Registry) {
        self.close_all();
        if let Some(mut acceptor) = self.acceptor.take() {
            acceptor.deregister(registry);
        }
    }

    /// Starts a graceful shutdown now (as [`ShutdownHandle::shutdown`] does from afar).
    pub fn shutdown(&mut self) {
        self.shared.request_shutdown();
    }

    /// A handle that starts a graceful shutdown from any thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle::new(Arc::clone(&self.shared))
    }

    /// Live counters.
    pub fn stats(&self) -> Stats {
        self.stats.clone()
    }

    /// The TCP address listened on (`None` for Unix sockets).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// Connections served at once: `max_connections`, capped by the token range.
    pub fn max_connections(&self) -> usize {
        self.max_conns
    }

    /// The memory ceiling of this server and its current use (see [`MemoryBudget`]).
    pub fn memory_budget(&self) -> MemoryBudget {
        MemoryBudget::of::<H>(&self.limits, self.max_conns, 0, Some(&self.loop_shared.pool))
    }

    /// When engines of idle connections are released (see [`IdleRelease`]).
    pub fn idle_release(&self) -> IdleRelease {
        self.release
    }

    // ---- accepting -----------------------------------------------------------------------

    fn accept(&mut self, registry: &Registry, now: Instant) {
        for _ in 0..ACCEPT_BATCH {
            let Some(acceptor) = &self.acceptor else {
                self.accept_ready = false;
                return;
            };
            match acceptor.accept() {
                Ok((stream, peer)) => self.admit(registry, stream, peer, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.accept_ready = false;
                    return;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted
                            | io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::ConnectionReset
                    ) => {}
                Err(e) => {
                    // Out of file descriptors or memory: the backlog keeps the peers; try
                    // again shortly (no new event may come, readiness is edge-triggered).
                    events::accept_failed(self.counters(), &e);
                    self.accept_retry_at = Some(now + ACCEPT_BACKOFF);
                    return;
                }
            }
        }
    }

    /// Serves an accepted connection, or closes it before reading a byte if the peer is
    /// not allowed or the server is full.
    fn admit(&mut self, registry: &Registry, mut stream: Stream, peer: Option<IpAddr>, now: Instant) {
        if let Some(ip) = peer.filter(|ip| !self.allow.allows(*ip)) {
            events::refused_not_allowed(self.counters(), &ip);
            return;
        }
        if self.conns.len() >= self.max_conns {
            events::refused_over_limit(self.counters(), &stream.peer(), self.max_conns);
            return;
        }
        let vacant = self.conns.vacant_entry();
        let key = vacant.key();
        if stream.register(registry, Token(self.first_conn_token + key)).is_err() {
            Counters::bump(&self.stats.counters().accept_errors);
            return;
        }
        if let Stream::Tcp(s) = &stream {
            // Response records go out as soon as they are sealed.
            let _ = s.set_nodelay(true);
        }
        let entry =
            vacant.insert(Entry::new(key, stream, &self.scratch, &self.loop_shared, &self.shared, now));
        schedule(&mut self.run_queue, entry, key);
        let counters = self.stats.counters();
        Counters::bump(&counters.accepted);
        Counters::bump(&counters.open);
        if let Some(at) = deadline(now, self.limits.idle_timeout) {
            self.note_deadline(at);
        }
    }

    // ---- connections ---------------------------------------------------------------------

    fn poll_connection(&mut self, key: usize, now: Instant) {
        let Some(entry) = self.conns.get_mut(key) else {
            return;
        };
        entry.scheduled = false;
        if entry.is_released() && entry.io.may_read() && self.shutdown_deadline.is_none() {
            entry.resume(&self.loop_shared);
        }
        match entry.phase {
            Phase::Serving => match entry.poll_engine(now) {
                None => {
                    let deadline = entry.deadline(&self.limits);
                    let quiet = entry.is_quiet();
                    let release_at = entry.release_at(self.release.after);
                    if let Some(deadline) = deadline {
                        self.note_deadline(deadline);
                    }
                    if let Some(at) = release_at
                        && self.conns.len() > self.release.keep
                    {
                        self.note_deadline(at);
                    }
                    if self.shutdown_deadline.is_some() && quiet {
                        self.linger(key, now);
                    }
                }
                Some(Ok(())) => self.linger(key, now),
                Some(Err(error)) => {
                    events::connection_failed(self.stats.counters(), &entry.io.stream.peer(), &error);
                    self.close(key);
                }
            },
            Phase::Lingering => self.drain(key),
        }
    }

    /// Closes gracefully: shut down the write side, then discard input until EOF or
    /// `close_linger` (so unread input does not turn the close into a reset).
    fn linger(&mut self, key: usize, now: Instant) {
        let linger = self.limits.close_linger;
        let Some(entry) = self.conns.get_mut(key) else {
            return;
        };
        if entry.start_linger(now, linger).is_err() {
            self.close(key);
            return;
        }
        if let Some(at) = deadline(now, linger) {
            self.note_deadline(at);
        }
        self.drain(key);
    }

    fn drain(&mut self, key: usize) {
        let Some(entry) = self.conns.get_mut(key) else {
            return;
        };
        match entry.drain() {
            Drain::Done => self.close(key),
            Drain::Blocked => {}
            Drain::More => entry.wake_later(),
        }
    }

    fn close(&mut self, key: usize) {
        if let Some(mut entry) = self.conns.try_remove(key) {
            entry.release();
            Counters::drop_one(&self.counters().open);
        }
    }

    fn close_all(&mut self) {
        let counters = Arc::clone(self.counters());
        let busy = self.conns.iter().filter(|(_, entry)| entry.phase == Phase::Serving).count();
        events::closed_by_shutdown(&counters, busy as u64);
        self.conns.retain(|_, entry| {
            entry.release();
            Counters::drop_one(&counters.open);
            false
        });
    }

    // ---- timers --------------------------------------------------------------------------

    fn note_deadline(&mut self, deadline: Instant) {
        if self.next_sweep.is_none_or(|t| deadline < t) {
            self.next_sweep = Some(deadline);
        }
    }

    /// When the next sweep is due: the earliest deadline, but not sooner than
    /// [`SWEEP_GAP`] after the last sweep.
    fn sweep_at(&self) -> Option<Instant> {
        let next = self.next_sweep?;
        Some(self.last_sweep.map_or(next, |last| next.max(last + SWEEP_GAP)))
    }

    /// Closes connections whose deadline passed, releases the engines of connections idle
    /// long enough (while more than `release.keep` hold one), and finds the next deadline.
    fn sweep(&mut self, now: Instant) {
        self.last_sweep = Some(now);
        let counters = Arc::clone(self.counters());
        let limits = self.limits;
        let release = self.release;
        let mut engines = self.conns.iter().filter(|(_, e)| e.has_engine()).count();
        let mut next: Option<Instant> = None;
        let mut earliest = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        self.conns.retain(|_, entry| {
            if engines > release.keep
                && let Some(at) = entry.release_at(release.after)
            {
                if at <= now && entry.release_engine() {
                    engines -= 1;
                } else {
                    earliest(Some(at));
                }
            }
            let keep = match entry.expired(now, &limits) {
                None | Some(Expiry::Wait(Wait::Busy)) => true,
                Some(Expiry::Linger) => false,
                Some(Expiry::Wait(Wait::Head)) => {
                    events::timed_out_head(&counters, &entry.io.stream.peer(), limits.head_timeout);
                    false
                }
                Some(Expiry::Wait(Wait::Body)) => {
                    events::timed_out_body(&counters, &entry.io.stream.peer(), limits.body_timeout);
                    entry.time_out(now);
                    false
                }
                Some(Expiry::Wait(Wait::Send)) => {
                    events::timed_out_send(&counters, &entry.io.stream.peer(), limits.send_timeout);
                    entry.time_out(now);
                    false
                }
                Some(Expiry::Wait(Wait::Idle)) => {
                    events::timed_out_idle(&counters, &entry.io.stream.peer(), limits.idle_timeout);
                    let ok = entry.start_linger(now, limits.close_linger).is_ok();
                    if ok {
                        // Discard what is already there on the next round.
                        entry.wake_later();
                    }
                    ok
                }
            };
            if keep {
                earliest(entry.deadline(&limits));
            } else {
                entry.release();
                Counters::drop_one(&counters.open);
            }
            keep
        });
        self.next_sweep = next;
    }

    fn begin_shutdown(&mut self, registry: &Registry, now: Instant) {
        // A shutdown timeout too long to represent waits for the connections to finish.
        self.shutdown_deadline = Some(deadline(now, self.limits.shutdown_timeout).unwrap_or(now + YEAR));
        events::shutting_down(self.conns.len(), self.limits.shutdown_timeout);
        if let Some(mut acceptor) = self.acceptor.take() {
            acceptor.deregister(registry);
        }
        self.accept_ready = false;
        // Poll everyone once: idle connections close now, busy ones when they go idle.
        for (key, entry) in self.conns.iter_mut() {
            schedule(&mut self.run_queue, entry, key);
        }
    }

    fn counters(&self) -> &Arc<Counters> {
        self.stats.counters()
    }
}

impl<H> Drop for Registered<H> {
    /// Shutdown handles outlive the loop; they must not keep waking a dead `Poll`.
    fn drop(&mut self) {
        self.shared.detach();
    }
}

/// Adds a connection to the run queue unless it is there already.
fn schedule(run_queue: &mut Vec<usize>, entry: &mut Entry, key: usize) {
    if !entry.scheduled {
        entry.scheduled = true;
        run_queue.push(key);
    }
}
