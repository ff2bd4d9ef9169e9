//! The binding of the connection [`runtime`](crate::runtime) to one edge-triggered
//! `polling::Poller` per serving loop, shared by the smol and tokio servers (cargo feature
//! `polling`): the listener and the connection sockets are registered there, each event is
//! handed to the runtime under the key it was registered with, and the loop sleeps in the
//! poller ([`run`]) or, nested in an async runtime's reactor as one readable fd plus one
//! timer ([`serve`], through a [`Nest`]), runs as a future on the application's executor.
//!
//! Why a poller of our own rather than the async runtime's for the sockets: async-io
//! collects the wakers of every reactor turn into a fresh `Vec` and keeps its timers in a
//! map it splits, so a socket it watches costs allocations per request; ours cost none
//! (the `no_alloc` tests), and the runtime keeps every deadline itself, so no timer of the
//! async runtime is armed per connection either.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use ember_fcgi_core::Handler;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
use polling::Events;
use polling::{PollMode, Poller};

use crate::Limits;
use crate::Listener;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
use crate::runtime::Event;
use crate::runtime::{MemoryBudget, Reactor, Runtime, Settings, Stream, register_listener_exclusive};

/// The listener's key; connections use their slot key. (`usize::MAX` is polling's own.)
const LISTENER_KEY: usize = usize::MAX - 1;
/// The key of the loop's own eventfd (Linux), which its connections' wakers write to.
#[cfg(any(target_os = "linux", target_os = "android"))]
const WAKE_KEY: usize = usize::MAX - 2;
/// Events fetched per wait.
const EVENTS: usize = 1024;
/// Rounds of work in one poll of [`serve`]'s future before it yields to its executor.
const ROUNDS: usize = 16;

/// Bytes of one loop's event buffer (for the memory budget, [`Settings::binding_bytes`]).
pub const BINDING_BYTES: usize = EVENTS * std::mem::size_of::<polling::Event>();

/// A poller for one loop, with the listener registered; edge-triggered mode is required
/// (epoll, kqueue).
///
/// On Linux the loop waits on the poller's epoll fd itself ([`Harvest`]) and registers its
/// connections there with `EPOLLRDHUP`, so it sees the peer's FIN (a short read then
/// means the socket is drained: no read ends in `EAGAIN`), and it is woken through an
/// eventfd of its own: `Poller::wait` would arm its timerfd, rearm its notifier and read
/// the clock twice in each wait, four syscalls and some 350 instructions per request.
struct Binding {
    poller: Arc<Poller>,
    /// The listener while this loop accepts from it (deleted from the poller before the
    /// loop lets go of it).
    listener: RefCell<Option<Arc<Listener>>>,
    /// What the connections' wakers write to, registered under [`WAKE_KEY`].
    #[cfg(any(target_os = "linux", target_os = "android"))]
    wake_fd: Arc<std::os::fd::OwnedFd>,
}

impl Binding {
    fn new(listener: &Arc<Listener>) -> io::Result<Self> {
        let poller = Poller::new()?;
        if !poller.supports_edge() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "ember-fcgi needs an edge-triggered poller (epoll or kqueue); this platform has none",
            ));
        }
        // One loop woken per new connection when several loops share the listener
        // (`run_threads`); `polling` reports the event under `LISTENER_KEY`, which is the
        // epoll data it decodes, and deletes it with an ordinary `EPOLL_CTL_DEL`.
        if register_listener_exclusive(&poller, listener, LISTENER_KEY as u64).is_err() {
            // SAFETY: `add_with_mode` requires the source to be deleted from the poller
            // before it is closed. `Binding` holds a reference to the listener until it
            // deletes it, in `deregister_listener` or in its `Drop`.
            #[allow(unsafe_code)]
            unsafe {
                poller.add_with_mode(
                    listener.as_fd().as_raw_fd(),
                    polling::Event::readable(LISTENER_KEY),
                    PollMode::Edge,
                )?;
            }
        }
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let wake_fd = {
            use rustix::event::{EventfdFlags, epoll, eventfd};
            let fd = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
            let flags = epoll::EventFlags::IN | epoll::EventFlags::ET;
            epoll::add(&poller, &fd, epoll::EventData::new_u64(WAKE_KEY as u64), flags)?;
            Arc::new(fd)
        };
        Ok(Self {
            poller: Arc::new(poller),
            listener: RefCell::new(Some(Arc::clone(listener))),
            #[cfg(any(target_os = "linux", target_os = "android"))]
            wake_fd,
        })
    }

    /// What wakes this loop when it sleeps in [`run`].
    fn notifier(&self) -> Waker {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        return Waker::from(Arc::new(Notify(Arc::clone(&self.wake_fd))));
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        Waker::from(Arc::new(Notify(Arc::clone(&self.poller))))
    }

    /// Hands what the events say to the runtime.
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn dispatch<'a, H: Handler + 'a>(&self, events: &Events, rt: &mut Runtime<'a, H, Registered>) {
        for event in events.iter() {
            if event.key == LISTENER_KEY {
                rt.note_listener();
            } else {
                let read_closed = event.is_err().unwrap_or(false);
                rt.note_event(
                    event.key,
                    Event { readable: event.readable, writable: event.writable, read_closed },
                );
            }
        }
    }
}

