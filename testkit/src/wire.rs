//! Records as the FastCGI 1.0 specification lays them out (section 3.3): an 8-byte header
//! (version, type, request id, content length, padding length, reserved), the content,
//! then padding. Builders take any padding and any record size, so tests can send every
//! legal framing of the same request.

use crate::nv;

/// The protocol version of every record.
pub const VERSION_1: u8 = 1;
/// Bytes in a record header.
pub const HEADER_LEN: usize = 8;
/// The largest content one record carries.
pub const MAX_CONTENT: usize = 0xffff;

// Record types (section 8).
pub const BEGIN_REQUEST: u8 = 1;
pub const ABORT_REQUEST: u8 = 2;
pub const END_REQUEST: u8 = 3;
pub const PARAMS: u8 = 4;
pub const STDIN: u8 = 5;
pub const STDOUT: u8 = 6;
pub const STDERR: u8 = 7;
pub const DATA: u8 = 8;
pub const GET_VALUES: u8 = 9;
pub const GET_VALUES_RESULT: u8 = 10;
pub const UNKNOWN_TYPE: u8 = 11;

// Roles of a BEGIN_REQUEST body.
pub const RESPONDER: u16 = 1;
pub const AUTHORIZER: u16 = 2;
pub const FILTER: u16 = 3;

/// The BEGIN_REQUEST flag asking the application to keep the connection open.
pub const KEEP_CONN: u8 = 1;

// END_REQUEST protocol status.
pub const REQUEST_COMPLETE: u8 = 0;
pub const CANT_MPX_CONN: u8 = 1;
pub const OVERLOADED: u8 = 2;
pub const UNKNOWN_ROLE: u8 = 3;

/// What padding bytes are filled with: not zero, so a reader that takes padding for
/// content shows it.
pub const PAD_BYTE: u8 = 0xAA;

/// A record header with its fields as the wire has them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub version: u8,
    pub kind: u8,
    pub request_id: u16,
    pub content_len: u16,
    pub padding_len: u8,
}

impl Header {
    /// A version-1 header without padding.
    pub fn new(kind: u8, request_id: u16, content_len: u16) -> Self {
        Self { version: VERSION_1, kind, request_id, content_len, padding_len: 0 }
    }

    /// The 8 header bytes, big-endian, reserved byte zero.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let [i0, i1] = self.request_id.to_be_bytes();
        let [l0, l1] = self.content_len.to_be_bytes();
        [self.version, self.kind, i0, i1, l0, l1, self.padding_len, 0]
    }

    /// Reads the 8 header bytes (any values; callers check them).
    pub fn decode(b: &[u8; HEADER_LEN]) -> Self {
        Self {
            version: b[0],
            kind: b[1],
            request_id: u16::from_be_bytes([b[2], b[3]]),
            content_len: u16::from_be_bytes([b[4], b[5]]),
            padding_len: b[6],
        }
    }
}

/// How much padding each record of a builder gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Padding {
    /// None.
    None,
    /// Up to the next multiple of 8 bytes, as nginx and the spec's recommendation do.
    #[default]
    Align8,
    /// Exactly this many bytes on every record.
    Fixed(u8),
}

impl Padding {
    /// The padding for a record of `content_len` bytes.
    pub fn for_len(self, content_len: usize) -> u8 {
        match self {
            Self::None => 0,
            Self::Align8 => ((8 - content_len % 8) % 8) as u8,
            Self::Fixed(n) => n,
        }
    }
}

/// Appends one record with exactly `padding` bytes of padding.
pub fn push_padded(out: &mut Vec<u8>, kind: u8, id: u16, content: &[u8], padding: u8) {
    let len = u16::try_from(content.len()).expect("record content over 65535 bytes");
    out.extend_from_slice(&Header { padding_len: padding, ..Header::new(kind, id, len) }.encode());
    out.extend_from_slice(content);
    out.extend(std::iter::repeat_n(PAD_BYTE, usize::from(padding)));
}

/// Appends one record padded to a multiple of 8 bytes, as nginx sends them.
pub fn push_record(out: &mut Vec<u8>, kind: u8, id: u16, content: &[u8]) {
    push_padded(out, kind, id, content, Padding::Align8.for_len(content.len()));
}

