//! Support for the end-to-end tests: finding tools (a missing one fails the test, loudly),
//! a network namespace that is always deleted, nginx from a generated config, QEMU, and
//! the HTTP checks both proofs share.

pub mod checks;
pub mod netns;
pub mod nginx;
pub mod raw;
pub mod tools;
