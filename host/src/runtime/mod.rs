//! The connection runtime both std transports share: everything but the poller.
//!
//! A transport binds it to a poller (mio's `Poll`, a `polling::Poller`): it registers the
//! listener, feeds the runtime the readiness events of the listener
//! ([`Runtime::note_listener`]) and of the connections ([`Runtime::note_event`]), calls
//! [`Runtime::process`] after each wait, and sleeps no longer than [`Runtime::timeout`].
//! Connection sockets are registered and deregistered through the small [`Reactor`]
//! trait; wakes of connection futures reach the sleeping loop through the [`Waker`] the
//! binding gives [`Wakes::set_notify`].
//!
//! One call of [`Runtime::process`] does, in order: take woken connections off the wake
//! queue, start a graceful shutdown if one was asked for, accept (until `WouldBlock`, at
//! most a batch), poll every ready connection's engine once, and sweep the deadlines
//! (timeouts, and releasing the engines of idle connections, see [`IdleRelease`]). A
//! connection's engine is polled only when its socket had an event or its waker fired, and
//! a poll makes a syscall only in a direction the socket may be ready in (see
//! [`io`]), so one slow peer never holds up another. What is here:
//! - the table of connections (a slab, each with its boxed engine future, its waker, its
//!   [`Watch`](crate::Watch) and its one state, `ConnState`, which only `ConnState::step`
//!   changes), and the run and wake queues;
//! - one close path, `Runtime::close(key, reason)`: every connection the runtime closes
//!   goes through it with a [`CloseReason`], which is what its log line and counter say;
//! - the socket halves the engine reads and writes through, with readiness flags, byte
//!   counting, and skipping of discardable input into the loop's one scratch buffer;
//! - the sweep over the deadlines, the graceful close (FIN, then a bounded drain), idle
//!   release, the graceful shutdown, and the memory budget;
//! - what a transport's `Server` holds before it runs ([`Setup`]) and its builder methods
//!   ([`server_methods!`](crate::server_methods)).
//!
//! [`Waker`]: std::task::Waker

mod budget;
mod conn;
mod deadlines;
pub mod io;
mod server;
mod state;
#[cfg(test)]
mod tests;
mod wake;

use std::io as stdio;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ember_fcgi_core::Handler;
use slab::Slab;

pub use budget::MemoryBudget;
use conn::{Entry, Expiry, Polled};
use deadlines::Deadlines;
#[cfg(any(target_os = "linux", target_os = "android"))]
pub use io::EpollEvents;
use io::{Accepted, ConnIo, Drain, Peer, Scratch, accept};
pub use io::{Event, SCRATCH_BYTES, Stream};
pub use server::Setup;
pub use server::register_listener_exclusive;
pub use state::CloseReason;
use state::{ConnState, Step};
pub use wake::{Shutdown, ShutdownHandle, Wakes};

use crate::engine::LoopShared;
use crate::stats::{Counters, Stats};
use crate::{BufferPool, Limits, Listener, Wait, WebServerAddrs, deadline, events};

/// Connections accepted per `process` call before others get a turn (or another loop on
/// the same listener takes them).
const ACCEPT_BATCH: usize = 64;
/// Pause before accepting again after `accept` failed (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Queue slots reserved up front at most (beyond it, queues grow on demand).
const MAX_PREALLOCATED: usize = 1 << 16;
/// Timers are looked at no more often than this: the release deadlines of many
/// connections made idle one after another are close together, and one sweep takes them
/// all (a sweep costs the deadlines due, not the connections open).
const SWEEP_GAP: Duration = Duration::from_millis(10);
/// Stands for "never" where an `Instant` is needed.
const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

/// What a transport's poller does for the runtime.
pub trait Reactor {
    /// An accepted connection's socket as the binding keeps it: the [`Stream`], and what
    /// it needs to undo the registration when dropped.
    type Socket: AsRef<Stream>;
    /// Registers an accepted connection's socket under `key`, edge-triggered, for reading
    /// and writing; its events go to [`Runtime::note_event`] with the same key.
    fn register(&self, stream: Stream, key: usize) -> stdio::Result<Self::Socket>;
    /// The listener is no longer accepted from (a shutdown began).
    fn deregister_listener(&self, listener: &Listener);
}