/// One record padded to a multiple of 8 bytes.
pub fn record(kind: u8, id: u16, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    push_record(&mut out, kind, id, content);
    out
}

/// One record with exactly `padding` bytes of padding.
pub fn padded(kind: u8, id: u16, content: &[u8], padding: u8) -> Vec<u8> {
    let mut out = Vec::new();
    push_padded(&mut out, kind, id, content, padding);
    out
}

/// Appends `content` as records of at most `record_size` bytes (no terminator).
pub fn push_stream_with(
    out: &mut Vec<u8>,
    kind: u8,
    id: u16,
    content: &[u8],
    record_size: usize,
    padding: Padding,
) {
    assert!((1..=MAX_CONTENT).contains(&record_size), "record size {record_size}");
    for chunk in content.chunks(record_size) {
        push_padded(out, kind, id, chunk, padding.for_len(chunk.len()));
    }
}

/// Appends a stream's content cut into records of at most 65535 bytes (no terminator).
pub fn push_stream(out: &mut Vec<u8>, kind: u8, id: u16, content: &[u8]) {
    push_stream_with(out, kind, id, content, MAX_CONTENT, Padding::Align8);
}

/// The BEGIN_REQUEST body: role, flags, five reserved bytes.
pub fn begin_body(role: u16, flags: u8) -> [u8; 8] {
    let [r0, r1] = role.to_be_bytes();
    [r0, r1, flags, 0, 0, 0, 0, 0]
}

/// The END_REQUEST body: application status, protocol status, three reserved bytes.
pub fn end_body(app_status: u32, protocol_status: u8) -> [u8; 8] {
    let [a0, a1, a2, a3] = app_status.to_be_bytes();
    [a0, a1, a2, a3, protocol_status, 0, 0, 0]
}

/// The UNKNOWN_TYPE body: the type, seven reserved bytes.
pub fn unknown_type_body(kind: u8) -> [u8; 8] {
    [kind, 0, 0, 0, 0, 0, 0, 0]
}

/// BEGIN_REQUEST for `role`.
pub fn push_begin_role(out: &mut Vec<u8>, id: u16, role: u16, keep_conn: bool) {
    push_record(out, BEGIN_REQUEST, id, &begin_body(role, if keep_conn { KEEP_CONN } else { 0 }));
}

/// BEGIN_REQUEST for the Responder role.
pub fn push_begin(out: &mut Vec<u8>, id: u16, keep_conn: bool) {
    push_begin_role(out, id, RESPONDER, keep_conn);
}

/// A BEGIN_REQUEST record for the Responder role.
pub fn begin_bytes(id: u16, keep_conn: bool) -> Vec<u8> {
    let mut out = Vec::new();
    push_begin(&mut out, id, keep_conn);
    out
}

/// The whole PARAMS stream of `pairs`, with its terminator.
pub fn params_bytes(id: u16, pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    push_stream(&mut out, PARAMS, id, &nv::encode_pairs(pairs));
    push_record(&mut out, PARAMS, id, b"");
    out
}

/// The params of a CGI request for `script?query` whose CONTENT_LENGTH is `length`
/// (empty: a GET).
pub fn params_for(script: &str, query: &str, length: &str) -> Vec<u8> {
    nv::encode_pairs(&[
        ("GATEWAY_INTERFACE", "CGI/1.1"),
        ("REQUEST_METHOD", if length.is_empty() { "GET" } else { "POST" }),
        ("SCRIPT_NAME", script),
        ("QUERY_STRING", query),
        ("CONTENT_LENGTH", length),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("REMOTE_ADDR", "127.0.0.1"),
    ])
}

/// BEGIN and the whole PARAMS stream (with its terminator) of a request.
pub fn head_bytes(id: u16, keep_conn: bool, script: &str, query: &str, length: &str) -> Vec<u8> {
    let mut out = Vec::new();
    push_begin(&mut out, id, keep_conn);
    push_stream(&mut out, PARAMS, id, &params_for(script, query, length));
    push_record(&mut out, PARAMS, id, b"");
    out
}

