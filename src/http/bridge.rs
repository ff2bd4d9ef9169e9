//! The bridge itself: CGI variables to `http::request::Parts`, `http::Response` out as CGI.

use std::fmt;

use ::http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST};
use ::http::request::Parts;
use ::http::uri::{Authority, PathAndQuery, Scheme};
use ::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, Version};

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
    let method = match params.get("REQUEST_METHOD") {
        None | Some(b"") => Method::GET,
        Some(m) => Method::from_bytes(m).map_err(|_| RequestError::Method(lossy(m)))?,
    };
    let (mut parts, ()) = ::http::Request::new(()).into_parts();
    parts.method = method;
    parts.uri = uri(params)?;
    parts.version = version(params.get("SERVER_PROTOCOL"));
    parts.headers = headers(params)?;
    Ok(parts)
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

fn non_empty<'a>(params: &Params<'a>, name: &str) -> Option<&'a [u8]> {
    params.get(name).filter(|v| !v.is_empty())
}

fn uri(params: &Params<'_>) -> Result<Uri, RequestError> {
    let path_and_query = match non_empty(params, "REQUEST_URI").and_then(|u| PathAndQuery::try_from(u).ok()) {
        Some(pq) if pq.as_str().starts_with('/') => pq,
        _ => {
            let mut text = String::new();
            percent_encode_path(&mut text, params.get("SCRIPT_NAME").unwrap_or_default());
            percent_encode_path(&mut text, params.get("PATH_INFO").unwrap_or_default());
            if !text.starts_with('/') {
                text.insert(0, '/');
            }
            let query = params.query_string();
            if !query.is_empty() {
                text.push('?');
                text.push_str(query);
            }
            PathAndQuery::try_from(text.as_str()).map_err(|_| RequestError::Uri(text))?
        }
    };
    let scheme = match non_empty(params, "REQUEST_SCHEME") {
        Some(s) => Scheme::try_from(s).map_err(|_| RequestError::Uri(lossy(s)))?,
        None if matches!(params.get("HTTPS"), Some(b"on" | b"ON" | b"1")) => Scheme::HTTPS,
        None => Scheme::HTTP,
    };
    let authority = match (non_empty(params, "HTTP_HOST"), params.server_name().filter(|s| !s.is_empty())) {
        (Some(host), _) => Some(Authority::try_from(host).map_err(|_| RequestError::Uri(lossy(host)))?),
        (None, Some(name)) => {
            let default = if scheme == Scheme::HTTPS { "443" } else { "80" };
            let text = match params.get_str("SERVER_PORT").filter(|p| !p.is_empty() && *p != default) {
                Some(port) => format!("{name}:{port}"),
                None => name.to_owned(),
            };
            Some(Authority::try_from(text.as_str()).map_err(|_| RequestError::Uri(text))?)
        }
        (None, None) => None,
    };
    let mut builder = Uri::builder();
    if let Some(authority) = authority {
        builder = builder.scheme(scheme).authority(authority);
    }
    builder.path_and_query(path_and_query).build().map_err(|e| RequestError::Uri(e.to_string()))
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

fn headers(params: &Params<'_>) -> Result<HeaderMap, RequestError> {
    let mut map = HeaderMap::with_capacity(params.len());
    let has_type = non_empty(params, "CONTENT_TYPE").is_some();
    let has_length = non_empty(params, "CONTENT_LENGTH").is_some();
    for (var, value) in params.iter() {
        let name = match var {
            b"CONTENT_TYPE" if !value.is_empty() => CONTENT_TYPE,
            b"CONTENT_LENGTH" if !value.is_empty() => CONTENT_LENGTH,
            b"HTTP_CONTENT_TYPE" if has_type => continue,
            b"HTTP_CONTENT_LENGTH" if has_length => continue,
            b"HTTP_HOST" => HOST,
            _ => match var.strip_prefix(b"HTTP_") {
                Some(suffix) if !suffix.is_empty() => {
                    let name: Vec<u8> = suffix
                        .iter()
                        .map(|&b| if b == b'_' { b'-' } else { b.to_ascii_lowercase() })
                        .collect();
                    HeaderName::from_bytes(&name).map_err(|_| RequestError::Header(lossy(var)))?
                }
                _ => continue,
            },
        };
        let value = HeaderValue::from_bytes(value).map_err(|_| RequestError::Header(lossy(var)))?;
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
        if headers.contains_key("status") {
            return Err(StreamError::InvalidHeader);
        }
        let lines: Vec<(&str, &[u8])> = headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())).collect();
        self.send_head_bytes(status.as_u16(), &lines).await
    }

    async fn send_http<B: AsRef<[u8]>>(&mut self, response: ::http::Response<B>) -> Result<(), StreamError> {
        let (mut parts, body) = response.into_parts();
        let body = body.as_ref();
        if !parts.headers.contains_key(CONTENT_LENGTH) {
            parts.headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
        }
        self.send_http_head(parts.status, &parts.headers).await?.write_all(body).await
    }
}
