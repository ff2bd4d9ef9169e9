//! A FastCGI 1.0 test kit written from the specification, not from `ember-fcgi-core`
//! (it does not depend on it), so an encoder or parser bug in the library cannot cancel
//! itself out in a test.
//!
//! - [`wire`]: record headers, bodies and streams with any padding or record size;
//! - [`nv`]: name-value pairs in every legal length form, and their decoding;
//! - [`decode`]: an incremental record decoder and whole-record parsing;
//! - [`reply`]: responses assembled from records, with the framing rules checked;
//! - [`client`] / [`async_client`]: a blocking and an async client over a socket;
//! - [`alloc`]: a global allocator counting the process's allocations;
//! - [`mem`]: in-memory readers and writers for driving a connection without sockets;
//! - [`data`]: test patterns and hashes;
//! - [`tools`]: finding external tools (a missing one fails the test, in CI or not);
//! - [`web`]: nginx, lighttpd, Apache and Caddy in front of an app, and `cgi-fcgi`.

pub mod alloc;
pub mod async_client;
pub mod client;
pub mod data;
pub mod decode;
pub mod mem;
pub mod nv;
pub mod reply;
pub mod tools;
pub mod web;
pub mod wire;

pub use client::{Client, Stream, get_once};
pub use decode::{FrameError, parse};
pub use nv::{decode_pairs, encode_pairs, push_nv};
pub use reply::{Record, Reply};
pub use wire::*;
