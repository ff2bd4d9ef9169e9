//! The host's poller binding (`ember_fcgi_host::poller`) nested in tokio's reactor: the
//! poller's fd is an `AsyncFd`, the loop's next deadline one `Sleep`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use ember_fcgi_core::Handler;
use ember_fcgi_host::Listener;
use ember_fcgi_host::poller::{self, Nest};
use ember_fcgi_host::runtime::Settings;
use polling::Poller;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::time::Sleep;

pub(crate) use ember_fcgi_host::poller::BINDING_BYTES;

/// Stands for "not set" where the `Sleep` needs a deadline (it is never polled so).
const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

/// The poller's fd in tokio's reactor, and one tokio timer.
struct Tokio {
    fd: AsyncFd<Arc<Poller>>,
    sleep: Pin<Box<Sleep>>,
}

impl Nest for Tokio {
    fn set_timer(&mut self, at: Instant) {
        self.sleep.as_mut().reset(at.into());
    }

    fn poll_timer(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.sleep.as_mut().poll(cx)
    }

    fn poll_readable(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // tokio keeps readiness until it is cleared; the loop harvests the poller next, so
        // clearing it here misses nothing (a later event sets it anew).
        self.fd.poll_read_ready(cx).map_ok(|mut ready| ready.clear_ready())
    }
}

/// Serves `listener` as a future inside a tokio runtime (with io and time enabled): the
/// poller is one fd tokio's reactor watches, and one tokio `Sleep` wakes the loop for its
/// next deadline.
pub(crate) async fn serve<H: Handler>(
    listener: Arc<Listener>,
    handler: H,
    settings: Settings,
) -> io::Result<()> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(io::Error::other("ember-fcgi-tokio: serve() must run inside a tokio runtime"));
    }
    poller::serve(listener, handler, settings, |poller| {
        // SAFETY: the `AsyncFd` owns an `Arc` of the poller, whose fd stays open and the
        // same while any `Arc` of it lives, so for the whole life of the `AsyncFd`.
        let fd = unsafe { AsyncFd::register_with_interest(Arc::clone(poller), Interest::READABLE) }
            .map_err(io::Error::from)?;
        let sleep = Box::pin(tokio::time::sleep_until((Instant::now() + YEAR).into()));
        Ok(Tokio { fd, sleep })
    })
    .await
}
