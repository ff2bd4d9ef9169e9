//! Raw FastCGI records, for the tests that play the web server themselves (timeouts,
//! closes, stalls).

/// One FastCGI record with no padding.
pub fn record(kind: u8, content: &[u8]) -> Vec<u8> {
    let len = u16::try_from(content.len()).expect("short content").to_be_bytes();
    let mut bytes = vec![1, kind, 0, 1, len[0], len[1], 0, 0];
    bytes.extend_from_slice(content);
    bytes
}

/// BEGIN_REQUEST (responder), one param, end of params, empty stdin.
pub fn request(keep_conn: bool) -> Vec<u8> {
    let mut bytes = record(1, &[0, 1, u8::from(keep_conn), 0, 0, 0, 0, 0]);
    bytes.extend(record(4, b"\x0e\x03REQUEST_METHODGET"));
    bytes.extend(record(4, b""));
    bytes.extend(record(5, b""));
    bytes
}

/// END_REQUEST for request 1, status 0, request complete.
pub const END_REQUEST: [u8; 16] = [1, 3, 0, 1, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

/// One name-value pair (both shorter than 128 bytes).
pub fn pair(name: &str, value: &str) -> Vec<u8> {
    let mut bytes = vec![u8::try_from(name.len()).expect("short"), u8::try_from(value.len()).expect("short")];
    bytes.extend_from_slice(name.as_bytes());
    bytes.extend_from_slice(value.as_bytes());
    bytes
}

/// BEGIN_REQUEST (responder, keep-conn), a POST head declaring 100 body bytes, and 50 of them.
pub fn half_a_body() -> Vec<u8> {
    let mut bytes = record(1, &[0, 1, 1, 0, 0, 0, 0, 0]);
    let mut params = pair("REQUEST_METHOD", "POST");
    params.extend(pair("CONTENT_LENGTH", "100"));
    bytes.extend(record(4, &params));
    bytes.extend(record(4, b""));
    bytes.extend(record(5, &[b'x'; 50]));
    bytes
}
