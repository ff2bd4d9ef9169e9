//! Readiness of the listener and the connection sockets: one edge-triggered
//! `polling::Poller` per serving loop, with each event keyed by the pool slot it wakes.
//!
//! async-io (smol's reactor) collects the wakers of every turn into a fresh `Vec` and
//! splits its timer map, so a socket it watches costs allocations per request. Our sockets
//! are watched here instead. [`block_on`] makes this poller the loop's thread's only wait
//! (`Server::run`); [`Embedded`] nests it in async-io as one readable fd, so `Server::serve`
//! runs on any smol executor. Timers and the handlers' own I/O stay on async-io.

use std::future::Future;
use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd};
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use polling::{Event, Events, PollMode, Poller};
use smol::Async;

use crate::pool::Ready;

/// The listener's key; connections use their slot index. (`usize::MAX` is polling's own.)
pub(crate) const LISTENER_KEY: usize = usize::MAX - 1;

/// Events fetched per wait.
const EVENTS: usize = 1024;

/// A poller for one loop; edge-triggered mode is required (epoll, kqueue).
pub(crate) fn new_poller() -> io::Result<Arc<Poller>> {
    let poller = Poller::new()?;
    if !poller.supports_edge() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "ember-fcgi-smol needs an edge-triggered poller (epoll or kqueue); this platform has none",
        ));
    }
    Ok(Arc::new(poller))
}

fn events() -> Events {
    Events::with_capacity(NonZeroUsize::new(EVENTS).unwrap_or(NonZeroUsize::MIN))
}

/// Queues what the events say is ready.
fn dispatch(events: &Events, ready: &Ready) {
    for event in events.iter() {
        if event.key == LISTENER_KEY {
            ready.set_accept();
        } else {
            ready.mark_event(event.key, event.readable, event.writable);
        }
    }
}

/// A source registered edge-triggered with a poller, deleted from it when dropped (before
/// the source itself is dropped and its fd possibly closed).
#[derive(Debug)]
pub(crate) struct Registered<'p, S: AsFd> {
    poller: &'p Poller,
    source: S,
}

impl<'p, S: AsFd> Registered<'p, S> {
    /// Registers `source` under `key`, for reading (and writing if `write`).
    pub(crate) fn new(poller: &'p Poller, source: S, key: usize, write: bool) -> io::Result<Self> {
        let interest = if write { Event::all(key) } else { Event::readable(key) };
        let fd = source.as_fd().as_raw_fd();
        // SAFETY: `add_with_mode` requires that the source is deleted from the poller before
        // it is dropped. `Registered` owns `source`, and its `Drop` deletes it from `poller`
        // before the fields (so `source`) are dropped.
        unsafe { poller.add_with_mode(fd, interest, PollMode::Edge)? };
        Ok(Self { poller, source })
    }

    pub(crate) fn get(&self) -> &S {
        &self.source
    }
}

impl<S: AsFd> Drop for Registered<'_, S> {
    fn drop(&mut self) {
        let _ = self.poller.delete(self.source.as_fd());
    }
}

/// Wakes a thread blocked in [`block_on`].
struct Notify(Arc<Poller>);

impl Wake for Notify {
    fn wake(self: Arc<Self>) {
        let _ = self.0.notify();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let _ = self.0.notify();
    }
}

/// Runs `future` (a serving loop) on this thread, sleeping in `poller` between polls.
/// Wakes from other threads (async-io's timers, a shutdown) notify the poller.
pub(crate) fn block_on<F: Future>(poller: &Arc<Poller>, ready: &Ready, future: F) -> io::Result<F::Output> {
    let waker = Waker::from(Arc::new(Notify(Arc::clone(poller))));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    let mut events = events();
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return Ok(output);
        }
        events.clear();
        poller.wait(&mut events, None)?;
        dispatch(&events, ready);
    }
}

/// The poller nested in async-io: its fd is readable when one of its sources has an event.
#[derive(Debug)]
pub(crate) struct Embedded {
    source: Async<Arc<Poller>>,
    events: Events,
}

impl Embedded {
    pub(crate) fn new(poller: Arc<Poller>) -> io::Result<Self> {
        Ok(Self { source: Async::new(poller)?, events: events() })
    }

    /// Queues whatever is ready now, without blocking; true if the event buffer filled up
    /// (more may be waiting).
    pub(crate) fn harvest(&mut self, ready: &Ready) -> io::Result<bool> {
        self.events.clear();
        let n = self.source.get_ref().wait(&mut self.events, Some(Duration::ZERO))?;
        dispatch(&self.events, ready);
        Ok(n >= self.events.capacity().get())
    }

    /// Asks async-io to wake `cx` when the poller has events; `Ready` if it has some now.
    pub(crate) fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.source.poll_readable(cx)
    }
}
