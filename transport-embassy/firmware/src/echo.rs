//! The firmware's handler: answers with the request's method, query string and number of
//! params as headers, and echoes the body back, streaming (so a body of any size passes
//! through a few hundred bytes of stack).

use ember_fcgi_core::prelude::*;

/// Echoes the request body; `X-Method`, `X-Query`, `X-Params` describe the head.
#[derive(Debug)]
pub struct Echo;

impl Handler for Echo {
    async fn handle(&self, req: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), StreamError> {
        let params = req.params();
        let mut digits = [0u8; 10];
        let count = decimal(params.len(), &mut digits);
        let headers = [
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
