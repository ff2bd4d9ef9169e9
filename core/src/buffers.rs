//! Connection memory: every byte one connection may use, fixed at compile time
//! ([`Buffers`]) or carved at run time from memory the caller provides ([`SliceBuffers`]).

use core::cell::RefCell;
use core::fmt;
use core::future::{Future, poll_fn};
use core::pin::pin;
use core::task::Poll;

use crate::conn::{MIN_INPUT, MIN_OUTPUT, SlotState};
use crate::params::{Arena, ParamArena};

/// Largest number of concurrent requests per connection supported.
pub const MAX_REQS: usize = 32;

/// Default per-request body window of [`Buffers`] (see [`Capacities::window`]).
pub const DEFAULT_WINDOW: usize = 1024;

/// The memory of one connection, fixed at compile time: an input buffer of `IN` bytes
/// (record content streams through it, so it can be far smaller than a 64 KiB record), an
/// output buffer of `OUT` bytes (response records are assembled in it), and for each of
/// `REQS` concurrent requests a params store of `PARAMS` bytes (each param costs its name
/// and value plus 4) and a body window of `WINDOW` bytes (body bytes wait there while the
/// handler is busy, so the records behind them are still seen).
///
/// Supported `REQS`: 1 to 8, 16 and 32. `REQS = 1` means no multiplexing
/// (FCGI_MPXS_CONNS = 0), which is what nginx, Apache and lighttpd use.
pub struct Buffers<
    const IN: usize,
    const OUT: usize,
    const PARAMS: usize,
    const REQS: usize,
    const WINDOW: usize = DEFAULT_WINDOW,
> {
    input: [u8; IN],
    output: [u8; OUT],
    windows: [[u8; WINDOW]; REQS],
    params: [RefCell<ParamArena<[u8; PARAMS]>>; REQS],
    slots: [SlotState; REQS],
}

/// The default connection memory: 4 KiB in, 4 KiB out, 4 KiB of params (a typical nginx
/// request sends about 25 params in 1 to 1.5 KiB), a 1 KiB body window, one request at a
/// time. Servers size their memory at run time instead (see [`SliceBuffers`]).
pub type DefaultBuffers = Buffers<4096, 4096, 4096, 1>;

/// Bytes of [`DefaultBuffers`]; `core::mem::size_of::<DefaultBuffers>()` equals it.
pub const DEFAULT_BUFFERS_BYTES: usize = 13_480;

impl<const IN: usize, const OUT: usize, const PARAMS: usize, const REQS: usize, const WINDOW: usize>
    Buffers<IN, OUT, PARAMS, REQS, WINDOW>
{
    /// Zeroed buffers; sizes below the minimums fail to compile.
    pub const fn new() -> Self {
        const { assert!(IN >= MIN_INPUT, "input buffer below MIN_INPUT") };
        const { assert!(OUT >= MIN_OUTPUT, "output buffer below MIN_OUTPUT") };
        const { assert!(REQS >= 1 && REQS <= MAX_REQS, "REQS must be 1..=MAX_REQS") };
        Self {
            input: [0; IN],
            output: [0; OUT],
            windows: [[0; WINDOW]; REQS],
            params: [const { RefCell::new(ParamArena::new()) }; REQS],
            slots: [const { SlotState::new() }; REQS],
        }
    }
}

impl<const IN: usize, const OUT: usize, const PARAMS: usize, const REQS: usize, const WINDOW: usize>
    fmt::Debug for Buffers<IN, OUT, PARAMS, REQS, WINDOW>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Buffers<in {IN}, out {OUT}, params {PARAMS}, reqs {REQS}, window {WINDOW}>")
    }
}

impl<const IN: usize, const OUT: usize, const PARAMS: usize, const REQS: usize, const WINDOW: usize> Default
    for Buffers<IN, OUT, PARAMS, REQS, WINDOW>
{
    fn default() -> Self {
        Self::new()
    }
}

