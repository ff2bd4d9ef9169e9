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
//! once its window is full (backpressure), never memory.
//!
//! Output invariant: `[out_sent..out_sealed]` holds whole records ready to send;
//! `[out_sealed..out_len]` is at most one open record (header written when sealed).

use core::cell::{Cell, RefCell};
use core::task::{Context, Poll, Waker};

use crate::buffers::Memory;
use crate::config::Config;
use crate::error::{ProtocolError, StreamError, decimal};
use crate::params::{Arena, parse_decimal};
use crate::wire::body::{BeginRequestBody, EndRequestBody, ProtocolStatus, Role, UnknownTypeBody};
use crate::wire::header::{HEADER_LEN, Header, MAX_CONTENT_LEN, RecordType, VERSION_1};
use crate::wire::nv::{NvDecoder, NvSink, encode_pair};

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

/// Which input stream of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InStream {
    Stdin,
    Data,
}

/// Which output stream of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OutStream {
    Stdout,
    Stderr,
}

impl OutStream {
    fn record_type(self) -> RecordType {
        match self {
            Self::Stdout => RecordType::Stdout,
            Self::Stderr => RecordType::Stderr,
        }
    }
}

/// Life cycle of a request slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// No request; its id is inactive.
    Free,
    /// BEGIN_REQUEST accepted, FCGI_PARAMS arriving.
    Params,
    /// Params complete (or aborted early); the handler is about to start.
    Ready,
    /// The handler runs.
    Running,
    /// The handler returned; the closing records are being written.
    Closing,
}

/// State of one request slot (one concurrent request of a connection).
#[derive(Debug)]
pub struct SlotState {
    pub(crate) id: u16,
    pub(crate) phase: Phase,
    pub(crate) role: Role,
    pub(crate) keep_conn: bool,
    decoder: NvDecoder,
    pub(crate) aborted: bool,
    /// Aborted because the peer went away: send nothing more for this request.
    silent: bool,
    stdin_eof: bool,
    data_eof: bool,
    stdin_received: u64,
    data_received: u64,
    /// CONTENT_LENGTH, looked up when a handler first reaches the end of the body (`None`
    /// until then: a handler that never reads its body never pays for the lookup).
    content_length: Option<Option<u64>>,
    /// FCGI_DATA_LENGTH, likewise, for a Filter's data stream.
    data_length: Option<Option<u64>>,
    /// Body bytes waiting in this slot's window: `win_len` bytes from `win_at` (a ring), of
    /// stream `win_stream`.
    win_at: usize,
    win_len: usize,
    win_stream: InStream,
    /// The connection's input epoch when the handler was last polled: body bytes that
    /// arrived before it were offered to the handler, and may move to the window.
    looked_epoch: u32,
    /// The handler said it does not want its body: the parser skips it.
    discarding: bool,
    waiting_input: bool,
    stdout_written: u64,
    stderr_used: bool,
    app_status: u32,
    flush_target: u64,
    waker: Option<Waker>,
}

impl SlotState {
    pub(crate) const fn new() -> Self {
        Self {
            id: 0,
            phase: Phase::Free,
            role: Role::Responder,
            keep_conn: false,
            decoder: NvDecoder::new(),
            aborted: false,
            silent: false,
            stdin_eof: false,
            data_eof: false,
            stdin_received: 0,
            data_received: 0,
            content_length: None,
            data_length: None,
            win_at: 0,
            win_len: 0,
            win_stream: InStream::Stdin,
            looked_epoch: 0,
            discarding: false,
            waiting_input: false,
            stdout_written: 0,
            stderr_used: false,
            app_status: 0,
            flush_target: 0,
            waker: None,
        }
    }

    fn start(&mut self, id: u16, body: BeginRequestBody) {
        *self =
            Self { id, phase: Phase::Params, role: body.role, keep_conn: body.keep_conn(), ..Self::new() };
    }

    fn input_complete(&self) -> bool {
        self.phase != Phase::Params && self.stdin_eof && (self.role != Role::Filter || self.data_eof)
    }

    /// Whether stream content for this slot should wait for the handler (else it is skipped).
    fn wants_input(&self) -> bool {
        matches!(self.phase, Phase::Ready | Phase::Running) && !self.aborted && !self.discarding
    }

    /// Something happened for this request: its handler must look again before the
    /// reader counts it as waiting for input.
    fn wake(&mut self) {
        self.waiting_input = false;
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

impl Default for SlotState {
    fn default() -> Self {
        Self::new()
    }
}

/// A copy of what a handler may ask about its request.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SlotView {
    pub role: Role,
    pub request_id: u16,
    pub keep_conn: bool,
    pub aborted: bool,
    pub stdin_received: u64,
    pub data_received: u64,
    pub stdout_written: u64,
    pub app_status: u32,
}

/// What a transport may watch of a connection to enforce its timeouts: how many requests
/// are active, and how many of them are still receiving their head (BEGIN..end of PARAMS);
/// whether the connection is idle at a record boundary (see
/// [`is_idle_at_boundary`](Self::is_idle_at_boundary)); and how much of the coming input
/// the engine will throw away (see [`discardable`](Self::discardable)).
#[derive(Debug, Default)]
pub struct ConnectionStatus {
    active: Cell<u16>,
    in_head: Cell<u16>,
    idle_at_boundary: Cell<bool>,
    discardable: Cell<u32>,
    discarded: Cell<u32>,
    waiting_for_body: Cell<bool>,
    body_bytes: Cell<u64>,
    sending: Cell<bool>,
    sent_bytes: Cell<u64>,
    expired: Cell<bool>,
}

impl ConnectionStatus {
    pub const fn new() -> Self {
        Self {
            active: Cell::new(0),
            in_head: Cell::new(0),
            idle_at_boundary: Cell::new(false),
            discardable: Cell::new(0),
            discarded: Cell::new(0),
            waiting_for_body: Cell::new(false),
            body_bytes: Cell::new(0),
            sending: Cell::new(false),
            sent_bytes: Cell::new(0),
            expired: Cell::new(false),
        }
    }

