//! The memory ceiling of a server, known before it starts: every connection costs the same
//! fixed number of bytes, decided by the handler and buffer types.

use std::fmt;
use std::mem::size_of;

use ember_fcgi_core::{ConnectionBuffers, Handler};

use crate::conn::{Counted, Entry, connection_future};
use crate::io::ConnIo;
use crate::waker::ConnWaker;

/// Bytes the server asks the allocator for, per connection and in total. Kernel socket
/// buffers and allocator overhead are not included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryBudget {
    /// The engine future of one connection: its buffers, the driver and the handler's
    /// future (`size_of` of the boxed future).
    pub connection_future: usize,
    /// Everything one connection costs: the future plus its socket state, waker and slots.
    pub per_connection: usize,
    /// What an idle connection whose engine was released costs (`per_connection` without
    /// the future; see [`crate::IdleRelease`]).
    pub per_idle_connection: usize,
    /// Connections the server serves at once.
    pub max_connections: usize,
    /// Memory allocated once at start (queues and the event buffer of `run`).
    pub fixed: usize,
}

impl MemoryBudget {
    /// The ceiling: `fixed + per_connection * max_connections`.
    pub fn total(&self) -> usize {
        self.per_connection.saturating_mul(self.max_connections).saturating_add(self.fixed)
    }

    pub(crate) fn of<H, B>(max_connections: usize, events: usize) -> Self
    where
        H: Handler + 'static,
        B: ConnectionBuffers + Default + 'static,
    {
        let connection_future = size_of_output(connection_future::<H, B>);
        let rc_header = 2 * size_of::<usize>();
        let per_idle_connection = rc_header + size_of::<ConnIo>()
            + rc_header + size_of::<ConnWaker>()
            // the slab slot (an enum of the entry and a free-list index)
            + size_of::<Entry>() + size_of::<usize>()
            // a slot in each of the three ready queues
            + 3 * size_of::<usize>();
        let per_connection = connection_future + per_idle_connection;
        let fixed = events * size_of::<mio::event::Event>()
            + size_of::<Counted<H>>()
            + rc_header
            + crate::io::SCRATCH_BYTES;
        Self { connection_future, per_connection, per_idle_connection, max_connections, fixed }
    }
}

/// The size of what a function returns, without calling it.
fn size_of_output<A, B, C, R>(_: impl FnOnce(A, B, C) -> R) -> usize {
    size_of::<R>()
}

impl fmt::Display for MemoryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} bytes per connection ({} in the engine future; {} when idle and released) x {} connections + {} fixed = {} bytes",
            self.per_connection,
            self.connection_future,
            self.per_idle_connection,
            self.max_connections,
            self.fixed,
            self.total()
        )
    }
}
