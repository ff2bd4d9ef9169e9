//! ember-fcgi: a FastCGI responder toolkit with a `no_std`, allocation-free protocol core
//! and mio / smol servers that run the same handler.

pub use ember_fcgi_core::*;