/// When idle connections give back what they hold: their request memory, and their
/// engines.
///
/// A connection takes a block of request memory from its loop's pool when input arrives
/// and lays the core driver out in it. When the connection comes to rest (no request,
/// nothing buffered), it keeps the block for [`memory_after`](Self::memory_after), so
/// back-to-back keep-alive requests reuse the driver (laying it out again costs about 8 %
/// of a small request's instructions); then the block goes back to the pool. The ceiling
/// is the same either way: one block per connection.
///
/// A connection's engine future holds the driver's state and the handler's future (by
/// then its request memory is back in the pool). Once the engine reports
/// the connection idle at a record boundary (no request, nothing buffered:
/// [`ConnectionStatus::is_idle_at_boundary`]) for [`after`](Self::after), and more than
/// [`keep`](Self::keep) connections hold an engine, the server drops that engine; the
/// connection then costs about 300 bytes (see [`MemoryBudget::per_idle_connection`]) and
/// gets a fresh engine (one allocation) when its socket is readable again. The web server
/// sees no difference.
///
/// So a busy connection (requests less than `after` apart), and every connection while at
/// most `keep` are open, never allocates; thousands of idle keep-alive connections cost
/// little. [`IdleRelease::NEVER`] keeps every engine for the connection's life.
///
/// [`ConnectionStatus::is_idle_at_boundary`]: ember_fcgi_core::ConnectionStatus::is_idle_at_boundary
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct IdleRelease {
    /// How long a connection at rest keeps its request memory. Default 5 ms (it goes
    /// back at the first deadline sweep after that: sweeps are at least 10 ms apart);
    /// `Duration::ZERO` gives it back as soon as the connection is at rest.
    pub memory_after: Duration,
    /// How long an engine must have been idle before it may be released. Default 100 ms.
    pub after: Duration,
    /// Engines released only while more connections than this hold one. Default 256.
    pub keep: usize,
}

impl IdleRelease {
    /// Never release an engine (request memory still goes back after the default
    /// `memory_after`).
    pub const NEVER: Self = Self { memory_after: Self::MEMORY_AFTER, after: Duration::MAX, keep: usize::MAX };

    const MEMORY_AFTER: Duration = Duration::from_millis(5);

    /// With how long a connection at rest keeps its request memory.
    pub const fn with_memory_after(mut self, memory_after: Duration) -> Self {
        self.memory_after = memory_after;
        self
    }

    /// With how long an engine must have been idle before it may be released.
    pub const fn with_after(mut self, after: Duration) -> Self {
        self.after = after;
        self
    }

    /// With how many engines are kept whatever their idle time.
    pub const fn with_keep(mut self, keep: usize) -> Self {
        self.keep = keep;
        self
    }
}

impl Default for IdleRelease {
    fn default() -> Self {
        Self { memory_after: Self::MEMORY_AFTER, after: Duration::from_millis(100), keep: 256 }
    }
}

/// How a binding sets up a runtime.
#[derive(Debug)]
pub struct Settings {
    pub limits: Limits,
    /// Connections served at once (`limits.max_connections`, or fewer if the binding has
    /// fewer keys).
    pub max_connections: usize,
    pub allow: WebServerAddrs,
    pub release: IdleRelease,
    pub stats: Stats,
    pub shutdown: Arc<Shutdown>,
    /// The poller reports the peer's FIN ([`Event::read_closed`]): a short read then
    /// means the socket is drained. Without, flags clear only on `WouldBlock`.
    pub reports_fin: bool,
    /// Bytes the binding allocates once (its event buffer), for the memory budget.
    pub binding_bytes: usize,
}

