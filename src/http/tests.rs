//! The CGI ↔ HTTP mapping, run through the real engine (`serve_blocking` over byte slices).

use std::cell::RefCell;

use ::http::{HeaderMap, Method, StatusCode, Version};

use ::http::request::Parts;

use super::bridge::*;
use crate::test_engine::{run, script};
use crate::{Config, HandlerError, Role, Roles, handler_fn};
use crate::{Request, Response, StreamError};

/// Runs `handler` on one request; returns the FCGI_STDOUT content.
fn serve<H: crate::Handler>(handler: &H, role: Role, params: &[(&str, &str)]) -> Vec<u8> {
    let role = if role == Role::Authorizer { 2 } else { 1 };
    let output = run(handler, &script(role, params, &[]), &Config::default().with_roles(Roles::ALL));
    let mut rest = output.as_slice();
    let mut stdout = Vec::new();
    while rest.len() >= 8 {
        let len = usize::from(u16::from_be_bytes([rest[4], rest[5]]));
        let padding = usize::from(rest[6]);
        if rest[1] == 6 {
            stdout.extend_from_slice(&rest[8..8 + len]);
        }
        rest = &rest[8 + len + padding..];
    }
    stdout
}

fn parts_of(role: Role, params: &[(&str, &str)]) -> Result<Parts, RequestError> {
    let seen = RefCell::new(None);
    let handler = handler_fn(async |req: &mut Request<'_>, _res: &mut Response<'_>| {
        *seen.borrow_mut() = Some(req.http_parts());
        Ok(())
    });
    serve(&handler, role, params);
    seen.into_inner().expect("the handler ran")
}

fn parts(params: &[(&str, &str)]) -> Parts {
    parts_of(Role::Responder, params).expect("valid request")
}

/// What nginx's `fastcgi_params` sends for `GET /app/notes/7?x=1` with three headers.
const NGINX: &[(&str, &str)] = &[
    ("QUERY_STRING", "x=1"),
    ("REQUEST_METHOD", "POST"),
    ("CONTENT_TYPE", "application/json"),
    ("CONTENT_LENGTH", "12"),
    ("SCRIPT_NAME", "/app/notes/7"),
    ("REQUEST_URI", "/app/notes/7?x=1"),
    ("REQUEST_SCHEME", "http"),
    ("SERVER_PROTOCOL", "HTTP/1.1"),
    ("SERVER_PORT", "8080"),
    ("SERVER_NAME", "localhost"),
    ("HTTP_HOST", "localhost:8080"),
    ("HTTP_USER_AGENT", "curl/8"),
    ("HTTP_X_REQUEST_ID", "abc"),
    ("HTTP_ACCEPT", "*/*"),
];

#[test]
fn nginx_request_maps_to_http_parts() {
    let p = parts(NGINX);
    assert_eq!(p.method, Method::POST);
    assert_eq!(p.uri.to_string(), "http://localhost:8080/app/notes/7?x=1");
    assert_eq!(p.version, Version::HTTP_11);
    let names: Vec<&str> = p.headers.keys().map(|n| n.as_str()).collect();
    assert_eq!(names, ["content-type", "content-length", "host", "user-agent", "x-request-id", "accept"]);
    assert_eq!(p.headers["content-type"], "application/json");
    assert_eq!(p.headers["content-length"], "12");
    assert_eq!(p.headers["x-request-id"], "abc");
}

#[test]
fn header_names_round_trip_through_cgi_names() {
    // HTTP name -> the CGI variable a server makes of it -> back.
    for http_name in ["user-agent", "x-forwarded-for", "accept", "x-a-b-c", "dnt", "x-1"] {
        let var = format!("HTTP_{}", http_name.to_uppercase().replace('-', "_"));
        let p = parts(&[(&var, "v")]);
        assert_eq!(p.headers.keys().map(|n| n.as_str()).collect::<Vec<_>>(), [http_name], "{var}");
    }
}

