//! What every std host of the engine needs, whatever its event loop: where to listen
//! (TCP, a Unix socket path, or the socket a launcher passed as fd 0), who may connect
//! (`FCGI_WEB_SERVER_ADDRS`), and the server's limits. Transports wrap the std listener
//! this returns in their own non-blocking type.

mod allow;
mod limits;
mod listen;
pub mod stats;

pub use allow::WebServerAddrs;
pub use limits::Limits;
pub use listen::{BindError, Listen, Listener, ParseListenError, inherited_fastcgi_socket};