/// How much memory one connection gets, chosen at run time (see [`SliceBuffers`]).
/// [`Capacities::new`] (also `Default`) is the size of [`DefaultBuffers`]; change one
/// field at a time with the `with_` methods:
///
/// ```
/// use ember_fcgi_core::Capacities;
///
/// let caps = Capacities::new().with_params(64 * 1024).with_requests(4);
/// assert_eq!(caps.memory_bytes(), 4096 + 4096 + 4 * (64 * 1024 + 1024));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capacities {
    /// Input buffer: socket reads land here (at least [`MIN_INPUT`]).
    pub input: usize,
    /// Output buffer: response records are assembled here (at least [`MIN_OUTPUT`]).
    pub output: usize,
    /// Params store per request: names and values plus 2 bytes per param (3 more for each
    /// name or value of 128 bytes or longer); one value may fill it all. A request whose
    /// params do not fit is answered `431` and the connection stays usable.
    pub params: usize,
    /// Body window per request: body bytes wait here while the handler does not read, so
    /// the records behind them (abort, GET_VALUES, other requests) are still seen.
    pub window: usize,
    /// Concurrent requests per connection (1 = no multiplexing), at most [`MAX_REQS`].
    pub requests: usize,
}

impl Capacities {
    /// The capacities of [`DefaultBuffers`]: 4096 bytes in, out and of params, a
    /// [`DEFAULT_WINDOW`] window, one request at a time.
    pub const fn new() -> Self {
        Self { input: 4096, output: 4096, params: 4096, window: DEFAULT_WINDOW, requests: 1 }
    }

    /// With an input buffer of `bytes`.
    pub const fn with_input(mut self, bytes: usize) -> Self {
        self.input = bytes;
        self
    }

    /// With an output buffer of `bytes`.
    pub const fn with_output(mut self, bytes: usize) -> Self {
        self.output = bytes;
        self
    }

    /// With a params store of `bytes` per request.
    pub const fn with_params(mut self, bytes: usize) -> Self {
        self.params = bytes;
        self
    }

    /// With a body window of `bytes` per request.
    pub const fn with_window(mut self, bytes: usize) -> Self {
        self.window = bytes;
        self
    }

    /// With `requests` concurrent requests per connection.
    pub const fn with_requests(mut self, requests: usize) -> Self {
        self.requests = requests;
        self
    }

    /// Bytes of caller memory [`SliceBuffers::new`] needs for these capacities.
    pub const fn memory_bytes(&self) -> usize {
        self.input
            .saturating_add(self.output)
            .saturating_add(self.requests.saturating_mul(self.params.saturating_add(self.window)))
    }

    /// Checks the capacities against the engine's minimums and `MAX_REQS`.
    pub const fn check(&self) -> Result<(), CapacityError> {
        if self.input < MIN_INPUT {
            return Err(CapacityError::InputTooSmall { input: self.input });
        }
        if self.output < MIN_OUTPUT {
            return Err(CapacityError::OutputTooSmall { output: self.output });
        }
        if self.requests == 0 || self.requests > MAX_REQS {
            return Err(CapacityError::Requests { requests: self.requests });
        }
        Ok(())
    }
}

impl Default for Capacities {
    fn default() -> Self {
        Self::new()
    }
}

/// Why connection memory could not be laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapacityError {
    /// The input buffer is below [`MIN_INPUT`].
    InputTooSmall { input: usize },
    /// The output buffer is below [`MIN_OUTPUT`].
    OutputTooSmall { output: usize },
    /// Requests per connection must be 1 to [`MAX_REQS`] and fit the buffer type.
    Requests { requests: usize },
    /// The memory given is smaller than [`Capacities::memory_bytes`].
    MemoryTooSmall { needed: usize, given: usize },
}

impl fmt::Display for CapacityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InputTooSmall { input } => {
                write!(f, "input buffer of {input} bytes is below the minimum of {MIN_INPUT}")
            }
            Self::OutputTooSmall { output } => {
                write!(f, "output buffer of {output} bytes is below the minimum of {MIN_OUTPUT}")
            }
            Self::Requests { requests } => {
                write!(f, "{requests} requests per connection: must be 1 to {MAX_REQS}")
            }
            Self::MemoryTooSmall { needed, given } => {
                write!(f, "connection memory of {given} bytes is smaller than the {needed} bytes needed")
            }
        }
    }
}

impl core::error::Error for CapacityError {}

/// The memory of one connection laid out at run time in one slice the caller provides
/// (a `static` array on a microcontroller, a pooled block on a server), for up to `REQS`
/// concurrent requests ([`Capacities::requests`] of them are used).
pub struct SliceBuffers<'a, const REQS: usize> {
    input: &'a mut [u8],
    output: &'a mut [u8],
    windows: &'a mut [u8],
    params: [RefCell<ParamArena<&'a mut [u8]>>; REQS],
    slots: [SlotState; REQS],
    requests: usize,
}

