//! The fixed-capacity params store: CGI variables received on FCGI_PARAMS.
//!
//! Pairs are written into a caller-sized byte arena as they are decoded, in arrival order,
//! encoded as FastCGI encodes them (§3.4): `[name_len][value_len][name][value]`, each length
//! one byte when below 128, else four bytes big-endian with the high bit set. So a pair of
//! short strings costs 2 bytes besides its name and value, and a name or value may be as
//! long as the store (up to 2^31-1 bytes). A pair that does not fit marks the store as
//! overflowed; the stream is still decoded to its end so the connection stays in sync.
//! Duplicate names are all kept; lookups return the last one ("last wins").
//!
//! As the store's format is the wire's, a run of whole pairs in canonical form is stored
//! with one copy after a walk over their lengths ([`NvSink::pairs`]); the value of the last
//! `CONTENT_LENGTH` is noted while storing, so the body's length check scans nothing.

use crate::wire::nv::{MAX_NV_LEN, NvSink, len_size, split_pair, write_len};

/// Where a params arena keeps its bytes: an array of its own ([`crate::Buffers`]) or a
/// caller's slice ([`crate::SliceBuffers`]).
pub trait ArenaBytes {
    fn bytes(&self) -> &[u8];
    fn bytes_mut(&mut self) -> &mut [u8];
}

impl<const N: usize> ArenaBytes for [u8; N] {
    fn bytes(&self) -> &[u8] {
        self
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        self
    }
}

impl ArenaBytes for &mut [u8] {
    fn bytes(&self) -> &[u8] {
        self
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        self
    }
}

/// The arena type the engine works with, whatever holds its bytes.
pub(crate) type Arena<'b> = ParamArena<dyn ArenaBytes + 'b>;

/// A params arena over `B`'s bytes.
#[derive(Debug)]
pub struct ParamArena<B: ?Sized> {
    state: ArenaState,
    bytes: B,
}

/// Where an arena stands: bytes and params stored, whether one did not fit.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ArenaState {
    len: usize,
    count: usize,
    /// Where the pair being written piece by piece begins (while `writing`).
    pair_at: usize,
    /// The value of the last `CONTENT_LENGTH` stored when `has_length` (noted as it is
    /// stored: reading it is no scan). Not an `Option<u64>`: its tag would take 8 bytes of
    /// RAM per request slot on 32-bit targets, where the flag packs beside the others.
    content_length: u64,
    has_length: bool,
    overflowed: bool,
    writing: bool,
}

impl ArenaState {
    const EMPTY: Self = Self {
        len: 0,
        count: 0,
        pair_at: 0,
        content_length: 0,
        has_length: false,
        overflowed: false,
        writing: false,
    };

    /// Notes a stored pair's value when it is `CONTENT_LENGTH` (the last one wins, a value
    /// that is not a number as `None`). The name's length is checked first: most pairs stop there.
    #[inline]
    fn note(&mut self, name_value: &[u8], name_len: usize) {
        if name_len == 14 {
            self.note_14(name_value);
        }
    }

    /// [`Self::note`] for a name of 14 bytes; out of line, as few names are 14 bytes long.
    #[inline(never)]
    fn note_14(&mut self, name_value: &[u8]) {
        if let Some(value) = name_value.strip_prefix(b"CONTENT_LENGTH") {
            let value = parse_decimal(value);
            self.has_length = value.is_some();
            self.content_length = value.unwrap_or(0);
        }
    }
}

impl<const N: usize> ParamArena<[u8; N]> {
    pub(crate) const fn new() -> Self {
        Self { state: ArenaState::EMPTY, bytes: [0; N] }
    }
}

impl<'a> ParamArena<&'a mut [u8]> {
    pub(crate) const fn over(bytes: &'a mut [u8]) -> Self {
        Self { state: ArenaState::EMPTY, bytes }
    }
}

impl ParamArena<dyn ArenaBytes + '_> {
    /// Empties the store for the next request.
    pub(crate) fn clear(&mut self) {
        self.state = ArenaState::EMPTY;
    }

    /// Whether some param did not fit.
    pub(crate) fn overflowed(&self) -> bool {
        self.state.overflowed
    }

    /// The value of the last `CONTENT_LENGTH` stored, if a decimal number (noted while
    /// storing: no lookup).
    pub(crate) fn content_length(&self) -> Option<u64> {
        self.state.has_length.then_some(self.state.content_length)
    }

    /// The params stored so far.
    pub(crate) fn params(&self) -> Params<'_> {
        Params { bytes: &self.bytes.bytes()[..self.state.len], count: self.state.count }
    }

    /// The sink pairs are decoded into: the bytes are looked up once per record chunk,
    /// so storing a pair is plain slice code.
    pub(crate) fn writer(&mut self) -> ArenaWriter<'_> {
        ArenaWriter { state: &mut self.state, bytes: self.bytes.bytes_mut() }
    }
}

