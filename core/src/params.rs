//! The fixed-capacity params store: CGI variables received on FCGI_PARAMS.
//!
//! Pairs are written into a caller-sized byte arena as they are decoded, each as
//! `[name_len: u16 BE][value_len: u16 BE][name][value]`, in arrival order. A pair that does
//! not fit (or whose name or value exceeds 65535 bytes) marks the store as overflowed; the
//! stream is still decoded to its end so the connection stays in sync. Duplicate names are
//! all kept; lookups return the last one ("last wins").

use crate::wire::nv::NvSink;

/// Bytes of bookkeeping stored per param besides its name and value.
pub const PARAM_OVERHEAD: usize = 4;

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
    overflowed: bool,
    writing: bool,
}

impl ArenaState {
    const EMPTY: Self = Self { len: 0, count: 0, overflowed: false, writing: false };
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
        let fits_u16 = n <= u16::MAX as usize && v <= u16::MAX as usize;
        let need = PARAM_OVERHEAD.saturating_add(n).saturating_add(v);
        if !fits_u16 || need > self.bytes.len() - s.len {
            s.overflowed = true;
            return;
        }
        let at = s.len;
        self.bytes[at..at + 2].copy_from_slice(&(n as u16).to_be_bytes());
        self.bytes[at + 2..at + 4].copy_from_slice(&(v as u16).to_be_bytes());
        s.len += PARAM_OVERHEAD;
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
        }
    }

    /// `start`, `name`, `value`, `end` in one step: one bounds check, one copy.
    #[inline]
    fn pair(&mut self, name_value: &[u8], name_len: usize) {
        // Called at a pair boundary only, where `writing` is already false.
        let s = &mut *self.state;
        if s.overflowed {
            return;
        }
        let value_len = name_value.len().saturating_sub(name_len);
        let at = s.len;
        let fits_u16 = name_len <= u16::MAX as usize && value_len <= u16::MAX as usize;
        let end = at.saturating_add(PARAM_OVERHEAD).saturating_add(name_value.len());
        let dst = if fits_u16 { self.bytes.get_mut(at..end) } else { None };
        let Some(dst) = dst else {
            s.overflowed = true;
            return;
        };
        dst[..2].copy_from_slice(&(name_len as u16).to_be_bytes());
        dst[2..4].copy_from_slice(&(value_len as u16).to_be_bytes());
        dst[PARAM_OVERHEAD..].copy_from_slice(name_value);
        s.len = end;
        s.count += 1;
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

    fn next(&mut self) -> Option<Self::Item> {
        let head = self.rest.get(..PARAM_OVERHEAD)?;
        let n = u16::from_be_bytes([head[0], head[1]]) as usize;
        let v = u16::from_be_bytes([head[2], head[3]]) as usize;
        let body = self.rest.get(PARAM_OVERHEAD..PARAM_OVERHEAD + n + v)?;
        self.rest = &self.rest[PARAM_OVERHEAD + n + v..];
        Some((&body[..n], &body[n..]))
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

/// Parses an unsigned decimal number without overflow.
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
        let mut arena = ParamArena::<[u8; 7]>::new();
        let a: &mut Arena<'_> = &mut arena;
        store_with(&[(b"AB", b"C")], a);
        assert!(!a.overflowed());
        assert_eq!(a.params().get("AB"), Some(&b"C"[..]));
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
