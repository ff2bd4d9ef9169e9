//! Response records: handlers' STDOUT and STDERR bytes appended to the open record in the
//! output buffer, sealing (writing a record's header once its length is known), whole
//! records the engine emits, and lending sealed bytes to the writer.

use core::task::{Context, Poll};

use super::ConnState;
use crate::error::StreamError;
use crate::wire::header::{HEADER_LEN, Header, MAX_CONTENT_LEN, RecordType};

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

/// An output record whose header is written when it is sealed.
#[derive(Clone, Copy, Debug)]
pub(super) struct OpenRecord {
    pub(super) id: u16,
    stream: OutStream,
    pub(super) at: usize,
}

impl<'b> ConnState<'b, '_> {
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
            debug_assert!(false, "sealing took the output buffer");
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
            debug_assert!(false, "no open record right after opening one");
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
            debug_assert!(false, "sealing took the output buffer");
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
                debug_assert!(false, "write_now checked the room, yet a part does not fit");
                return false;
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
            // Callers seal only while they hold the output buffer.
            debug_assert!(self.open.is_none(), "an open record sealed while the writer has the buffer");
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
    pub(super) fn emit(&mut self, records: &[u8]) -> bool {
        if self.output.is_none() {
            return false;
        }
        self.seal();
        let Some(out) = self.output.as_deref_mut() else {
            debug_assert!(false, "sealing took the output buffer");
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
}