/// Writes decoded pairs into an arena's bytes (see [`ParamArena::writer`]).
pub(crate) struct ArenaWriter<'a> {
    state: &'a mut ArenaState,
    bytes: &'a mut [u8],
}

impl ArenaWriter<'_> {
    fn append(&mut self, bytes: &[u8]) {
        let s = &mut *self.state;
        if s.writing {
            // `start` reserved room for the whole pair, so this always fits.
            if let Some(dst) = self.bytes.get_mut(s.len..s.len + bytes.len()) {
                dst.copy_from_slice(bytes);
                s.len += bytes.len();
            }
        }
    }

    /// [`NvSink::pair`] once the lengths are known consistent: the pairs the run path
    /// leaves (a four-byte prefix for a short length, one that does not fit).
    fn one_pair(&mut self, name_value: &[u8], name_len: usize, value_len: usize) {
        let s = &mut *self.state;
        let head = len_size(name_len) + len_size(value_len);
        let end = s.len.saturating_add(head).saturating_add(name_value.len());
        let encodable = (name_len | value_len) <= MAX_NV_LEN as usize;
        let dst = if encodable { self.bytes.get_mut(s.len..end) } else { None };
        let Some(dst) = dst else {
            s.overflowed = true;
            return;
        };
        let k = write_len(name_len, dst);
        write_len(value_len, &mut dst[k..]);
        dst[head..].copy_from_slice(name_value);
        s.len = end;
        s.count += 1;
        s.note(name_value, name_len);
    }
}

impl NvSink for ArenaWriter<'_> {
    #[inline]
    fn start(&mut self, name_len: u32, value_len: u32) {
        let s = &mut *self.state;
        s.writing = false;
        if s.overflowed {
            return;
        }
        let (n, v) = (name_len as usize, value_len as usize);
        let head = len_size(n) + len_size(v);
        let need = head.saturating_add(n).saturating_add(v);
        if (n | v) > MAX_NV_LEN as usize || need > self.bytes.len() - s.len {
            s.overflowed = true;
            return;
        }
        let at = s.len;
        let k = write_len(n, &mut self.bytes[at..]);
        write_len(v, &mut self.bytes[at + k..]);
        s.pair_at = at;
        s.len += head;
        s.writing = true;
    }

    fn name(&mut self, bytes: &[u8]) {
        self.append(bytes);
    }

    fn value(&mut self, bytes: &[u8]) {
        self.append(bytes);
    }

    fn end(&mut self) {
        let s = &mut *self.state;
        if s.writing {
            s.count += 1;
            s.writing = false;
            // The pair is whole in the arena now, from `pair_at`.
            if let Some((name_value, name_len, _)) = self.bytes.get(s.pair_at..s.len).and_then(split_pair) {
                s.note(name_value, name_len);
            }
        }
    }

    /// `start`, `name`, `value`, `end` in one step: one bounds check, one copy. Rare: the
    /// run path (`pairs`) takes the pairs in canonical form that fit.
    fn pair(&mut self, name_value: &[u8], name_len: usize) {
        // Called at a pair boundary only, where `writing` is already false.
        if self.state.overflowed {
            return;
        }
        let Some(value_len) = name_value.len().checked_sub(name_len) else {
            self.state.overflowed = true;
            return;
        };
        self.one_pair(name_value, name_len, value_len);
    }

    /// Takes the run of whole pairs at the front of `input` that are in canonical form (a
    /// four-byte length only from 128 on, as the arena keeps them) and fit the room left:
    /// a walk over their lengths, then one copy, since the arena's format is the wire's.
    fn pairs(&mut self, input: &[u8]) -> usize {
        let s = &mut *self.state;
        // Called at a pair boundary only; after an overflow nothing more is stored.
        let Some(room) = self.bytes.get_mut(s.len..).filter(|_| !s.overflowed) else {
            return 0;
        };
        let fits = &input[..input.len().min(room.len())];
        let (mut rest, mut count) = (fits, 0);
        while let Some((&[n, v], after)) = rest.split_first_chunk::<2>() {
            rest = if (n | v) < 0x80 {
                // Both lengths below 128 (the usual case): one byte each, canonical.
                let Some((name_value, next)) = after.split_at_checked(usize::from(n) + usize::from(v)) else {
                    break;
                };
                s.note(name_value, usize::from(n));
                next
            } else {
                // A four-byte length is canonical only for a length from 128 on.
                let Some((name_value, name_len, used)) = split_pair(rest) else { break };
                if used - name_value.len() != len_size(name_len) + len_size(name_value.len() - name_len) {
                    break;
                }
                s.note(name_value, name_len);
                let Some(next) = rest.get(used..) else { break };
                next
            };
            count += 1;
        }
        let at = fits.len() - rest.len();
        // Always there: `at` is within `fits`, which is no longer than `room`.
        let (Some(dst), Some(src)) = (room.get_mut(..at), fits.get(..at)) else {
            return 0;
        };
        dst.copy_from_slice(src);
        s.len += at;
        s.count += count;
        at
    }
}