/// A whole Responder request: BEGIN, PARAMS and STDIN, with terminators.
pub fn request_bytes(id: u16, keep_conn: bool, script: &str, query: &str, body: &[u8]) -> Vec<u8> {
    let length = if body.is_empty() { String::new() } else { body.len().to_string() };
    let mut out = head_bytes(id, keep_conn, script, query, &length);
    push_stream(&mut out, STDIN, id, body);
    push_record(&mut out, STDIN, id, b"");
    out
}

/// An ABORT_REQUEST record.
pub fn abort_bytes(id: u16) -> Vec<u8> {
    record(ABORT_REQUEST, id, b"")
}

/// A GET_VALUES record asking for `names`.
pub fn get_values_bytes(names: &[&str]) -> Vec<u8> {
    let pairs: Vec<(&str, &str)> = names.iter().map(|n| (*n, "")).collect();
    record(GET_VALUES, 0, &nv::encode_pairs(&pairs))
}

/// A request in every detail a web server may vary: role, flags, params (in any length
/// form), body and filter data, record sizes and padding.
/// Params are text or bytes (`P: AsRef<[u8]>`).
#[derive(Clone, Debug)]
pub struct RequestSpec<'a, P = &'a [u8]> {
    pub id: u16,
    pub role: u16,
    pub keep_conn: bool,
    pub params: &'a [(P, P)],
    pub stdin: &'a [u8],
    pub data: &'a [u8],
    /// Whether to send DATA (and its terminator); Filter requests do.
    pub send_data: bool,
    /// The largest content per PARAMS / STDIN / DATA record.
    pub record_size: usize,
    pub padding: Padding,
    /// Every name and value length in the 4-byte form, even below 128.
    pub long_lengths: bool,
    /// Whether to send the empty STDIN record (a request may be answered before it).
    pub end_stdin: bool,
}

/// A [`RequestSpec`] with text params.
pub type TextRequest<'a> = RequestSpec<'a, &'a str>;

impl<P> Default for RequestSpec<'_, P> {
    fn default() -> Self {
        Self {
            id: 1,
            role: RESPONDER,
            keep_conn: false,
            params: &[],
            stdin: b"",
            data: b"",
            send_data: false,
            record_size: MAX_CONTENT,
            padding: Padding::None,
            long_lengths: false,
            end_stdin: true,
        }
    }
}

impl<P: AsRef<[u8]>> RequestSpec<'_, P> {
    /// The PARAMS content.
    pub fn params_content(&self) -> Vec<u8> {
        let form = if self.long_lengths { nv::LenForm::Long } else { nv::LenForm::Shortest };
        let mut out = Vec::new();
        for (name, value) in self.params {
            nv::push_nv_as(&mut out, name.as_ref(), value.as_ref(), form, form);
        }
        out
    }

    /// The request's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let (id, size, pad) = (self.id, self.record_size, self.padding);
        let flags = if self.keep_conn { KEEP_CONN } else { 0 };
        let mut out = Vec::new();
        let body = begin_body(self.role, flags);
        push_padded(&mut out, BEGIN_REQUEST, id, &body, pad.for_len(body.len()));
        push_stream_with(&mut out, PARAMS, id, &self.params_content(), size, pad);
        push_padded(&mut out, PARAMS, id, b"", pad.for_len(0));
        push_stream_with(&mut out, STDIN, id, self.stdin, size, pad);
        if self.end_stdin {
            push_padded(&mut out, STDIN, id, b"", pad.for_len(0));
        }
        if self.send_data || self.role == FILTER {
            push_stream_with(&mut out, DATA, id, self.data, size, pad);
            push_padded(&mut out, DATA, id, b"", pad.for_len(0));
        }
        out
    }
}

