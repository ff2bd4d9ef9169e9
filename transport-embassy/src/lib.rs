//! # ember-fcgi-embassy
//!
//! Serves an `ember-fcgi-core` [`Handler`] on embassy-net TCP sockets, for firmware: no
//! `std`, no allocator, every byte in buffers the caller provides (usually `static`s).
//!
//! embassy-net has no listener: each [`Slot`] is one socket with its own receive and send
//! buffers and its own FastCGI [`Buffers`](ember_fcgi_core::Buffers), and [`serve`]
//! accepts on the port, serves the connection, and accepts again. Run N of them
//! (N tasks, or one `join`) for N concurrent connections on one port. There is no
//! backlog: a connection that finds every socket busy (or still closing its last
//! connection) is reset, so give the firmware more sockets than the web server keeps
//! open (nginx: the clients served at once, plus one or two while others close).
//!
//! Timeouts use embassy-time ([`Limits`]): a connection with no request is closed after
//! `idle_timeout`, a request whose params have not all arrived after `head_timeout`
//! (slowloris), and a peer that stops acknowledging after `tcp_timeout`. A request without
//! FCGI_KEEP_CONN is closed after its response with a FIN, then a drain of the peer's
//! input for at most `close_linger`, so the peer never sees a reset for bytes it sent.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

mod io;
mod limits;
mod serve;
mod stats;

pub use io::IoError;
pub use limits::Limits;
pub use serve::{Slot, serve, serve_accepted};
pub use stats::{Stats, StatsSnapshot};

pub use ember_fcgi_core::Handler;
