//! [`serve`]'s nesting in async-io: the host's poller binding
//! ([`ember_fcgi_host::poller`]) sees the poller's fd through an `Async` and the loop's
//! next deadline through one async-io `Timer`.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use ember_fcgi_core::Handler;
use ember_fcgi_host::Listener;
use ember_fcgi_host::poller::{self, Nest};
use ember_fcgi_host::runtime::Settings;
use polling::Poller;
use smol::{Async, Timer};

pub(crate) use ember_fcgi_host::poller::{BINDING_BYTES, run};

/// The poller's fd in async-io, and one async-io timer.
struct AsyncIo {
    source: Async<Arc<Poller>>,
    timer: Timer,
}

impl Nest for AsyncIo {
    fn set_timer(&mut self, at: Instant) {
        self.timer.set_at(at);
    }

    fn poll_timer(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.timer).poll(cx).map(drop)
    }

    fn poll_readable(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.source.poll_readable(cx)
    }
}

/// Serves `listener` as a future on the caller's executor: the poller is one fd that
/// async-io watches, and one async-io timer wakes the loop for its next deadline.
pub(crate) async fn serve<H: Handler>(
    listener: Arc<Listener>,
    handler: H,
    settings: Settings,
) -> io::Result<()> {
    poller::serve(listener, handler, settings, |poller| {
        Ok(AsyncIo { source: Async::new(Arc::clone(poller))?, timer: Timer::never() })
    })
    .await
}
