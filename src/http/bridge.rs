//! The bridge itself: CGI variables to `http::request::Parts`, `http::Response` out as CGI.

use std::fmt;

use ::http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST};
use ::http::request::Parts;
use ::http::uri::{Authority, PathAndQuery, Scheme};
use ::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, Version};

use ::bytes::Bytes;

use crate::cgi::reason_phrase;
use crate::{Params, ParamsIter, Request, Response, ResponseBody, StreamError};

/// Why a request's CGI variables do not make an `http` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// `REQUEST_METHOD` is not an HTTP method token.
    Method(String),
    /// The URI rebuilt from the variables does not parse.
    Uri(String),
    /// A header name or value (from the named variable) is not valid HTTP.
    Header(String),
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Method(m) => write!(f, "REQUEST_METHOD {m:?} is not an HTTP method"),
            Self::Uri(u) => write!(f, "the request URI {u:?} is not valid"),
            Self::Header(var) => write!(f, "the CGI variable {var} is not a valid HTTP header"),
        }
    }
}

impl std::error::Error for RequestError {}

/// The request line and headers of a request, as `http` types (see the module docs for
/// the mapping).
pub fn request_parts(params: &Params<'_>) -> Result<Parts, RequestError> {
    let (table, at) = VarTable::copy(params);
    parts_from(&table, at).map(|(parts, _)| parts)
}

/// The CGI variables copied into one shared buffer ([`Bytes`]) in one piece, as the core
/// stores them: FastCGI's name-value encoding ([`Params::encoded`]). The URI and header
/// values of the `Parts` built from it are slices of the same buffer, so they need no
/// allocation (nor copy) of their own.
#[derive(Clone)]
pub(crate) struct VarTable {
    bytes: Bytes,
    count: usize,
}

impl VarTable {
    /// A copy of `params`: one allocation, one copy.
    pub(crate) fn from_params(params: &Params<'_>) -> Self {
        Self { bytes: Bytes::copy_from_slice(params.encoded()), count: params.len() }
    }

    /// A copy of `params`, and where in it (byte ranges) the variables the bridge reads are.
    pub(crate) fn copy(params: &Params<'_>) -> (Self, Known<(usize, usize)>) {
        let table = Self::from_params(params);
        let base = table.bytes.as_ptr().addr();
        let mut known = Known::default();
        let mut pair_at = 0;
        for (name, value) in table.iter() {
            let start = value.as_ptr().addr() - base;
            let end = start + value.len();
            known.note(name, (start, end), value.is_empty(), pair_at);
            pair_at = end;
        }
        (table, known)
    }

    /// Every variable as (name, value), in the order sent.
    pub(crate) fn iter(&self) -> Vars<'_> {
        Vars { pairs: ParamsIter::new(&self.bytes), left: self.count }
    }

    /// How many variables.
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// `part` (a slice of this table) as a `Bytes` sharing the table.
    fn share(&self, part: &[u8]) -> Bytes {
        if part.is_empty() { Bytes::new() } else { self.bytes.slice_ref(part) }
    }
}

/// The variables of a [`VarTable`], in the order sent.
pub(crate) struct Vars<'a> {
    pairs: ParamsIter<'a>,
    left: usize,
}

impl<'a> Iterator for Vars<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let pair = self.pairs.next()?;
        self.left = self.left.saturating_sub(1);
        Some(pair)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Vars<'_> {}

/// A variable name as numbers: its length, its first 8 and its last 8 bytes (zero-padded
/// when shorter), which tell apart any two names of up to 16 bytes. The bridge matches the
/// names it reads (all shorter) on it: a few compares of integers per variable rather than
/// a byte comparison for each name of the same length.
#[derive(Clone, Copy, PartialEq, Eq)]
struct NameKey(usize, u64, u64);