impl Drop for Binding {
    fn drop(&mut self) {
        if let Some(listener) = self.listener.get_mut().take() {
            let _ = self.poller.delete(&*listener);
        }
    }
}

/// The memory ceiling of one loop of this binding under `limits` (what a server built on it
/// reports as `memory_budget()`).
pub fn memory_budget<H: Handler>(limits: &Limits) -> MemoryBudget {
    MemoryBudget::of::<H, Registered>(limits, limits.max_connections, BINDING_BYTES, None)
}

/// A connection's socket registered with its loop's poller, deleted from it when dropped
/// (before the socket itself is closed).
#[derive(Debug)]
pub struct Registered {
    stream: Stream,
    poller: Arc<Poller>,
}

impl AsRef<Stream> for Registered {
    fn as_ref(&self) -> &Stream {
        &self.stream
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        let _ = self.poller.delete(self.stream.as_fd());
    }
}

impl Reactor for Binding {
    type Socket = Registered;

    fn register(&self, stream: Stream, key: usize) -> io::Result<Registered> {
        // Straight into the epoll fd, with `EPOLLRDHUP` (which polling does not ask for);
        // `Registered` deletes it (`EPOLL_CTL_DEL`) before the socket is closed.
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            use rustix::event::epoll::{self, EventFlags};
            let flags = EventFlags::IN | EventFlags::OUT | EventFlags::RDHUP | EventFlags::ET;
            epoll::add(&*self.poller, &stream, epoll::EventData::new_u64(key as u64), flags)?;
        }
        // SAFETY: as for the listener: the returned `Registered` owns the socket and
        // deletes it from the poller in its `Drop`, before the socket is closed.
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        #[allow(unsafe_code)]
        unsafe {
            self.poller.add_with_mode(stream.as_fd().as_raw_fd(), polling::Event::all(key), PollMode::Edge)?
        };
        Ok(Registered { stream, poller: Arc::clone(&self.poller) })
    }

    fn deregister_listener(&self, listener: &Listener) {
        let _ = self.poller.delete(listener);
        self.listener.borrow_mut().take();
    }
}

/// A loop's event buffer and the wait that fills it.
struct Harvest {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    list: crate::runtime::EpollEvents,
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    events: Events,
}

impl Harvest {
    fn new() -> Self {
        Self {
            #[cfg(any(target_os = "linux", target_os = "android"))]
            list: crate::runtime::EpollEvents::with_capacity(EVENTS),
            #[cfg(not(any(target_os = "linux", target_os = "android")))]
            events: Events::with_capacity(NonZeroUsize::new(EVENTS).unwrap_or(NonZeroUsize::MIN)),
        }
    }

    /// Waits at most `timeout` (`None`: until an event) for events of `binding`'s poller
    /// and hands them to `rt`; true if the buffer was full (more may be waiting, which no
    /// new readiness announces).
    fn wait<'a, H: Handler + 'a>(
        &mut self,
        binding: &Binding,
        timeout: Option<Duration>,
        rt: &mut Runtime<'a, H, Registered>,
    ) -> io::Result<bool> {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            let full = self.list.wait(&*binding.poller, timeout)?;
            for (key, event) in self.list.iter() {
                let key = key as usize;
                if key == LISTENER_KEY {
                    rt.note_listener();
                } else if key == WAKE_KEY {
                    let mut count = [0; 8];
                    let _ = rustix::io::read(&*binding.wake_fd, &mut count);
                } else {
                    rt.note_event(key, event);
                }
            }
            Ok(full)
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        {
            self.events.clear();
            match binding.poller.wait(&mut self.events, timeout) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(false),
                Err(e) => return Err(e),
            }
            binding.dispatch(&self.events, rt);
            Ok(self.events.len() >= EVENTS)
        }
    }
}

