//! The request every connection sends, encoded once up front.
//!
//! Large bodies are not materialised: one full 32 KiB STDIN record is repeated.

use std::io::IoSlice;

use ember_fcgi_testkit::{self as proto, BEGIN_REQUEST, KEEP_CONN, PARAMS, RESPONDER, STDIN};

/// STDIN content per record, as nginx sends it.
pub const STDIN_CHUNK: usize = 32768;
/// Request id used for every request (one request in flight per connection).
pub const REQUEST_ID: u16 = 1;

/// Pre-encoded request: `head`, then `chunk` repeated `chunks` times, then `tail`.
pub struct Request {
    head: Vec<u8>,
    chunk: Vec<u8>,
    chunks: u64,
    tail: Vec<u8>,
}

/// The first `n` params of an nginx-like request, padded with `HTTP_X_PARAM_k`.
pub fn params(n: usize, body: u64) -> Vec<(String, String)> {
    let post = body > 0;
    let fixed: [(&str, String); 25] = [
        ("SCRIPT_FILENAME", "/var/www/html/index.php".into()),
        ("QUERY_STRING", "id=42&page=1".into()),
        ("REQUEST_METHOD", if post { "POST" } else { "GET" }.into()),
        ("CONTENT_TYPE", if post { "application/octet-stream" } else { "" }.into()),
        ("CONTENT_LENGTH", if post { body.to_string() } else { String::new() }),
        ("SCRIPT_NAME", "/index.php".into()),
        ("REQUEST_URI", "/index.php?id=42&page=1".into()),
        ("DOCUMENT_URI", "/index.php".into()),
        ("DOCUMENT_ROOT", "/var/www/html".into()),
        ("SERVER_PROTOCOL", "HTTP/1.1".into()),
        ("REQUEST_SCHEME", "http".into()),
        ("GATEWAY_INTERFACE", "CGI/1.1".into()),
        ("SERVER_SOFTWARE", "nginx/1.26.2".into()),
        ("REMOTE_ADDR", "127.0.0.1".into()),
        ("REMOTE_PORT", "51234".into()),
        ("SERVER_ADDR", "127.0.0.1".into()),
        ("SERVER_PORT", "80".into()),
        ("SERVER_NAME", "localhost".into()),
        ("REDIRECT_STATUS", "200".into()),
        ("HTTP_HOST", "localhost".into()),
        ("HTTP_USER_AGENT", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0".into()),
        ("HTTP_ACCEPT", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8".into()),
        ("HTTP_ACCEPT_LANGUAGE", "en-US,en;q=0.5".into()),
        ("HTTP_ACCEPT_ENCODING", "gzip, deflate, br".into()),
        ("HTTP_CONNECTION", "keep-alive".into()),
    ];
    let mut out: Vec<(String, String)> = fixed.into_iter().take(n).map(|(k, v)| (k.to_string(), v)).collect();
    for k in out.len()..n {
        out.push((format!("HTTP_X_PARAM_{k}"), format!("value-{k}")));
    }
    out
}

impl Request {
    /// Encode BEGIN_REQUEST, one PARAMS record (split only past 64 KiB), empty PARAMS,
    /// the body in 32 KiB STDIN records and the empty STDIN record.
    pub fn build(keep_conn: bool, n_params: usize, body: u64) -> Request {
        let flags = if keep_conn { KEEP_CONN } else { 0 };
        let mut head = Vec::new();
        proto::push_record(&mut head, BEGIN_REQUEST, REQUEST_ID, &proto::begin_body(RESPONDER, flags));
        let mut nv = Vec::new();
        for (k, v) in params(n_params, body) {
            proto::nv::push_nv(&mut nv, k.as_bytes(), v.as_bytes());
        }
        for part in nv.chunks(proto::MAX_CONTENT & !7) {
            proto::push_record(&mut head, PARAMS, REQUEST_ID, part);
        }
        proto::push_record(&mut head, PARAMS, REQUEST_ID, &[]);

        let mut chunk = Vec::new();
        proto::push_record(&mut chunk, STDIN, REQUEST_ID, &[b'x'; STDIN_CHUNK]);
        let chunks = body / STDIN_CHUNK as u64;
        let mut tail = Vec::new();
        let rest = (body % STDIN_CHUNK as u64) as usize;
        if rest > 0 {
            proto::push_record(&mut tail, STDIN, REQUEST_ID, &[b'x'; STDIN_CHUNK][..rest]);
        }
        proto::push_record(&mut tail, STDIN, REQUEST_ID, &[]);
        Request { head, chunk, chunks, tail }
    }

    /// Total encoded length.
    pub fn encoded_len(&self) -> u64 {
        (self.head.len() + self.tail.len()) as u64 + self.chunk.len() as u64 * self.chunks
    }

    /// Fill `iov` with the bytes from offset `pos` on; returns how many slices were set.
    pub fn fill<'a>(&'a self, mut pos: u64, iov: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        let head = self.head.len() as u64;
        if pos < head {
            iov[n] = IoSlice::new(&self.head[pos as usize..]);
            n += 1;
            pos = 0;
        } else {
            pos -= head;
        }
        let clen = self.chunk.len() as u64;
        let body = clen * self.chunks;
        if pos < body {
            let (mut k, mut off) = (pos / clen, (pos % clen) as usize);
            while k < self.chunks && n < iov.len() {
                iov[n] = IoSlice::new(&self.chunk[off..]);
                (k, off, n) = (k + 1, 0, n + 1);
            }
            if k < self.chunks {
                return n;
            }
            pos = 0;
        } else {
            pos -= body;
        }
        if n < iov.len() && pos < self.tail.len() as u64 {
            iov[n] = IoSlice::new(&self.tail[pos as usize..]);
            n += 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ember_fcgi_testkit::decode::{Decoder, Event};

    /// Concatenate what `fill` yields from `pos`, walking like a writer would.
    fn flatten(r: &Request, step: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < r.encoded_len() {
            let mut iov = [IoSlice::new(&[]); 3];
            let n = r.fill(pos, &mut iov);
            assert!(n > 0);
            let bytes: Vec<u8> = iov[..n].iter().flat_map(|s| s.iter().copied()).collect();
            let take = bytes.len().min(step as usize);
            out.extend_from_slice(&bytes[..take]);
            pos += take as u64;
        }
        out
    }

    fn records(bytes: &[u8]) -> Vec<(u8, usize, Vec<u8>)> {
        let mut d = Decoder::new();
        let mut out = Vec::new();
        let mut input = bytes;
        while let Some(ev) = d.next(&mut input) {
            match ev {
                Event::Header(h) => out.push((h.kind, h.content_len as usize, Vec::new())),
                Event::Content(c) => out.last_mut().unwrap().2.extend_from_slice(c),
                Event::End => {}
            }
        }
        assert!(d.at_boundary());
        out
    }

    #[test]
    fn get_request_layout() {
        let r = Request::build(true, 25, 0);
        let bytes = flatten(&r, u64::MAX);
        assert_eq!(bytes.len() as u64, r.encoded_len());
        assert_eq!(&bytes[..16], [1, 1, 0, 1, 0, 8, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0]);
        let recs = records(&bytes);
        let kinds: Vec<u8> = recs.iter().map(|r| r.0).collect();
        assert_eq!(kinds, [BEGIN_REQUEST, PARAMS, PARAMS, STDIN]);
        assert!(recs[1].2.starts_with(b"\x0f\x17SCRIPT_FILENAME/var/www/html/index.php"));
        let p = String::from_utf8_lossy(&recs[1].2).into_owned();
        assert!(p.contains("REQUEST_METHODGET") && p.contains("HTTP_CONNECTION"));
        assert_eq!(Request::build(false, 0, 0).head[10], 0, "keep-conn flag clear");
    }

    #[test]
    fn body_records_and_partial_writes() {
        let body = 3 * STDIN_CHUNK as u64 + 5;
        let r = Request::build(true, 40, body);
        let whole = flatten(&r, u64::MAX);
        assert_eq!(flatten(&r, 7777), whole);
        let recs = records(&whole);
        let stdin: Vec<usize> = recs.iter().filter(|r| r.0 == STDIN).map(|r| r.1).collect();
        assert_eq!(stdin, [STDIN_CHUNK, STDIN_CHUNK, STDIN_CHUNK, 5, 0]);
        let p = String::from_utf8_lossy(&recs[1].2).into_owned();
        assert!(p.contains("REQUEST_METHODPOST") && p.contains(&format!("CONTENT_LENGTH{body}")));
        assert!(p.contains("HTTP_X_PARAM_39value-39"));
    }
}