impl NameKey {
    const REQUEST_METHOD: Self = Self::of(b"REQUEST_METHOD");
    const REQUEST_URI: Self = Self::of(b"REQUEST_URI");
    const SCRIPT_NAME: Self = Self::of(b"SCRIPT_NAME");
    const PATH_INFO: Self = Self::of(b"PATH_INFO");
    const QUERY_STRING: Self = Self::of(b"QUERY_STRING");
    const REQUEST_SCHEME: Self = Self::of(b"REQUEST_SCHEME");
    const HTTPS: Self = Self::of(b"HTTPS");
    const SERVER_NAME: Self = Self::of(b"SERVER_NAME");
    const SERVER_PORT: Self = Self::of(b"SERVER_PORT");
    const SERVER_PROTOCOL: Self = Self::of(b"SERVER_PROTOCOL");
    const REMOTE_ADDR: Self = Self::of(b"REMOTE_ADDR");
    const REMOTE_PORT: Self = Self::of(b"REMOTE_PORT");
    const CONTENT_TYPE: Self = Self::of(b"CONTENT_TYPE");
    const CONTENT_LENGTH: Self = Self::of(b"CONTENT_LENGTH");
    const HTTP_HOST: Self = Self::of(b"HTTP_HOST");

    const fn of(name: &[u8]) -> Self {
        if let (Some(head), Some(tail)) = (name.first_chunk::<8>(), name.last_chunk::<8>()) {
            return Self(name.len(), u64::from_le_bytes(*head), u64::from_le_bytes(*tail));
        }
        let (mut head, mut tail) = ([0u8; 8], [0u8; 8]);
        let mut i = 0;
        while i < name.len() {
            head[i] = name[i];
            tail[8 - name.len() + i] = name[i];
            i += 1;
        }
        Self(name.len(), u64::from_le_bytes(head), u64::from_le_bytes(tail))
    }
}

/// The variables the bridge reads (the last value of each, as [`Params::get`]; `V` is the
/// value, or where it is in a [`VarTable`]), and how many headers there will be.
pub(crate) struct Known<V> {
    method: Option<V>,
    request_uri: Option<V>,
    script_name: Option<V>,
    path_info: Option<V>,
    query_string: Option<V>,
    request_scheme: Option<V>,
    https: Option<V>,
    host: Option<V>,
    server_name: Option<V>,
    server_port: Option<V>,
    protocol: Option<V>,
    content_type: Option<V>,
    pub(crate) content_length: Option<V>,
    pub(crate) remote_addr: Option<V>,
    pub(crate) remote_port: Option<V>,
    /// Variables that may become headers (`HTTP_*`, and `CONTENT_TYPE` and
    /// `CONTENT_LENGTH` when not empty).
    headers: usize,
    /// Where (in the table) the first of them begins: the header pass starts there.
    headers_from: usize,
}

impl<V> Default for Known<V> {
    fn default() -> Self {
        Self {
            method: None,
            request_uri: None,
            script_name: None,
            path_info: None,
            query_string: None,
            request_scheme: None,
            https: None,
            host: None,
            server_name: None,
            server_port: None,
            protocol: None,
            content_type: None,
            content_length: None,
            remote_addr: None,
            remote_port: None,
            headers: 0,
            headers_from: 0,
        }
    }
}

impl<V> Known<V> {
    /// Keeps `value` if the bridge reads the variable `name`, and counts (and finds the
    /// first of) the variables that may become headers; `pair_at` is where the pair begins.
    fn note(&mut self, name: &[u8], value: V, value_empty: bool, pair_at: usize) {
        let (slot, header) = match NameKey::of(name) {
            NameKey::REQUEST_METHOD => (&mut self.method, false),
            NameKey::REQUEST_URI => (&mut self.request_uri, false),
            NameKey::SCRIPT_NAME => (&mut self.script_name, false),
            NameKey::PATH_INFO => (&mut self.path_info, false),
            NameKey::QUERY_STRING => (&mut self.query_string, false),
            NameKey::REQUEST_SCHEME => (&mut self.request_scheme, false),
            NameKey::HTTPS => (&mut self.https, false),
            NameKey::SERVER_NAME => (&mut self.server_name, false),
            NameKey::SERVER_PORT => (&mut self.server_port, false),
            NameKey::SERVER_PROTOCOL => (&mut self.protocol, false),
            NameKey::REMOTE_ADDR => (&mut self.remote_addr, false),
            NameKey::REMOTE_PORT => (&mut self.remote_port, false),
            NameKey::CONTENT_TYPE => (&mut self.content_type, !value_empty),
            NameKey::CONTENT_LENGTH => (&mut self.content_length, !value_empty),
            NameKey::HTTP_HOST => (&mut self.host, true),
            _ => {
                if name.starts_with(b"HTTP_") {
                    self.header_at(pair_at);
                }
                return;
            }
        };
        *slot = Some(value);
        if header {
            self.header_at(pair_at);
        }
    }

