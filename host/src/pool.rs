//! Request memory on a server: blocks of [`Capacities::memory_bytes`], lent to a
//! connection while it serves requests and returned when it is idle again, so memory
//! follows work and steady state allocates nothing.

use std::cell::{Cell, RefCell};
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use ember_fcgi_core::Capacities;

use crate::stats::Counters;

/// Free-list slots reserved up front at most (beyond it, the list grows on demand).
const MAX_PRESERVED: usize = 1 << 16;

/// The blocks of one serving loop (`!Sync`: one pool per loop thread).
#[derive(Debug)]
pub struct BufferPool {
    capacities: Capacities,
    /// `capacities.memory_bytes()`, the size of each block.
    block_bytes: usize,
    free: RefCell<Vec<Box<[u8]>>>,
    allocated: Cell<usize>,
    lent: Cell<usize>,
    counters: Arc<Counters>,
}

impl BufferPool {
    /// A pool of blocks for `capacities`, for at most `max_connections` connections.
    /// The server-wide memory gauges in `counters` follow it.
    pub fn new(capacities: Capacities, max_connections: usize, counters: Arc<Counters>) -> Self {
        Self {
            capacities,
            block_bytes: capacities.memory_bytes(),
            free: RefCell::new(Vec::with_capacity(max_connections.min(MAX_PRESERVED))),
            allocated: Cell::new(0),
            lent: Cell::new(0),
            counters,
        }
    }

    fn bytes(&self) -> u64 {
        self.block_bytes as u64
    }

    /// What each block holds.
    pub fn capacities(&self) -> Capacities {
        self.capacities
    }

    /// Lends a block: a free one, or a new one (zeroed by the allocator, so its pages cost
    /// nothing until used). It comes back when the [`Lent`] is dropped, however its
    /// connection ends.
    pub fn lend(&self) -> Lent<'_> {
        self.lent.set(self.lent.get() + 1);
        self.counters.memory_lent.fetch_add(self.bytes(), Ordering::Relaxed);
        let free = self.free.borrow_mut().pop();
        let block = free.unwrap_or_else(|| {
            self.allocated.set(self.allocated.get() + 1);
            self.counters.memory_allocated.fetch_add(self.bytes(), Ordering::Relaxed);
            vec![0u8; self.block_bytes].into_boxed_slice()
        });
        Lent { pool: self, block }
    }

    /// Takes a block back.
    fn put(&self, block: Box<[u8]>) {
        self.lent.set(self.lent.get().saturating_sub(1));
        self.counters.memory_lent.fetch_sub(self.bytes(), Ordering::Relaxed);
        self.free.borrow_mut().push(block);
    }

    /// Bytes of blocks allocated so far (lent or free).
    pub fn allocated_bytes(&self) -> usize {
        self.allocated.get().saturating_mul(self.block_bytes)
    }

    /// Bytes of blocks lent to connections now.
    pub fn lent_bytes(&self) -> usize {
        self.lent.get().saturating_mul(self.block_bytes)
    }
}

/// A block lent by a [`BufferPool`]; dropping it gives it back (also when a connection's
/// engine is dropped in the middle of a request: a timeout, a shutdown).
#[derive(Debug)]
pub struct Lent<'p> {
    pool: &'p BufferPool,
    block: Box<[u8]>,
}

impl Deref for Lent<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.block
    }
}

impl DerefMut for Lent<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.block
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        // An empty boxed slice does not allocate.
        self.pool.put(std::mem::take(&mut self.block));
    }
}

impl Drop for BufferPool {
    fn drop(&mut self) {
        let free = self.free.get_mut().len() as u64;
        self.counters.memory_allocated.fetch_sub(free * self.bytes(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> BufferPool {
        let capacities = Capacities::new()
            .with_input(1024)
            .with_output(1024)
            .with_params(2048)
            .with_window(512)
            .with_requests(2);
        BufferPool::new(capacities, 4, Arc::default())
    }

    #[test]
    fn dropping_a_lent_block_returns_it() {
        let pool = pool();
        let bytes = pool.capacities().memory_bytes();
        let first = pool.lend();
        assert_eq!(first.len(), bytes);
        let at = first.as_ptr();
        drop(first);
        assert_eq!((pool.lent_bytes(), pool.allocated_bytes()), (0, bytes));
        // The same block again: nothing new allocated.
        let again = pool.lend();
        assert_eq!((again.as_ptr(), pool.lent_bytes(), pool.allocated_bytes()), (at, bytes, bytes));
        let second = pool.lend();
        assert_eq!((pool.lent_bytes(), pool.allocated_bytes()), (2 * bytes, 2 * bytes));
        drop((again, second));
        assert_eq!(pool.lent_bytes(), 0);
        assert_eq!(pool.counters.memory_lent.load(Ordering::Relaxed), 0);
        assert_eq!(pool.counters.memory_allocated.load(Ordering::Relaxed), 2 * bytes as u64);
    }
}
