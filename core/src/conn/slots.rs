//! The request slots: each slot's state, and the one place where a request's [`Phase`]
//! changes (BEGIN_REQUEST, end of params, abort, EOF, handler start, close, free).

use core::task::{Context, Poll, Waker};

use super::{ConnState, InStream};
use crate::error::ProtocolError;
use crate::wire::body::{BeginRequestBody, EndRequestBody, ProtocolStatus, Role};
use crate::wire::header::{HEADER_LEN, Header, RecordType};
use crate::wire::nv::NvDecoder;

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
    pub(super) decoder: NvDecoder,
    pub(crate) aborted: bool,
    /// Aborted because the peer went away: send nothing more for this request.
    silent: bool,
    pub(super) stdin_eof: bool,
    pub(super) data_eof: bool,
    pub(super) stdin_received: u64,
    pub(super) data_received: u64,
    /// FCGI_DATA_LENGTH, looked up when a Filter's handler first reaches the end of its
    /// data (`None` until then: a handler that never reads it never pays for the lookup).
    /// (CONTENT_LENGTH is noted by the params arena as it stores the params.)
    pub(super) data_length: Option<Option<u64>>,
    /// Body bytes waiting in this slot's window: `win_len` bytes from `win_at` (a ring), of
    /// stream `win_stream`.
    pub(super) win_at: usize,
    pub(super) win_len: usize,
    pub(super) win_stream: InStream,
    /// The connection's input epoch when the handler was last polled: body bytes that
    /// arrived before it were offered to the handler, and may move to the window.
    pub(super) looked_epoch: u32,
    /// The handler said it does not want its body: the parser skips it.
    pub(super) discarding: bool,
    pub(super) waiting_input: bool,
    pub(super) stdout_written: u64,
    pub(super) stderr_used: bool,
    app_status: u32,
    pub(super) flush_target: u64,
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
    pub(super) fn wants_input(&self) -> bool {
        matches!(self.phase, Phase::Ready | Phase::Running) && !self.aborted && !self.discarding
    }

    /// Something happened for this request: its handler must look again before the
    /// reader counts it as waiting for input.
    #[cfg_attr(target_os = "none", inline(never))]
    pub(super) fn wake(&mut self) {
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

impl ConnState<'_, '_> {
    /// The peer closed its side: requests whose input is incomplete are aborted silently;
    /// requests with complete input still get their response (half-close friendly).
    pub(super) fn peer_closed(&mut self) {
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

    /// Starts the handler of slot `i` if its params are complete.
    pub(crate) fn start_handler(&mut self, i: usize) -> Option<bool> {
        let slot = self.slots.get_mut(i)?;
        if slot.phase != Phase::Ready {
            return None;
        }
        slot.phase = Phase::Running;
        self.progress = self.progress.wrapping_add(1);
        // No borrow of a slot's params outlives its handler (nor a parsing step).
        let arena = self.params.get(i).map(|cell| cell.try_borrow());
        debug_assert!(matches!(arena, Some(Ok(_))), "params of slot {i} missing or borrowed at start");
        let overflowed = arena.is_none_or(|a| a.is_ok_and(|a| a.overflowed()));
        Some(overflowed)
    }

    /// The handler of slot `i` returned: writes the closing records when there is room, or
    /// none if the connection is dead or the request was silenced by EOF.
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

    /// Recounts the slots for the transport's [`ConnectionStatus`](super::ConnectionStatus).
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

    /// Whether slot `i`'s request was aborted or the connection failed (`view(i).aborted`).
    pub(crate) fn aborted(&self, i: usize) -> bool {
        self.slots[i].aborted || self.dead()
    }

    pub(crate) fn set_app_status(&mut self, i: usize, status: u32) {
        self.slots[i].app_status = status;
    }

    pub(super) fn register(&mut self, i: usize, cx: &Context<'_>) {
        if self.top_waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            return;
        }
        match &mut self.slots[i].waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            w => *w = Some(cx.waker().clone()),
        }
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

    pub(super) fn begin(&mut self, id: u16, body: BeginRequestBody) -> bool {
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
        // A free slot's params are borrowed by no one: its last handler has returned.
        let arena = self.params.get(i).map(|c| c.try_borrow_mut());
        debug_assert!(matches!(arena, Some(Ok(_))), "params of free slot {i} missing or borrowed");
        if let Some(Ok(mut arena)) = arena {
            arena.clear();
        }
        self.slots[i].start(id, body);
        self.update_status();
        true
    }

    pub(super) fn end_params(&mut self, i: usize) {
        let id = self.slots[i].id;
        if self.slots[i].decoder.finish().is_err() {
            self.fail(ProtocolError::TruncatedParams(id));
            return;
        }
        self.slots[i].phase = Phase::Ready;
        self.update_status();
    }

    pub(super) fn abort(&mut self, i: usize) {
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
}