    fn header_at(&mut self, pair_at: usize) {
        if self.headers == 0 {
            self.headers_from = pair_at;
        }
        self.headers += 1;
    }

    fn map<W>(self, mut f: impl FnMut(V) -> W) -> Known<W> {
        Known {
            method: self.method.map(&mut f),
            request_uri: self.request_uri.map(&mut f),
            script_name: self.script_name.map(&mut f),
            path_info: self.path_info.map(&mut f),
            query_string: self.query_string.map(&mut f),
            request_scheme: self.request_scheme.map(&mut f),
            https: self.https.map(&mut f),
            host: self.host.map(&mut f),
            server_name: self.server_name.map(&mut f),
            server_port: self.server_port.map(&mut f),
            protocol: self.protocol.map(&mut f),
            content_type: self.content_type.map(&mut f),
            content_length: self.content_length.map(&mut f),
            remote_addr: self.remote_addr.map(&mut f),
            remote_port: self.remote_port.map(&mut f),
            headers: self.headers,
            headers_from: self.headers_from,
        }
    }
}

fn non_empty(value: Option<&[u8]>) -> Option<&[u8]> {
    value.filter(|v| !v.is_empty())
}

fn utf8(value: Option<&[u8]>) -> Option<&str> {
    value.and_then(|v| core::str::from_utf8(v).ok())
}

