//! The server's live counters (shared with the other transport, in `ember-fcgi-host`).

pub(crate) use ember_fcgi_host::stats::bump;
pub use ember_fcgi_host::stats::{Counters, Stats, StatsSnapshot};
