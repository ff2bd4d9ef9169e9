//! Wakes: a connection's waker queues its key in its loop's [`Wakes`] and, if the loop may
//! be asleep in its poller, wakes the loop through the binding's notifier (a `mio::Waker`,
//! a `polling::Poller::notify`, or the executor's waker of the loop's task).
//!
//! The loop says when it is busy (between the start and end of [`crate::runtime::Runtime::process`]):
//! a wake then only queues, because the loop looks at the queue before it sleeps again.
//! Every connection's waker holds a "queued" flag, so the queue holds each connection at
//! most once and, with capacity reserved up front, never grows in steady state.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Wake, Waker};

/// What one loop shares with its connections' wakers and the shutdown handles.
///
/// The loop's side takes no lock in a round without wakes: `busy` and `pending` are
/// atomics (sequentially consistent), so of a waker that sets `pending` and then reads
/// `busy`, and the loop that clears `busy` and then reads `pending`, at least one sees the
/// other's write: the waker fires the notifier, or the loop does not sleep.
#[derive(Debug, Default)]
pub struct Wakes {
    inner: Mutex<Inner>,
    /// The loop is inside `process`; it will look at `ready` before sleeping.
    busy: AtomicBool,
    /// `ready` has keys or `poked` is set (written under the lock; read without it).
    pending: AtomicBool,
}

#[derive(Debug, Default)]
struct Inner {
    /// Keys of connections woken since the loop last looked.
    ready: Vec<usize>,
    /// The notifier was fired and the loop has not run since (implies `pending`).
    notified: bool,
    /// Something outside the connections (a shutdown) wants the loop to look.
    poked: bool,
    /// Wakes the loop's thread or task; absent until the loop runs.
    notify: Option<Waker>,
}

impl Wakes {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while holding the lock; if something did, the data is still sound.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reserves room for `capacity` queued connections.
    pub(crate) fn reserve(&self, capacity: usize) {
        self.lock().ready.reserve(capacity);
    }

    /// Sets what wakes the loop when it may sleep (kept if it would wake the same task, so
    /// an executor's waker is cloned only when it changes).
    pub fn set_notify(&self, waker: &Waker) {
        let mut inner = self.lock();
        match &inner.notify {
            Some(w) if w.will_wake(waker) => {}
            _ => inner.notify = Some(waker.clone()),
        }
    }

    /// Forgets the notifier: the loop is gone (its poller may be dropped).
    pub(crate) fn detach(&self) {
        self.lock().notify = None;
    }

    /// Queues a connection key and wakes the loop if it may be asleep.
    fn push(&self, key: usize) {
        let mut inner = self.lock();
        inner.ready.push(key);
        self.wake(&mut inner);
    }

    /// Makes the loop look at its shared state (a shutdown) soon.
    pub(crate) fn poke(&self) {
        let mut inner = self.lock();
        inner.poked = true;
        self.wake(&mut inner);
    }

    /// The loop starts working: swaps the woken keys into `into` (which must be empty and
    /// keeps its capacity, so no allocation). No lock when nothing is pending.
    pub(crate) fn begin(&self, into: &mut Vec<usize>) {
        self.busy.store(true, Ordering::SeqCst);
        if !self.pending.load(Ordering::SeqCst) {
            return;
        }
        let mut inner = self.lock();
        self.pending.store(false, Ordering::SeqCst);
        inner.notified = false;
        inner.poked = false;
        std::mem::swap(&mut inner.ready, into);
    }

    /// The loop is done working: wakes from now on fire the notifier.
    pub(crate) fn end(&self) {
        self.busy.store(false, Ordering::SeqCst);
    }

    /// Whether the loop has work without waiting for an event: woken connections or a
    /// poke that came while it was busy (when no notification is sent).
    pub(crate) fn has_work(&self) -> bool {
        self.pending.load(Ordering::SeqCst)
    }

    /// After queueing under the lock: marks work pending and fires the notifier if the
    /// loop may be asleep.
    fn wake(&self, inner: &mut Inner) {
        self.pending.store(true, Ordering::SeqCst);
        if inner.notified || self.busy.load(Ordering::SeqCst) {
            return;
        }
        if let Some(notify) = &inner.notify {
            inner.notified = true;
            notify.wake_by_ref();
        }
    }
}

/// The waker of one connection's engine.
#[derive(Debug)]
pub(crate) struct ConnWaker {
    key: usize,
    queued: AtomicBool,
    wakes: Arc<Wakes>,
}

impl ConnWaker {
    pub(crate) fn new(key: usize, wakes: Arc<Wakes>) -> Self {
        Self { key, queued: AtomicBool::new(false), wakes }
    }

    /// Whether a wake is waiting for the loop.
    pub(crate) fn is_queued(&self) -> bool {
        self.queued.load(Ordering::Acquire)
    }

    /// The loop took this connection off the queue: later wakes queue it again.
    pub(crate) fn clear(&self) {
        self.queued.store(false, Ordering::Release);
    }
}

impl Wake for ConnWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.wakes.push(self.key);
        }
    }
}

/// The shutdown state of one server, shared by its loops and handles.
#[derive(Debug, Default)]
pub struct Shutdown {
    requested: AtomicBool,
    loops: Mutex<Vec<Weak<Wakes>>>,
}

impl Shutdown {
    /// Whether a shutdown was requested.
    pub fn is_requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }

    /// Sets the flag and wakes every loop.
    pub fn request(&self) {
        self.requested.store(true, Ordering::Release);
        let loops = self.loops.lock().unwrap_or_else(PoisonError::into_inner);
        for wakes in loops.iter().filter_map(Weak::upgrade) {
            wakes.poke();
        }
    }

    /// A loop starts: it is poked on shutdown (it checks the flag after this, so a request
    /// made before it started is not missed).
    pub(crate) fn register(&self, wakes: &Arc<Wakes>) {
        let mut loops = self.loops.lock().unwrap_or_else(PoisonError::into_inner);
        loops.retain(|w| w.strong_count() > 0);
        loops.push(Arc::downgrade(wakes));
    }
}

/// Asks a running server to shut down gracefully: stop accepting (the listener is closed),
/// let in-flight requests finish within `Limits::shutdown_timeout`, close idle keep-alive
/// connections, then return from the server's run (or report it finished). Cheap to clone;
/// usable from any thread, e.g. one that waits for SIGTERM.
#[derive(Clone, Debug, Default)]
pub struct ShutdownHandle {
    shutdown: Arc<Shutdown>,
}

impl ShutdownHandle {
    /// A handle of a server not started yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The server's shutdown state, for its loops.
    pub fn state(&self) -> &Arc<Shutdown> {
        &self.shutdown
    }

    /// Starts the graceful shutdown; calling it again does nothing more. Works before the
    /// server runs too: it then stops as soon as it starts.
    pub fn shutdown(&self) {
        self.shutdown.request();
    }

    /// Whether a shutdown was requested.
    pub fn is_shutdown_requested(&self) -> bool {
        self.shutdown.is_requested()
    }
}