    /// Whether some handler waits for body bytes that have not arrived (for a body-stall
    /// timeout: watch [`body_bytes`](Self::body_bytes) while this holds).
    pub fn is_waiting_for_body(&self) -> bool {
        self.waiting_for_body.get()
    }

    /// Body bytes (FCGI_STDIN and FCGI_DATA content) received for this connection's
    /// requests so far; grows while the web server sends a body.
    pub fn body_bytes(&self) -> u64 {
        self.body_bytes.get()
    }

    /// Whether response bytes wait to be sent (for a send-stall timeout: watch
    /// [`sent_bytes`](Self::sent_bytes) while this holds).
    pub fn is_sending(&self) -> bool {
        self.sending.get()
    }

    /// Bytes written to the web server so far.
    pub fn sent_bytes(&self) -> u64 {
        self.sent_bytes.get()
    }

    /// The transport gives up on this connection (a stall timeout expired): from the next
    /// poll on, handlers' reads and writes fail with [`StreamError::TimedOut`] and the
    /// driver returns [`ConnectionError::TimedOut`](crate::ConnectionError::TimedOut).
    pub fn expire(&self) {
        self.expired.set(true);
    }

    /// Whether [`expire`](Self::expire) was called.
    pub fn is_expired(&self) -> bool {
        self.expired.get()
    }

    /// While the driver waits in a read: how many of the next input bytes it will skip
    /// unseen (the rest of a record no handler reads, e.g. the body of a request whose
    /// handler has already answered, or padding). A reader may throw up to that many away
    /// itself, e.g. with one vectored read into a scratch buffer before the driver's buffer,
    /// instead of passing them through the driver's (small) input buffer; it reports them
    /// with [`discard`](Self::discard) before its read returns.
    pub fn discardable(&self) -> usize {
        self.discardable.get() as usize
    }

    /// The reader threw away the next `n` input bytes (at most [`discardable`](Self::discardable));
    /// the driver accounts for them when the read returns (with data, or 0 at end of input).
    pub fn discard(&self, n: usize) {
        let n = u32::try_from(n).unwrap_or(u32::MAX).min(self.discardable.get());
        self.discardable.set(self.discardable.get() - n);
        self.discarded.set(self.discarded.get() + n);
    }

    pub(crate) fn set_discardable(&self, n: usize) {
        self.discardable.set(u32::try_from(n).unwrap_or(u32::MAX));
    }

    pub(crate) fn take_discarded(&self) -> usize {
        self.discardable.set(0);
        self.discarded.replace(0) as usize
    }

    /// Whether the last poll of [`serve_connection`](crate::serve_connection) left the
    /// connection idle at a record boundary: no request active, no unparsed input (the
    /// parser waits for the first byte of a record header), no output unsent or unflushed,
    /// no error, no end of input, no close pending; only a read of the socket is pending.
    ///
    /// Then the connection future holds nothing a fresh one would not: a transport whose
    /// reader is cancel-safe (a pending read has taken no bytes) may drop the future,
    /// together with its buffers, and later call `serve_connection` again on the same
    /// socket (with zeroed buffers and this status) when input arrives; the web server
    /// cannot tell. Valid until the future is polled again.
    pub fn is_idle_at_boundary(&self) -> bool {
        self.idle_at_boundary.get()
    }

    pub(crate) fn set_idle_at_boundary(&self, idle: bool) {
        self.idle_at_boundary.set(idle);
    }

    /// Requests between BEGIN_REQUEST and their END_REQUEST.
    pub fn active_requests(&self) -> u16 {
        self.active.get()
    }