/// The request head from the variables in `table`, and what else the bridge found in them.
pub(crate) fn parts_from(
    table: &VarTable,
    at: Known<(usize, usize)>,
) -> Result<(Parts, Known<&[u8]>), RequestError> {
    let known = at.map(|(start, end)| &table.bytes[start..end]);
    let method = match known.method {
        None | Some(b"") => Method::GET,
        Some(m) => Method::from_bytes(m).map_err(|_| RequestError::Method(lossy(m)))?,
    };
    let (mut parts, ()) = ::http::Request::new(()).into_parts();
    parts.method = method;
    parts.uri = uri(table, &known)?;
    parts.version = version(known.protocol);
    parts.headers = headers(table, &known)?;
    Ok((parts, known))
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn version(protocol: Option<&[u8]>) -> Version {
    match protocol {
        Some(b"HTTP/1.0") => Version::HTTP_10,
        Some(b"HTTP/2.0" | b"HTTP/2") => Version::HTTP_2,
        Some(b"HTTP/3.0" | b"HTTP/3") => Version::HTTP_3,
        Some(b"HTTP/0.9") => Version::HTTP_09,
        _ => Version::HTTP_11,
    }
}

fn uri(table: &VarTable, known: &Known<&[u8]>) -> Result<Uri, RequestError> {
    let from_request_uri =
        non_empty(known.request_uri).and_then(|u| PathAndQuery::from_maybe_shared(table.share(u)).ok());
    let path_and_query = match from_request_uri {
        Some(pq) if pq.as_str().starts_with('/') => pq,
        _ => {
            let mut text = String::new();
            percent_encode_path(&mut text, known.script_name.unwrap_or_default());
            percent_encode_path(&mut text, known.path_info.unwrap_or_default());
            if !text.starts_with('/') {
                text.insert(0, '/');
            }
            let query = utf8(known.query_string).unwrap_or("");
            if !query.is_empty() {
                text.push('?');
                text.push_str(query);
            }
            PathAndQuery::try_from(text.as_str()).map_err(|_| RequestError::Uri(text))?
        }
    };
    let scheme = match non_empty(known.request_scheme) {
        Some(s) => Scheme::try_from(s).map_err(|_| RequestError::Uri(lossy(s)))?,
        None if matches!(known.https, Some(b"on" | b"ON" | b"1")) => Scheme::HTTPS,
        None => Scheme::HTTP,
    };
    let authority = match (non_empty(known.host), utf8(known.server_name).filter(|s| !s.is_empty())) {
        (Some(host), _) => Some(
            Authority::from_maybe_shared(table.share(host)).map_err(|_| RequestError::Uri(lossy(host)))?,
        ),
        (None, Some(name)) => {
            let default = if scheme == Scheme::HTTPS { "443" } else { "80" };
            let text = match utf8(known.server_port).filter(|p| !p.is_empty() && *p != default) {
                Some(port) => format!("{name}:{port}"),
                None => name.to_owned(),
            };
            Some(Authority::try_from(text.as_str()).map_err(|_| RequestError::Uri(text))?)
        }
        (None, None) => None,
    };
    let mut uri = ::http::uri::Parts::default();
    if let Some(authority) = authority {
        uri.scheme = Some(scheme);
        uri.authority = Some(authority);
    }
    uri.path_and_query = Some(path_and_query);
    Uri::from_parts(uri).map_err(|e| RequestError::Uri(e.to_string()))
}

/// Appends `raw` (a decoded path) percent-encoded where a URI path may not hold it as is.
fn percent_encode_path(out: &mut String, raw: &[u8]) {
    for &b in raw {
        if b.is_ascii_alphanumeric() || b"/-._~!$&'()*+,;=:@".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// Header names up to this long are lower-cased on the stack.
const NAME_ON_STACK: usize = 64;

fn headers(table: &VarTable, known: &Known<&[u8]>) -> Result<HeaderMap, RequestError> {
    let mut map = HeaderMap::with_capacity(known.headers);
    if known.headers == 0 {
        return Ok(map);
    }
    let has_type = non_empty(known.content_type).is_some();
    let has_length = non_empty(known.content_length).is_some();
    let mut stack = [0u8; NAME_ON_STACK];
    // From the first variable that may be a header, until all of them were seen.
    let mut left = known.headers;
    for (var, value) in ParamsIter::new(&table.bytes[known.headers_from..]) {
        let name = match var.strip_prefix(b"HTTP_") {
            None => match NameKey::of(var) {
                NameKey::CONTENT_TYPE if !value.is_empty() => Some(CONTENT_TYPE),
                NameKey::CONTENT_LENGTH if !value.is_empty() => Some(CONTENT_LENGTH),
                _ => continue,
            },
            Some(b"HOST") => Some(HOST),
            Some(b"CONTENT_TYPE") if has_type => None,
            Some(b"CONTENT_LENGTH") if has_length => None,
            Some(b"") => None,
            Some(suffix) => {
                let cgi_to_http = |b: &u8| if *b == b'_' { b'-' } else { b.to_ascii_lowercase() };
                let name = if suffix.len() <= NAME_ON_STACK {
                    let name = &mut stack[..suffix.len()];
                    for (to, from) in name.iter_mut().zip(suffix) {
                        *to = cgi_to_http(from);
                    }
                    HeaderName::from_bytes(name)
                } else {
                    HeaderName::from_bytes(&suffix.iter().map(cgi_to_http).collect::<Vec<u8>>())
                };
                Some(name.map_err(|_| RequestError::Header(lossy(var)))?)
            }
        };
        if let Some(name) = name {
            let value = HeaderValue::from_maybe_shared(table.share(value))
                .map_err(|_| RequestError::Header(lossy(var)))?;
            map.append(name, value);
        }
        left -= 1;
        if left == 0 {
            break;
        }
    }
    Ok(map)
}

/// `http` views of a [`Request`].
pub trait RequestExt {
    /// The request line and headers as [`http::request::Parts`]
    /// (see the module docs for the mapping). Allocates: a `HeaderMap` and the URI.
    fn http_parts(&self) -> Result<Parts, RequestError>;
}

impl RequestExt for Request<'_> {
    fn http_parts(&self) -> Result<Parts, RequestError> {
        request_parts(&self.params())
    }
}

/// Writing `http` responses to a [`Response`].
#[allow(async_fn_in_trait)]
pub trait ResponseExt {
    /// Writes the CGI head of `status` and `headers` and returns the writer of the body.
    /// `InvalidHeader` (nothing written) if `headers` holds a `status` header.
    async fn send_http_head(
        &mut self,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> Result<ResponseBody<'_>, StreamError>;

    /// Writes a whole `http::Response`: its head (with `Content-Length` added when
    /// missing), then its body.
    async fn send_http<B: AsRef<[u8]>>(&mut self, response: ::http::Response<B>) -> Result<(), StreamError>;
}

impl ResponseExt for Response<'_> {
    async fn send_http_head(
        &mut self,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> Result<ResponseBody<'_>, StreamError> {
        send_head_with(self, status, headers, None).await
    }

    async fn send_http<B: AsRef<[u8]>>(&mut self, response: ::http::Response<B>) -> Result<(), StreamError> {
        let (parts, body) = response.into_parts();
        let body = body.as_ref();
        let mut digits = [0u8; 20];
        let length =
            (!parts.headers.contains_key(CONTENT_LENGTH)).then(|| decimal(&mut digits, body.len() as u64));
        send_head_with(self, parts.status, &parts.headers, length).await?.write_all(body).await
    }
}

/// Header lines up to this many are gathered on the stack.
const LINES_ON_STACK: usize = 16;
/// Heads up to this many bytes are formatted on the stack and written in one piece.
const HEAD_ON_STACK: usize = 256;

/// [`ResponseExt::send_http_head`], with `content-length: length` after the map's headers
/// when given (as if inserted into the map, without allocating its tables).
pub(crate) async fn send_head_with<'r>(
    res: &'r mut Response<'_>,
    status: StatusCode,
    headers: &HeaderMap,
    length: Option<&[u8]>,
) -> Result<ResponseBody<'r>, StreamError> {
    // A look at each name is cheaper than `contains_key`'s parse and hash, for the few
    // headers of a response.
    if headers.keys().any(|name| name.as_str() == "status") {
        return Err(StreamError::InvalidHeader);
    }
    if res.bytes_written() != 0 {
        return Err(StreamError::HeadAlreadySent);
    }
    // The head the core's `send_head_bytes` writes, formatted here in one piece: `http`'s
    // types already hold only valid names (tokens) and values (no CR, LF or NUL), so the
    // core's checks of each would find nothing.
    let mut head = [0u8; HEAD_ON_STACK];
    if let Some(len) = format_head(&mut head, status, headers, length) {
        res.note_status(status.as_u16());
        let mut out = res.raw_output();
        out.write_all(&head[..len]).await?;
        return Ok(out);
    }
    let lines = headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes()));
    let lines = lines.chain(length.map(|l| (CONTENT_LENGTH.as_str(), l)));
    let count = headers.len() + usize::from(length.is_some());
    if count <= LINES_ON_STACK {
        let mut stack: [(&str, &[u8]); LINES_ON_STACK] = [("", b""); LINES_ON_STACK];
        for (slot, line) in stack.iter_mut().zip(lines) {
            *slot = line;
        }
        res.send_head_bytes(status.as_u16(), &stack[..count]).await
    } else {
        let lines: Vec<(&str, &[u8])> = lines.collect();
        res.send_head_bytes(status.as_u16(), &lines).await
    }
}

