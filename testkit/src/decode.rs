//! Reading records back: [`Decoder`], an incremental zero-copy decoder for hot loops (the
//! load generator), and [`Framer`] / [`parse`], which hand out whole records and reject
//! what a FastCGI peer must never send (another version, a record cut short).

use std::fmt;

use crate::reply::Record;
use crate::wire::{HEADER_LEN, Header, VERSION_1};

/// One step of [`Decoder::next`].
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A whole header; its content follows.
    Header(Header),
    /// A piece of the current record's content (a record may arrive in any pieces).
    Content(&'a [u8]),
    /// The current record, padding included, is consumed.
    End,
}

#[derive(Clone, Copy, Debug)]
enum State {
    Header,
    Content,
    Padding,
    Done,
}

/// Incremental record decoder: feed any pieces, get header / content / end events. Holds
/// nothing but 8 header bytes, so one read buffer can serve many connections.
#[derive(Clone, Debug)]
pub struct Decoder {
    state: State,
    hdr: [u8; HEADER_LEN],
    hdr_len: usize,
    content_left: usize,
    padding_left: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    pub fn new() -> Self {
        Self { state: State::Header, hdr: [0; HEADER_LEN], hdr_len: 0, content_left: 0, padding_left: 0 }
    }

    /// Whether no record is partly decoded.
    pub fn at_boundary(&self) -> bool {
        matches!(self.state, State::Header) && self.hdr_len == 0
    }

    /// The next event from `input`, advancing it; `None` once `input` is used up.
    pub fn next<'a>(&mut self, input: &mut &'a [u8]) -> Option<Event<'a>> {
        loop {
            match self.state {
                State::Header => {
                    if input.is_empty() {
                        return None;
                    }
                    let n = (HEADER_LEN - self.hdr_len).min(input.len());
                    self.hdr[self.hdr_len..self.hdr_len + n].copy_from_slice(&input[..n]);
                    self.hdr_len += n;
                    *input = &input[n..];
                    if self.hdr_len < HEADER_LEN {
                        return None;
                    }
                    self.hdr_len = 0;
                    let h = Header::decode(&self.hdr);
                    self.content_left = usize::from(h.content_len);
                    self.padding_left = usize::from(h.padding_len);
                    self.state = State::Content;
                    return Some(Event::Header(h));
                }
                State::Content if self.content_left > 0 => {
                    if input.is_empty() {
                        return None;
                    }
                    let n = self.content_left.min(input.len());
                    let (chunk, rest) = input.split_at(n);
                    *input = rest;
                    self.content_left -= n;
                    return Some(Event::Content(chunk));
                }
                State::Content => self.state = State::Padding,
                State::Padding if self.padding_left > 0 => {
                    if input.is_empty() {
                        return None;
                    }
                    let n = self.padding_left.min(input.len());
                    *input = &input[n..];
                    self.padding_left -= n;
                }
                State::Padding => self.state = State::Done,
                State::Done => {
                    self.state = State::Header;
                    return Some(Event::End);
                }
            }
        }
    }
}

/// What makes a byte stream not a sequence of FastCGI records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// A header with a version other than 1, at this offset of the stream.
    Version { version: u8, at: usize },
    /// The stream ends inside a record that starts at this offset.
    Truncated { at: usize },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Version { version, at } => write!(f, "record at byte {at} has version {version}, not 1"),
            Self::Truncated { at } => write!(f, "the stream ends inside the record at byte {at}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Buffers received bytes and hands out whole records. A reader fills [`Framer::spare`]
/// and reports [`Framer::filled`], so bytes are copied once more only as record content.
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Bytes handed out before `buf[start]` (for error offsets).
    consumed: usize,
}

/// Room a read gets at least.
const READ_ROOM: usize = 64 * 1024;

