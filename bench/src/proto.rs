//! Minimal FastCGI 1.0 wire helpers: record headers, name-value pairs and an
//! incremental record decoder. Independent of the ember-fcgi library on purpose.

/// Protocol version carried in every record header.
pub const VERSION_1: u8 = 1;
/// Record types (FastCGI spec section 8).
pub const BEGIN_REQUEST: u8 = 1;
pub const ABORT_REQUEST: u8 = 2;
pub const END_REQUEST: u8 = 3;
pub const PARAMS: u8 = 4;
pub const STDIN: u8 = 5;
pub const STDOUT: u8 = 6;
pub const STDERR: u8 = 7;
/// Role of a BEGIN_REQUEST body.
pub const ROLE_RESPONDER: u16 = 1;
/// BEGIN_REQUEST flag bit asking the application to keep the connection open.
pub const FLAG_KEEP_CONN: u8 = 1;
/// END_REQUEST protocolStatus for a normally completed request.
pub const REQUEST_COMPLETE: u8 = 0;
/// Size of a record header.
pub const HEADER_LEN: usize = 8;
/// Largest content a single record can carry.
pub const MAX_CONTENT: usize = 0xffff;

/// A decoded 8-byte record header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub version: u8,
    pub kind: u8,
    pub request_id: u16,
    pub content_len: u16,
    pub padding_len: u8,
}

impl Header {
    /// A version-1 header with no padding.
    pub fn new(kind: u8, request_id: u16, content_len: u16) -> Self {
        Header { version: VERSION_1, kind, request_id, content_len, padding_len: 0 }
    }

    /// Wire form of the header (reserved byte zero).
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let id = self.request_id.to_be_bytes();
        let len = self.content_len.to_be_bytes();
        [self.version, self.kind, id[0], id[1], len[0], len[1], self.padding_len, 0]
    }

    /// Parse a header from its wire form (never fails; callers check fields).
    pub fn decode(b: &[u8; HEADER_LEN]) -> Self {
        Header {
            version: b[0],
            kind: b[1],
            request_id: u16::from_be_bytes([b[2], b[3]]),
            content_len: u16::from_be_bytes([b[4], b[5]]),
            padding_len: b[6],
        }
    }
}

/// Append one record, padded to a multiple of 8 bytes like nginx does.
///
/// Panics if `content` is longer than [`MAX_CONTENT`].
pub fn push_record(out: &mut Vec<u8>, kind: u8, request_id: u16, content: &[u8]) {
    let len = u16::try_from(content.len()).expect("record content over 65535 bytes");
    let padding = (8 - content.len() % 8) % 8;
    let mut h = Header::new(kind, request_id, len);
    h.padding_len = padding as u8;
    out.extend_from_slice(&h.encode());
    out.extend_from_slice(content);
    out.extend_from_slice(&[0; 8][..padding]);
}

/// BEGIN_REQUEST body: role, flags, 5 reserved bytes.
pub fn begin_request_body(role: u16, flags: u8) -> [u8; 8] {
    let r = role.to_be_bytes();
    [r[0], r[1], flags, 0, 0, 0, 0, 0]
}

/// END_REQUEST body: appStatus, protocolStatus, 3 reserved bytes.
pub fn end_request_body(app_status: u32, protocol_status: u8) -> [u8; 8] {
    let a = app_status.to_be_bytes();
    [a[0], a[1], a[2], a[3], protocol_status, 0, 0, 0]
}

/// Append a name-value length: 1 byte below 128, else 4 bytes big endian with the high bit set.
pub fn push_nv_len(out: &mut Vec<u8>, len: usize) {
    if len < 128 {
        out.push(len as u8);
    } else {
        let len = u32::try_from(len).expect("name-value length over 2^31");
        assert!(len < 1 << 31, "name-value length over 2^31");
        out.extend_from_slice(&(len | 1 << 31).to_be_bytes());
    }
}

/// Append one name-value pair (PARAMS content encoding).
pub fn push_name_value(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    push_nv_len(out, name.len());
    push_nv_len(out, value.len());
    out.extend_from_slice(name);
    out.extend_from_slice(value);
}

/// One step of [`Decoder::next`].
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A complete header was read; its content follows.
    Header(Header),
    /// A piece of the current record's content (possibly split across reads).
    Content(&'a [u8]),
    /// The current record, including padding, has been fully consumed.
    End,
}

#[derive(Clone, Copy, Debug)]
enum State {
    Header,
    Content,
    Padding,
    /// Header seen, emit `End` before reading the next header.
    Done,
}

