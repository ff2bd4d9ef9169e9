//! The bridge itself: CGI variables to `http::request::Parts`, `http::Response` out as CGI.

use std::fmt;

use ::http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST};
use ::http::request::Parts;
use ::http::uri::{Authority, PathAndQuery, Scheme};
use ::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, Version};

use ::bytes::Bytes;

use crate::{Params, Request, Response, ResponseBody, StreamError};

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

/// The CGI variables copied into one shared buffer ([`Bytes`]): per variable, where its
/// name ends and where its value ends (two `u64`, little-endian, counted from the start of
/// the text), then the text: names and values one after the other. The URI and header
/// values of the `Parts` built from it are slices of the same buffer, so they need no
/// allocation (nor copy) of their own.
#[derive(Clone)]
pub(crate) struct VarTable {
    bytes: Bytes,
    count: usize,
}

/// Bytes per variable in the table's index.
const ENTRY: usize = 16;

impl VarTable {
    /// A copy of `params`: one allocation, at its final size.
    pub(crate) fn from_params(params: &Params<'_>) -> Self {
        Self::copy(params).0
    }

    /// A copy of `params`, and where in it the variables the bridge reads are: one pass to
    /// size the table, one to fill it.
    pub(crate) fn copy(params: &Params<'_>) -> (Self, Known<(usize, usize)>) {
        let (mut count, mut text) = (0, 0);
        for (name, value) in params.iter() {
            count += 1;
            text += name.len() + value.len();
        }
        let index = count * ENTRY;
        let mut bytes = vec![0u8; index + text];
        let (entries, rest) = bytes.split_at_mut(index);
        let mut known = Known::default();
        let mut at = 0;
        for ((name, value), entry) in params.iter().zip(entries.chunks_exact_mut(ENTRY)) {
            let name_end = at + name.len();
            let value_end = name_end + value.len();
            rest[at..name_end].copy_from_slice(name);
            rest[name_end..value_end].copy_from_slice(value);
            entry[..8].copy_from_slice(&(name_end as u64).to_le_bytes());
            entry[8..].copy_from_slice(&(value_end as u64).to_le_bytes());
            if let Some(slot) = known.slot(name) {
                *slot = Some((name_end, value_end));
            }
            at = value_end;
        }
        (Self { bytes: Bytes::from(bytes), count }, known)
    }

    /// The text of the table (the variables' names and values).
    fn text(&self) -> &[u8] {
        &self.bytes[self.count * ENTRY..]
    }

    /// Every variable as (name, value), in the order sent.
    pub(crate) fn iter(&self) -> impl ExactSizeIterator<Item = (&[u8], &[u8])> + '_ {
        let (entries, text) = self.bytes.split_at(self.count * ENTRY);
        let offset = |b: &[u8]| {
            let mut le = [0u8; 8];
            le.copy_from_slice(b);
            usize::try_from(u64::from_le_bytes(le)).unwrap_or(0)
        };
        let mut start = 0;
        entries.chunks_exact(ENTRY).map(move |entry| {
            let (name_end, value_end) = (offset(&entry[..8]), offset(&entry[8..]));
            let pair = (&text[start..name_end], &text[name_end..value_end]);
            start = value_end;
            pair
        })
    }

    /// How many variables.
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// `part` (a slice of this table's text) as a `Bytes` sharing the table.
    fn share(&self, part: &[u8]) -> Bytes {
        if part.is_empty() { Bytes::new() } else { self.bytes.slice_ref(part) }
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
    /// Variables that may become headers (`HTTP_*`, `CONTENT_TYPE`, `CONTENT_LENGTH`).
    headers: usize,
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
        }
    }
}

impl<V> Known<V> {
    /// Where the value of the variable `name` goes, if the bridge reads it; counts the
    /// variables that may become headers.
    fn slot(&mut self, name: &[u8]) -> Option<&mut Option<V>> {
        Some(match name {
            b"REQUEST_METHOD" => &mut self.method,
            b"REQUEST_URI" => &mut self.request_uri,
            b"SCRIPT_NAME" => &mut self.script_name,
            b"PATH_INFO" => &mut self.path_info,
            b"QUERY_STRING" => &mut self.query_string,
            b"REQUEST_SCHEME" => &mut self.request_scheme,
            b"HTTPS" => &mut self.https,
            b"SERVER_NAME" => &mut self.server_name,
            b"SERVER_PORT" => &mut self.server_port,
            b"SERVER_PROTOCOL" => &mut self.protocol,
            b"REMOTE_ADDR" => &mut self.remote_addr,
            b"REMOTE_PORT" => &mut self.remote_port,
            b"CONTENT_TYPE" => {
                self.headers += 1;
                &mut self.content_type
            }
            b"CONTENT_LENGTH" => {
                self.headers += 1;
                &mut self.content_length
            }
            b"HTTP_HOST" => {
                self.headers += 1;
                &mut self.host
            }
            _ => {
                if name.starts_with(b"HTTP_") {
                    self.headers += 1;
                }
                return None;
            }
        })
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
    let text = table.text();
    let known = at.map(|(start, end)| &text[start..end]);
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
    for (var, value) in table.iter() {
        let name = match var {
            b"CONTENT_TYPE" if !value.is_empty() => CONTENT_TYPE,
            b"CONTENT_LENGTH" if !value.is_empty() => CONTENT_LENGTH,
            b"HTTP_CONTENT_TYPE" if has_type => continue,
            b"HTTP_CONTENT_LENGTH" if has_length => continue,
            b"HTTP_HOST" => HOST,
            _ => match var.strip_prefix(b"HTTP_") {
                Some(suffix) if !suffix.is_empty() => {
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
                    name.map_err(|_| RequestError::Header(lossy(var)))?
                }
                _ => continue,
            },
        };
        let value = HeaderValue::from_maybe_shared(table.share(value))
            .map_err(|_| RequestError::Header(lossy(var)))?;
        map.append(name, value);
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
