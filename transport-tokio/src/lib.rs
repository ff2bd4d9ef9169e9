//! # ember-fcgi-tokio
//!
//! A FastCGI server for applications on tokio: it runs the [`ember_fcgi_core::Handler`] of
//! the core crate, one engine future per connection, inside a tokio runtime, so the handler
//! may await anything tokio offers (timers, sockets, channels, `spawn_blocking`,
//! `spawn_local`) while it serves a request. It listens on TCP (IPv4 or IPv6), a Unix
//! socket path, the socket a FastCGI launcher passed as fd 0, or systemd's sockets
//! ([`Listen`]), honours `FCGI_WEB_SERVER_ADDRS`, and enforces the [`Limits`]:
//! `max_connections` (one more is accepted and closed at once), the idle, head, body and
//! send timeouts, graceful shutdown within `shutdown_timeout`, and `close_linger`. A
//! handler that panics ends only its request (500 if nothing was sent yet).
//!
//! Three ways to run it:
//! - [`Server::run`]: on this thread, on a current-thread tokio runtime of its own (with a
//!   `LocalSet`). Needs only `H: Handler` (not `Send`).
//! - [`Server::run_threads`]: one such loop and runtime per thread, all accepting from the
//!   shared listener. Needs `H: Handler + Sync`. Connection engines are `!Send` (the core
//!   driver keeps `RefCell` state, and async-fn-in-trait futures are not `Send`), so each
//!   stays on the thread that accepted it: no work stealing.
//! - [`Server::serve`]: a `!Send` future for the application's own tokio runtime, on a
//!   `tokio::task::LocalSet` (or `block_on` of a current-thread runtime), beside the
//!   application's other tasks. Needs only `H: Handler`.
//!
//! Memory: a connection is one engine future, boxed when it is accepted, holding the core
//! driver and the handler's own future, but no buffers: its request memory
//! ([`Limits::capacities`]) is lent from the loop's pool when a request begins and given
//! back a moment after the connection is idle again ([`IdleRelease::memory_after`]). An
//! engine idle for a while is dropped too, while many connections are open
//! ([`IdleRelease`]), so ten thousand idle keep-alive connections cost a few MiB.
//!
//! The connections are run by the host's connection runtime ([`ember_fcgi_host::runtime`],
//! the same as the mio and smol servers'), bound to an edge-triggered `polling::Poller` of
//! its own per loop (the binding smol's server uses, `ember_fcgi_host::poller`), which
//! tokio's reactor watches as one fd (`tokio::io::unix::AsyncFd`); one `tokio::time::Sleep`
//! wakes the loop for its next deadline. The connections are not tokio tasks and their
//! sockets are not registered with tokio: the runtime keeps every timeout itself, so no
//! tokio timer is armed per connection. A handler's tokio work wakes its connection, and
//! so the loop, through the loop's task waker.
//!
//! ```no_run
//! use ember_fcgi::prelude::*;
//! use ember_fcgi::server::{Limits, Listen};
//! use ember_fcgi::tokio::Server;
//! use std::time::Duration;
//!
//! /// Streams three lines, one every 100 ms, while other requests go on.
//! struct Ticks;
//!
//! impl Handler for Ticks {
//!     async fn handle(&self, _: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), HandlerError> {
//!         let mut body = res.send_head(200, &[("Content-Type", content_type::NDJSON)]).await?;
//!         for i in 0..3u8 {
//!             tokio::time::sleep(Duration::from_millis(100)).await;
//!             body.write_all(&[b'0' + i, b'\n']).await?;
//!             body.flush().await?;
//!         }
//!         Ok(())
//!     }
//! }
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let server = Server::bind(&"127.0.0.1:9000".parse::<Listen>()?, Ticks, Limits::default())?;
//!     let stop = server.shutdown_handle(); // e.g. call stop.shutdown() on SIGTERM
//!     server.run()?;
//!     Ok(())
//! }
//! ```

#![warn(missing_debug_implementations, missing_docs)]

mod nest;
mod server;

pub use ember_fcgi_core::Capacities;
pub use ember_fcgi_host::runtime::{IdleRelease, ShutdownHandle};
pub use ember_fcgi_host::stats::{Stats, StatsSnapshot};
pub use ember_fcgi_host::{BindError, Limits, Listen, Listener, WebServerAddrs};
pub use server::Server;
