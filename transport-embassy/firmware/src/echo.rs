//! The firmware's handler: answers with the request's method, query string and number of
//! params as headers, and echoes the body back, streaming (so a body of any size passes
//! through a few hundred bytes of stack).

use ember_fcgi_core::prelude::*;
use ember_fcgi_embassy::Stats;

/// Echoes the request body; `X-Method`, `X-Query`, `X-Params` describe the head,
/// `X-Keep-Conn` says whether the web server keeps the connection, and `X-Accepted`
/// counts the connections accepted so far (so a test sees keep-alive at work).
#[derive(Debug)]
pub struct Echo {
    /// The counters of the port this handler serves.
    pub stats: &'static Stats,
}

impl Handler for Echo {
    async fn handle(&self, req: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), StreamError> {
        let params = req.params();
        let (mut digits, mut accepted) = ([0u8; 10], [0u8; 10]);
        let count = decimal(params.len(), &mut digits);
        let accepted = decimal(self.stats.snapshot().accepted as usize, &mut accepted);
        let headers = [
            ("X-Keep-Conn", if req.keep_conn() { "1" } else { "0" }),
            ("X-Accepted", accepted),
            ("Content-Type", "application/octet-stream"),
            ("X-Method", params.request_method().unwrap_or("")),
            ("X-Query", params.query_string()),
            ("X-Params", count),
        ];
        res.send_head(200, &headers).await?;
        let mut buf = [0u8; 256];
        loop {
            match req.read(&mut buf).await? {
                0 => return Ok(()),
                n => res.write_all(&buf[..n]).await?,
            }
        }
    }
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
