//! # ember-fcgi-core
//!
//! The FastCGI 1.0 responder engine: `no_std`, no allocator, no `unsafe`. Bytes from the
//! web server are parsed incrementally (split anywhere, any padding), requests are handed
//! to one async [`Handler`] trait, and responses are cut into records in a fixed output
//! buffer. Transports (mio, smol, or your own) only move bytes: see [`serve_connection`]
//! and, for hosts with no executor, [`serve_blocking`].
//!
//! ## Contract
//! - Nothing the network sends can make this crate panic, allocate, or grow: every bad
//!   input has a defined outcome (see [`ProtocolError`] and the table in `docs/bad-input.md`).
//! - END_REQUEST goes out at most once per request: after its handler returned (also when
//!   the web server aborted it) and after the empty records that close its streams. It is
//!   queued unless the connection has failed or timed out by then, or the web server
//!   closed its side before the request's input was complete (that request ends silently);
//!   once queued it is sent unless writing fails. A refused BEGIN_REQUEST gets one at once
//!   (`UNKNOWN_ROLE`, `CANT_MPX_CONN` or `OVERLOADED`) and runs no handler.
//!
//! ## Memory of one connection
//! | piece | bytes |
//! |---|---|
//! | input buffer | `IN` (default 4096) |
//! | output buffer | `OUT` (default 4096) |
//! | params store | `PARAMS` × `REQS` (default 4096 × 1) |
//! | slot state | about 150 × `REQS` |
//! | driver future | about 1.1 KiB for a hello handler on x86_64, plus whatever the handler's own future holds (the `sizes` test prints it) |

#![no_std]
#![forbid(unsafe_code)]
#![allow(async_fn_in_trait)]
#![warn(missing_debug_implementations)]

mod buffers;
pub mod cgi;
mod config;
mod conn;
mod drive;
mod error;
mod handler;
mod handler_error;
mod handler_fn;
mod params;
pub mod wire;

pub use buffers::{
    Buffers, Capacities, CapacityError, ConnectionBuffers, DEFAULT_BUFFERS_BYTES, DEFAULT_WINDOW,
    DefaultBuffers, MAX_REQS, SliceBuffers,
};
pub use cgi::{CopyError, content_type};
pub use config::{Config, Roles};
pub use conn::{ConnectionStatus, MIN_INPUT, MIN_OUTPUT, Wait};
pub use drive::{Park, Spin, serve_blocking, serve_connection};
pub use error::{ConnectionError, ProtocolError, StreamError};
pub use handler::{
    BodyBuffer, DataReader, Handler, ParamsHandle, Request, Response, ResponseBody, Stderr, WriteAll,
};
pub use handler_error::{HANDLER_ERROR_CAPACITY, HandlerError};
pub use handler_fn::{FnHandler, handler_fn};
pub use params::{ArenaBytes, Params, ParamsIter};
pub use wire::Role;
pub use {embedded_io, embedded_io_async};

/// What a handler module usually imports: the trait, its types, and the I/O traits that
/// give `read`, `write_all` and `flush`.
pub mod prelude {
    pub use crate::cgi::content_type;
    pub use crate::{Handler, HandlerError, Request, Response, ResponseBody, StreamError, handler_fn};
    pub use embedded_io_async::{Read, Write};
}

#[cfg(test)]
extern crate std;
#[cfg(test)]
mod tests;