/// `bytes` cut at the offsets in `at` (ascending): what a peer sends in separate writes.
pub fn split_at_offsets<'b>(bytes: &'b [u8], at: &[usize]) -> Vec<&'b [u8]> {
    let mut parts = Vec::with_capacity(at.len() + 1);
    let mut start = 0;
    for &cut in at {
        assert!(cut >= start && cut <= bytes.len(), "cuts must ascend within the bytes");
        parts.push(&bytes[start..cut]);
        start = cut;
    }
    parts.push(&bytes[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_bytes() {
        assert_eq!(Header::new(BEGIN_REQUEST, 1, 8).encode(), [1, 1, 0, 1, 0, 8, 0, 0]);
        let h = Header { version: 1, kind: STDOUT, request_id: 0x1234, content_len: 0xabcd, padding_len: 3 };
        assert_eq!(h.encode(), [1, 6, 0x12, 0x34, 0xab, 0xcd, 3, 0]);
        assert_eq!(Header::decode(&h.encode()), h);
    }

    #[test]
    fn bodies() {
        assert_eq!(begin_body(RESPONDER, KEEP_CONN), [0, 1, 1, 0, 0, 0, 0, 0]);
        assert_eq!(begin_body(FILTER, 0), [0, 3, 0, 0, 0, 0, 0, 0]);
        assert_eq!(end_body(0x0102_0304, OVERLOADED), [1, 2, 3, 4, 2, 0, 0, 0]);
        assert_eq!(unknown_type_body(42), [42, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn record_padding() {
        assert_eq!(
            record(STDOUT, 1, b"abc"),
            [1, 6, 0, 1, 0, 3, 5, 0, b'a', b'b', b'c', 0xAA, 0xAA, 0xAA, 0xAA, 0xAA]
        );
        assert_eq!(record(STDIN, 1, b""), [1, 5, 0, 1, 0, 0, 0, 0]);
        assert_eq!(padded(STDIN, 258, b"x", 2), [1, 5, 1, 2, 0, 1, 2, 0, b'x', 0xAA, 0xAA]);
    }

    #[test]
    fn streams_cut_at_the_record_size() {
        let mut out = Vec::new();
        push_stream_with(&mut out, STDIN, 1, b"abcde", 2, Padding::None);
        let expected: Vec<u8> = [
            &[1, 5, 0, 1, 0, 2, 0, 0, b'a', b'b'][..],
            &[1, 5, 0, 1, 0, 2, 0, 0, b'c', b'd'],
            &[1, 5, 0, 1, 0, 1, 0, 0, b'e'],
        ]
        .concat();
        assert_eq!(out, expected);
        let mut big = Vec::new();
        push_stream(&mut big, STDIN, 1, &vec![7; MAX_CONTENT + 1]);
        assert_eq!(&big[..8], [1, 5, 0, 1, 0xff, 0xff, 1, 0]);
        assert_eq!(&big[8 + MAX_CONTENT + 1..][..8], [1, 5, 0, 1, 0, 1, 7, 0]);
    }

    #[test]
    fn request_spec_bytes() {
        let spec = RequestSpec {
            id: 2,
            keep_conn: true,
            params: &[("A", "1")],
            stdin: b"xy",
            padding: Padding::Fixed(1),
            long_lengths: true,
            ..RequestSpec::default()
        };
        let expected: Vec<u8> = [
            &[1, 1, 0, 2, 0, 8, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0xAA][..],
            &[1, 4, 0, 2, 0, 10, 1, 0, 0x80, 0, 0, 1, 0x80, 0, 0, 1, b'A', b'1', 0xAA],
            &[1, 4, 0, 2, 0, 0, 1, 0, 0xAA],
            &[1, 5, 0, 2, 0, 2, 1, 0, b'x', b'y', 0xAA],
            &[1, 5, 0, 2, 0, 0, 1, 0, 0xAA],
        ]
        .concat();
        assert_eq!(spec.encode(), expected);
        let filter = RequestSpec::<&str> { role: FILTER, data: b"d", ..RequestSpec::default() }.encode();
        assert!(filter.ends_with(&[1, 8, 0, 1, 0, 1, 0, 0, b'd', 1, 8, 0, 1, 0, 0, 0, 0]));
    }

    #[test]
    fn splits() {
        assert_eq!(split_at_offsets(b"abcd", &[0, 2, 2]), [&b""[..], b"ab", b"", b"cd"]);
    }
}