    /// Requests whose params have not all arrived yet.
    pub fn requests_in_head(&self) -> u16 {
        self.in_head.get()
    }
}

/// GET_VALUES names the library answers, in reply order.
const KNOWN_VALUES: [&[u8]; 3] = [b"FCGI_MAX_CONNS", b"FCGI_MAX_REQS", b"FCGI_MPXS_CONNS"];

/// Collects which known names a GET_VALUES query asks for.
#[derive(Clone, Debug)]
struct ValuesQuery {
    decoder: NvDecoder,
    asked: u8,
    name: heapless::Vec<u8, 16>,
    name_fits: bool,
}

impl ValuesQuery {
    const fn new() -> Self {
        Self { decoder: NvDecoder::new(), asked: 0, name: heapless::Vec::new(), name_fits: true }
    }
}

impl NvSink for ValuesQuery {
    fn start(&mut self, _name_len: u32, _value_len: u32) {
        self.name.clear();
        self.name_fits = true;
    }
    fn name(&mut self, bytes: &[u8]) {
        if self.name.extend_from_slice(bytes).is_err() {
            self.name_fits = false;
        }
    }
    fn value(&mut self, _bytes: &[u8]) {}
    fn end(&mut self) {
        if self.name_fits
            && let Some(i) = KNOWN_VALUES.iter().position(|k| *k == &self.name[..])
        {
            self.asked |= 1 << i;
        }
    }
}

/// What the parser does with the content of the current record.
#[derive(Clone, Debug)]
enum Content {
    Skip,
    Begin {
        body: [u8; 8],
        got: u8,
    },
    Params {
        slot: usize,
    },
    Stream {
        slot: usize,
        stream: InStream,
    },
    /// A GET_VALUES query, collected in `ConnState::values` (kept out of this enum so the
    /// parser state stays small: it is moved on every parsing step).
    GetValues,
    UnknownType(u8),
}

/// Where the parser is in the record stream.
#[derive(Clone, Debug)]
enum Parse {
    Header { buf: [u8; HEADER_LEN], got: u8 },
    Content { id: u16, left: u16, padding: u8, what: Content },
    Padding { left: u8 },
}

const NEW_HEADER: Parse = Parse::Header { buf: [0; HEADER_LEN], got: 0 };

/// An output record whose header is written when it is sealed.
#[derive(Clone, Copy, Debug)]
struct OpenRecord {
    id: u16,
    stream: OutStream,
    at: usize,
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

    fn all_free(&self) -> bool {
        self.slots.iter().all(|s| s.phase == Phase::Free)
    }

    /// No more input will be processed.
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

    /// Input bytes the parser will skip unseen before it needs any (see
    /// [`ConnectionStatus::discardable`]): the rest of a record no handler reads, or
    /// padding; 0 while unparsed input waits or the next bytes matter.
    pub(crate) fn discardable(&self) -> usize {
        if self.in_pos < self.in_len || self.input_over() {
            return 0;
        }
        match &self.parse {
            Parse::Padding { left } => usize::from(*left),
            Parse::Content { left, what: Content::Skip | Content::UnknownType(_), .. } => usize::from(*left),
            // Stream content for a request that does not take it is skipped (a request
            // never starts wanting input again within a record).
            Parse::Content { id, left, what: Content::Stream { slot, .. }, .. } => {
                let s = &self.slots[*slot];
                if s.id == *id && s.wants_input() { 0 } else { usize::from(*left) }
            }
            _ => 0,
        }
    }

    /// The reader is about to read: tells the transport what it may throw away.
    pub(crate) fn publish_discardable(&self) {
        self.status.set_discardable(self.discardable());
    }