#[test]
fn uri_from_script_name_path_info_and_query_string() {
    let p = parts(&[
        ("SCRIPT_NAME", "/cgi/app"),
        ("PATH_INFO", "/a b/ü"),
        ("QUERY_STRING", "q=1&r=%20"),
        ("SERVER_NAME", "example.com"),
        ("SERVER_PORT", "80"),
    ]);
    assert_eq!(p.uri.to_string(), "http://example.com/cgi/app/a%20b/%C3%BC?q=1&r=%20");
    assert_eq!(p.uri.path(), "/cgi/app/a%20b/%C3%BC");
    assert_eq!(p.uri.query(), Some("q=1&r=%20"));
    let https =
        parts(&[("SCRIPT_NAME", "/x"), ("HTTPS", "on"), ("SERVER_NAME", "h"), ("SERVER_PORT", "8443")]);
    assert_eq!(https.uri.to_string(), "https://h:8443/x");
    let bare = parts(&[("PATH_INFO", "/only")]);
    assert_eq!(bare.uri.to_string(), "/only");
    assert_eq!(parts(&[]).uri.to_string(), "/");
}

#[test]
fn authorizer_request_without_content_length() {
    let p = parts_of(
        Role::Authorizer,
        &[("REQUEST_METHOD", "GET"), ("REQUEST_URI", "/private"), ("HTTP_AUTHORIZATION", "Basic eDp5")],
    )
    .expect("valid");
    assert_eq!(p.method, Method::GET);
    assert!(!p.headers.contains_key("content-length"));
    assert_eq!(p.headers["authorization"], "Basic eDp5");
    assert_eq!(p.uri.to_string(), "/private");
    // No method at all (some servers' Authorizer requests): GET.
    assert_eq!(parts_of(Role::Authorizer, &[]).expect("valid").method, Method::GET);
}

#[test]
fn duplicates_versions_and_empty_cgi_headers() {
    let p = parts(&[
        ("HTTP_ACCEPT", "a"),
        ("HTTP_ACCEPT", "b"),
        ("CONTENT_TYPE", ""),
        ("CONTENT_LENGTH", ""),
        ("HTTP_CONTENT_LENGTH", "5"),
        ("SERVER_PROTOCOL", "HTTP/2.0"),
    ]);
    let accept: Vec<_> = p.headers.get_all("accept").iter().map(|v| v.to_str().unwrap_or("?")).collect();
    assert_eq!(accept, ["a", "b"]);
    assert!(!p.headers.contains_key("content-type"));
    assert_eq!(p.headers["content-length"], "5", "HTTP_CONTENT_LENGTH is used when CONTENT_LENGTH is empty");
    assert_eq!(p.version, Version::HTTP_2);
    assert_eq!(parts(&[("SERVER_PROTOCOL", "HTTP/1.0")]).version, Version::HTTP_10);
    assert_eq!(parts(&[("SERVER_PROTOCOL", "INCLUDED")]).version, Version::HTTP_11);
}

#[test]
fn invalid_variables_are_errors() {
    let error = |params: &[(&str, &str)]| parts_of(Role::Responder, params).err();
    assert_eq!(error(&[("REQUEST_METHOD", "G T")]), Some(RequestError::Method("G T".into())));
    assert_eq!(error(&[("HTTP_X\u{1}", "v")]), Some(RequestError::Header("HTTP_X\u{1}".into())));
    assert!(matches!(error(&[("HTTP_HOST", "a b")]), Some(RequestError::Uri(_))));
}

