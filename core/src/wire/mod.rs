//! Typed views of the FastCGI 1.0 wire format: record headers, fixed-size bodies and
//! name-value pairs.
//!
//! Everything here is pure and total: parsing takes fixed-size arrays or slices and never
//! panics; encoding writes into caller-provided arrays or slices and reports when they are
//! too small. Nothing here knows about connections or requests (see [`crate::serve_connection`]).

pub mod body;
pub mod header;
pub mod nv;

pub use body::{BeginRequestBody, EndRequestBody, ProtocolStatus, Role, UnknownTypeBody};
pub use header::{Header, RecordType};
pub use nv::{NvDecoder, NvError, NvSink};
