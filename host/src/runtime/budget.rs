//! The memory ceiling of a server, known before it starts, and its current use: a small
//! engine per connection plus request memory lent from a pool to busy connections.

use std::fmt;
use std::mem::size_of;

use crate::{BufferPool, Limits};
use ember_fcgi_core::Handler;

use super::conn::Entry;
use super::io::{ConnIo, Stream};
use super::wake::ConnWaker;
use crate::engine::{LoopShared, serve_pooled};

/// Bytes the server asks the allocator for, per connection and in total. Kernel socket
/// buffers and allocator overhead are not included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryBudget {
    /// The engine future of one connection: the driver and the handler's future
    /// (`size_of` of the boxed future); no buffers.
    pub connection_future: usize,
    /// What one connection costs besides request memory: the future plus its socket
    /// state, waker and slots.
    pub per_connection: usize,
    /// What an idle connection whose engine was released costs (`per_connection` without
    /// the future; see [`IdleRelease`](super::IdleRelease)).
    pub per_idle_connection: usize,
    /// Request memory of one busy connection ([`Limits::capacities`]), lent from the pool
    /// while it serves requests.
    pub request_memory: usize,
    /// Connections the server serves at once.
    pub max_connections: usize,
    /// Memory allocated once per loop at start (the scratch buffer, and the binding's own,
    /// e.g. the event buffer of `run`).
    pub fixed: usize,
    /// Request memory lent to connections now, busy or idle for less than
    /// [`IdleRelease::memory_after`](super::IdleRelease::memory_after) (0 before the server runs).
    pub request_memory_lent: usize,
    /// Request memory the pool holds now, lent or free.
    pub request_memory_allocated: usize,
}

impl MemoryBudget {
    /// The ceiling: `fixed + (per_connection + request_memory) * max_connections`.
    pub fn total(&self) -> usize {
        self.per_connection
            .saturating_add(self.request_memory)
            .saturating_mul(self.max_connections)
            .saturating_add(self.fixed)
    }

    /// The budget of a loop with `max_connections`, `binding_bytes` of the binding's own,
    /// and the use of `pool` (if it runs).
    pub fn of<H: Handler, S: AsRef<Stream>>(
        limits: &Limits,
        max_connections: usize,
        binding_bytes: usize,
        pool: Option<&BufferPool>,
    ) -> Self {
        let connection_future = crate::for_request_slots!(limits.capacities.requests, |N| size_of_output(
            serve_pooled::<N, S, H>
        ));
        let rc_header = 2 * size_of::<usize>();
        let per_idle_connection = rc_header + size_of::<ConnIo<S>>()
            + rc_header + size_of::<ConnWaker>()
            // the slab slot (an enum of the entry and a free-list index)
            + size_of::<Entry<'_, S>>() + size_of::<usize>()
            // a slot in each of the three ready queues, in the pool's free list and in the
            // list of kept engines
            + 5 * size_of::<usize>()
            // its deadlines (heap entries and slot)
            + super::deadlines::BYTES_PER_CONNECTION;
        let per_connection = connection_future + per_idle_connection;
        let fixed = binding_bytes
            + rc_header
            + size_of::<LoopShared<H>>()
            + super::SCRATCH_BYTES
            + super::deadlines::BYTES_FIXED;
        Self {
            connection_future,
            per_connection,
            per_idle_connection,
            request_memory: limits.capacities.memory_bytes(),
            max_connections,
            fixed,
            request_memory_lent: pool.map_or(0, BufferPool::lent_bytes),
            request_memory_allocated: pool.map_or(0, BufferPool::allocated_bytes),
        }
    }
}

/// The size of what a function returns, without calling it.
fn size_of_output<A, B, R>(_: impl FnOnce(A, B) -> R) -> usize {
    size_of::<R>()
}

impl fmt::Display for MemoryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "({} bytes per connection ({} in the engine future; {} when idle and released) + {} bytes of request memory while busy) x {} connections + {} fixed = {} bytes at most; request memory now {} lent, {} allocated",
            self.per_connection,
            self.connection_future,
            self.per_idle_connection,
            self.request_memory,
            self.max_connections,
            self.fixed,
            self.total(),
            self.request_memory_lent,
            self.request_memory_allocated,
        )
    }
}