/// One serving loop's connections and listener, without a poller (see the module docs).
/// It is `!Send` (engines are), so drive it on one thread.
pub struct Runtime<'a, H, S> {
    listener: Option<Arc<Listener>>,
    loop_shared: Rc<LoopShared<H>>,
    limits: Limits,
    allow: WebServerAddrs,
    wakes: Arc<Wakes>,
    shutdown: Arc<Shutdown>,
    stats: Stats,
    conns: Slab<Entry<'a, S>>,
    /// Connections to poll in this round (each at most once, see `Entry::scheduled`).
    run_queue: Vec<usize>,
    /// Swap space for the wake queue (keeps its capacity).
    woken: Vec<usize>,
    max_conns: usize,
    accept_ready: bool,
    accept_retry_at: Option<Instant>,
    /// When each connection must be looked at next (its timeout, linger, memory recall or
    /// engine release), earliest first; the sweep pops what is due.
    deadlines: Deadlines,
    /// Connections holding an engine (`Entry::has_engine`), for `release.keep`.
    engines: usize,
    /// Connections at rest past `release.after` whose engines were kept because at most
    /// `release.keep` connections held one then (flagged `Entry::kept`); released at the
    /// next sweep once more do.
    kept: Vec<usize>,
    /// When a sweep is to release kept engines (more than `release.keep` hold one again).
    release_kept_at: Option<Instant>,
    /// [`SWEEP_GAP`] after the last sweep: the next one waits until then.
    sweep_gap_end: Option<Instant>,
    /// The earliest of the next sweep and the end of a shutdown, as `process` left them.
    timers: Option<Instant>,
    release: IdleRelease,
    reports_fin: bool,
    binding_bytes: usize,
    /// The shortest time ahead of a poll at which it may set a deadline of its connection
    /// (see [`min_delay`]).
    min_delay: Duration,
    /// Where the connections' readers throw input the engines skip.
    scratch: Scratch,
    shutdown_deadline: Option<Instant>,
    finished: bool,
    /// The clock at the start of the last `process` (what `timeout` counts from: the clock
    /// is read once per round).
    now: Instant,
}

