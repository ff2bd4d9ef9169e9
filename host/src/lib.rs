//! What every std host of the engine needs, whatever its event loop: where to listen
//! (TCP, a Unix socket path, the socket a launcher passed as fd 0, or sockets handed over by
//! systemd), who may connect (`FCGI_WEB_SERVER_ADDRS`), the server's limits, its live
//! counters, and the status and ping pages that show them. Transports wrap the std listener
//! this returns in their own non-blocking type.

mod allow;
pub mod events;
mod limits;
mod listen;
pub mod stats;
pub mod status;
mod systemd;

pub use allow::WebServerAddrs;
pub use limits::Limits;
pub use listen::{BindError, Listen, Listener, ParseListenError, inherited_fastcgi_socket};
pub use systemd::{SystemdError, SystemdSocket, systemd_sockets};
