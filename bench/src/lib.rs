//! Benchmark tools for ember-fcgi: the `fcgi-load` load generator and the
//! `fcgi-baseline` no-parse server. Std + mio only; independent of the library under test
//! (the wire format comes from `ember-fcgi-testkit`, written from the spec).

pub mod hist;
pub mod load;
pub mod net;
