#![deny(unsafe_code)]
//! What every std host of the engine needs, whatever its event loop: where to listen
//! (TCP, a Unix socket path, the socket a launcher passed as fd 0, or sockets handed over by
//! systemd), who may connect (`FCGI_WEB_SERVER_ADDRS`), and the server's limits; the
//! machinery every server's connections share: pooled request memory, the guarded engine
//! of one connection ([`engine`]), which timeout applies ([`Watch`]), the live counters
//! ([`stats`]) and what they log ([`events`]); and the status and ping pages that show
//! them ([`status`]); and the connection [`runtime`] both std transports bind to their
//! poller: the table of connection futures, the socket halves with their readiness flags,
//! the deadline sweep, idle release and the graceful shutdown.

#[allow(unsafe_code)] // getpwnam_r / getgrnam_r; each block says why it is sound
mod account;
mod allow;
pub mod engine;
pub mod events;
#[allow(unsafe_code)] // passing the listening socket to a successor; each block says why
pub mod handoff;
mod limits;
mod listen;
mod park;
#[cfg(feature = "polling")]
pub mod poller;
mod pool;
pub mod runtime;
pub mod stats;
pub mod status;
#[allow(unsafe_code)] // adopting the fds systemd passed; each block says why it is sound
mod systemd;
mod watch;

pub use account::{NameOrId, ParseNameOrIdError};
pub use allow::WebServerAddrs;
pub use ember_fcgi_core::Wait;
pub use limits::{Limits, deadline};
pub use listen::{BindError, Listen, Listener, ParseListenError, inherited_fastcgi_socket};
pub use park::ThreadPark;
pub use pool::{BufferPool, Lent};
pub use systemd::{SystemdError, SystemdSocket, systemd_sockets};
pub use watch::Watch;