/// Read-only view of a request's params, in arrival order.
#[derive(Clone, Copy, Debug)]
pub struct Params<'a> {
    bytes: &'a [u8],
    count: usize,
}

impl<'a> Params<'a> {
    /// Number of params (duplicates counted).
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// All `(name, value)` pairs in the order the web server sent them.
    pub fn iter(&self) -> ParamsIter<'a> {
        ParamsIter { rest: self.bytes }
    }

    /// The params as FastCGI encodes name-value pairs (§3.4), in arrival order: one slice,
    /// so a copy of all of them is one copy ([`ParamsIter::new`] reads such a copy).
    pub fn encoded(&self) -> &'a [u8] {
        self.bytes
    }

    /// The value of `name` (exact, case-sensitive); the last one if sent twice.
    pub fn get(&self, name: &str) -> Option<&'a [u8]> {
        self.iter().filter(|(n, _)| *n == name.as_bytes()).last().map(|(_, v)| v)
    }

    /// The value of `name` if it is valid UTF-8.
    pub fn get_str(&self, name: &str) -> Option<&'a str> {
        self.get(name).and_then(|v| core::str::from_utf8(v).ok())
    }

    /// `REQUEST_METHOD`, e.g. `GET`.
    pub fn request_method(&self) -> Option<&'a str> {
        self.get_str("REQUEST_METHOD")
    }

    /// `QUERY_STRING` (empty when absent, as CGI allows).
    pub fn query_string(&self) -> &'a str {
        self.get_str("QUERY_STRING").unwrap_or("")
    }

    /// `REQUEST_URI` (set by nginx, not by CGI).
    pub fn request_uri(&self) -> Option<&'a str> {
        self.get_str("REQUEST_URI")
    }

    /// `SCRIPT_NAME`.
    pub fn script_name(&self) -> Option<&'a str> {
        self.get_str("SCRIPT_NAME")
    }

    /// `PATH_INFO`.
    pub fn path_info(&self) -> Option<&'a str> {
        self.get_str("PATH_INFO")
    }

    /// `DOCUMENT_ROOT`.
    pub fn document_root(&self) -> Option<&'a str> {
        self.get_str("DOCUMENT_ROOT")
    }

    /// `CONTENT_TYPE`.
    pub fn content_type(&self) -> Option<&'a str> {
        self.get_str("CONTENT_TYPE").filter(|s| !s.is_empty())
    }

    /// `REMOTE_ADDR`.
    pub fn remote_addr(&self) -> Option<&'a str> {
        self.get_str("REMOTE_ADDR")
    }

    /// `SERVER_NAME`.
    pub fn server_name(&self) -> Option<&'a str> {
        self.get_str("SERVER_NAME")
    }

    /// `CONTENT_LENGTH` as a number; `None` when absent, empty or not a decimal number.
    pub fn content_length(&self) -> Option<u64> {
        parse_decimal(self.get("CONTENT_LENGTH")?)
    }

    /// An HTTP request header by its HTTP name, e.g. `"User-Agent"` reads `HTTP_USER_AGENT`.
    pub fn http_header(&self, name: &str) -> Option<&'a [u8]> {
        self.http_headers().filter(|(n, _)| cgi_name_matches(n, name.as_bytes())).last().map(|(_, v)| v)
    }

    /// All `HTTP_*` params as `(suffix, value)`, e.g. `(b"USER_AGENT", b"curl/8")`.
    pub fn http_headers(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + use<'a> {
        self.iter().filter_map(|(n, v)| n.strip_prefix(b"HTTP_").map(|suffix| (suffix, v)))
    }
}

impl<'a> IntoIterator for Params<'a> {
    type Item = (&'a [u8], &'a [u8]);
    type IntoIter = ParamsIter<'a>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Iterator over stored params.
#[derive(Clone, Debug)]
pub struct ParamsIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for ParamsIter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        // The store is empty or holds a whole pair: at least its two length bytes.
        let &[n, v] = self.rest.first_chunk::<2>()?;
        if (n | v) >= 0x80 {
            return self.next_long();
        }
        // Both lengths below 128 (the usual case): one byte each.
        let (n, v) = (usize::from(n), usize::from(v));
        let (pair, rest) = self.rest.split_at_checked(2 + n + v)?;
        self.rest = rest;
        pair[2..].split_at_checked(n)
    }
}

