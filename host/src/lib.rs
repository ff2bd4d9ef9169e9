#![forbid(unsafe_code)]
//! What every std host of the engine needs, whatever its event loop: where to listen
//! (TCP, a Unix socket path, or the socket a launcher passed as fd 0), who may connect
//! (`FCGI_WEB_SERVER_ADDRS`), and the server's limits; and the machinery every server's
//! connections share: pooled request memory, the guarded engine of one connection
//! ([`engine`]), which timeout applies ([`Watch`]), the live counters ([`stats`]). Transports wrap the std listener
//! this returns in their own non-blocking type.

mod allow;
pub mod engine;
mod limits;
mod listen;
mod park;
mod pool;
pub mod stats;
mod watch;

pub use allow::WebServerAddrs;
pub use limits::{Limits, deadline};
pub use listen::{BindError, Listen, Listener, ParseListenError, inherited_fastcgi_socket};
pub use park::ThreadPark;
pub use pool::BufferPool;
pub use watch::{Wait, Watch};