#[test]
fn http_response_is_written_as_a_cgi_response() {
    let handler = handler_fn(async |_req: &mut Request<'_>, res: &mut Response<'_>| {
        let response = ::http::Response::builder()
            .status(StatusCode::SEE_OTHER)
            .header("Location", "https://example.com/next")
            .header("Set-Cookie", "a=1")
            .header("Set-Cookie", "b=2")
            .header(
                "X-Bytes",
                ::http::HeaderValue::from_bytes(b"caf\xe9").map_err(|e| HandlerError::msg(&e))?,
            )
            .body("moved\n")
            .map_err(|e| HandlerError::msg(&e))?;
        res.send_http(response).await?;
        Ok::<(), HandlerError>(())
    });
    assert_eq!(
        serve(&handler, Role::Responder, &[]),
        b"Status: 303 See Other\r\nlocation: https://example.com/next\r\nset-cookie: a=1\r\nset-cookie: b=2\r\nx-bytes: caf\xe9\r\ncontent-length: 6\r\n\r\nmoved\n"
    );
}

#[test]
fn status_header_in_the_map_is_refused() {
    let refused = RefCell::new(None);
    let handler = handler_fn(async |_req: &mut Request<'_>, res: &mut Response<'_>| {
        let mut headers = HeaderMap::new();
        headers.insert("status", ::http::HeaderValue::from_static("200"));
        *refused.borrow_mut() = Some(res.send_http_head(StatusCode::OK, &headers).await.err());
        res.send_http_head(StatusCode::NO_CONTENT, &HeaderMap::new()).await?;
        Ok(())
    });
    assert_eq!(serve(&handler, Role::Responder, &[]), b"Status: 204 No Content\r\n\r\n");
    assert_eq!(refused.into_inner(), Some(Some(StreamError::InvalidHeader)));
}

#[test]
fn headers_anywhere_among_the_variables_and_look_alike_names() {
    let p = parts(&[
        ("HTTP_X_FIRST", "1"),
        ("REQUEST_METHOX", "DELETE"),
        ("REQUEST_METHOD", "PUT"),
        ("CONTENT_TYPE", ""),
        ("HTTPX", "on"),
        ("SERVER_NAME", "h"),
        ("HTTP_X_LAST", "2"),
        ("SCRIPT_NAME", "/s"),
        ("CONTENT_TYPE", "text/plain"),
        ("DOCUMENT_ROOT", "/srv"),
    ]);
    assert_eq!(p.method, Method::PUT, "only REQUEST_METHOD is the method");
    assert_eq!(p.uri.to_string(), "http://h/s", "HTTPX is not HTTPS");
    let headers: Vec<(&str, &str)> =
        p.headers.iter().map(|(n, v)| (n.as_str(), v.to_str().unwrap_or("?"))).collect();
    assert_eq!(headers, [("x-first", "1"), ("x-last", "2"), ("content-type", "text/plain")]);
}

#[test]
fn a_head_too_long_for_the_stack_is_written_the_same_way() {
    let long = "v".repeat(300);
    let handler = handler_fn(async |_req: &mut Request<'_>, res: &mut Response<'_>| {
        let response = ::http::Response::builder()
            .status(StatusCode::NOT_FOUND)
            .header("X-Long", long.as_str())
            .body("tea\n")
            .map_err(|e| HandlerError::msg(&e))?;
        res.send_http(response).await?;
        assert_eq!(res.status(), Some(404));
        Ok::<(), HandlerError>(())
    });
    let expected = format!("Status: 404 Not Found\r\nx-long: {long}\r\ncontent-length: 4\r\n\r\ntea\n");
    assert_eq!(String::from_utf8_lossy(&serve(&handler, Role::Responder, &[])), expected);
}

#[test]
fn a_second_head_is_refused() {
    let second = RefCell::new(None);
    let handler = handler_fn(async |_req: &mut Request<'_>, res: &mut Response<'_>| {
        res.send_http(::http::Response::new("one\n")).await?;
        *second.borrow_mut() = Some(res.send_http_head(StatusCode::OK, &HeaderMap::new()).await.err());
        Ok::<(), HandlerError>(())
    });
    assert_eq!(serve(&handler, Role::Responder, &[]), b"Status: 200 OK\r\ncontent-length: 4\r\n\r\none\n");
    assert_eq!(second.into_inner(), Some(Some(StreamError::HeadAlreadySent)));
}
