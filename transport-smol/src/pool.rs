//! The connection tasks of one serving loop: a slab of boxed connection futures and a
//! ready queue, with no allocation per wake.
//!
//! smol's executors push every woken task onto an unbounded queue that allocates a block
//! every 31 pushes, so connections are not spawned on them. Instead each connection is one
//! future, boxed once when accepted, at a slot whose index is also its poller key. Waking
//! the slot (from its socket's readiness, a timer, or the handler's own wakers) pushes the
//! index onto a queue whose capacity was reserved when the slot was created, and wakes the
//! loop's task. Nothing is allocated after a connection is set up.

use std::collections::VecDeque;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

/// Whether a slot's socket may be ready for reading and for writing: set by its readiness
/// events, cleared by the socket's reader and writer when the kernel had no more (see
/// [`crate::io`]). Shared by the loop's event dispatch and the connection in the slot.
#[derive(Debug)]
pub(crate) struct Readiness {
    readable: AtomicBool,
    writable: AtomicBool,
}

impl Readiness {
    pub(crate) fn new() -> Self {
        Self { readable: AtomicBool::new(true), writable: AtomicBool::new(true) }
    }

    /// A new socket in the slot: it may be ready either way (no event announced it).
    pub(crate) fn reset(&self) {
        self.readable.store(true, Ordering::Relaxed);
        self.writable.store(true, Ordering::Relaxed);
    }

    pub(crate) fn readable(&self) -> bool {
        self.readable.load(Ordering::Relaxed)
    }

    pub(crate) fn writable(&self) -> bool {
        self.writable.load(Ordering::Relaxed)
    }

    pub(crate) fn clear_readable(&self) {
        self.readable.store(false, Ordering::Relaxed);
    }

    pub(crate) fn clear_writable(&self) {
        self.writable.store(false, Ordering::Relaxed);
    }

    fn note(&self, readable: bool, writable: bool) {
        if readable {
            self.readable.store(true, Ordering::Relaxed);
        }
        if writable {
            self.writable.store(true, Ordering::Relaxed);
        }
    }
}

/// Which slots are ready to be polled, and how to wake the loop that polls them.
#[derive(Debug, Default)]
pub(crate) struct Ready {
    inner: Mutex<ReadyInner>,
}

#[derive(Debug, Default)]
struct ReadyInner {
    queue: VecDeque<usize>,
    queued: Vec<bool>,
    /// Per slot, what its socket's events said.
    readiness: Vec<Arc<Readiness>>,
    /// The listener may have connections waiting.
    accept: bool,
    /// Something outside the slots (shutdown) wants the loop to look.
    poked: bool,
    /// The loop is polling: it drains the queue before it sleeps, so wakes need not wake it.
    polling: bool,
    parent: Option<Waker>,
}

impl Ready {
    fn lock(&self) -> MutexGuard<'_, ReadyInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues slot `i`; wakes the loop if it sleeps.
    pub(crate) fn wake_slot(&self, i: usize) {
        let parent = {
            let mut inner = self.lock();
            if inner.push(i) && !inner.polling { inner.parent.clone() } else { None }
        };
        // Woken outside the lock, in case that waker polls the loop at once.
        if let Some(parent) = parent {
            parent.wake();
        }
    }

    /// Queues slot `i` without waking the loop (the caller polls next).
    pub(crate) fn mark(&self, i: usize) {
        self.lock().push(i);
    }

    /// A readiness event of slot `i`'s socket: records it and queues the slot (the caller
    /// polls next).
    pub(crate) fn mark_event(&self, i: usize, readable: bool, writable: bool) {
        let mut inner = self.lock();
        if let Some(r) = inner.readiness.get(i) {
            r.note(readable, writable);
        }
        inner.push(i);
    }

    /// Slot `i` was polled and is still running. If it queued itself again meanwhile (the
    /// driver yields after a bounded amount of work while it could go on), it may read once
    /// more when polled next: a busy connection can keep the loop from dispatching socket
    /// events for a long time, and must still notice new input (an abort) as it goes.
    fn polled(&self, i: usize) {
        let inner = self.lock();
        if inner.queued.get(i).copied().unwrap_or(false)
            && let Some(r) = inner.readiness.get(i)
        {
            r.note(true, false);
        }
    }

    /// The readiness flags of slot `i` (which must exist), reset for a new socket.
    pub(crate) fn readiness(&self, i: usize) -> Option<Arc<Readiness>> {
        let r = Arc::clone(self.lock().readiness.get(i)?);
        r.reset();
        Some(r)
    }

    /// Notes that the listener may have connections waiting (the caller polls next).
    pub(crate) fn set_accept(&self) {
        self.lock().accept = true;
    }

    /// Makes the loop look at its shared state (shutdown) soon.
    pub(crate) fn poke(&self) {
        let parent = {
            let mut inner = self.lock();
            inner.poked = true;
            if inner.polling { None } else { inner.parent.clone() }
        };
        if let Some(parent) = parent {
            parent.wake();
        }
    }