impl<'a> ParamsIter<'a> {
    /// The pairs of `encoded`, name-value pairs in FastCGI's encoding (§3.4) such as
    /// [`Params::encoded`] gives; it ends at the first pair cut short.
    pub fn new(encoded: &'a [u8]) -> Self {
        Self { rest: encoded }
    }

    /// [`Iterator::next`] for a pair whose name or value is 128 bytes or longer.
    #[inline(never)]
    fn next_long(&mut self) -> Option<(&'a [u8], &'a [u8])> {
        let (name_value, name_len, used) = split_pair(self.rest)?;
        self.rest = self.rest.get(used..)?;
        name_value.split_at_checked(name_len)
    }
}

/// Whether CGI suffix `cgi` (e.g. `USER_AGENT`) names HTTP header `http` (e.g. `User-Agent`).
fn cgi_name_matches(cgi: &[u8], http: &[u8]) -> bool {
    cgi.len() == http.len()
        && cgi.iter().zip(http).all(|(&c, &h)| {
            let h = if h == b'-' { b'_' } else { h.to_ascii_uppercase() };
            c == h
        })
}

/// Parses an unsigned decimal number without overflow. Out of line on bare metal, where
/// each caller would carry a copy (flash).
#[cfg_attr(target_os = "none", inline(never))]
pub(crate) fn parse_decimal(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() {
        return None;
    }
    bytes.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

#[cfg(test)]
mod test {
    use std::vec;
    use std::vec::Vec;

    use ember_fcgi_testkit::nv::{LenForm, push_nv_as};

    use super::*;
    use crate::wire::nv::{NvDecoder, encode_pair};

    fn store_with(pairs: &[(&[u8], &[u8])], arena: &mut Arena<'_>) {
        let mut d = NvDecoder::new();
        for (n, v) in pairs {
            let mut buf = [0u8; 512];
            let len = encode_pair(n, v, &mut buf).unwrap();
            d.feed(&buf[..len], &mut arena.writer());
        }
        d.finish().unwrap();
    }

    /// Feeds a name-value stream in pieces of `chunk` bytes (a fresh writer per piece, as
    /// the engine takes one per record chunk). A piece holding a whole pair takes the
    /// `pair` fast path; smaller pieces go through `start`/`name`/`value`/`end`.
    fn feed(arena: &mut Arena<'_>, stream: &[u8], chunk: usize) {
        let mut d = NvDecoder::new();
        for piece in stream.chunks(chunk.max(1)) {
            d.feed(piece, &mut arena.writer());
        }
        d.finish().unwrap();
    }

    /// The stream of `pairs` as the testkit encodes it, every length in `form`.
    fn wire(pairs: &[(&[u8], &[u8])], form: LenForm) -> Vec<u8> {
        let mut out = Vec::new();
        for (n, v) in pairs {
            push_nv_as(&mut out, n, v, form, form);
        }
        out
    }

    /// A length as §3.4 of the spec writes it: one byte below 128, else four bytes
    /// big-endian with the high bit set.
    fn spec_len(len: usize) -> Vec<u8> {
        if len < 128 {
            vec![len as u8]
        } else {
            let l = len as u32;
            vec![0x80 | (l >> 24) as u8, (l >> 16) as u8, (l >> 8) as u8, l as u8]
        }
    }

    /// The bytes a pair takes in the store, written from the spec.
    fn spec_pair(name: &[u8], value: &[u8]) -> Vec<u8> {
        let mut out = spec_len(name.len());
        out.extend(spec_len(value.len()));
        out.extend_from_slice(name);
        out.extend_from_slice(value);
        out
    }

    /// Piece sizes that reach both store paths: whole stream, one pair split in many.
    const CHUNKS: [usize; 4] = [usize::MAX, 4096, 7, 1];

    #[test]
    fn test_store_lookup_order_and_duplicates() {
        let mut arena = ParamArena::<[u8; 256]>::new();
        let a: &mut Arena<'_> = &mut arena;
        store_with(
            &[
                (b"REQUEST_METHOD", b"POST"),
                (b"CONTENT_LENGTH", b"12"),
                (b"HTTP_USER_AGENT", b"curl/8"),
                (b"X", b"1"),
                (b"X", b"2"),
            ],
            a,
        );
        let p = a.params();
        assert_eq!(p.len(), 5);
        assert_eq!(p.request_method(), Some("POST"));
        assert_eq!(p.content_length(), Some(12));
        assert_eq!(p.get("X"), Some(&b"2"[..]));
        assert_eq!(p.http_header("user-agent"), Some(&b"curl/8"[..]));
        assert_eq!(p.http_header("User-Agent"), Some(&b"curl/8"[..]));
        assert_eq!(p.http_header("Accept"), None);
        assert_eq!(p.query_string(), "");
        let names: heapless::Vec<&[u8], 8> = p.iter().map(|(n, _)| n).collect();
        assert_eq!(names[..], [&b"REQUEST_METHOD"[..], b"CONTENT_LENGTH", b"HTTP_USER_AGENT", b"X", b"X"]);
        assert!(!a.overflowed());
    }

    #[test]
    fn test_overflow_keeps_earlier_params_and_flags() {
        let mut arena = ParamArena::<[u8; 20]>::new();
        let a: &mut Arena<'_> = &mut arena;
        // A=1 takes 4 bytes; LONGNAME=0123456789 takes 2 + 18 = 20, over the 16 left.
        store_with(&[(b"A", b"1"), (b"LONGNAME", b"0123456789"), (b"B", b"2")], a);
        assert!(a.overflowed());
        // Pairs after the overflow are dropped too, so the result is a prefix.
        assert_eq!(a.params().len(), 1);
        a.clear();
        assert!(!a.overflowed());
        assert_eq!(a.params().len(), 0);
    }

    #[test]
    fn test_exact_fit() {
        // Two one-byte lengths, a 2-byte name, a 1-byte value.
        let mut arena = ParamArena::<[u8; 5]>::new();
        let a: &mut Arena<'_> = &mut arena;
        store_with(&[(b"AB", b"C")], a);
        assert!(!a.overflowed());
        assert_eq!(a.params().get("AB"), Some(&b"C"[..]));
        let mut arena = ParamArena::<[u8; 4]>::new();
        let a: &mut Arena<'_> = &mut arena;
        store_with(&[(b"AB", b"C")], a);
        assert!(a.overflowed());
        assert_eq!(a.params().len(), 0);
    }

    #[test]
    fn test_values_of_any_length_up_to_the_capacity() {
        for len in [0usize, 1, 127, 128, 65_535, 65_536, 70_000] {
            let value: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let expected = spec_pair(b"BIG", &value);
            // 3-byte name: 1 + 1 + 3 bytes below 128, 1 + 4 + 3 from 128 on.
            let head = if len < 128 { 2 } else { 5 };
            assert_eq!(expected.len(), head + 3 + len);
            for form in [LenForm::Shortest, LenForm::Long] {
                let stream = wire(&[(b"BIG", &value)], form);
                for chunk in CHUNKS {
                    let mut bytes = vec![0u8; expected.len()];
                    let mut arena = ParamArena::over(&mut bytes[..]);
                    let a: &mut Arena<'_> = &mut arena;
                    feed(a, &stream, chunk);
                    assert!(!a.overflowed(), "len {len} chunk {chunk}");
                    let p = a.params();
                    assert_eq!(p.len(), 1);
                    assert_eq!(p.get("BIG").map(<[u8]>::len), Some(len), "len {len} chunk {chunk}");
                    assert!(p.get("BIG") == Some(&value[..]), "len {len} chunk {chunk}");
                    assert!(bytes == expected, "stored bytes, len {len} chunk {chunk}");

                    // One byte less: the pair does not fit.
                    let mut bytes = vec![0u8; expected.len() - 1];
                    let mut arena = ParamArena::over(&mut bytes[..]);
                    let a: &mut Arena<'_> = &mut arena;
                    feed(a, &stream, chunk);
                    assert!(a.overflowed(), "len {len} chunk {chunk}");
                    assert_eq!(a.params().len(), 0);
                }
            }
        }
    }

    #[test]
    fn test_names_and_values_around_128() {
        for n in [0usize, 1, 126, 127, 128, 129] {
            for v in [0usize, 1, 126, 127, 128, 129] {
                let name = vec![b'N'; n];
                let value = vec![b'v'; v];
                let mut expected = Vec::new();
                // Name length, value length: one byte below 128, else 0x80 0 0 len.
                expected.extend(if n < 128 { vec![n as u8] } else { vec![0x80, 0, 0, n as u8] });
                expected.extend(if v < 128 { vec![v as u8] } else { vec![0x80, 0, 0, v as u8] });
                expected.extend_from_slice(&name);
                expected.extend_from_slice(&value);
                // A small pair after it, so the reader has to step over the big one.
                expected.extend_from_slice(&[1, 1, b'Z', b'z']);
                let pairs: [(&[u8], &[u8]); 2] = [(&name, &value), (b"Z", b"z")];
                for form in [LenForm::Shortest, LenForm::Long] {
                    for chunk in CHUNKS {
                        let mut bytes = vec![0u8; expected.len()];
                        let mut arena = ParamArena::over(&mut bytes[..]);
                        let a: &mut Arena<'_> = &mut arena;
                        feed(a, &wire(&pairs, form), chunk);
                        assert!(!a.overflowed(), "{n} {v} {chunk}");
                        let got: Vec<(&[u8], &[u8])> = a.params().iter().collect();
                        assert_eq!(got, pairs, "{n} {v} {chunk}");
                        assert_eq!(bytes, expected, "{n} {v} {chunk}");
                    }
                }
            }
        }
    }

    #[test]
    fn test_pair_over_capacity_by_one_byte_overflows() {
        let big = vec![b'x'; 1000];
        // 4 + (1 + 4 + 1 + 1000) + 4 bytes.
        let pairs: [(&[u8], &[u8]); 3] = [(b"A", b"1"), (b"B", &big), (b"C", b"3")];
        let need = 4 + 1006 + 4;
        for chunk in CHUNKS {
            let stream = wire(&pairs, LenForm::Shortest);
            let mut bytes = vec![0u8; need];
            let mut arena = ParamArena::over(&mut bytes[..]);
            let a: &mut Arena<'_> = &mut arena;
            feed(a, &stream, chunk);
            assert!(!a.overflowed());
            assert_eq!(a.params().iter().collect::<Vec<_>>(), pairs);

            // The big pair misses by one byte: it and the rest are dropped.
            let mut bytes = vec![0u8; 4 + 1006 - 1];
            let mut arena = ParamArena::over(&mut bytes[..]);
            let a: &mut Arena<'_> = &mut arena;
            feed(a, &stream, chunk);
            assert!(a.overflowed(), "chunk {chunk}");
            assert_eq!(a.params().iter().collect::<Vec<_>>(), pairs[..1]);

            // The last pair misses by one byte.
            let mut bytes = vec![0u8; need - 1];
            let mut arena = ParamArena::over(&mut bytes[..]);
            let a: &mut Arena<'_> = &mut arena;
            feed(a, &stream, chunk);
            assert!(a.overflowed(), "chunk {chunk}");
            assert_eq!(a.params().iter().collect::<Vec<_>>(), pairs[..2]);
        }
    }

    #[test]
    fn test_iteration_keeps_arrival_order() {
        let long = vec![b'L'; 300];
        let huge = vec![b'H'; 70_000];
        let pairs: [(&[u8], &[u8]); 7] = [
            (b"Q", b"1"),
            (&long, b"2"),
            (b"HUGE", &huge),
            (b"", b""),
            (b"Q", &long),
            (b"R", b""),
            (b"Q", b"last"),
        ];
        for chunk in CHUNKS {
            let mut bytes = vec![0u8; 80_000];
            let mut arena = ParamArena::over(&mut bytes[..]);
            let a: &mut Arena<'_> = &mut arena;
            feed(a, &wire(&pairs, LenForm::Shortest), chunk);
            assert!(!a.overflowed());
            let p = a.params();
            assert_eq!(p.len(), pairs.len());
            assert!(p.iter().eq(pairs.iter().copied()), "chunk {chunk}");
            assert_eq!(p.get("Q"), Some(&b"last"[..]));
            assert_eq!(p.get("HUGE").map(<[u8]>::len), Some(70_000));
            assert_eq!(p.get(""), Some(&b""[..]));
        }
    }

    #[test]
    fn test_encoded_is_the_spec_encoding_and_reads_back() {
        let long = vec![b'v'; 200];
        let pairs: [(&[u8], &[u8]); 3] = [(b"A", b"1"), (b"LONG", &long), (b"", b"")];
        let mut expected = Vec::new();
        for (n, v) in pairs {
            expected.extend(spec_pair(n, v));
        }
        let mut bytes = vec![0u8; 1024];
        let mut arena = ParamArena::over(&mut bytes[..]);
        let a: &mut Arena<'_> = &mut arena;
        feed(a, &wire(&pairs, LenForm::Shortest), usize::MAX);
        let encoded = a.params().encoded();
        assert_eq!(encoded, &expected[..]);
        assert!(ParamsIter::new(encoded).eq(pairs.iter().copied()));
        // A four-byte prefix for a short length reads too; a pair cut short ends the pairs.
        let spelled = [0x80, 0, 0, 1, 1, b'N', b'v', 5, 1, b'c'];
        assert!(ParamsIter::new(&spelled).eq([(&b"N"[..], &b"v"[..])]));
    }

    #[test]
    fn test_lengths_the_decoder_never_sends_overflow() {
        // A name longer than the pair's bytes, or lengths past 2^31-1: marked as overflow,
        // nothing stored.
        let mut arena = ParamArena::<[u8; 64]>::new();
        let a: &mut Arena<'_> = &mut arena;
        a.writer().pair(b"AB", 3);
        assert!(a.overflowed());
        assert_eq!(a.params().len(), 0);
        for (n, v) in [(1, 0x8000_0000), (0x8000_0000, 1), (u32::MAX, u32::MAX)] {
            a.clear();
            let mut w = a.writer();
            w.start(n, v);
            w.end();
            assert!(a.overflowed(), "{n} {v}");
            assert_eq!(a.params().len(), 0);
        }
    }

    /// A pair with both lengths in the four-byte form (legal, not canonical), from the spec.
    fn spec_pair_long(name: &[u8], value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for len in [name.len() as u32, value.len() as u32] {
            out.extend_from_slice(&(len | 0x8000_0000).to_be_bytes());
        }
        out.extend_from_slice(name);
        out.extend_from_slice(value);
        out
    }

    /// nginx-like params: a run of short pairs around a long one.
    fn run_pairs(long: &[u8]) -> Vec<(&[u8], &[u8])> {
        vec![
            (b"QUERY_STRING", b""),
            (b"REQUEST_METHOD", b"POST"),
            (b"CONTENT_TYPE", b"text/plain"),
            (b"CONTENT_LENGTH", b"12"),
            (b"SCRIPT_NAME", b"/index.php"),
            (b"HTTP_COOKIE", long),
            (b"REQUEST_URI", b"/index.php?x=1"),
            (b"", b""),
            (b"SERVER_PORT", b"80"),
        ]
    }

    #[test]
    fn test_run_path_stores_the_same_bytes_whatever_the_split() {
        let long = vec![b'c'; 300];
        let pairs = run_pairs(&long);
        // Canonical on the wire, save the 4th pair's lengths in the four-byte form: the run
        // stops there, the pair goes through the other paths, the next run takes the rest.
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        for (k, (n, v)) in pairs.iter().enumerate() {
            stream.extend(if k == 3 { spec_pair_long(n, v) } else { spec_pair(n, v) });
            expected.extend(spec_pair(n, v));
        }
        for chunk in CHUNKS {
            let mut bytes = vec![0u8; expected.len()];
            let mut arena = ParamArena::over(&mut bytes[..]);
            let a: &mut Arena<'_> = &mut arena;
            feed(a, &stream, chunk);
            assert!(!a.overflowed(), "chunk {chunk}");
            assert_eq!(a.params().len(), pairs.len(), "chunk {chunk}");
            assert!(a.params().iter().eq(pairs.iter().copied()), "chunk {chunk}");
            assert_eq!(a.content_length(), Some(12), "chunk {chunk}");
            assert!(bytes == expected, "stored bytes, chunk {chunk}");
        }
    }

    #[test]
    fn test_run_takes_whole_canonical_pairs_that_fit() {
        let a1 = spec_pair(b"A", b"1");
        let b2 = spec_pair(b"B", b"22");
        let long = spec_pair(b"L", &[b'v'; 200]);
        let odd = spec_pair_long(b"N", b"v");
        let cat = |parts: &[&[u8]]| parts.concat();
        let mut bytes = [0u8; 512];
        let mut arena = ParamArena::over(&mut bytes[..]);
        let a: &mut Arena<'_> = &mut arena;
        // (input, bytes the run takes): whole pairs, long ones too; stops at a pair cut
        // short and at a four-byte prefix for a short length.
        let ab = a1.len() + b2.len();
        for (input, taken) in [
            (cat(&[&a1, &b2]), ab),
            (cat(&[&a1, &long, &b2]), ab + long.len()),
            (cat(&[&a1, &b2[..3]]), a1.len()),
            (cat(&[&a1, &b2, &long[..4]]), ab),
            (cat(&[&a1, &odd, &b2]), a1.len()),
            (odd.clone(), 0),
            (Vec::new(), 0),
        ] {
            a.clear();
            assert_eq!(a.writer().pairs(&input), taken);
            assert_eq!(a.params().encoded(), &input[..taken]);
        }
        // The room left bounds the run: it stops before the pair that would not fit, and
        // leaves the overflow to the pair paths.
        let mut bytes = [0u8; 8];
        let mut arena = ParamArena::over(&mut bytes[..]);
        let a: &mut Arena<'_> = &mut arena;
        let input = cat(&[&a1, &b2, &a1]);
        assert_eq!(a.writer().pairs(&input), a1.len());
        assert_eq!(a.writer().pairs(&input[a1.len()..]), 0);
        assert!(!a.overflowed());
        assert_eq!(a.params().len(), 1);
        // Once overflowed, it takes nothing.
        a.clear();
        a.writer().pair(b"AB", 3);
        assert!(a.overflowed());
        assert_eq!(a.writer().pairs(&a1), 0);
        assert_eq!(a.params().len(), 0);
    }

    #[test]
    fn test_run_overflowing_part_way_keeps_earlier_pairs() {
        let long = vec![b'c'; 300];
        let pairs = run_pairs(&long);
        let stream: Vec<u8> = pairs.iter().flat_map(|(n, v)| spec_pair(n, v)).collect();
        // Every capacity short of the whole: the pairs that fit are kept, in their bytes,
        // and the overflow is flagged, whatever the split.
        for capacity in 0..stream.len() {
            let mut used = 0;
            let fit = pairs
                .iter()
                .take_while(|(n, v)| {
                    used += spec_pair(n, v).len();
                    used <= capacity
                })
                .count();
            let kept: usize = pairs[..fit].iter().map(|(n, v)| spec_pair(n, v).len()).sum();
            for chunk in CHUNKS {
                let mut bytes = vec![0u8; capacity];
                let mut arena = ParamArena::over(&mut bytes[..]);
                let a: &mut Arena<'_> = &mut arena;
                feed(a, &stream, chunk);
                assert!(a.overflowed(), "capacity {capacity} chunk {chunk}");
                assert_eq!(a.params().len(), fit, "capacity {capacity} chunk {chunk}");
                assert_eq!(a.params().encoded(), &stream[..kept], "capacity {capacity} chunk {chunk}");
                let noted = if fit > 3 { Some(12) } else { None };
                assert_eq!(a.content_length(), noted, "capacity {capacity} chunk {chunk}");
            }
        }
    }

    #[test]
    fn test_content_length_noted_on_every_path() {
        let zeros_then_7 = [&[b'0'; 130][..], b"7"].concat();
        let cl = |v: &[u8]| spec_pair(b"CONTENT_LENGTH", v);
        let cl_long = |v: &[u8]| spec_pair_long(b"CONTENT_LENGTH", v);
        let other = spec_pair(b"A", b"1");
        // (stream, the length noted): in a run, through `pair` (a four-byte prefix stops
        // the run), through `pair` with a long value, duplicates, bad values after
        // good ones, names of 14 bytes that are not CONTENT_LENGTH.
        let cases: [(Vec<u8>, Option<u64>); 12] = [
            ([&other[..], &cl(b"12"), &other].concat(), Some(12)),
            (cl_long(b"34"), Some(34)),
            ([&other[..], &cl_long(b"34"), &other].concat(), Some(34)),
            (cl(&zeros_then_7), Some(7)),
            (cl_long(&zeros_then_7), Some(7)),
            ([&cl(b"5")[..], &other, &cl(b"6")].concat(), Some(6)),
            ([&cl(b"5")[..], &cl_long(b"6")].concat(), Some(6)),
            ([&cl(b"5")[..], &cl(b"x")].concat(), None),
            ([&cl_long(b"5")[..], &cl(b"")].concat(), None),
            ([&cl(b"5")[..], &cl(b"18446744073709551616")].concat(), None),
            ([&cl(b"5")[..], &spec_pair(b"CONTENT_LENGTZ", b"6")].concat(), Some(5)),
            (spec_pair(b"CONTENT_LENGT", b"6"), None),
        ];
        for (k, (stream, noted)) in cases.iter().enumerate() {
            for chunk in CHUNKS {
                let mut bytes = vec![0u8; 512];
                let mut arena = ParamArena::over(&mut bytes[..]);
                let a: &mut Arena<'_> = &mut arena;
                feed(a, stream, chunk);
                assert!(!a.overflowed());
                assert_eq!(a.content_length(), *noted, "case {k} chunk {chunk}");
                assert_eq!(a.params().content_length(), *noted, "case {k} chunk {chunk}");
                a.clear();
                assert_eq!(a.content_length(), None);
            }
        }
        // A CONTENT_LENGTH that does not fit is not stored, so not noted either.
        let stream = [&cl(b"5")[..], &cl(b"123456")].concat();
        for chunk in CHUNKS {
            let mut bytes = vec![0u8; cl(b"5").len() + 4];
            let mut arena = ParamArena::over(&mut bytes[..]);
            let a: &mut Arena<'_> = &mut arena;
            feed(a, &stream, chunk);
            assert!(a.overflowed());
            assert_eq!(a.content_length(), Some(5), "chunk {chunk}");
        }
    }

    #[test]
    fn test_parse_decimal() {
        assert_eq!(parse_decimal(b"0"), Some(0));
        assert_eq!(parse_decimal(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_decimal(b"18446744073709551616"), None);
        assert_eq!(parse_decimal(b""), None);
        assert_eq!(parse_decimal(b"-1"), None);
        assert_eq!(parse_decimal(b"1 "), None);
    }
}
