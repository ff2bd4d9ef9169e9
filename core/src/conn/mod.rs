//! The sans-IO connection state: the incremental record parser, the request slots and the
//! output buffer in which response records are assembled.
//!
//! [`ConnState`] never touches I/O. The driver ([`crate::drive`]) lends it input bytes and
//! takes sealed output bytes away; handlers copy body bytes out of the input buffer and
//! append response bytes to the output buffer. Every mutation bumps `progress`, which the
//! driver's join uses to decide whether another round of polling can get further.
//!
//! Input invariant: unparsed bytes stay in the input buffer only while the parser waits for
//! a handler to read FCGI_STDIN or FCGI_DATA content; everything else (headers, params,
//! fixed bodies, management queries) is consumed into the parser's own small state at once.
//! So the reader refills the buffer only when it is empty, and never moves bytes.
//!
//! Body windows: each request slot has a small ring (its *window*). Body content for a
//! request is first offered to its handler straight from the input buffer (no copy); if
//! the handler has been polled since and left bytes unread, they move into its window so
//! the parser can go on to the records behind them (abort, GET_VALUES, other requests,
//! EOF). When the window is full, the parser stops there: FastCGI has no flow control, so
//! a request that neither reads nor discards its body holds back the connection's input
//! once its window is full (backpressure), never memory. The parser also stops at a whole
//! record whose reply (GET_VALUES_RESULT, UNKNOWN_TYPE, a refusing END_REQUEST) does not
//! fit the output buffer now; ARCHITECTURE.md states the whole rule.
//!
//! Output invariant: `[out_sent..out_sealed]` holds whole records ready to send;
//! `[out_sealed..out_len]` is at most one open record (header written when sealed).
//!
//! This module holds [`ConnState`] and its driver side (lending buffers, end of input,
//! failure); the rest of its methods live beside the idea they serve: `parser` (the record
//! stream), `values` (FCGI_GET_VALUES), `slots` (the request life cycle), `body` (body
//! reads and windows), `output` (response records), `status` ([`ConnectionStatus`]).

mod body;
mod output;
mod parser;
mod slots;
mod status;
mod values;

use core::cell::{Ref, RefCell, RefMut};
use core::task::Waker;

use crate::buffers::Memory;
use crate::config::Config;
use crate::error::{ProtocolError, StreamError};
use crate::params::Arena;

pub(crate) use body::InStream;
use output::OpenRecord;
pub(crate) use output::OutStream;
use parser::{NEW_HEADER, Parse};
use slots::Phase;
pub(crate) use slots::{SlotState, SlotView};
pub use status::{ConnectionStatus, Wait};
use values::ValuesQuery;

/// Smallest output buffer the engine works with: room for the closing records of a request
/// (empty STDOUT, empty STDERR, END_REQUEST) and for the largest GET_VALUES_RESULT.
pub const MIN_OUTPUT: usize = 128;
/// Smallest input buffer (any size works; tiny ones only cost syscalls).
pub const MIN_INPUT: usize = 16;

/// How the driver may read: ahead whenever the input buffer is empty (async hosts), or
/// only when something waits for input and all output has been sent (blocking hosts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IoMode {
    ReadAhead,
    OnDemand,
}

/// Borrows the connection's state mutably. Every borrow of the driver and of the handlers'
/// calls goes through here (or [`state`]), so the borrow check's panic has one location
/// rather than one per call site (`borrow_mut` is `#[track_caller]`). On bare metal it is
/// also kept out of line, as are a few small helpers called from several places
/// (`all_free`, `input_over`, `wake_all`, `SlotState::wake`, `write_len`): one copy each in
/// flash (FastCGI's share of the firmware's flash is budgeted, `scripts/embassy-footprint.sh`);
/// hosts inline them for speed (`#[inline]` here: the driver is instantiated in the
/// transport's crate, and a call per borrow cost the engine 1.6% more instructions).
#[cfg_attr(target_os = "none", inline(never))]
#[cfg_attr(not(target_os = "none"), inline)]
pub(crate) fn state_mut<'s, 'b, 'p>(cell: &'s RefCell<ConnState<'b, 'p>>) -> RefMut<'s, ConnState<'b, 'p>> {
    cell.borrow_mut()
}