    /// The loop starts polling with `waker`.
    pub(crate) fn begin(&self, waker: &Waker) {
        let mut inner = self.lock();
        inner.polling = true;
        inner.poked = false;
        match &inner.parent {
            Some(w) if w.will_wake(waker) => {}
            _ => inner.parent = Some(waker.clone()),
        }
    }

    /// Takes the accept flag.
    pub(crate) fn take_accept(&self) -> bool {
        std::mem::take(&mut self.lock().accept)
    }

    /// Takes the next ready slot; a wake from now on queues it again.
    fn pop(&self) -> Option<usize> {
        let mut inner = self.lock();
        let i = inner.queue.pop_front()?;
        if let Some(q) = inner.queued.get_mut(i) {
            *q = false;
        }
        Some(i)
    }

    /// The loop has run out of work: returns true (and stops absorbing wakes) if nothing is
    /// queued, false if it should go round again.
    pub(crate) fn end(&self) -> bool {
        let mut inner = self.lock();
        if inner.queue.is_empty() && !inner.accept && !inner.poked {
            inner.polling = false;
            true
        } else {
            inner.poked = false;
            false
        }
    }

    /// Room for `slots` slots, reserved before any of them can be woken.
    fn grow(&self, slots: usize) {
        let mut inner = self.lock();
        inner.queued.resize(slots, false);
        let have = inner.readiness.len();
        inner.readiness.extend((have..slots).map(|_| Arc::new(Readiness::new())));
        let len = inner.queue.len();
        inner.queue.reserve(slots.saturating_sub(len));
    }
}

impl ReadyInner {
    /// Queues `i` once; true if it was not queued yet.
    fn push(&mut self, i: usize) -> bool {
        match self.queued.get_mut(i) {
            Some(q) if !*q => {
                *q = true;
                self.queue.push_back(i);
                true
            }
            _ => false,
        }
    }
}

/// The waker of one slot.
struct SlotWaker {
    ready: Arc<Ready>,
    index: usize,
}

impl Wake for SlotWaker {
    fn wake(self: Arc<Self>) {
        self.ready.wake_slot(self.index);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.ready.wake_slot(self.index);
    }
}

/// What [`Pool::run_ready`] did.
#[derive(Debug, Default)]
pub(crate) struct Ran {
    /// Connections whose future panicked (and was dropped).
    pub(crate) panicked: u64,
}

/// The connection futures of one loop.
pub(crate) struct Pool<F: ?Sized> {
    slots: Vec<Option<Pin<Box<F>>>>,
    wakers: Vec<Waker>,
    free: Vec<usize>,
    ready: Arc<Ready>,
    live: usize,
}

impl<F: Future<Output = ()> + ?Sized> Pool<F> {
    pub(crate) fn new(ready: Arc<Ready>) -> Self {
        Self { slots: Vec::new(), wakers: Vec::new(), free: Vec::new(), ready, live: 0 }
    }

    /// Connections in the pool.
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// Adds the future `make` builds for a free slot index (its poller key), and queues it;
    /// `make` may decline (e.g. registration failed).
    pub(crate) fn insert_with(&mut self, make: impl FnOnce(usize) -> Option<Pin<Box<F>>>) {
        let i = match self.free.pop() {
            Some(i) => i,
            None => {
                let i = self.slots.len();
                self.slots.push(None);
                let waker = SlotWaker { ready: Arc::clone(&self.ready), index: i };
                self.wakers.push(Waker::from(Arc::new(waker)));
                let n = self.slots.len();
                self.free.reserve(n.saturating_sub(self.free.len()));
                self.ready.grow(n);
                i
            }
        };
        match make(i) {
            Some(future) => {
                self.slots[i] = Some(future);
                self.live += 1;
                self.ready.mark(i);
            }
            None => self.free.push(i),
        }
    }

    /// Polls queued connections, at most `budget` of them; drops those that finished or
    /// panicked.
    pub(crate) fn run_ready(&mut self, budget: usize) -> Ran {
        let mut ran = Ran::default();
        for _ in 0..budget {
            let Some(i) = self.ready.pop() else {
                break;
            };
            let (Some(slot), Some(waker)) = (self.slots.get_mut(i), self.wakers.get(i)) else {
                continue;
            };
            let Some(future) = slot.as_mut() else {
                continue;
            };
            let mut cx = Context::from_waker(waker);
            let done = match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(&mut cx))) {
                Ok(Poll::Pending) => false,
                Ok(Poll::Ready(())) => true,
                Err(_) => {
                    ran.panicked += 1;
                    true
                }
            };
            if done {
                *slot = None;
                self.live -= 1;
                self.free.push(i);
            } else {
                self.ready.polled(i);
            }
        }
        ran
    }

    /// Queues every connection (e.g. so each notices a shutdown).
    pub(crate) fn wake_all(&self) {
        for (i, slot) in self.slots.iter().enumerate() {
            if slot.is_some() {
                self.ready.mark(i);
            }
        }
    }

    /// Drops every connection; returns how many there were.
    pub(crate) fn clear(&mut self) -> usize {
        let n = self.live;
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if slot.take().is_some() {
                self.free.push(i);
            }
        }
        self.live = 0;
        n
    }
}
