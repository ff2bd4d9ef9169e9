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
//! (slowloris), a handler that waits for body bytes that do not come after `body_timeout`,
//! response bytes the web server does not take after `send_timeout` (both: the handler's
//! calls fail with `StreamError::TimedOut`, the connection closes), a handler that runs
//! longer than `request_timeout` (never by default) is dropped and answered with a 504 if
//! it wrote nothing (else the connection closes), and a peer that stops acknowledging
//! after `tcp_timeout`. A request without FCGI_KEEP_CONN is closed after its response with
//! a FIN, then a drain of the peer's input for at most `close_linger`, so the peer never
//! sees a reset for bytes it sent. A peer not in `allowed_peers` is reset at accept.
//!
//! [`Stats`] counts with `portable-atomic`, so the crate builds on targets without
//! compare-and-swap (thumbv6m, riscv32imc); there the firmware chooses how those atomics
//! work, by enabling portable-atomic's `critical-section` feature (with a
//! `critical-section` implementation, as embassy uses) or, on a single-core chip,
//! `unsafe-assume-single-core`: `portable-atomic = { version = "1", features =
//! ["critical-section"] }` in its `Cargo.toml`. A library does not choose for it.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

mod io;
mod limits;
mod serve;
mod stats;

pub use io::IoError;
pub use limits::{AllowedPeers, Limits};
pub use serve::{Slot, serve, serve_accepted};
pub use stats::{Stats, StatsSnapshot};

pub use ember_fcgi_core::Handler;