/// Incremental record decoder: feed arbitrary chunks, get header/content/end events.
///
/// Holds no buffer besides 8 header bytes, so one read buffer can serve all connections.
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
        Decoder { state: State::Header, hdr: [0; HEADER_LEN], hdr_len: 0, content_left: 0, padding_left: 0 }
    }

    /// True when no record is partially decoded.
    pub fn at_boundary(&self) -> bool {
        matches!(self.state, State::Header) && self.hdr_len == 0
    }

    /// Decode the next event from `input`, advancing it; `None` once `input` is exhausted.
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
                    self.content_left = h.content_len as usize;
                    self.padding_left = h.padding_len as usize;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_bytes() {
        assert_eq!(Header::new(BEGIN_REQUEST, 1, 8).encode(), [1, 1, 0, 1, 0, 8, 0, 0]);
        let h = Header { version: 1, kind: STDOUT, request_id: 0x1234, content_len: 0xabcd, padding_len: 3 };
        let b = h.encode();
        assert_eq!(b, [1, 6, 0x12, 0x34, 0xab, 0xcd, 3, 0]);
        assert_eq!(Header::decode(&b), h);
    }

    #[test]
    fn bodies() {
        assert_eq!(begin_request_body(ROLE_RESPONDER, FLAG_KEEP_CONN), [0, 1, 1, 0, 0, 0, 0, 0]);
        assert_eq!(end_request_body(0x01020304, REQUEST_COMPLETE), [1, 2, 3, 4, 0, 0, 0, 0]);
    }

    #[test]
    fn name_value_short() {
        let mut v = Vec::new();
        push_name_value(&mut v, b"A", b"BC");
        assert_eq!(v, [1, 2, b'A', b'B', b'C']);
    }

    #[test]
    fn name_value_long() {
        let mut v = Vec::new();
        push_nv_len(&mut v, 127);
        push_nv_len(&mut v, 128);
        push_nv_len(&mut v, 0x0001_0203);
        assert_eq!(v, [127, 0x80, 0, 0, 128, 0x80, 0x01, 0x02, 0x03]);
        let mut v = Vec::new();
        push_name_value(&mut v, b"N", &[b'x'; 300]);
        assert_eq!(&v[..6], [1, 0x80, 0, 1, 44, b'N']);
        assert_eq!(v.len(), 6 + 300);
    }

    #[test]
    fn record_padding() {
        let mut v = Vec::new();
        push_record(&mut v, STDOUT, 1, b"abc");
        assert_eq!(v, [1, 6, 0, 1, 0, 3, 5, 0, b'a', b'b', b'c', 0, 0, 0, 0, 0]);
        let mut v = Vec::new();
        push_record(&mut v, STDIN, 1, b"");
        assert_eq!(v, [1, 5, 0, 1, 0, 0, 0, 0]);
    }

    /// Decode `bytes` fed in pieces of `step`, joining content pieces per record.
    fn decode_all(bytes: &[u8], step: usize) -> Vec<(Header, Vec<u8>)> {
        let mut d = Decoder::new();
        let mut out: Vec<(Header, Vec<u8>)> = Vec::new();
        let mut open = false;
        for mut chunk in bytes.chunks(step) {
            while let Some(ev) = d.next(&mut chunk) {
                match ev {
                    Event::Header(h) => {
                        assert!(!open);
                        open = true;
                        out.push((h, Vec::new()));
                    }
                    Event::Content(c) => out.last_mut().unwrap().1.extend_from_slice(c),
                    Event::End => open = false,
                }
            }
        }
        assert!(!open && d.at_boundary());
        out
    }

    #[test]
    fn decoder_split_everywhere() {
        let mut v = Vec::new();
        push_record(&mut v, STDOUT, 1, b"Status: 200\r\n\r\nhi");
        push_record(&mut v, STDERR, 1, b"warn");
        push_record(&mut v, STDOUT, 1, b"");
        push_record(&mut v, END_REQUEST, 1, &end_request_body(0, REQUEST_COMPLETE));
        for step in 1..=v.len() {
            let recs = decode_all(&v, step);
            let kinds: Vec<u8> = recs.iter().map(|r| r.0.kind).collect();
            assert_eq!(kinds, [STDOUT, STDERR, STDOUT, END_REQUEST], "step {step}");
            assert_eq!(recs[0].1, b"Status: 200\r\n\r\nhi");
            assert_eq!(recs[1].1, b"warn");
            assert_eq!(recs[1].0.padding_len, 4);
            assert!(recs[2].1.is_empty());
            assert_eq!(recs[3].1, [0, 0, 0, 0, 0, 0, 0, 0]);
        }
    }
}
