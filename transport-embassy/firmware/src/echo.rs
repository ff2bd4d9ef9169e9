//! The firmware's handler: answers with the request's method, query string and number of
//! params as headers, and the length and SHA-256 of the body (hashed as it streams in, so
//! a body of any size passes through a few hundred bytes of stack).

use ember_fcgi_core::prelude::*;
use ember_fcgi_embassy::Stats;
use sha2::{Digest, Sha256};

/// Answers `STDIN-LENGTH=n` and `STDIN-SHA256=hex` lines for the body; `X-Method`, `X-Query`, `X-Params` describe the head,
/// `X-Keep-Conn` says whether the web server keeps the connection, and `X-Accepted`
/// counts the connections accepted so far (so a test sees keep-alive at work).
#[derive(Debug)]
pub struct Echo {
    /// The counters of the port this handler serves.
    pub stats: &'static Stats,
}

impl Handler for Echo {
    async fn handle(&self, req: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), HandlerError> {
        // Each step in a block of its own, so that what one step holds across its awaits
        // (the headers, the hash state) does not stay in the future for the next ones.
        let mut out = {
            let params = req.params();
            let (mut digits, mut accepted) = ([0u8; 10], [0u8; 10]);
            let count = decimal(params.len(), &mut digits);
            let accepted = decimal(self.stats.snapshot().accepted as usize, &mut accepted);
            let headers = [
                ("X-Keep-Conn", if req.keep_conn() { "1" } else { "0" }),
                ("X-Accepted", accepted),
                ("Content-Type", "text/plain"),
                ("X-Method", params.request_method().unwrap_or("")),
                ("X-Query", params.query_string()),
                ("X-Params", count),
            ];
            res.send_head(200, &headers).await?
        };
        // The whole body is read before the answer: nginx does not read a response while
        // it still sends the request body, so echoing a large body back would stall.
        let (length, digest) = {
            let mut sha = Sha256::new();
            let mut length = 0usize;
            let mut buf = [0u8; 64];
            loop {
                match req.read(&mut buf).await? {
                    0 => break,
                    n => {
                        sha.update(&buf[..n]);
                        length += n;
                    }
                }
            }
            (length, hex(&sha.finalize().into()))
        };
        let mut digits = [0u8; 10];
        out.write_all(b"STDIN-LENGTH=").await?;
        out.write_all(decimal(length, &mut digits).as_bytes()).await?;
        out.write_all(b"\nSTDIN-SHA256=").await?;
        out.write_all(&digest).await?;
        out.write_all(b"\n").await?;
        Ok(())
    }
}

/// Lower-case hex of a SHA-256 digest.
pub fn hex(digest: &[u8; 32]) -> [u8; 64] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 64];
    for (i, byte) in digest.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(byte >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(byte & 15)];
    }
    out
}

/// `n` in decimal, written at the end of `buf`.
fn decimal(mut n: usize, buf: &mut [u8; 10]) -> &str {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 || at == 0 {
            break;
        }
    }
    core::str::from_utf8(&buf[at..]).unwrap_or("?")
}