impl Framer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while !rest.is_empty() {
            let room = self.spare();
            let n = room.len().min(rest.len());
            room[..n].copy_from_slice(&rest[..n]);
            self.filled(n);
            rest = &rest[n..];
        }
    }

    /// Room for the next read (at least 64 KiB), after the buffered bytes.
    pub fn spare(&mut self) -> &mut [u8] {
        if self.buf.len() - self.end < READ_ROOM {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.buf.len() - self.end < READ_ROOM {
                self.buf.resize(self.end + READ_ROOM, 0);
            }
        }
        &mut self.buf[self.end..]
    }

    /// Records that a read put `n` bytes into [`Framer::spare`].
    pub fn filled(&mut self, n: usize) {
        assert!(self.end + n <= self.buf.len(), "filled more than the spare room");
        self.end += n;
    }

    /// Bytes buffered but not yet handed out.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// The next whole record, `Ok(None)` when more bytes are needed.
    pub fn next_record(&mut self) -> Result<Option<Record>, FrameError> {
        let rest = &self.buf[self.start..self.end];
        let Some(head) = rest.first_chunk::<HEADER_LEN>() else { return Ok(None) };
        let h = Header::decode(head);
        if h.version != VERSION_1 {
            return Err(FrameError::Version { version: h.version, at: self.consumed });
        }
        let len = usize::from(h.content_len);
        let total = HEADER_LEN + len + usize::from(h.padding_len);
        if rest.len() < total {
            return Ok(None);
        }
        let record =
            Record { kind: h.kind, id: h.request_id, content: rest[HEADER_LEN..HEADER_LEN + len].to_vec() };
        self.start += total;
        self.consumed += total;
        Ok(Some(record))
    }

    /// At the end of the stream: an error if a record was cut short.
    pub fn finish(&self) -> Result<(), FrameError> {
        if self.buffered() == 0 { Ok(()) } else { Err(FrameError::Truncated { at: self.consumed }) }
    }
}

/// Splits a whole output stream into records.
pub fn parse(bytes: &[u8]) -> Result<Vec<Record>, FrameError> {
    let mut framer = Framer::new();
    framer.push(bytes);
    let mut records = Vec::new();
    while let Some(r) = framer.next_record()? {
        records.push(r);
    }
    framer.finish()?;
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::*;

    fn sample() -> Vec<u8> {
        let mut v = Vec::new();
        push_record(&mut v, STDOUT, 1, b"Status: 200\r\n\r\nhi");
        push_record(&mut v, STDERR, 1, b"warn");
        push_record(&mut v, STDOUT, 1, b"");
        push_record(&mut v, END_REQUEST, 1, &end_body(0, REQUEST_COMPLETE));
        v
    }

    #[test]
    fn decoder_split_everywhere() {
        let v = sample();
        for step in 1..=v.len() {
            let mut d = Decoder::new();
            let mut recs: Vec<(Header, Vec<u8>)> = Vec::new();
            let mut open = false;
            for mut chunk in v.chunks(step) {
                while let Some(ev) = d.next(&mut chunk) {
                    match ev {
                        Event::Header(h) => {
                            assert!(!open);
                            open = true;
                            recs.push((h, Vec::new()));
                        }
                        Event::Content(c) => recs.last_mut().unwrap().1.extend_from_slice(c),
                        Event::End => open = false,
                    }
                }
            }
            assert!(!open && d.at_boundary());
            let kinds: Vec<u8> = recs.iter().map(|r| r.0.kind).collect();
            assert_eq!(kinds, [STDOUT, STDERR, STDOUT, END_REQUEST], "step {step}");
            assert_eq!(recs[0].1, b"Status: 200\r\n\r\nhi");
            assert_eq!(recs[1].0.padding_len, 4);
            assert_eq!(recs[3].1, [0; 8]);
        }
    }

    #[test]
    fn framer_in_any_pieces_and_errors() {
        let v = sample();
        let whole = parse(&v).unwrap();
        assert_eq!(whole.len(), 4);
        for step in 1..=v.len() {
            let mut f = Framer::new();
            let mut got = Vec::new();
            for chunk in v.chunks(step) {
                f.push(chunk);
                while let Some(r) = f.next_record().unwrap() {
                    got.push(r);
                }
            }
            assert_eq!(got, whole, "step {step}");
            f.finish().unwrap();
        }
        assert_eq!(parse(&v[..v.len() - 1]), Err(FrameError::Truncated { at: v.len() - 16 }));
        let mut bad = v.clone();
        bad[32] = 2; // the STDERR record's version byte
        assert_eq!(parse(&bad), Err(FrameError::Version { version: 2, at: 32 }));
    }
}
