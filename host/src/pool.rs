//! Request memory on a server: blocks of [`Capacities::memory_bytes`], lent to a
//! connection while it serves requests and returned when it is idle again, so memory
//! follows work and steady state allocates nothing.

use std::cell::{Cell, RefCell};
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
    /// nothing until used).
    pub fn take(&self) -> Box<[u8]> {
        self.lent.set(self.lent.get() + 1);
        self.counters.memory_lent.fetch_add(self.bytes(), Ordering::Relaxed);
        if let Some(block) = self.free.borrow_mut().pop() {
            return block;
        }
        self.allocated.set(self.allocated.get() + 1);
        self.counters.memory_allocated.fetch_add(self.bytes(), Ordering::Relaxed);
        vec![0u8; self.block_bytes].into_boxed_slice()
    }

    /// Takes a block back.
    pub fn put(&self, block: Box<[u8]>) {
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

impl Drop for BufferPool {
    fn drop(&mut self) {
        let free = self.free.get_mut().len() as u64;
        self.counters.memory_allocated.fetch_sub(free * self.bytes(), Ordering::Relaxed);
    }
}