impl<H, S> std::fmt::Debug for Runtime<'_, H, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("connections", &self.conns.len())
            .field("max_connections", &self.max_conns)
            .field("shutting_down", &self.shutdown_deadline.is_some())
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl<'a, H: Handler + 'a, S: AsRef<Stream> + 'a> Runtime<'a, H, S> {
    /// A loop serving `listener` (non-blocking; the binding registers it) with `handler`.
    pub fn new(listener: Arc<Listener>, handler: H, settings: Settings) -> Self {
        let Settings { limits, max_connections, allow, release, stats, shutdown, reports_fin, binding_bytes } =
            settings;
        let capacity = max_connections.min(MAX_PREALLOCATED);
        let wakes = Arc::new(Wakes::default());
        wakes.reserve(capacity);
        shutdown.register(&wakes);
        let mut config = limits.protocol_config();
        config.max_conns = u32::try_from(max_connections).unwrap_or(u32::MAX);
        let counters = Arc::clone(stats.counters());
        let pool = BufferPool::new(limits.capacities, max_connections, Arc::clone(&counters));
        let budget = MemoryBudget::of::<H, S>(&limits, max_connections, binding_bytes, None);
        counters.note_memory(budget.per_connection, budget.request_memory, max_connections, budget.fixed);
        events::started(&listener.describe(), &limits, budget.per_connection, budget.total());
        Self {
            listener: Some(listener),
            loop_shared: Rc::new(LoopShared {
                handler,
                counters,
                pool,
                config,
                return_at_once: release.memory_after.is_zero(),
                clock: std::cell::Cell::new(Instant::now()),
                request_timeout: limits.request_timeout,
                slow_request_after: limits.slow_request_after,
            }),
            limits,
            allow,
            wakes,
            shutdown,
            stats,
            conns: Slab::with_capacity(capacity),
            run_queue: Vec::with_capacity(capacity),
            woken: Vec::with_capacity(capacity),
            max_conns: max_connections,
            accept_ready: true,
            accept_retry_at: None,
            deadlines: Deadlines::with_capacity(capacity),
            engines: 0,
            kept: Vec::new(),
            release_kept_at: None,
            sweep_gap_end: None,
            timers: None,
            release,
            reports_fin,
            binding_bytes,
            min_delay: min_delay(&limits, &release),
            scratch: Rc::new(std::cell::RefCell::new(vec![0; SCRATCH_BYTES].into_boxed_slice())),
            shutdown_deadline: None,
            finished: false,
            now: Instant::now(),
        }
    }

    /// Where connection wakes and shutdown requests go; the binding sets its notifier.
    pub fn wakes(&self) -> &Arc<Wakes> {
        &self.wakes
    }

    /// The listener may have connections waiting.
    pub fn note_listener(&mut self) {
        self.accept_ready = true;
    }

    /// A readiness event of connection `key`'s socket (cheap: the work happens in
    /// [`Self::process`]). Unknown keys are ignored.
    pub fn note_event(&mut self, key: usize, event: Event) {
        if let Some(entry) = self.conns.get_mut(key) {
            entry.io.note_event(event);
            // A released connection wakes only for input (or EOF, or an error).
            if entry.state() != ConnState::Released || entry.io.may_read() {
                schedule(&mut self.run_queue, entry, key);
            }
        }
    }

    /// Does the work the events and timers call for: accept, poll ready connections,
    /// expire deadlines, advance a shutdown. Call it after each wait of the poller.
    pub fn process(&mut self, reactor: &impl Reactor<Socket = S>) {
        let now = Instant::now();
        self.loop_shared.clock.set(now);
        self.wakes.begin(&mut self.woken);
        for key in self.woken.drain(..) {
            if let Some(entry) = self.conns.get_mut(key) {
                entry.clear_wake();
                schedule(&mut self.run_queue, entry, key);
            }
        }
        if self.shutdown.is_requested() && self.shutdown_deadline.is_none() {
            self.begin_shutdown(reactor, now);
        }
        if self.accept_ready && self.accept_retry_at.is_none_or(|t| t <= now) {
            self.accept_retry_at = None;
            self.accept(reactor, now);
        }
        // A poll sets the deadlines it changes `min_delay` or more past `now`: a connection
        // already scheduled by then needs no new look.
        let horizon = now.checked_add(self.min_delay).unwrap_or_else(|| now + YEAR);
        let mut i = 0;
        while let Some(&key) = self.run_queue.get(i) {
            self.poll_connection(key, now, horizon);
            i += 1;
        }
        self.run_queue.clear();
        // The clock is read once per round: the sweep and `timeout` count from its start (a
        // timer due during a long round is found one round later).
        self.now = now;
        let mut sweep_at = self.sweep_at();
        if sweep_at.is_some_and(|t| t <= now) {
            self.sweep(now);
            sweep_at = self.sweep_at();
        }
        if let Some(deadline) = self.shutdown_deadline {
            if deadline <= now {
                self.close_all(now);
                sweep_at = self.sweep_at();
            }
            self.finished = self.conns.is_empty();
        }
        // Nothing else moves these timers until the next `process`.
        self.timers = earlier(sweep_at, self.shutdown_deadline);
        self.wakes.end();
    }

    /// How long the binding may sleep in its poller before calling [`Self::process`]
    /// again: zero when work is waiting, `None` when only an event can bring work. Counted
    /// from the clock the last [`Self::process`] read as it began: ask right before the
    /// wait.
    pub fn timeout(&self) -> Option<Duration> {
        let accept_now = self.accept_ready && self.listener.is_some() && self.accept_retry_at.is_none();
        let shutdown_now = self.shutdown.is_requested() && self.shutdown_deadline.is_none();
        if self.finished || accept_now || shutdown_now || !self.run_queue.is_empty() || self.wakes.has_work()
        {
            return Some(Duration::ZERO);
        }
        Some(self.next_timer()?.saturating_duration_since(self.now))
    }

    /// When the next timer (a deadline, the end of a shutdown, an accept retry) is due;
    /// for a binding that sleeps until an instant rather than for a duration, once
    /// [`Self::timeout`] is not zero.
    pub fn next_timer(&self) -> Option<Instant> {
        earlier(self.timers, self.accept_retry_at.filter(|_| self.accept_ready))
    }

    /// Whether a graceful shutdown completed: every connection is closed.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Closes every connection and lets go of the listener.
    pub fn close_everything(&mut self, reactor: &impl Reactor<Socket = S>) {
        self.close_all(Instant::now());
        if let Some(listener) = self.listener.take() {
            reactor.deregister_listener(&listener);
        }
    }

    /// The live counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Connections served at once.
    pub fn max_connections(&self) -> usize {
        self.max_conns
    }

    /// When engines of idle connections are released.
    pub fn idle_release(&self) -> IdleRelease {
        self.release
    }

    /// The memory ceiling of this loop and its current use.
    pub fn memory_budget(&self) -> MemoryBudget {
        MemoryBudget::of::<H, S>(
            &self.limits,
            self.max_conns,
            self.binding_bytes,
            Some(&self.loop_shared.pool),
        )
    }

    // ---- accepting -----------------------------------------------------------------------

    fn accept(&mut self, reactor: &impl Reactor<Socket = S>, now: Instant) {
        for _ in 0..ACCEPT_BATCH {
            let Some(listener) = &self.listener else {
                self.accept_ready = false;
                return;
            };
            match accept(listener) {
                Ok(Accepted::Conn(stream, peer)) => self.admit(reactor, stream, peer, now),
                Ok(Accepted::Skip) => {}
                Err(e) if e.kind() == stdio::ErrorKind::WouldBlock => {
                    self.accept_ready = false;
                    return;
                }
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
    fn admit(
        &mut self,
        reactor: &impl Reactor<Socket = S>,
        stream: Stream,
        peer: Option<IpAddr>,
        now: Instant,
    ) {
        if let Some(ip) = peer.filter(|ip| !self.allow.allows(*ip)) {
            events::connection_closed(self.counters(), &ip, &CloseReason::RefusedNotAllowed);
            return;
        }
        // The open count is the server's, shared by all its loops (smol's `run_threads`):
        // `max_connections` bounds them together.
        let counters = Arc::clone(self.stats.counters());
        let max = u64::try_from(self.max_conns).unwrap_or(u64::MAX);
        let open =
            counters.open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1));
        if open.is_err() {
            let reason = CloseReason::RefusedOverLimit(self.max_conns);
            events::connection_closed(&counters, &Peer(&stream), &reason);
            return;
        }
        let vacant = self.conns.vacant_entry();
        let key = vacant.key();
        let peer = || match &peer {
            Some(ip) => ip.to_string(),
            None => "unix".to_owned(),
        };
        let socket = match reactor.register(stream, key) {
            Ok(socket) => socket,
            Err(e) => {
                events::connection_closed(&counters, &peer(), &CloseReason::RegisterFailed(e));
                Counters::drop_one(&counters.open);
                return;
            }
        };
        let io = ConnIo::new(socket, Rc::clone(&self.scratch), Arc::clone(&counters), self.reports_fin);
        let entry = vacant.insert(Entry::new(key, io, &self.loop_shared, &self.wakes, now));
        schedule(&mut self.run_queue, entry, key);
        if let Some(at) = entry.next_look(&self.limits, &self.release, None) {
            self.deadlines.schedule(key, at);
        }
        Counters::bump(&counters.accepted);
        self.engine_made(now);
    }

    // ---- connections ---------------------------------------------------------------------

    /// Polls connection `key`'s engine once and schedules its next look, unless it is
    /// scheduled by `horizon` already (its deadlines as this poll may set them are all
    /// later: see [`min_delay`]).
    fn poll_connection(&mut self, key: usize, now: Instant, horizon: Instant) {
        let Some(entry) = self.conns.get_mut(key) else {
            return;
        };
        entry.scheduled = false;
        let resumes = self.shutdown_deadline.is_none() || entry.io.is_fresh();
        if entry.state() == ConnState::Released && entry.io.may_read() && resumes {
            entry.resume(&self.loop_shared);
            if entry.has_engine() {
                self.engine_made(now);
            }
        }
        let Some(entry) = self.conns.get_mut(key) else {
            return;
        };
        if matches!(entry.state(), ConnState::Lingering { .. }) {
            return self.drain(key);
        }
        match entry.poll_engine(now) {
            Polled::Busy | Polled::AtRest => {
                // A later deadline is found when the scheduled entry pops (each request at
                // rest moves the recall of its memory, always later than the one pending).
                if !self.deadlines.is_scheduled_by(key, horizon)
                    && let Some(at) = entry.next_look(&self.limits, &self.release, None)
                {
                    self.deadlines.schedule(key, at);
                }
                // Looked at only during a shutdown.
                if self.shutdown_deadline.is_some() && entry.is_quiet() {
                    self.close(key, CloseReason::ShutdownQuiet, now);
                }
            }
            Polled::Finished => self.close(key, CloseReason::Finished, now),
            Polled::Failed(reason) => self.close(key, reason, now),
        }
    }

    /// The one way a connection is closed: reports `reason` (its log line and counter,
    /// [`events::connection_closed`]), then closes as the reason says: gracefully (the
    /// engine is dropped, the write side shut down, and input discarded until EOF or
    /// `close_linger`, so unread input does not turn the close into a reset) or at once
    /// (after handlers saw `TimedOut`, for a stall).
    fn close(&mut self, key: usize, reason: CloseReason, now: Instant) {
        let Some(entry) = self.conns.get_mut(key) else {
            return;
        };
        events::connection_closed(self.stats.counters(), &Peer(entry.io.stream()), &reason);
        if reason.expires_handlers() {
            entry.expire_handlers();
        }
        if !reason.lingers() {
            return self.remove(key);
        }
        let linger = self.limits.close_linger;
        let had_engine = entry.has_engine();
        let shut = entry.start_linger(now, linger);
        if had_engine {
            self.engines -= 1;
        }
        if shut.is_err() {
            return self.remove(key);
        }
        if let Some(at) = deadline(now, linger) {
            self.deadlines.schedule(key, at);
        }
        self.drain(key);
    }

    /// Discards a lingering connection's input; EOF (or an error) ends the close.
    fn drain(&mut self, key: usize) {
        let Some(entry) = self.conns.get_mut(key) else {
            return;
        };
        match entry.drain() {
            Drain::Done => self.remove(key),
            Drain::Blocked => {}
            Drain::More => entry.wake_later(),
        }
    }

    /// Ends a close that [`Self::close`] began: the connection is `Closed` (its engine
    /// dropped before its socket) and leaves the table.
    fn remove(&mut self, key: usize) {
        if let Some(mut entry) = self.conns.try_remove(key) {
            if entry.has_engine() {
                self.engines -= 1;
            }
            if entry.kept {
                self.kept.retain(|k| *k != key);
            }
            self.deadlines.cancel(key);
            entry.enter(Step::Close);
            Counters::drop_one(&self.counters().open);
        }
    }

    /// Closes every connection now: lingering ones finish their close, the others close
    /// with [`CloseReason::ShutdownTimeout`].
    fn close_all(&mut self, now: Instant) {
        let keys: Vec<(usize, bool)> = self
            .conns
            .iter()
            .map(|(key, entry)| (key, matches!(entry.state(), ConnState::Lingering { .. })))
            .collect();
        let open = keys.iter().filter(|(_, lingering)| !lingering).count();
        events::closed_by_shutdown(open as u64);
        for (key, lingering) in keys {
            if lingering {
                self.remove(key);
            } else {
                self.close(key, CloseReason::ShutdownTimeout, now);
            }
        }
    }

    // ---- timers --------------------------------------------------------------------------

    /// A connection got an engine (accepted, or resumed after a release): if that makes
    /// more than `release.keep` and some were kept, the next sweep releases them.
    fn engine_made(&mut self, now: Instant) {
        self.engines += 1;
        if self.engines > self.release.keep && !self.kept.is_empty() && self.release_kept_at.is_none() {
            self.release_kept_at = Some(now);
        }
    }

    /// When the next sweep is due: the earliest deadline, but not sooner than
    /// [`SWEEP_GAP`] after the last sweep.
    fn sweep_at(&self) -> Option<Instant> {
        let next = earlier(self.deadlines.earliest(), self.release_kept_at)?;
        Some(self.sweep_gap_end.map_or(next, |end| next.max(end)))
    }

    /// Looks at the connections whose deadline is due, and only those: closes those whose
    /// timeout or linger ran out, gives back the request memory of connections at rest for
    /// `release.memory_after`, frees the engines of connections at rest for
    /// `release.after` (while more than `release.keep` hold one; the others are kept in a
    /// list, and released by a later sweep once more than `keep` hold one again), and
    /// schedules each connection looked at for its next deadline.
    fn sweep(&mut self, now: Instant) {
        self.sweep_gap_end = Some(now + SWEEP_GAP);
        self.release_kept_at = None;
        let limits = self.limits;
        let release = self.release;
        debug_assert_eq!(self.engines, self.conns.iter().filter(|(_, e)| e.has_engine()).count());
        while let Some(key) = self.deadlines.pop_due(now) {
            let Some(entry) = self.conns.get_mut(key) else {
                continue;
            };
            let mut retry = None;
            if entry.engine_free_at(release.after).is_some_and(|at| at <= now) {
                if self.engines <= release.keep {
                    if !entry.kept {
                        entry.kept = true;
                        self.kept.push(key);
                    }
                } else if entry.free_idle_engine() {
                    self.engines -= 1;
                } else {
                    // Input or a wake is pending: the poll it brings decides; look again.
                    retry = Some(now + SWEEP_GAP);
                }
            }
            if entry.request_memory_recall_at(release.memory_after).is_some_and(|at| at <= now) {
                entry.recall_request_memory();
            }
            entry.wake_if_requests_due(now);
            let reason = match entry.expired(now, &limits) {
                None | Some(Expiry::Wait(Wait::Busy)) => {
                    let next = entry.next_look(&limits, &release, Some(now));
                    if let Some(at) = [next, retry].into_iter().flatten().min() {
                        self.deadlines.schedule(key, at);
                    }
                    continue;
                }
                Some(Expiry::Linger) => None,
                Some(Expiry::Wait(Wait::Head)) => Some(CloseReason::HeadTimeout(limits.head_timeout)),
                Some(Expiry::Wait(Wait::Body)) => Some(CloseReason::BodyTimeout(limits.body_timeout)),
                Some(Expiry::Wait(Wait::Send)) => Some(CloseReason::SendTimeout(limits.send_timeout)),
                Some(Expiry::Wait(Wait::Idle)) => Some(CloseReason::IdleTimeout(limits.idle_timeout)),
            };
            match reason {
                Some(reason) => self.close(key, reason, now),
                // The linger after a close ran out.
                None => self.remove(key),
            }
        }
        // Engines kept while at most `keep` connections held one go once more do.
        while self.engines > release.keep
            && let Some(key) = self.kept.pop()
        {
            if let Some(entry) = self.conns.get_mut(key)
                && std::mem::take(&mut entry.kept)
                && entry.engine_free_at(release.after).is_some_and(|at| at <= now)
                && entry.free_idle_engine()
            {
                self.engines -= 1;
            }
        }
    }

    fn begin_shutdown(&mut self, reactor: &impl Reactor<Socket = S>, now: Instant) {
        // A shutdown timeout too long to represent waits for the connections to finish.
        self.shutdown_deadline = Some(deadline(now, self.limits.shutdown_timeout).unwrap_or(now + YEAR));
        events::shutting_down(self.conns.len(), self.limits.shutdown_timeout);
        if let Some(listener) = self.listener.take() {
            reactor.deregister_listener(&listener);
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

impl<H, S> Drop for Runtime<'_, H, S> {
    /// Shutdown handles outlive the loop; they must not keep waking a dead poller.
    fn drop(&mut self) {
        self.wakes.detach();
    }
}

/// The shortest time ahead of `now` at which a poll at `now` may set a deadline of its
/// connection: each deadline `Entry::next_look` takes is a duration here counted from an
/// instant the poll sets to `now` when it changes it (the `Watch`'s start of a wait, the
/// start of a rest), or else is unchanged and so already scheduled. A deadline added to
/// `next_look` must add its duration here.
fn min_delay(limits: &Limits, release: &IdleRelease) -> Duration {
    let memory = Some(release.memory_after).filter(|after| !after.is_zero());
    [
        limits.idle_timeout,
        limits.head_timeout,
        limits.body_timeout,
        limits.send_timeout,
        // The request timer's instants count from a handler's start, which a poll sets.
        limits.request_timeout,
        limits.slow_request_after,
        release.after,
    ]
    .into_iter()
    .chain(memory)
    .min()
    .unwrap_or(Duration::ZERO)
}

/// The earlier of two instants, either of which may be absent.
#[inline]
fn earlier(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// Adds a connection to the run queue unless it is there already.
fn schedule<S>(run_queue: &mut Vec<usize>, entry: &mut Entry<'_, S>, key: usize) {
    if !entry.scheduled {
        entry.scheduled = true;
        run_queue.push(key);
    }
}
