//! Connection memory: every byte one connection may use, chosen at compile time.

use core::cell::RefCell;
use core::future::{Future, poll_fn};
use core::pin::pin;
use core::task::Poll;

use crate::conn::{MIN_INPUT, MIN_OUTPUT, SlotState};
use crate::params::ParamArena;

/// Largest number of concurrent requests per connection ([`Buffers`]'s `REQS`) supported.
pub const MAX_REQS: usize = 32;

/// The memory of one connection: an input buffer of `IN` bytes (record content streams
/// through it, so it can be far smaller than a 64 KiB record), an output buffer of `OUT`
/// bytes (response records are assembled in it), and for each of `REQS` concurrent
/// requests a params store of `PARAMS` bytes (each param costs its name and value plus 4).
///
/// Supported `REQS`: 1 to 8, 16 and 32. `REQS = 1` means no multiplexing
/// (FCGI_MPXS_CONNS = 0), which is what nginx, Apache and lighttpd use.
pub struct Buffers<const IN: usize, const OUT: usize, const PARAMS: usize, const REQS: usize> {
    input: [u8; IN],
    output: [u8; OUT],
    params: [RefCell<ParamArena<[u8; PARAMS]>>; REQS],
    slots: [SlotState; REQS],
}

/// The default connection memory: 4 KiB in, 4 KiB out, 4 KiB of params (a typical nginx
/// request sends about 25 params in 1 to 1.5 KiB), one request at a time.
pub type DefaultBuffers = Buffers<4096, 4096, 4096, 1>;

/// Bytes of [`DefaultBuffers`]; `core::mem::size_of::<DefaultBuffers>()` equals it.
pub const DEFAULT_BUFFERS_BYTES: usize = 12_424;

impl<const IN: usize, const OUT: usize, const PARAMS: usize, const REQS: usize>
    Buffers<IN, OUT, PARAMS, REQS>
{
    /// Zeroed buffers; sizes below the minimums fail to compile.
    pub const fn new() -> Self {
        const { assert!(IN >= MIN_INPUT, "input buffer below MIN_INPUT") };
        const { assert!(OUT >= MIN_OUTPUT, "output buffer below MIN_OUTPUT") };
        const { assert!(REQS >= 1 && REQS <= MAX_REQS, "REQS must be 1..=MAX_REQS") };
        Self {
            input: [0; IN],
            output: [0; OUT],
            params: [const { RefCell::new(ParamArena::new()) }; REQS],
            slots: [const { SlotState::new() }; REQS],
        }
    }
}

impl<const IN: usize, const OUT: usize, const PARAMS: usize, const REQS: usize> core::fmt::Debug
    for Buffers<IN, OUT, PARAMS, REQS>
{
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Buffers<in {IN}, out {OUT}, params {PARAMS}, reqs {REQS}>")
    }
}

impl core::fmt::Debug for Parts<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Parts").finish_non_exhaustive()
    }
}

impl<const IN: usize, const OUT: usize, const PARAMS: usize, const REQS: usize> Default
    for Buffers<IN, OUT, PARAMS, REQS>
{
    fn default() -> Self {
        Self::new()
    }
}

/// The pieces of a [`Buffers`] the driver works with.
#[doc(hidden)]
pub struct Parts<'a> {
    pub(crate) input: &'a mut [u8],
    pub(crate) output: &'a mut [u8],
    pub(crate) params: heapless::Vec<&'a RefCell<ParamArena<[u8]>>, MAX_REQS>,
    pub(crate) slots: &'a mut [SlotState],
}

/// Implemented by every supported [`Buffers`] size; the driver is generic over it.
pub trait ConnectionBuffers {
    /// Concurrent requests per connection.
    const REQS: usize;

    #[doc(hidden)]
    fn parts(&mut self) -> Parts<'_>;

    /// Runs one future per request slot concurrently (a join without an allocator).
    #[doc(hidden)]
    fn join_slots<F, Fut>(make: F) -> impl Future<Output = ()>
    where
        F: FnMut(usize) -> Fut,
        Fut: Future<Output = ()>;
}

/// Polls two futures until both complete.
async fn join_pair<A: Future<Output = ()>, B: Future<Output = ()>>(a: A, b: B) {
    let mut a = pin!(a);
    let mut b = pin!(b);
    let (mut a_done, mut b_done) = (false, false);
    poll_fn(|cx| {
        if !a_done {
            a_done = a.as_mut().poll(cx).is_ready();
        }
        if !b_done {
            b_done = b.as_mut().poll(cx).is_ready();
        }
        if a_done && b_done { Poll::Ready(()) } else { Poll::Pending }
    })
    .await
}

macro_rules! join_slots {
    ($make:ident; $i:expr) => { $make($i) };
    ($make:ident; $i:expr, $($rest:expr),+) => { join_pair($make($i), join_slots!($make; $($rest),+)) };
}

macro_rules! impl_connection_buffers {
    ($($reqs:literal => [$($i:literal),+];)+) => {$(
        impl<const IN: usize, const OUT: usize, const PARAMS: usize> ConnectionBuffers for Buffers<IN, OUT, PARAMS, $reqs> {
            const REQS: usize = $reqs;

            fn parts(&mut self) -> Parts<'_> {
                let mut params = heapless::Vec::new();
                for cell in &self.params {
                    let cell: &RefCell<ParamArena<[u8]>> = cell;
                    // REQS <= MAX_REQS, so this never fails.
                    let _ = params.push(cell);
                }
                Parts { input: &mut self.input, output: &mut self.output, params, slots: &mut self.slots }
            }

            #[allow(unused_mut)]
            fn join_slots<F, Fut>(mut make: F) -> impl Future<Output = ()>
            where
                F: FnMut(usize) -> Fut,
                Fut: Future<Output = ()>,
            {
                join_slots!(make; $($i),+)
            }
        }
    )+};
}

impl_connection_buffers! {
    1 => [0];
    2 => [0, 1];
    3 => [0, 1, 2];
    4 => [0, 1, 2, 3];
    5 => [0, 1, 2, 3, 4];
    6 => [0, 1, 2, 3, 4, 5];
    7 => [0, 1, 2, 3, 4, 5, 6];
    8 => [0, 1, 2, 3, 4, 5, 6, 7];
    16 => [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
    32 => [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31];
}
