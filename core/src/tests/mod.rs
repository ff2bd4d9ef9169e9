//! Engine tests: byte vectors in, byte vectors out, through the real driver.

mod client;
mod engine;
mod errors;
mod handlers;
mod hostage;
mod lifecycle;
mod props;
mod props_wire;