impl<'a, const REQS: usize> SliceBuffers<'a, REQS> {
    /// Lays `memory` out as `capacities` say (it needs [`Capacities::memory_bytes`]).
    pub fn new(memory: &'a mut [u8], capacities: Capacities) -> Result<Self, CapacityError> {
        const { assert!(REQS >= 1 && REQS <= MAX_REQS, "REQS must be 1..=MAX_REQS") };
        capacities.check()?;
        let c = capacities;
        if c.requests > REQS {
            return Err(CapacityError::Requests { requests: c.requests });
        }
        let needed = c.memory_bytes();
        if memory.len() < needed {
            return Err(CapacityError::MemoryTooSmall { needed, given: memory.len() });
        }
        let (input, rest) = memory.split_at_mut(c.input);
        let (output, rest) = rest.split_at_mut(c.output);
        let (windows, mut rest) = rest.split_at_mut(c.window * c.requests);
        let params = core::array::from_fn(|i| {
            let size = if i < c.requests { c.params } else { 0 };
            let (mine, others) = core::mem::take(&mut rest).split_at_mut(size);
            rest = others;
            RefCell::new(ParamArena::over(mine))
        });
        Ok(Self {
            input,
            output,
            windows,
            params,
            slots: [const { SlotState::new() }; REQS],
            requests: c.requests,
        })
    }
}

impl<const REQS: usize> fmt::Debug for SliceBuffers<'_, REQS> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SliceBuffers")
            .field("input", &self.input.len())
            .field("output", &self.output.len())
            .field("windows", &self.windows.len())
            .field("requests", &self.requests)
            .finish_non_exhaustive()
    }
}

impl<P> fmt::Debug for Parts<'_, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Parts").finish_non_exhaustive()
    }
}

/// The pieces of a connection's memory the driver works with: the byte buffers and slots,
/// and `P`, a reference to each slot's params store (an array of `REQS`, so the driver's
/// future holds no more references than there are slots).
#[doc(hidden)]
pub struct Parts<'a, P> {
    pub(crate) memory: Memory<'a>,
    pub(crate) params: P,
}

/// The byte buffers and request slots of a connection, as the engine state holds them.
pub(crate) struct Memory<'a> {
    pub(crate) input: &'a mut [u8],
    pub(crate) output: &'a mut [u8],
    /// One body window per slot, of equal size, back to back.
    pub(crate) windows: &'a mut [u8],
    pub(crate) slots: &'a mut [SlotState],
}

/// Implemented by every supported [`Buffers`] and [`SliceBuffers`]; the driver is generic
/// over it.
pub trait ConnectionBuffers {
    /// Request slots (the driver runs one task per slot).
    const REQS: usize;

    /// A reference to each slot's params store.
    #[doc(hidden)]
    type ParamRefs<'a>: AsRef<[&'a RefCell<Arena<'a>>]>
    where
        Self: 'a;

    #[doc(hidden)]
    fn parts(&mut self) -> Parts<'_, Self::ParamRefs<'_>>;

    /// Runs `make(i)` for each slot `i` below `used` (at most `REQS`) concurrently: a join
    /// without an allocator, sized for `REQS` slot futures whatever `used` is.
    #[doc(hidden)]
    fn join_slots<F, Fut>(used: usize, make: F) -> impl Future<Output = ()>
    where
        F: Fn(usize) -> Fut,
        Fut: Future<Output = ()>;
}

/// The future of slot `at`, or one that completes at once if the slot is not `used`.
/// Made inside this `async fn`, so its memory is the slot's (no copy beside it).
async fn slot<F: Fn(usize) -> Fut, Fut: Future<Output = ()>>(make: &F, at: usize, used: usize) {
    if at < used {
        make(at).await;
    }
}

/// Polls the futures `a()` and `b()` until both complete. They are made here, not passed
/// in: a future passed to an `async fn` is kept twice in its state (the argument, and the
/// pinned local it moves to), which doubled every level of the tree below.
async fn join_pair<A, B>(a: impl FnOnce() -> A, b: impl FnOnce() -> B)
where
    A: Future<Output = ()>,
    B: Future<Output = ()>,
{
    let mut a = pin!(a());
    let mut b = pin!(b());
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

/// Joins of 2^k slot futures as balanced trees, so the future's type nests k levels
/// deep (a chain of 32 would nest 32 and overflow the compiler's layout depth). A subtree
/// whose slots are all unused completes on its first poll and is not polled again.
fn tree2<F: Fn(usize) -> Fut, Fut: Future<Output = ()>>(
    make: &F,
    at: usize,
    used: usize,
) -> impl Future<Output = ()> + use<'_, F, Fut> {
    join_pair(move || slot(make, at, used), move || slot(make, at + 1, used))
}

