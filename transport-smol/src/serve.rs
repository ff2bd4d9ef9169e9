//! One serving loop: accepts from the shared listener, admits or refuses each connection,
//! polls the connection tasks, and carries out a graceful shutdown.

use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::task::Poll;
use std::time::Duration;

use ember_fcgi_core::{Config, Handler};
use ember_fcgi_host::{BufferPool, Limits, WebServerAddrs};
use polling::Poller;
use smol::Timer;

use crate::connection::{ConnTask, boxed_connection, task_size};
use crate::io::{ConnIo, OpenGuard};
use crate::listener::{ListenSocket, is_per_connection};
use crate::pool::{Pool, Ready};
use crate::reactor::{Embedded, LISTENER_KEY, Registered};
use crate::shutdown::Shutdown;
use crate::stats::{Counters, bump};
use ember_fcgi_host::events;

/// Rounds of work in one poll of the loop before it yields to its executor.
const ROUNDS: usize = 16;
/// Connection polls per round.
const BUDGET: usize = 256;
/// Connections accepted per round (the rest are taken next round, or by another loop).
const ACCEPT_BATCH: usize = 16;
/// Pause before accepting again after `accept` failed for lack of resources (EMFILE).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What every connection of a loop borrows.
#[derive(Debug)]
pub(crate) struct LoopCtx<'a, H> {
    pub(crate) handler: &'a H,
    /// Where the readers throw input the engines skip (see [`crate::io::scratch`]).
    pub(crate) scratch: std::cell::RefCell<Box<[u8]>>,
    pub(crate) limits: Limits,
    pub(crate) config: Config,
    /// Request memory, lent to connections while they serve requests.
    pub(crate) pool: BufferPool,
    pub(crate) allow: &'a WebServerAddrs,
    pub(crate) counters: &'a Counters,
    pub(crate) shutdown: &'a Shutdown,
    pub(crate) draining: &'a AtomicBool,
    pub(crate) poller: &'a Poller,
}

/// Serves `listener` until a shutdown has drained this loop's connections. With `embedded`
/// the loop harvests its poller itself and sleeps on async-io; without, the caller's
/// [`crate::reactor::block_on`] sleeps in the poller.
pub(crate) async fn serve_loop<H: Handler>(
    ctx: &LoopCtx<'_, H>,
    listener: Arc<ListenSocket>,
    ready: &Arc<Ready>,
    mut embedded: Option<Embedded>,
) -> io::Result<()> {
    let mut listening = Some(Registered::new(ctx.poller, listener, LISTENER_KEY, false)?);
    ctx.shutdown.register(ready);
    ready.set_accept();
    let spawn = |io| boxed_connection(io, ctx);
    let per_connection = task_size(ctx);
    let request_memory = ctx.limits.capacities.memory_bytes();
    let fixed = crate::io::SCRATCH_BYTES;
    ctx.counters.note_memory(per_connection, request_memory, ctx.limits.max_connections, fixed);
    if let Some(listener) = &listening {
        let budget = (per_connection + request_memory).saturating_mul(ctx.limits.max_connections) + fixed;
        events::started(&listener.get().describe(), &ctx.limits, per_connection, budget);
    }
    let mut pool = Pool::new(Arc::clone(ready));
    let mut drain: Option<Timer> = None;
    let mut backoff: Option<Timer> = None;
    poll_fn(|cx| {
        ready.begin(cx.waker());
        let mut harvest = true; // embedded: at the start, and whenever async-io says so
        for _ in 0..ROUNDS {
            if let Some(e) = embedded.as_mut().filter(|_| harvest) {
                match e.harvest(ready) {
                    Ok(full) => harvest = full,
                    Err(error) => return Poll::Ready(Err(error)),
                }
            }
            if drain.is_none() && ctx.shutdown.is_requested() {
                listening = None; // closes the listener once every loop let go of it
                backoff = None;
                drain = Some(Timer::after(ctx.limits.shutdown_timeout));
                events::shutting_down(pool.len(), ctx.limits.shutdown_timeout);
                pool.wake_all();
            }
            if let Some(timer) = backoff.as_mut()
                && Pin::new(timer).poll(cx).is_ready()
            {
                backoff = None;
                ready.set_accept();
            }
            if ready.take_accept()
                && backoff.is_none()
                && let Some(listener) = &listening
                && let Err(error) = accept_some(ctx, listener.get(), &mut pool, &spawn, &mut backoff, ready)
            {
                return Poll::Ready(Err(error));
            }
            let ran = pool.run_ready(BUDGET);
            if ran.panicked > 0 {
                events::connection_panicked(ctx.counters, ran.panicked);
            }
            if let Some(timer) = drain.as_mut() {
                if pool.len() == 0 {
                    return Poll::Ready(Ok(()));
                }
                if Pin::new(timer).poll(cx).is_ready() {
                    let left = pool.clear() as u64;
                    events::closed_by_shutdown(ctx.counters, left);
                    return Poll::Ready(Ok(()));
                }
            }
            if ready.end() {
                match embedded.as_ref().map(|e| e.poll_readable(cx)) {
                    Some(Poll::Ready(Err(error))) => return Poll::Ready(Err(error)),
                    Some(Poll::Ready(Ok(()))) => {
                        ready.begin(cx.waker());
                        harvest = true;
                    }
                    Some(Poll::Pending) | None => return Poll::Pending,
                }
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}

/// Accepts up to [`ACCEPT_BATCH`] connections. Fails only if the listener is unusable.
fn accept_some<'a, H>(
    ctx: &LoopCtx<'a, H>,
    listener: &ListenSocket,
    pool: &mut Pool<dyn Future<Output = ()> + 'a>,
    spawn: &impl Fn(ConnIo<'a>) -> ConnTask<'a>,
    backoff: &mut Option<Timer>,
    ready: &Ready,
) -> io::Result<()> {
    let counters = ctx.counters;
    for _ in 0..ACCEPT_BATCH {
        let (socket, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if is_per_connection(&e) => continue,
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => return Err(e),
            Err(e) => {
                events::accept_failed(counters, &e);
                *backoff = Some(Timer::after(ACCEPT_BACKOFF));
                return Ok(());
            }
        };
        if let Some(ip) = peer
            && !ctx.allow.allows(ip)
        {
            events::refused_not_allowed(counters, &ip);
            continue; // dropping the socket closes it
        }
        let Some(open) = OpenGuard::acquire(&counters.open, ctx.limits.max_connections) else {
            events::refused_over_limit(counters, &socket.peer(), ctx.limits.max_connections);
            continue;
        };
        if socket.prepare().is_err() {
            bump(&counters.accept_errors);
            continue;
        }
        let readiness = |key| ready.readiness(key).ok_or_else(|| io::Error::other("no readiness slot"));
        pool.insert_with(|key| {
            match readiness(key).and_then(|r| ConnIo::new(ctx.poller, socket, key, r, open)) {
                Ok(io) => {
                    bump(&counters.accepted);
                    Some(spawn(io))
                }
                Err(_) => {
                    bump(&counters.accept_errors);
                    None
                }
            }
        });
    }
    // Edge-triggered: no new event announces connections still queued, so look again.
    ready.set_accept();
    Ok(())
}