/// Borrows the connection's state (see [`state_mut`]).
#[cfg_attr(target_os = "none", inline(never))]
#[cfg_attr(not(target_os = "none"), inline)]
pub(crate) fn state<'s, 'b, 'p>(cell: &'s RefCell<ConnState<'b, 'p>>) -> Ref<'s, ConnState<'b, 'p>> {
    cell.borrow()
}

/// Everything one connection knows; lives in a `RefCell` shared by the driver's tasks.
pub(crate) struct ConnState<'b, 'p> {
    config: Config,
    mode: IoMode,
    input: Option<&'b mut [u8]>,
    in_pos: usize,
    in_len: usize,
    parse: Parse,
    /// The GET_VALUES query being parsed (while `parse` is in its content).
    values: ValuesQuery,
    output: Option<&'b mut [u8]>,
    out_sent: usize,
    out_sealed: usize,
    out_len: usize,
    open: Option<OpenRecord>,
    sealed_total: u64,
    sent_total: u64,
    flushed_total: u64,
    slots: &'b mut [SlotState],
    params: &'b [&'p RefCell<Arena<'p>>],
    /// The slots' body windows, `window` bytes each, back to back.
    windows: &'b mut [u8],
    window: usize,
    /// Counts input buffers handed back by the reader (see `SlotState::looked_epoch`).
    in_epoch: u32,
    /// Body bytes received for any request (published for stall timeouts).
    body_total: u64,
    eof: bool,
    closing: bool,
    /// A copy of `status.is_expired()`, taken when the driver is polled and when a request
    /// closes (read on every parsing step, so kept beside the other flags).
    expired: bool,
    /// The connection is over: a protocol failure (`failure`), a failed read or write, or
    /// `expired`; one flag, read by the hot checks.
    stopped: bool,
    pub(crate) failure: Option<ProtocolError>,
    pub(crate) progress: u32,
    top_waker: Option<Waker>,
    status: &'b ConnectionStatus,
}

impl<'b, 'p> ConnState<'b, 'p> {
    pub(crate) fn new(
        memory: Memory<'b>,
        params: &'b [&'p RefCell<Arena<'p>>],
        config: Config,
        mode: IoMode,
        status: &'b ConnectionStatus,
    ) -> Self {
        let Memory { input, output, windows, slots } = memory;
        for slot in slots.iter_mut() {
            *slot = SlotState::new();
        }
        let window = windows.len() / slots.len().max(1);
        Self {
            config,
            mode,
            input: Some(input),
            in_pos: 0,
            in_len: 0,
            parse: NEW_HEADER,
            values: ValuesQuery::new(),
            output: Some(output),
            out_sent: 0,
            out_sealed: 0,
            out_len: 0,
            open: None,
            sealed_total: 0,
            sent_total: 0,
            flushed_total: 0,
            slots,
            params,
            windows,
            window,
            in_epoch: 0,
            body_total: 0,
            eof: false,
            closing: false,
            expired: false,
            stopped: false,
            failure: None,
            progress: 0,
            top_waker: None,
            status,
        }
    }

    // ---- driver side -------------------------------------------------------------------

    /// Remembers the waker of the whole connection, so handler waits that use it are not
    /// stored twice (the driver re-polls on progress anyway).
    pub(crate) fn set_top_waker(&mut self, waker: &Waker) {
        match &mut self.top_waker {
            Some(w) if w.will_wake(waker) => {}
            slot => *slot = Some(waker.clone()),
        }
    }

    fn dead(&self) -> bool {
        self.stopped
    }

    /// Takes in [`ConnectionStatus::expire`], called by the transport between polls or by a
    /// handler wrapper while a handler runs.
    pub(crate) fn note_expired(&mut self) -> bool {
        self.expired |= self.status.expired.get();
        self.stopped |= self.expired;
        self.expired
    }

    /// What a handler's stream call fails with once the connection is dead.
    fn dead_error(&self) -> StreamError {
        if self.expired { StreamError::TimedOut } else { StreamError::ConnectionClosed }
    }

