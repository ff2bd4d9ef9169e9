//! Echo: answers every request with its params and a digest of its body, in all three
//! FastCGI roles.
//!
//! ```text
//! Status: 200 OK
//! Content-Type: text/plain
//!
//! QUERY_STRING=a=1
//! REQUEST_METHOD=POST
//! ...                       one NAME=VALUE line per param, in the order received
//! STDIN-LENGTH=5
//! STDIN-SHA256=<hex>
//! DATA-LENGTH=<n>           Filter role only: the FCGI_DATA stream
//! DATA-SHA256=<hex>
//! ```
//!
//! The body is hashed as it streams in (a 1 GiB body costs 16 KiB), and the params are
//! written after it has been read. For the Authorizer role the head also carries
//! `Variable-AUTH-ECHO: 1`, which a web server passes on to the protected request.
//!
//! ```text
//! cargo run --release --example echo -- --listen 127.0.0.1:9000 [--transport smol]
//! ```

mod common;

use std::process::ExitCode;

use ember_fcgi::prelude::*;
use ember_fcgi::server::Limits;
use ember_fcgi::{Role, Roles};
use sha2::{Digest, Sha256};

struct Echo;

/// Reads `reader` to its end; returns its length and SHA-256.
async fn digest<R: Read<Error = StreamError>>(
    reader: &mut R,
    buf: &mut [u8],
) -> Result<(u64, String), StreamError> {
    let mut hasher = Sha256::new();
    let mut length = 0u64;
    loop {
        match reader.read(buf).await? {
            0 => return Ok((length, common::hex(&hasher.finalize()))),
            n => {
                hasher.update(&buf[..n]);
                length += n as u64;
            }
        }
    }
}

impl Handler for Echo {
    async fn handle(&self, req: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), HandlerError> {
        let mut buf = vec![0u8; 16 * 1024];
        let (stdin_length, stdin_sha) = digest(req, &mut buf).await?;
        // The web server sends FCGI_DATA after FCGI_STDIN has ended.
        let data = match req.role() {
            Role::Filter => Some(digest(&mut req.data(), &mut buf).await?),
            _ => None,
        };
        let mut headers = vec![("Content-Type", "text/plain")];
        if req.role() == Role::Authorizer {
            headers.push(("Variable-AUTH-ECHO", "1"));
        }
        let mut out = res.send_head(200, &headers).await?;
        for (name, value) in req.params() {
            out.write_all(name).await?;
            out.write_all(b"=").await?;
            out.write_all(value).await?;
            out.write_all(b"\n").await?;
        }
        let mut tail = format!("STDIN-LENGTH={stdin_length}\nSTDIN-SHA256={stdin_sha}\n");
        if let Some((data_length, data_sha)) = data {
            tail += &format!("DATA-LENGTH={data_length}\nDATA-SHA256={data_sha}\n");
        }
        out.write_all(tail.as_bytes()).await?;
        Ok(())
    }
}

fn main() -> ExitCode {
    let args = common::parse_args("echo", &[]);
    let mut limits = Limits::default();
    limits.protocol.roles = Roles::ALL;
    common::serve(&args, Echo, limits)
}
