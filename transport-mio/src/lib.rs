//! # ember-fcgi-mio
//!
//! A FastCGI responder server on one thread and one `mio::Poll` (or several, with
//! [`Server::run_threads`]), for thousands of
//! connections with a memory ceiling known before it starts. Each connection is one boxed
//! engine future (the core driver, [`ember_fcgi_core::serve_connection`]); its request
//! memory ([`Limits::capacities`]) is lent from the loop's pool while it serves requests.
//! After a connection is set up, serving requests allocates nothing, and streaming any
//! amount of data in or out uses only that memory (backpressure, not queues). The same
//! [`Handler`](ember_fcgi_core::Handler) runs here and on the smol transport.
//!
//! - Listen on TCP (IPv4, IPv6), a Unix socket path, or the socket inherited as fd 0
//!   ([`Listen::Inherited`]); TCP peers are checked against `FCGI_WEB_SERVER_ADDRS`.
//! - [`Limits`]: memory per busy connection, max connections (one more is accepted and
//!   closed at once), idle, head (slowloris), body-stall and send-stall timeouts, a
//!   graceful-shutdown timeout and a close linger.
//! - Stop from any thread with a [`ShutdownHandle`].
//! - Run it with [`Server::run`] (this thread) or [`Server::run_threads`] (n loops on
//!   one listener), or embed it in your own mio loop with [`Server::register`] and
//!   [`Registered`]; `run` is that same loop.
//! - Idle keep-alive connections hold no request memory, and give their engine back too
//!   ([`IdleRelease`]): ten thousand of them cost a few MiB.
//!
//! Handler futures are not `Send` (async fn in traits), so a connection stays on the loop
//! that accepted it; to use more cores, [`Server::run_threads`] runs one server on several
//! loops, one thread and `Poll` each, all accepting from the one listener: one `Limits`,
//! one [`Stats`] table, one [`ShutdownHandle`] and one `max_connections` for all of them.
//! Each loop's `Poll` holds the listener with `EPOLLEXCLUSIVE` (Linux), so a new
//! connection wakes one sleeping loop, not every loop; a loop blocked in a handler leaves
//! new connections to the others.
//!
//! ```no_run
//! use ember_fcgi::prelude::*;
//! use ember_fcgi::mio::Server;
//! use ember_fcgi::server::{Limits, Listen};
//!
//! struct Hello;
//! impl Handler for Hello {
//!     async fn handle(&self, _: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), HandlerError> {
//!         res.send_response(200, content_type::TEXT, b"Hello, World!\n").await?;
//!         Ok(())
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = Server::bind(&"127.0.0.1:9000".parse::<Listen>()?, Hello, Limits::default())?;
//! let stop = server.shutdown_handle(); // stops every loop, e.g. on SIGTERM
//! server.run_threads(std::thread::available_parallelism()?.get())?;
//! # Ok(())
//! # }
//! ```
//!
//! ```no_run
//! use ember_fcgi::prelude::*;
//! use ember_fcgi::mio::Server;
//! use ember_fcgi::server::{Limits, Listen};
//!
//! struct Hello;
//! impl Handler for Hello {
//!     async fn handle(&self, _: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), HandlerError> {
//!         res.send_response(200, content_type::TEXT, b"Hello, World!\n").await?;
//!         Ok(())
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let listen: Listen = "127.0.0.1:9000".parse()?;
//! Server::bind(&listen, Hello, Limits::default())?.run()?;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_debug_implementations, missing_docs)]

mod embed;
mod server;

pub use embed::Registered;
pub use ember_fcgi_host::runtime::{IdleRelease, MemoryBudget, ShutdownHandle};
pub use ember_fcgi_host::stats::{Stats, StatsSnapshot};
pub use server::Server;

pub use ember_fcgi_core::Capacities;
pub use ember_fcgi_host::{BindError, Limits, Listen, Listener, NameOrId, WebServerAddrs};
pub use mio;