/// The CGI head of `status`, `headers` and `length` (as [`send_head_with`] writes it) in
/// `buf`: its length, or `None` if it does not fit.
fn format_head(
    buf: &mut [u8],
    status: StatusCode,
    headers: &HeaderMap,
    length: Option<&[u8]>,
) -> Option<usize> {
    let mut at = 0;
    let mut put = |bytes: &[u8]| -> Option<()> {
        buf.get_mut(at..at + bytes.len())?.copy_from_slice(bytes);
        at += bytes.len();
        Some(())
    };
    put(b"Status: ")?;
    put(status.as_str().as_bytes())?;
    put(b" ")?;
    put(reason_phrase(status.as_u16()).as_bytes())?;
    put(b"\r\n")?;
    let lines = headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes()));
    for (name, value) in lines.chain(length.map(|l| (CONTENT_LENGTH.as_str(), l))) {
        put(name.as_bytes())?;
        put(b": ")?;
        put(value)?;
        put(b"\r\n")?;
    }
    put(b"\r\n")?;
    Some(at)
}

/// `n` in decimal, in `buf`.
pub(crate) fn decimal(buf: &mut [u8; 20], mut n: u64) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

#[cfg(test)]
mod test {
    use super::NameKey;

    #[test]
    fn name_keys_tell_names_apart() {
        let names: [&[u8]; 12] = [
            b"",
            b"H",
            b"HTTPS",
            b"HTTPX",
            b"HTTPS\0",
            b"REQUEST_URI",
            b"REQUEST_URX",
            b"XEQUEST_URI",
            b"REQUEST_METHOD",
            b"REQUEST_SCHEME",
            b"AAAAAAAA",
            b"AAAAAAAAA",
        ];
        for (i, a) in names.iter().enumerate() {
            for (j, b) in names.iter().enumerate() {
                assert_eq!(NameKey::of(a) == NameKey::of(b), i == j, "{a:?} {b:?}");
            }
        }
        assert!(NameKey::of(b"HTTPS") == NameKey::HTTPS && NameKey::of(b"HTTP_HOST") == NameKey::HTTP_HOST);
    }
}