/// Wakes a thread asleep in its poller: through the loop's eventfd on Linux.
#[cfg(any(target_os = "linux", target_os = "android"))]
struct Notify(Arc<std::os::fd::OwnedFd>);

#[cfg(any(target_os = "linux", target_os = "android"))]
impl Wake for Notify {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // A full counter (never, in practice) still leaves the fd readable.
        let _ = rustix::io::write(&*self.0, &1u64.to_ne_bytes());
    }
}

/// Wakes a thread asleep in its poller.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
struct Notify(Arc<Poller>);

#[cfg(not(any(target_os = "linux", target_os = "android")))]
impl Wake for Notify {
    fn wake(self: Arc<Self>) {
        let _ = self.0.notify();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let _ = self.0.notify();
    }
}

/// Whether the loop sees the peer's FIN (`EPOLLRDHUP`: Linux, see [`Binding`]).
const REPORTS_FIN: bool = cfg!(any(target_os = "linux", target_os = "android"));

/// Serves `listener` on this thread until a shutdown finished, sleeping in the poller.
pub fn run<H: Handler>(listener: Arc<Listener>, handler: H, mut settings: Settings) -> io::Result<()> {
    let binding = Binding::new(&listener)?;
    settings.reports_fin = REPORTS_FIN;
    let mut rt = Runtime::new(listener, handler, settings);
    rt.wakes().set_notify(&binding.notifier());
    let mut events = Harvest::new();
    let result = loop {
        rt.process(&binding);
        if rt.is_finished() {
            break Ok(());
        }
        if let Err(e) = events.wait(&binding, rt.timeout(), &mut rt) {
            break Err(e);
        }
    };
    rt.close_everything(&binding);
    result
}

/// What an async runtime lends [`serve`]: readiness of the poller's fd in its reactor, and
/// one timer for the loop's next deadline.
pub trait Nest {
    /// Sets the timer to fire at `at` (called only when the instant changed).
    fn set_timer(&mut self, at: Instant);
    /// Polls the timer set last; `Ready` once it fired.
    fn poll_timer(&mut self, cx: &mut Context<'_>) -> Poll<()>;
    /// Polls the poller's fd for readability. `Ready` means events may be waiting, and
    /// consumes the readiness: the next call is `Pending` until the fd is readable anew
    /// (the loop harvests the poller after each `Ready`, so nothing is missed).
    fn poll_readable(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

/// Serves `listener` as a future on the caller's executor: the poller is one fd that the
/// async runtime watches (through the [`Nest`] that `nest` makes of it), and one timer of
/// it wakes the loop for its next deadline. The executor's waker of this future is the
/// runtime's notifier, so a connection woken by any task or thread wakes it. After 16
/// rounds of work in one poll it yields to its executor.
pub async fn serve<H: Handler, N: Nest>(
    listener: Arc<Listener>,
    handler: H,
    mut settings: Settings,
    nest: impl FnOnce(&Arc<Poller>) -> io::Result<N>,
) -> io::Result<()> {
    let binding = Binding::new(&listener)?;
    let mut nest = nest(&binding.poller)?;
    settings.reports_fin = REPORTS_FIN;
    let mut rt = Runtime::new(listener, handler, settings);
    let mut events = Harvest::new();
    let mut armed = None::<Instant>;
    let result = poll_fn(|cx| {
        rt.wakes().set_notify(cx.waker());
        for _ in 0..ROUNDS {
            // A full buffer may leave events behind, which no new readiness announces.
            let more = match events.wait(&binding, Some(Duration::ZERO), &mut rt) {
                Ok(more) => more,
                Err(e) => return Poll::Ready(Err(e)),
            };
            rt.process(&binding);
            if rt.is_finished() {
                return Poll::Ready(Ok(()));
            }
            if more || rt.timeout() == Some(Duration::ZERO) {
                continue;
            }
            if let Some(at) = rt.next_timer() {
                if armed != Some(at) {
                    nest.set_timer(at);
                    armed = Some(at);
                }
                if nest.poll_timer(cx).is_ready() {
                    armed = None;
                    continue;
                }
            }
            match nest.poll_readable(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await;
    rt.close_everything(&binding);
    drop(nest);
    result
}