    #[cfg_attr(target_os = "none", inline(never))]
    fn all_free(&self) -> bool {
        self.slots.iter().all(|s| s.phase == Phase::Free)
    }

    /// No more input will be processed.
    #[cfg_attr(target_os = "none", inline(never))]
    fn input_over(&self) -> bool {
        self.dead() || self.eof || (self.closing && self.all_free())
    }

    /// Nothing is in flight and nothing is buffered; see
    /// [`ConnectionStatus::is_idle_at_boundary`]. (In read-ahead mode the reader then holds
    /// the empty input buffer in a pending read.)
    pub(crate) fn idle_at_boundary(&self) -> bool {
        !self.input_over()
            && !self.closing
            && self.all_free()
            && matches!(self.parse, Parse::Header { got: 0, .. })
            && self.in_pos == self.in_len
            && self.output.is_some()
            && self.out_len == 0
            && self.open.is_none()
            && self.flushed_total == self.sent_total
    }

    /// Tells the transport whether the connection is idle at a record boundary (called by
    /// the driver whenever it returns `Pending`).
    pub(crate) fn publish_idle(&self) {
        self.status.set_idle_at_boundary(self.mode == IoMode::ReadAhead && self.idle_at_boundary());
        let waiting = self.slots.iter().any(|s| s.phase == Phase::Running && s.waiting_input);
        self.status.waiting_for_body.set(waiting);
        self.status.body_bytes.set(self.body_total);
        self.status.sending.set(self.out_sent < self.out_sealed || self.flushed_total < self.sent_total);
        self.status.sent_bytes.set(self.sent_total);
    }

    /// The connection has nothing left to do: the driver returns.
    pub(crate) fn finished(&self) -> bool {
        self.dead()
            || (self.input_over()
                && self.all_free()
                && self.out_sent == self.out_len
                && self.flushed_total == self.sent_total)
    }

    /// Hands the empty input buffer to the reader if it may read now.
    pub(crate) fn take_input(&mut self) -> Option<&'b mut [u8]> {
        if self.in_pos < self.in_len {
            // Body bytes the handler has seen and left may move to its window now.
            self.process();
        }
        if self.input_over() || self.in_pos < self.in_len || self.parser_blocked_on_output() {
            return None;
        }
        if self.mode == IoMode::OnDemand {
            let busy = self.slots.iter().any(|s| {
                s.phase == Phase::Ready
                    || s.phase == Phase::Closing
                    || (s.phase == Phase::Running && !s.waiting_input && !s.aborted)
            });
            let idle = self.slots.iter().all(|s| s.phase == Phase::Free);
            let unsent = self.out_sent != self.out_len || self.flushed_total != self.sent_total;
            if busy || (idle && unsent) {
                return None;
            }
        }
        self.input.take()
    }

    /// Takes back the input buffer with `filled` new bytes at its front (0 means EOF).
    pub(crate) fn return_input(&mut self, buf: &'b mut [u8], filled: usize) {
        self.input = Some(buf);
        self.progress = self.progress.wrapping_add(1);
        if filled == 0 {
            self.peer_closed();
        } else {
            self.in_pos = 0;
            self.in_len = filled;
            self.in_epoch = self.in_epoch.wrapping_add(1);
            self.process();
        }
    }

    /// The reader failed; the connection is over.
    pub(crate) fn io_failed(&mut self, buf: Option<&'b mut [u8]>) {
        if let Some(buf) = buf {
            self.input = Some(buf);
        }
        self.stopped = true;
        self.progress = self.progress.wrapping_add(1);
        self.wake_all();
    }

    /// The reader's task ends when no more input will be processed.
    pub(crate) fn reader_done(&self) -> bool {
        self.input_over()
    }

    #[cfg_attr(target_os = "none", inline(never))]
    fn wake_all(&mut self) {
        for slot in self.slots.iter_mut() {
            slot.wake();
        }
    }

    fn fail(&mut self, error: ProtocolError) {
        self.stopped = true;
        if self.failure.is_none() {
            self.failure = Some(error);
        }
        self.progress = self.progress.wrapping_add(1);
        self.wake_all();
    }
}
