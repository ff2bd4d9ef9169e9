//! Request bodies (FCGI_STDIN, FCGI_DATA) on the handler's side: reads from the slot's
//! window and then from the input buffer, the window ring itself, discarding a body, and
//! the declared lengths a truncated body is checked against.

use core::task::{Context, Poll};

use super::ConnState;
use super::parser::{Content, Parse};
use crate::error::StreamError;
use crate::params::parse_decimal;
use crate::wire::body::Role;

/// Which input stream of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InStream {
    Stdin,
    Data,
}

impl ConnState<'_, '_> {
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
        // Only a started handler is polled, and only slots that exist start.
        debug_assert!(i < self.slots.len(), "handler of slot {i} polled, but there is no such slot");
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

    /// The declared length of slot `i`'s `stream`, if given and a decimal number:
    /// `CONTENT_LENGTH` for STDIN, as the params arena noted it while storing the params;
    /// `FCGI_DATA_LENGTH` for DATA, looked up once (the params do not change while the
    /// request runs).
    fn declared_length(&mut self, i: usize, stream: InStream) -> Option<u64> {
        if stream == InStream::Data
            && let Some(known) = self.slots[i].data_length
        {
            return known;
        }
        // Only shared borrows of a running request's params exist (its handler's).
        let arena = self.params.get(i).map(|c| c.try_borrow());
        debug_assert!(matches!(arena, Some(Ok(_))), "params of slot {i} missing or mutably borrowed");
        let arena = arena.and_then(Result::ok)?;
        if stream == InStream::Stdin {
            return arena.content_length();
        }
        let value = arena.params().get("FCGI_DATA_LENGTH").and_then(parse_decimal);
        self.slots[i].data_length = Some(value);
        value
    }
}

/// Appends as much of `data` as fits to the ring `window` holding `len` bytes from `at`.
pub(super) fn ring_push(window: &mut [u8], at: usize, len: &mut usize, data: &[u8]) -> usize {
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
