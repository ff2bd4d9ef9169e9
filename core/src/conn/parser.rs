//! The incremental record parser: one [`Parse`] state, advanced by [`ConnState::step`]
//! over whatever input there is (records split anywhere, any padding), and what each
//! record's content is for ([`Content`]).

use super::body::ring_push;
use super::slots::Phase;
use super::values::ValuesQuery;
use super::{ConnState, InStream, MIN_OUTPUT};
use crate::error::ProtocolError;
use crate::wire::body::{BeginRequestBody, Role, UnknownTypeBody};
use crate::wire::header::{HEADER_LEN, Header, RecordType, VERSION_1};

/// What the parser does with the content of the current record.
#[derive(Clone, Debug)]
pub(super) enum Content {
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
pub(super) enum Parse {
    Header { buf: [u8; HEADER_LEN], got: u8 },
    Content { id: u16, left: u16, padding: u8, what: Content },
    Padding { left: u8 },
}

pub(super) const NEW_HEADER: Parse = Parse::Header { buf: [0; HEADER_LEN], got: 0 };

impl ConnState<'_, '_> {
    /// Input bytes the parser will skip unseen before it needs any (see
    /// [`ConnectionStatus::discardable`](super::ConnectionStatus::discardable)): the rest of a record no handler reads, or
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
            Parse::Header { .. } => debug_assert!(false, "a record header was discarded"),
        }
        self.progress = self.progress.wrapping_add(1);
    }

    /// Whether the parser waits to emit the reply to a whole record (BEGIN_REQUEST it
    /// rejects, GET_VALUES, unknown type) until the output buffer is back and has room.
    pub(super) fn parser_blocked_on_output(&self) -> bool {
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
                    // No handler runs while its params arrive: nothing else borrows them.
                    let arena = self.params.get(slot).map(|c| c.try_borrow_mut());
                    debug_assert!(matches!(arena, Some(Ok(_))), "params of slot {slot} missing or borrowed");
                    if let Some(Ok(mut arena)) = arena {
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
}

fn after_content(padding: u8) -> Parse {
    if padding == 0 { NEW_HEADER } else { Parse::Padding { left: padding } }
}