    /// Accounts for input the reader threw away (at most what was discardable).
    pub(crate) fn apply_discarded(&mut self) {
        let n = self.status.take_discarded().min(self.discardable());
        if n == 0 {
            return;
        }
        match &mut self.parse {
            Parse::Padding { left } => {
                *left -= n as u8;
                if *left == 0 {
                    self.parse = NEW_HEADER;
                }
            }
            Parse::Content { left, .. } => *left -= n as u16,
            Parse::Header { .. } => {}
        }
        self.progress = self.progress.wrapping_add(1);
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

    /// Hands the output buffer to the writer if sealed bytes wait; returns the range to send.
    pub(crate) fn take_output(&mut self) -> Option<(&'b mut [u8], usize, usize)> {
        if self.out_sent == self.out_sealed {
            return None;
        }
        let (from, to) = (self.out_sent, self.out_sealed);
        self.output.take().map(|buf| (buf, from, to))
    }

    /// Takes back the output buffer after `written` bytes were sent.
    pub(crate) fn return_output(&mut self, buf: &'b mut [u8], written: usize) {
        self.out_sent += written;
        self.sent_total += written as u64;
        if self.out_sent == self.out_sealed {
            // Move the open record (if any) to the front.
            buf.copy_within(self.out_sealed..self.out_len, 0);
            self.out_len -= self.out_sealed;
            if let Some(open) = &mut self.open {
                open.at -= self.out_sealed;
            }
            self.out_sent = 0;
            self.out_sealed = 0;
        }
        self.output = Some(buf);
        self.progress = self.progress.wrapping_add(1);
        self.wake_all();
        self.process();
    }

    /// Whether the writer should flush the transport (everything sealed is sent, not flushed).
    pub(crate) fn wants_flush(&self) -> bool {
        self.output.is_some() && self.out_sent == self.out_sealed && self.flushed_total < self.sent_total
    }

    /// The transport was flushed up to everything sent so far.
    pub(crate) fn flushed(&mut self) {
        self.flushed_total = self.sent_total;
        self.progress = self.progress.wrapping_add(1);
        self.wake_all();
    }

    /// Marks the writer failed; pending and future output is dropped.
    pub(crate) fn output_failed(&mut self, buf: &'b mut [u8]) {
        self.output = Some(buf);
        self.io_failed(None);
    }

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

    /// The peer closed its side: requests whose input is incomplete are aborted silently;
    /// requests with complete input still get their response (half-close friendly).
    fn peer_closed(&mut self) {
        self.eof = true;
        for slot in self.slots.iter_mut() {
            if slot.phase != Phase::Free && !slot.input_complete() {
                slot.aborted = true;
                slot.silent = true;
                if slot.phase == Phase::Params {
                    slot.phase = Phase::Ready;
                }
            }
            slot.wake();
        }
        self.update_status();
    }

    // ---- slot side -----------------------------------------------------------------------

    /// Starts the handler of slot `i` if its params are complete.
    pub(crate) fn start_handler(&mut self, i: usize) -> Option<bool> {
        let slot = self.slots.get_mut(i)?;
        if slot.phase != Phase::Ready {
            return None;
        }
        slot.phase = Phase::Running;
        self.progress = self.progress.wrapping_add(1);
        let overflowed =
            self.params.get(i).is_none_or(|cell| cell.try_borrow().is_ok_and(|a| a.overflowed()));
        Some(overflowed)
    }

    /// The handler of slot `i` returned: writes the closing records when there is room.
    pub(crate) fn poll_close(&mut self, i: usize) -> Poll<()> {
        self.slots[i].phase = Phase::Closing;
        if self.note_expired() || self.dead() || self.slots[i].silent {
            self.free(i);
            return Poll::Ready(());
        }
        let slot = &self.slots[i];
        let end =
            EndRequestBody { app_status: slot.app_status, protocol_status: ProtocolStatus::RequestComplete };
        let stdout_end = Header::new(RecordType::Stdout, slot.id, 0).encode();
        let stderr_end = Header::new(RecordType::Stderr, slot.id, 0).encode();
        let mut closing = [0u8; 2 * HEADER_LEN + 16];
        closing[..8].copy_from_slice(&stdout_end);
        let len = if slot.stderr_used {
            closing[8..16].copy_from_slice(&stderr_end);
            32
        } else {
            24
        };
        closing[len - 16..len].copy_from_slice(&end.record(slot.id));
        if !self.emit(&closing[..len]) {
            return Poll::Pending;
        }
        self.free(i);
        Poll::Ready(())
    }

    /// Recounts the slots for the transport's [`ConnectionStatus`].
    fn update_status(&self) {
        let active = self.slots.iter().filter(|s| s.phase != Phase::Free).count();
        let in_head = self.slots.iter().filter(|s| s.phase == Phase::Params).count();
        self.status.active.set(active as u16);
        self.status.in_head.set(in_head as u16);
    }

    fn free(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        if !slot.keep_conn && !slot.silent {
            self.closing = true;
        }
        // A silent request leaves no half-written record behind.
        if let Some(open) = self.open
            && open.id == slot.id
        {
            self.out_len = open.at;
            self.open = None;
        }
        slot.phase = Phase::Free;
        slot.waker = None;
        self.update_status();
        self.progress = self.progress.wrapping_add(1);
        self.process();
    }

    pub(crate) fn view(&self, i: usize) -> SlotView {
        let s = &self.slots[i];
        SlotView {
            role: s.role,
            request_id: s.id,
            keep_conn: s.keep_conn,
            aborted: s.aborted || self.dead(),
            stdin_received: s.stdin_received,
            data_received: s.data_received,
            stdout_written: s.stdout_written,
            app_status: s.app_status,
        }
    }

    pub(crate) fn set_app_status(&mut self, i: usize, status: u32) {
        self.slots[i].app_status = status;
    }

    fn register(&mut self, i: usize, cx: &Context<'_>) {
        if self.top_waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            return;
        }
        match &mut self.slots[i].waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            w => *w = Some(cx.waker().clone()),
        }
    }

