//! # ember-fcgi-smol
//!
//! A FastCGI server for applications on smol (or async-io): it runs the
//! [`ember_fcgi_core::Handler`] of the core crate, one engine future per connection, and the handler
//! may await any other async work (smol timers, files, sockets) while it serves a request.
//! It listens on TCP (IPv4 or IPv6), a Unix socket path, or the socket a FastCGI launcher
//! passed as fd 0, honours `FCGI_WEB_SERVER_ADDRS`, and enforces the [`Limits`]:
//! `max_connections` (one more is accepted and closed at once), `idle_timeout`,
//! `head_timeout`, graceful shutdown within `shutdown_timeout`, and `close_linger`.
//!
//! Three ways to run it:
//! - [`Server::run`]: on this thread. Needs only `H: Handler` (not `Send`).
//! - [`Server::run_threads`]: one loop per thread, all accepting from the shared listener
//!   (registered with `EPOLLEXCLUSIVE` on Linux, so a new connection wakes one sleeping
//!   loop), one server: one `Limits`, `Stats`, shutdown and `max_connections` for all.
//!   Needs `H: Handler + Sync`. Connection engines are `!Send` (the core
//!   driver keeps `RefCell` state, and async-fn-in-trait futures are not `Send`), so each
//!   stays on the thread that accepted it: no work stealing.
//! - [`Server::serve`]: a `!Send` future for a `smol::LocalExecutor` (or `smol::block_on`),
//!   beside the application's other tasks. Needs only `H: Handler`. Each wake-up of it
//!   goes through async-io's reactor, which allocates (about 1 per request measured).
//!
//! Memory: a connection is one engine future, boxed when it is accepted, holding the core
//! driver and the handler's own future, but no buffers: its request memory
//! ([`Limits::capacities`]) is lent from the loop's pool when a request begins and given
//! back a moment after the connection is idle again ([`IdleRelease::memory_after`]). An
//! engine idle for a while is dropped too, while many connections are open
//! ([`IdleRelease`]), so ten thousand idle keep-alive connections cost a few MiB. After that, serving requests allocates nothing with `run` and
//! `run_threads` (the `no_alloc` test counts 0 allocations in 2000 keep-alive requests).
//!
//! The connections are run by the host's connection runtime ([`ember_fcgi_host::runtime`],
//! the same as the mio transport's); this crate binds it to an edge-triggered
//! `polling::Poller` of its own per loop, which [`Server::run`] sleeps in and
//! [`Server::serve`] nests in async-io as one fd. smol's executors and async-io's reactor
//! allocate per wake-up, so the connections are not tasks on them and their sockets are
//! not watched by async-io; the runtime keeps every timeout itself, so no async-io timer
//! is armed per connection either.
//!
//! ```no_run
//! use ember_fcgi::prelude::*;
//! use ember_fcgi::server::{Limits, Listen};
//! use ember_fcgi::smol::Server;
//! use std::time::Duration;
//!
//! /// Streams three lines, one every 100 ms, while other requests go on.
//! struct Ticks;
//!
//! impl Handler for Ticks {
//!     async fn handle(&self, _: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), HandlerError> {
//!         let mut body = res.send_head(200, &[("Content-Type", content_type::NDJSON)]).await?;
//!         for i in 0..3u8 {
//!             smol::Timer::after(Duration::from_millis(100)).await;
//!             body.write_all(&[b'0' + i, b'\n']).await?;
//!             body.flush().await?;
//!         }
//!         Ok(())
//!     }
//! }
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let server = Server::bind(&"127.0.0.1:9000".parse::<Listen>()?, Ticks, Limits::default())?;
//!     let stop = server.shutdown_handle();
//!     let ex = smol::LocalExecutor::new();
//!     smol::block_on(ex.run(async {
//!         let fastcgi = ex.spawn(server.serve());
//!         // ... the application's other tasks; later, stop.shutdown() ...
//!         # stop.shutdown();
//!         fastcgi.await
//!     }))?;
//!     Ok(())
//! }
//! ```

#![warn(missing_debug_implementations, missing_docs)]

mod poller;
mod server;

pub use ember_fcgi_core::Capacities;
pub use ember_fcgi_host::runtime::{IdleRelease, MemoryBudget, ShutdownHandle};
pub use ember_fcgi_host::stats::{Stats, StatsSnapshot};
pub use ember_fcgi_host::{BindError, Limits, Listen, Listener, NameOrId, WebServerAddrs};
pub use server::Server;
