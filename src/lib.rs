//! ember-fcgi: a FastCGI responder toolkit with a `no_std`, allocation-free protocol core
//! and two servers that run the same handler: [`mio`] (one thread, one readiness loop) and
//! [`smol`] (handlers may await any smol async work; its loops run on a thread of their
//! own, or as a future on your smol executor).
//!
//! ```no_run
//! use ember_fcgi::prelude::*;
//! use ember_fcgi::server::{Limits, Listen};
//!
//! struct Hello;
//!
//! impl Handler for Hello {
//!     async fn handle(&self, _req: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), HandlerError> {
//!         res.send_response(200, content_type::TEXT, b"Hello, World!\n").await?;
//!         Ok(())
//!     }
//! }
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let listen: Listen = "127.0.0.1:9000".parse()?;
//!     ember_fcgi::mio::Server::bind(&listen, Hello, Limits::default())?.run()?;
//!     Ok(())
//! }
//! ```
//!
//! A handler can also be a closure ([`handler_fn`]); its errors flow with `?` (see
//! [`HandlerError`]); blocking work (files, SQLite) runs on a thread pool such as the
//! `blocking` crate's, awaited, on either server; the `http` module (feature
//! `http`) bridges to the `http` crate's types. The README has a section on each.

pub use ember_fcgi_core::*;

mod body;
pub use body::ReadToVec;

/// What a handler module usually imports: the trait, its types, the I/O traits that give
/// `read`, `write_all` and `flush`, and [`ReadToVec`].
pub mod prelude {
    pub use crate::ReadToVec;
    pub use ember_fcgi_core::prelude::*;
}

/// What every std server shares: where to listen, the limits, who may connect, the live
/// counters, the graceful shutdown and the status pages.
pub mod server {
    /// Zero-downtime restart: hand the listening socket to a new copy of the program.
    pub use ember_fcgi_host::handoff;
    pub use ember_fcgi_host::runtime::{IdleRelease, MemoryBudget, ShutdownHandle};
    pub use ember_fcgi_host::stats::{Stats, StatsSnapshot};
    pub use ember_fcgi_host::status::StatusPages;
    pub use ember_fcgi_host::{
        BindError, Limits, Listen, Listener, NameOrId, ParseListenError, ParseNameOrIdError, SystemdError,
        SystemdSocket, WebServerAddrs, inherited_fastcgi_socket, systemd_sockets,
    };
}

/// The mio readiness-loop server: one thread and `Poll` per loop (`run`, or `run_threads`
/// for several loops on one listener), or inside your own `Poll`.
#[cfg(feature = "mio")]
pub mod mio {
    /// The `mio` crate the server is built on, for [`Server::register`] into your own `Poll`.
    pub use ember_fcgi_mio::mio;
    pub use ember_fcgi_mio::{Registered, Server};
}

/// The server for smol applications: handlers may await timers, files, sockets.
#[cfg(feature = "smol")]
pub mod smol {
    pub use ember_fcgi_smol::Server;
}

/// The server for tokio applications: handlers may await tokio's timers, sockets and
/// `spawn_blocking`; [`serve`](tokio::Server::serve) runs on your runtime's `LocalSet`.
#[cfg(feature = "tokio")]
pub mod tokio {
    pub use ember_fcgi_tokio::Server;
}

pub mod form;
#[cfg(feature = "http")]
pub mod http;

#[cfg(test)]
mod test_engine;
#[cfg(feature = "tower")]
pub mod tower;

/// Compiles the README's Rust examples as doc tests, so the README stays true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
#[doc = include_str!("../docs/handlers.md")]
#[cfg(doctest)]
pub struct HandlersGuideDoctests;
#[doc = include_str!("../docs/deploying.md")]
#[cfg(doctest)]
pub struct DeployingGuideDoctests;
#[doc = include_str!("../docs/operating.md")]
#[cfg(doctest)]
pub struct OperatingGuideDoctests;
#[doc = include_str!("../docs/embedded.md")]
#[cfg(doctest)]
pub struct EmbeddedGuideDoctests;