    /// A handler reads request body bytes (FCGI_STDIN or FCGI_DATA): first from its window,
    /// then straight from the input buffer where the parser stands in its content.
    pub(crate) fn poll_read(
        &mut self,
        i: usize,
        stream: InStream,
        cx: &Context<'_>,
        buf: &mut [u8],
    ) -> Poll<Result<usize, StreamError>> {
        let slot = &self.slots[i];
        if slot.aborted {
            return Poll::Ready(Err(StreamError::Aborted));
        }
        if self.dead() {
            return Poll::Ready(Err(self.dead_error()));
        }
        if slot.discarding || (stream == InStream::Data && slot.role != Role::Filter) {
            return Poll::Ready(Ok(0));
        }
        if stream == InStream::Data && !slot.stdin_eof {
            return Poll::Ready(Err(StreamError::DataBeforeStdin));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let w = self.window;
        let slot = &mut self.slots[i];
        let n = if slot.win_len > 0 && slot.win_stream == stream {
            let window = &self.windows[i * w..(i + 1) * w];
            ring_pop(window, &mut slot.win_at, &mut slot.win_len, buf)
        } else if let Parse::Content { left, what: Content::Stream { slot: s, stream: st }, .. } =
            &mut self.parse
            && *s == i
            && *st == stream
            && *left > 0
            && self.in_pos < self.in_len
            && let Some(input) = &self.input
        {
            let n = buf.len().min(usize::from(*left)).min(self.in_len - self.in_pos);
            buf[..n].copy_from_slice(&input[self.in_pos..self.in_pos + n]);
            self.in_pos += n;
            *left -= n as u16;
            self.body_total += n as u64;
            n
        } else {
            0
        };
        if n > 0 {
            let slot = &mut self.slots[i];
            match stream {
                InStream::Stdin => slot.stdin_received += n as u64,
                InStream::Data => slot.data_received += n as u64,
            }
            slot.waiting_input = false;
            self.progress = self.progress.wrapping_add(1);
            self.process();
            return Poll::Ready(Ok(n));
        }
        let (eof, received) = match stream {
            InStream::Stdin => (slot.stdin_eof, slot.stdin_received),
            InStream::Data => (slot.data_eof, slot.data_received),
        };
        if eof {
            if let Some(expected) = self.declared_length(i, stream)
                && received < expected
            {
                return Poll::Ready(Err(match stream {
                    InStream::Stdin => StreamError::BodyTruncated { expected, received },
                    InStream::Data => StreamError::DataTruncated { expected, received },
                }));
            }
            return Poll::Ready(Ok(0));
        }
        self.slots[i].waiting_input = true;
        self.register(i, cx);
        Poll::Pending
    }

    /// The handler of slot `i` was polled: body bytes that arrived before now were offered
    /// to it, so what it left may move to its window.
    pub(crate) fn handler_polled(&mut self, i: usize) {
        if let Some(slot) = self.slots.get_mut(i) {
            slot.looked_epoch = self.in_epoch;
        }
    }

    /// The handler of slot `i` does not want its body: what is buffered is dropped and the
    /// parser skips the rest.
    pub(crate) fn discard_body(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        if slot.discarding {
            return;
        }
        slot.discarding = true;
        slot.win_len = 0;
        slot.win_at = 0;
        self.progress = self.progress.wrapping_add(1);
        self.process();
    }

    /// Ready once request `i` has gone away: aborted by the web server, its connection
    /// closed by the peer (EOF) or failed.
    pub(crate) fn poll_gone(&mut self, i: usize, cx: &Context<'_>) -> Poll<()> {
        if self.slots[i].aborted || self.dead() || self.eof {
            return Poll::Ready(());
        }
        self.register(i, cx);
        Poll::Pending
    }

    /// A handler writes response bytes; appends to the open record of its stream.
    pub(crate) fn poll_write(
        &mut self,
        i: usize,
        stream: OutStream,
        cx: &Context<'_>,
        data: &[u8],
    ) -> Poll<Result<usize, StreamError>> {
        if self.slots[i].aborted {
            return Poll::Ready(Err(StreamError::Aborted));
        }
        if self.dead() {
            return Poll::Ready(Err(self.dead_error()));
        }
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let id = self.slots[i].id;
        if self.output.is_none() {
            self.register(i, cx);
            return Poll::Pending;
        }
        self.seal_unless_open_for(id, stream);
        let Some(out) = self.output.as_deref_mut() else {
            return Poll::Pending;
        };
        let room = out.len() - self.out_len;
        if self.open.is_none() {
            if room <= HEADER_LEN {
                self.register(i, cx);
                return Poll::Pending;
            }
            self.open = Some(OpenRecord { id, stream, at: self.out_len });
            self.out_len += HEADER_LEN;
        }
        let Some(open) = self.open else {
            return Poll::Pending;
        };
        let record_room = MAX_CONTENT_LEN - (self.out_len - open.at - HEADER_LEN);
        let n = data.len().min(out.len() - self.out_len).min(record_room);
        if n == 0 {
            // Buffer full of our own open record: seal it so the writer can drain it.
            self.seal();
            self.register(i, cx);
            return Poll::Pending;
        }
        out[self.out_len..self.out_len + n].copy_from_slice(&data[..n]);
        self.out_len += n;
        let slot = &mut self.slots[i];
        match stream {
            OutStream::Stdout => slot.stdout_written += n as u64,
            OutStream::Stderr => slot.stderr_used = true,
        }
        self.progress = self.progress.wrapping_add(1);
        Poll::Ready(Ok(n))
    }

    /// Appends all of `parts` to slot `i`'s open `stream` record in one step if they fit
    /// the output buffer and the record now; false (nothing written) when they do not, or
    /// when [`Self::poll_write`] would fail or wait. The bytes end up exactly as if each part
    /// had been passed to `poll_write` in turn.
    pub(crate) fn write_now(&mut self, i: usize, stream: OutStream, parts: &[&[u8]]) -> bool {
        if self.slots[i].aborted || self.dead() || self.output.is_none() {
            return false;
        }
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if total == 0 {
            return true;
        }
        let id = self.slots[i].id;
        self.seal_unless_open_for(id, stream);
        let Some(out) = self.output.as_deref_mut() else {
            return false;
        };
        let (header, in_record) = match self.open {
            Some(open) => (0, self.out_len - open.at - HEADER_LEN),
            None => (HEADER_LEN, 0),
        };
        if out.len() - self.out_len < header + total || in_record + total > MAX_CONTENT_LEN {
            return false;
        }
        if self.open.is_none() {
            self.open = Some(OpenRecord { id, stream, at: self.out_len });
            self.out_len += HEADER_LEN;
        }
        for part in parts {
            let Some(dst) = out.get_mut(self.out_len..self.out_len + part.len()) else {
                return false; // unreachable: the room was checked above
            };
            dst.copy_from_slice(part);
            self.out_len += part.len();
        }
        let slot = &mut self.slots[i];
        match stream {
            OutStream::Stdout => slot.stdout_written += total as u64,
            OutStream::Stderr => slot.stderr_used = true,
        }
        self.progress = self.progress.wrapping_add(1);
        true
    }

    /// A handler flushes: its bytes are sealed and waited for until the transport flushed.
    pub(crate) fn poll_flush(&mut self, i: usize, cx: &Context<'_>) -> Poll<Result<(), StreamError>> {
        if self.slots[i].aborted {
            return Poll::Ready(Err(StreamError::Aborted));
        }
        if self.dead() {
            return Poll::Ready(Err(self.dead_error()));
        }
        let id = self.slots[i].id;
        if self.open.is_some_and(|o| o.id == id) {
            if self.output.is_none() {
                self.register(i, cx);
                return Poll::Pending;
            }
            self.seal();
        }
        let target = self.sealed_total.max(self.slots[i].flush_target);
        self.slots[i].flush_target = target;
        if self.flushed_total >= target {
            return Poll::Ready(Ok(()));
        }
        self.register(i, cx);
        Poll::Pending
    }

    /// Seals the open record unless it is request `id`'s `stream` record with room left,
    /// so the next bytes of `stream` can be appended or start a new record.
    fn seal_unless_open_for(&mut self, id: u16, stream: OutStream) {
        if let Some(open) = self.open
            && (open.id != id
                || open.stream != stream
                || self.out_len - open.at - HEADER_LEN >= MAX_CONTENT_LEN)
        {
            self.seal();
        }
    }

    /// Writes the header of the open record, making it sendable.
    fn seal(&mut self) {
        let (Some(open), Some(out)) = (self.open, self.output.as_deref_mut()) else {
            return;
        };
        let content = self.out_len - open.at - HEADER_LEN;
        let header = Header::new(open.stream.record_type(), open.id, content as u16);
        out[open.at..open.at + HEADER_LEN].copy_from_slice(&header.encode());
        self.sealed_total += (self.out_len - self.out_sealed) as u64;
        self.out_sealed = self.out_len;
        self.open = None;
        self.progress = self.progress.wrapping_add(1);
    }

    /// Appends complete records (after sealing the open one); false if there is no room yet.
    fn emit(&mut self, records: &[u8]) -> bool {
        if self.output.is_none() {
            return false;
        }
        self.seal();
        let Some(out) = self.output.as_deref_mut() else {
            return false;
        };
        if out.len() - self.out_len < records.len() {
            return false;
        }
        out[self.out_len..self.out_len + records.len()].copy_from_slice(records);
        self.out_len += records.len();
        self.sealed_total += records.len() as u64;
        self.out_sealed = self.out_len;
        self.progress = self.progress.wrapping_add(1);
        true
    }

    // ---- parser ------------------------------------------------------------------------

    fn parser_blocked_on_output(&self) -> bool {
        matches!(
            self.parse,
            Parse::Content {
                left: 0,
                what: Content::Begin { .. } | Content::GetValues | Content::UnknownType(_),
                ..
            }
        )
    }

    /// Parses as much of the input buffer as it can.
    pub(crate) fn process(&mut self) {
        let Some(input) = self.input.take() else {
            return;
        };
        while !self.input_over() && self.step(&input[self.in_pos..self.in_len]) {}
        if self.in_pos == self.in_len {
            self.in_pos = 0;
            self.in_len = 0;
        }
        self.input = Some(input);
        // Wake a handler whose stream bytes are now waiting for it.
        if let Parse::Content { what: Content::Stream { slot, .. }, left, .. } = self.parse
            && left > 0
            && self.in_pos < self.in_len
        {
            self.slots[slot].wake();
        }
    }

    /// One parsing step over the unparsed bytes `avail`; false when it cannot go further.
    fn step(&mut self, avail: &[u8]) -> bool {
        let parse = core::mem::replace(&mut self.parse, NEW_HEADER);
        let (next, used, moved) = match parse {
            Parse::Header { mut buf, got } => {
                if avail.is_empty() {
                    (Parse::Header { buf, got }, 0, false)
                } else {
                    let n = (HEADER_LEN - got as usize).min(avail.len());
                    buf[got as usize..got as usize + n].copy_from_slice(&avail[..n]);
                    let got = got + n as u8;
                    if usize::from(got) == HEADER_LEN {
                        (self.start_record(Header::parse(&buf)), n, true)
                    } else {
                        (Parse::Header { buf, got }, n, true)
                    }
                }
            }
            Parse::Padding { left } => {
                let n = usize::from(left).min(avail.len());
                let left = left - n as u8;
                let next = if left == 0 { NEW_HEADER } else { Parse::Padding { left } };
                (next, n, n > 0 || left == 0)
            }
            Parse::Content { id, left: 0, padding, what } => {
                if self.finish_content(id, &what) {
                    (after_content(padding), 0, true)
                } else {
                    (Parse::Content { id, left: 0, padding, what }, 0, false)
                }
            }
            Parse::Content { id, left, padding, what } => {
                let n = usize::from(left).min(avail.len());
                let (what, used) = self.content(id, what, &avail[..n]);
                let left = left - used as u16;
                (Parse::Content { id, left, padding, what }, used, used > 0 || left == 0)
            }
        };
        self.parse = next;
        self.in_pos += used;
        if moved {
            self.progress = self.progress.wrapping_add(1);
        }
        moved
    }

    /// Handles a complete header: validates it and decides what its content is for.
    fn start_record(&mut self, h: Header) -> Parse {
        let content = |what| Parse::Content {
            id: h.request_id,
            left: h.content_length,
            padding: h.padding_length,
            what,
        };
        if h.version != VERSION_1 {
            self.fail(ProtocolError::UnsupportedVersion(h.version));
            return content(Content::Skip);
        }
        let id = h.request_id;
        let slot = self.slots.iter().position(|s| s.phase != Phase::Free && s.id == id);
        let what = match (h.record_type, id) {
            (RecordType::BeginRequest, 0) => {
                self.fail(ProtocolError::BeginWithManagementId);
                Content::Skip
            }
            (RecordType::BeginRequest, _) if h.content_length != 8 => {
                self.fail(ProtocolError::BeginBodyLength(h.content_length));
                Content::Skip
            }
            (RecordType::BeginRequest, _) if slot.is_some() => {
                self.fail(ProtocolError::DuplicateBegin(id));
                Content::Skip
            }
            (RecordType::BeginRequest, _) => Content::Begin { body: [0; 8], got: 0 },
            (RecordType::GetValues, 0) => {
                self.values = ValuesQuery::new();
                Content::GetValues
            }
            (RecordType::Other(t), 0) => Content::UnknownType(t),
            (_, 0) => Content::Skip,
            (RecordType::AbortRequest, _) => {
                if let Some(i) = slot {
                    self.abort(i);
                }
                Content::Skip
            }
            (RecordType::Params, _) => match slot {
                Some(i) if self.slots[i].phase == Phase::Params => {
                    if h.content_length == 0 {
                        self.end_params(i);
                        Content::Skip
                    } else {
                        Content::Params { slot: i }
                    }
                }
                _ => Content::Skip,
            },
            (RecordType::Stdin | RecordType::Data, _) => {
                let stream =
                    if h.record_type == RecordType::Stdin { InStream::Stdin } else { InStream::Data };
                match slot {
                    None => Content::Skip,
                    Some(i) if self.slots[i].phase == Phase::Params => {
                        self.fail(ProtocolError::StreamBeforeParams(id));
                        Content::Skip
                    }
                    // Only a Filter reads DATA; for other roles no handler ever would.
                    Some(i) if stream == InStream::Data && self.slots[i].role != Role::Filter => {
                        Content::Skip
                    }
                    // A Filter reads DATA after STDIN ended; waiting here would deadlock.
                    Some(i) if stream == InStream::Data && !self.slots[i].stdin_eof => {
                        self.fail(ProtocolError::DataBeforeStdin(id));
                        Content::Skip
                    }
                    Some(i) => {
                        let s = &mut self.slots[i];
                        let eof = match stream {
                            InStream::Stdin => &mut s.stdin_eof,
                            InStream::Data => &mut s.data_eof,
                        };
                        if *eof {
                            Content::Skip
                        } else if h.content_length == 0 {
                            *eof = true;
                            s.wake();
                            Content::Skip
                        } else {
                            Content::Stream { slot: i, stream }
                        }
                    }
                }
            }
            _ => Content::Skip,
        };
        content(what)
    }

    /// Consumes content bytes; returns the updated target and how many bytes it used.
    fn content(&mut self, id: u16, what: Content, bytes: &[u8]) -> (Content, usize) {
        match what {
            Content::Skip | Content::UnknownType(_) => (what, bytes.len()),
            Content::Begin { mut body, got } => {
                let n = bytes.len().min(8 - usize::from(got));
                body[usize::from(got)..usize::from(got) + n].copy_from_slice(&bytes[..n]);
                (Content::Begin { body, got: got + n as u8 }, n)
            }
            Content::Params { slot } => {
                let s = &mut self.slots[slot];
                if s.id == id && s.phase == Phase::Params {
                    if let Some(Ok(mut arena)) = self.params.get(slot).map(|c| c.try_borrow_mut()) {
                        s.decoder.feed(bytes, &mut arena.writer());
                    }
                }
                (Content::Params { slot }, bytes.len())
            }
            Content::Stream { slot, stream } => {
                let s = &mut self.slots[slot];
                if s.id != id || !s.wants_input() {
                    return (Content::Stream { slot, stream }, bytes.len());
                }
                // Offered to the handler first (it reads them from the input buffer, see
                // `poll_read`); once it was polled since they arrived, what it left moves
                // to its window.
                if s.looked_epoch != self.in_epoch || (s.win_len > 0 && s.win_stream != stream) {
                    return (Content::Stream { slot, stream }, 0);
                }
                let w = self.window;
                let window = &mut self.windows[slot * w..(slot + 1) * w];
                let n = ring_push(window, s.win_at, &mut s.win_len, bytes);
                if n > 0 {
                    s.win_stream = stream;
                    self.body_total += n as u64;
                    s.wake();
                }
                (Content::Stream { slot, stream }, n)
            }
            Content::GetValues => {
                let mut decoder = core::mem::take(&mut self.values.decoder);
                decoder.feed(bytes, &mut self.values);
                self.values.decoder = decoder;
                (Content::GetValues, bytes.len())
            }
        }
    }

    /// Acts on a complete record; false if it must wait for output space.
    fn finish_content(&mut self, id: u16, what: &Content) -> bool {
        match what {
            Content::Begin { body, .. } => self.begin(id, BeginRequestBody::parse(body)),
            Content::GetValues => {
                let mut reply = [0u8; MIN_OUTPUT];
                let len = self.values_reply(self.values.asked, &mut reply);
                self.emit(&reply[..len])
            }
            Content::UnknownType(t) => self.emit(&UnknownTypeBody { record_type: *t }.record()),
            Content::Skip | Content::Params { .. } | Content::Stream { .. } => true,
        }
    }

    fn begin(&mut self, id: u16, body: BeginRequestBody) -> bool {
        let reject = |status| EndRequestBody { app_status: 0, protocol_status: status }.record(id);
        if !self.config.roles.contains(body.role) {
            if !self.emit(&reject(ProtocolStatus::UnknownRole)) {
                return false;
            }
            if !body.keep_conn() {
                self.closing = true;
            }
            return true;
        }
        if self.closing {
            // A request without FCGI_KEEP_CONN ended: this connection takes no new request
            // and closes when the others end; the web server may retry elsewhere.
            return self.emit(&reject(ProtocolStatus::CantMpxConn));
        }
        let Some(i) = self.slots.iter().position(|s| s.phase == Phase::Free) else {
            let status =
                if self.slots.len() == 1 { ProtocolStatus::CantMpxConn } else { ProtocolStatus::Overloaded };
            return self.emit(&reject(status));
        };
        if let Some(Ok(mut arena)) = self.params.get(i).map(|c| c.try_borrow_mut()) {
            arena.clear();
        }
        self.slots[i].start(id, body);
        self.update_status();
        true
    }

    fn end_params(&mut self, i: usize) {
        let id = self.slots[i].id;
        if self.slots[i].decoder.finish().is_err() {
            self.fail(ProtocolError::TruncatedParams(id));
            return;
        }
        self.slots[i].phase = Phase::Ready;
        self.update_status();
    }

    /// The declared length of slot `i`'s `stream` (`CONTENT_LENGTH` for STDIN,
    /// `FCGI_DATA_LENGTH` for DATA), if given and a decimal number; looked up once (the
    /// params do not change while the request runs).
    fn declared_length(&mut self, i: usize, stream: InStream) -> Option<u64> {
        let (name, cached) = match stream {
            InStream::Stdin => ("CONTENT_LENGTH", self.slots[i].content_length),
            InStream::Data => ("FCGI_DATA_LENGTH", self.slots[i].data_length),
        };
        if let Some(known) = cached {
            return known;
        }
        let arena = self.params.get(i).and_then(|c| c.try_borrow().ok());
        let value = arena.and_then(|a| a.params().get(name).and_then(parse_decimal));
        match stream {
            InStream::Stdin => self.slots[i].content_length = Some(value),
            InStream::Data => self.slots[i].data_length = Some(value),
        }
        value
    }

    fn abort(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        if slot.phase == Phase::Closing {
            return;
        }
        slot.aborted = true;
        if slot.phase == Phase::Params {
            slot.phase = Phase::Ready;
        }
        slot.wake();
        self.update_status();
    }

    /// Encodes GET_VALUES_RESULT for the names asked; returns its length.
    fn values_reply(&self, asked: u8, out: &mut [u8; MIN_OUTPUT]) -> usize {
        let reqs = self.slots.len() as u32;
        let values = [self.config.max_conns, self.config.max_conns.saturating_mul(reqs), u32::from(reqs > 1)];
        let mut at = HEADER_LEN;
        for (k, (name, value)) in KNOWN_VALUES.iter().zip(values).enumerate() {
            if asked & (1 << k) == 0 {
                continue;
            }
            let mut digits = [0u8; 20];
            let digits = decimal(u64::from(value), &mut digits);
            // The three names and 10-digit values always fit MIN_OUTPUT.
            if let Ok(n) = encode_pair(name, digits.as_bytes(), &mut out[at..]) {
                at += n;
            }
        }
        let header = Header::new(RecordType::GetValuesResult, 0, (at - HEADER_LEN) as u16);
        out[..HEADER_LEN].copy_from_slice(&header.encode());
        at
    }
}

/// Appends as much of `data` as fits to the ring `window` holding `len` bytes from `at`.
fn ring_push(window: &mut [u8], at: usize, len: &mut usize, data: &[u8]) -> usize {
    let cap = window.len();
    let n = data.len().min(cap - *len);
    let mut done = 0;
    while done < n {
        let end = (at + *len) % cap;
        let chunk = (n - done).min(cap - end);
        window[end..end + chunk].copy_from_slice(&data[done..done + chunk]);
        done += chunk;
        *len += chunk;
    }
    n
}

/// Takes up to `out.len()` bytes from the front of the ring `window`.
fn ring_pop(window: &[u8], at: &mut usize, len: &mut usize, out: &mut [u8]) -> usize {
    let cap = window.len();
    let n = out.len().min(*len);
    let mut done = 0;
    while done < n {
        let chunk = (n - done).min(cap - *at);
        out[done..done + chunk].copy_from_slice(&window[*at..*at + chunk]);
        done += chunk;
        *at = (*at + chunk) % cap;
        *len -= chunk;
    }
    if *len == 0 {
        *at = 0;
    }
    n
}

fn after_content(padding: u8) -> Parse {
    if padding == 0 { NEW_HEADER } else { Parse::Padding { left: padding } }
}
