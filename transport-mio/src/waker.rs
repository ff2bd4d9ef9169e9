//! Task wakers: a wake marks a connection ready in a shared queue and, if the loop may be
//! asleep in `Poll::poll`, fires the `mio::Waker`.
//!
//! The loop says when it is busy (between the start and end of `Registered::process`): a
//! wake then only queues, because the loop looks at the queue before it sleeps again. Every
//! connection's waker holds a "queued" flag, so the queue holds each connection at most once
//! and, with capacity reserved up front, never grows in steady state.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Wake;

/// State shared by the loop, the wakers and the shutdown handles.
#[derive(Debug)]
pub(crate) struct Shared {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Slab keys of connections woken since the loop last looked.
    ready: Vec<usize>,
    /// The loop is inside `process`; it will look at `ready` before sleeping.
    busy: bool,
    /// The mio waker was fired and the loop has not run since.
    notified: bool,
    /// A graceful shutdown was requested.
    shutdown: bool,
    /// Interrupts `Poll::poll`; absent until the server is registered.
    waker: Option<Arc<mio::Waker>>,
}

impl Shared {
    pub(crate) fn new() -> Self {
        Self {
            inner: Mutex::new(Inner {
                ready: Vec::new(),
                busy: false,
                notified: false,
                shutdown: false,
                waker: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while holding the lock; if something did, the data is still sound.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Installs the waker and reserves room for `capacity` queued connections.
    pub(crate) fn attach(&self, waker: Arc<mio::Waker>, capacity: usize) {
        let mut inner = self.lock();
        inner.ready.reserve(capacity);
        let wake_now = inner.shutdown;
        inner.waker = Some(waker);
        if wake_now {
            inner.notify();
        }
    }

    /// Forgets the waker: the loop is gone (its `Poll` may be dropped).
    pub(crate) fn detach(&self) {
        self.lock().waker = None;
    }

    /// Queues a connection key and wakes the loop if it may be asleep.
    fn push(&self, key: usize) {
        let mut inner = self.lock();
        inner.ready.push(key);
        inner.notify();
    }

    /// Asks for a graceful shutdown (idempotent).
    pub(crate) fn request_shutdown(&self) {
        let mut inner = self.lock();
        inner.shutdown = true;
        inner.notify();
    }

    pub(crate) fn shutdown_requested(&self) -> bool {
        self.lock().shutdown
    }

    /// The loop starts working: swaps the woken keys into `into` (which must be empty and
    /// keeps its capacity, so no allocation) and reports whether shutdown was requested.
    pub(crate) fn begin(&self, into: &mut Vec<usize>) -> bool {
        let mut inner = self.lock();
        inner.busy = true;
        inner.notified = false;
        std::mem::swap(&mut inner.ready, into);
        inner.shutdown
    }

    /// The loop is done working: wakes from now on fire the mio waker.
    pub(crate) fn end(&self) {
        self.lock().busy = false;
    }

    /// Whether the loop has work without waiting for an event: woken connections, or a
    /// shutdown request it has not acted on (both may arrive while it is busy, when no
    /// mio wake is sent).
    pub(crate) fn has_work(&self, shutdown_started: bool) -> bool {
        let inner = self.lock();
        !inner.ready.is_empty() || (inner.shutdown && !shutdown_started)
    }
}

impl Inner {
    fn notify(&mut self) {
        if self.busy || self.notified {
            return;
        }
        if let Some(waker) = &self.waker {
            self.notified = true;
            // A failed wake (the poll was closed) leaves nobody to wake.
            let _ = waker.wake();
        }
    }
}

/// The waker of one connection's future.
#[derive(Debug)]
pub(crate) struct ConnWaker {
    key: usize,
    queued: AtomicBool,
    shared: Arc<Shared>,
}

impl ConnWaker {
    pub(crate) fn new(key: usize, shared: Arc<Shared>) -> Self {
        Self { key, queued: AtomicBool::new(false), shared }
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
            self.shared.push(self.key);
        }
    }
}