/// `$name` joins two `$half` trees: the slots from `at` and from `at + $step`.
macro_rules! tree {
    ($name:ident, $half:ident, $step:literal) => {
        fn $name<F: Fn(usize) -> Fut, Fut: Future<Output = ()>>(
            make: &F,
            at: usize,
            used: usize,
        ) -> impl Future<Output = ()> + use<'_, F, Fut> {
            join_pair(move || $half(make, at, used), move || $half(make, at + $step, used))
        }
    };
}

tree!(tree4, tree2, 2);
tree!(tree8, tree4, 4);
tree!(tree16, tree8, 8);
tree!(tree32, tree16, 16);

/// The join of the slot futures `$join` makes with `$make` (a `&F`): in an `async` block
/// that owns `make`, so the closure is kept once and no future is moved after it is made.
macro_rules! join_with {
    ($owned:ident, |$make:ident| $join:expr) => {
        async move {
            let $make = &$owned;
            $join.await
        }
    };
}

macro_rules! impl_connection_buffers {
    ($($reqs:literal => |$used:ident, $make:ident| $join:expr;)+) => {$(
        impl<const IN: usize, const OUT: usize, const PARAMS: usize, const WINDOW: usize> ConnectionBuffers
            for Buffers<IN, OUT, PARAMS, $reqs, WINDOW>
        {
            const REQS: usize = $reqs;
            type ParamRefs<'a> = [&'a RefCell<Arena<'a>>; $reqs];

            fn parts(&mut self) -> Parts<'_, Self::ParamRefs<'_>> {
                let params = self.params.each_ref().map(|cell| -> &RefCell<Arena<'_>> { cell });
                let memory = Memory {
                    input: &mut self.input,
                    output: &mut self.output,
                    windows: self.windows.as_flattened_mut(),
                    slots: &mut self.slots,
                };
                Parts { memory, params }
            }

            #[allow(unused_variables)]
            fn join_slots<F, Fut>($used: usize, $make: F) -> impl Future<Output = ()>
            where
                F: Fn(usize) -> Fut,
                Fut: Future<Output = ()>,
            {
                $join
            }
        }

        impl ConnectionBuffers for SliceBuffers<'_, $reqs> {
            const REQS: usize = $reqs;
            type ParamRefs<'a> = heapless::Vec<&'a RefCell<Arena<'a>>, $reqs> where Self: 'a;

            fn parts(&mut self) -> Parts<'_, Self::ParamRefs<'_>> {
                let mut params = heapless::Vec::new();
                for cell in &self.params[..self.requests] {
                    let cell: &RefCell<Arena<'_>> = cell;
                    // requests <= REQS, so this never fails.
                    let _ = params.push(cell);
                }
                let memory = Memory {
                    input: self.input,
                    output: self.output,
                    windows: self.windows,
                    slots: &mut self.slots[..self.requests],
                };
                Parts { memory, params }
            }

            #[allow(unused_variables)]
            fn join_slots<F, Fut>($used: usize, $make: F) -> impl Future<Output = ()>
            where
                F: Fn(usize) -> Fut,
                Fut: Future<Output = ()>,
            {
                $join
            }
        }
    )+};
}

impl_connection_buffers! {
    // One slot, always used: its future itself.
    1 => |used, make| make(0);
    2 => |used, make| join_with!(make, |m| tree2(m, 0, used));
    3 => |used, make| join_with!(make, |m| join_pair(move || tree2(m, 0, used), move || slot(m, 2, used)));
    4 => |used, make| join_with!(make, |m| tree4(m, 0, used));
    5 => |used, make| join_with!(make, |m| join_pair(move || tree4(m, 0, used), move || slot(m, 4, used)));
    6 => |used, make| join_with!(make, |m| join_pair(move || tree4(m, 0, used), move || tree2(m, 4, used)));
    7 => |used, make| join_with!(make, |m| join_pair(
        move || tree4(m, 0, used),
        move || join_pair(move || tree2(m, 4, used), move || slot(m, 6, used)),
    ));
    8 => |used, make| join_with!(make, |m| tree8(m, 0, used));
    16 => |used, make| join_with!(make, |m| tree16(m, 0, used));
    32 => |used, make| join_with!(make, |m| tree32(m, 0, used));
}
