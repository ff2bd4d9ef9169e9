//! A global allocator that counts the allocations of chosen threads, for the allocation
//! tests (each declares it `#[global_allocator]` in its own test binary).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// Forwards to `System`, counting allocations of threads that called [`count_this_thread`].
pub struct Counting;

thread_local! {
    /// The counter of the current thread, if it is a counted server thread.
    static COUNTER: Cell<Option<&'static AtomicU64>> = const { Cell::new(None) };
}

/// From now on, allocations of the calling thread add to `counter`.
pub fn count_this_thread(counter: &'static AtomicU64) {
    COUNTER.set(Some(counter));
}

fn count() {
    // `try_with`: the allocator may run while thread-locals are torn down.
    if let Ok(Some(counter)) = COUNTER.try_with(Cell::get) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// `GlobalAlloc` contract is exactly the system allocator's; counting touches only an
// atomic and a const-initialised thread-local without destructor (neither allocates).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged; the caller upholds `alloc_zeroed`'s contract.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged; `ptr` came from this allocator, i.e. from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged; `ptr` came from this allocator, i.e. from `System`.
        unsafe { System.dealloc(ptr, layout) }
    }
}
