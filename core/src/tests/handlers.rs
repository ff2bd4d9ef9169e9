//! Handlers used by the engine tests.

use std::vec::Vec;

use embedded_io_async::Read;

use crate::{Handler, HandlerError, Request, Response, StreamError};

/// Answers `Status: 200 OK`, `Content-Type: text/plain`, `Hello, World!\n`.
pub struct Hello;

impl Handler for Hello {
    async fn handle(&self, _req: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), HandlerError> {
        let mut out = res.send_head(200, &[("Content-Type", "text/plain")]).await?;
        out.write_all(b"Hello, World!\n").await?;
        Ok(())
    }
}

pub const HELLO_STDOUT: &[u8] = b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nHello, World!\n";

/// Echoes params as `NAME=VALUE` lines, then the body length and the body itself, and
/// for Filter the data length and data.
pub struct Echo;

impl Handler for Echo {
    async fn handle(&self, req: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), HandlerError> {
        let mut out = res.send_head(200, &[("Content-Type", "text/plain")]).await?;
        let params: Vec<(Vec<u8>, Vec<u8>)> =
            req.params().iter().map(|(n, v)| (n.to_vec(), v.to_vec())).collect();
        for (n, v) in params {
            out.write_all(&n).await?;
            out.write_all(b"=").await?;
            out.write_all(&v).await?;
            out.write_all(b"\n").await?;
        }
        let mut body = Vec::new();
        let mut buf = [0u8; 100];
        loop {
            let n = req.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&buf[..n]);
        }
        out.write_all(std::format!("STDIN-LENGTH={}\n", body.len()).as_bytes()).await?;
        out.write_all(&body).await?;
        if req.role() == crate::Role::Filter {
            let mut data = Vec::new();
            let mut reader = req.data();
            loop {
                let n = reader.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                data.extend_from_slice(&buf[..n]);
            }
            out.write_all(std::format!("DATA-LENGTH={}\n", data.len()).as_bytes()).await?;
            out.write_all(&data).await?;
        }
        Ok(())
    }
}

/// Writes `n` bytes of a repeating pattern, in writes of `chunk` bytes.
pub struct Big {
    pub n: usize,
    pub chunk: usize,
}

pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

impl Handler for Big {
    async fn handle(&self, _req: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), HandlerError> {
        let data = pattern(self.n);
        for piece in data.chunks(self.chunk) {
            res.raw_output().write_all(piece).await?;
        }
        Ok(())
    }
}

/// Writes to stderr then stdout, and sets app status 7.
pub struct WithStderr;

impl Handler for WithStderr {
    async fn handle(&self, _req: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), HandlerError> {
        res.stderr().write_all(b"warn").await?;
        res.raw_output().write_all(b"Status: 200 OK\r\n\r\n").await?;
        res.set_app_status(7);
        Ok(())
    }
}

/// Reads the body until it errors or ends; reports what it saw.
pub struct BodyCheck;

impl Handler for BodyCheck {
    async fn handle(&self, req: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), HandlerError> {
        let mut buf = [0u8; 8];
        let outcome = req.read_into_slice(&mut buf).await;
        let line = std::format!("{outcome:?}");
        res.raw_output().write_all(line.as_bytes()).await?;
        Ok(())
    }
}

/// Reads the body into an empty slice; reports what it saw.
pub struct EmptyBufferCheck;

impl Handler for EmptyBufferCheck {
    async fn handle(&self, req: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), HandlerError> {
        let outcome = req.read_into_slice(&mut [0u8; 0][..]).await;
        let line = std::format!("{outcome:?}");
        res.raw_output().write_all(line.as_bytes()).await?;
        Ok(())
    }
}

/// Sends a head, then tries a second head, a whole response and a redirect; writes what
/// each of them returned into the body.
pub struct TwoHeads;

impl Handler for TwoHeads {
    async fn handle(&self, _req: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), HandlerError> {
        res.send_head(200, &[("Content-Type", "text/plain")]).await?;
        let again = res.send_head(201, &[]).await.err();
        let whole = res.send_response(202, "text/plain", b"x").await;
        let redirect = res.send_redirect("/elsewhere").await;
        let line = std::format!("{again:?} {whole:?} {redirect:?}");
        res.raw_output().write_all(line.as_bytes()).await?;
        Ok(())
    }
}

/// Fails with an error before writing anything.
pub struct Fails;

impl Handler for Fails {
    async fn handle(&self, _req: &mut Request<'_>, _res: &mut Response<'_>) -> Result<(), HandlerError> {
        Err(StreamError::InvalidHeader.into())
    }
}

/// Writes a head as QUERY_STRING says, then the status the response remembers (its
/// `Debug`) to FCGI_STDERR.
pub struct StatusSeen;

impl Handler for StatusSeen {
    async fn handle(&self, req: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), HandlerError> {
        match req.params().query_string() {
            "head" => {
                res.send_head(201, &[]).await?;
            }
            "whole" => res.send_response(202, "text/plain", b"x").await?,
            "bad" => assert!(res.send_head(99, &[]).await.is_err()),
            "redirect" => res.send_redirect("http://example.com/").await?,
            "local" => res.send_redirect("/elsewhere").await?,
            "raw" => res.raw_output().write_all(b"Status: 203 X\r\n\r\n").await?,
            "noted" => {
                res.raw_output().write_all(b"Status: 204 No Content\r\n\r\n").await?;
                res.note_status(204);
            }
            _ => {}
        }
        let line = std::format!("{:?}", res.status());
        res.stderr().write_all(line.as_bytes()).await?;
        Ok(())
    }
}
