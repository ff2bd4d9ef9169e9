//! Redirects, by RFC 3875 §6.2:
//!
//! - `GET /local` answers a local redirect, `Location: /target` alone: the web server
//!   resolves it (nginx answers the client `302` with that location).
//! - `GET /?to=https://example.com/` answers a client redirect: an absolute `Location`
//!   alone, which the web server turns into `302 Found`.
//! - `GET /?status=301&to=https://example.com/` answers that status with the location and
//!   a short text body (`send_redirect_with_status`; any 3xx).
//! - `GET /target` answers `200` saying where it was reached; anything else is `404`.
//!
//! A `to` that is neither an absolute URI nor a local path, or a bad status, is `400`.
//!
//! ```text
//! cargo run --release --example redirect -- --listen 127.0.0.1:9000 [--transport smol]
//! ```

mod common;

use std::process::ExitCode;

use ember_fcgi::prelude::*;
use ember_fcgi::server::Limits;
use ember_fcgi::{Params, form};

struct Redirect;

/// The request path: `SCRIPT_NAME` + `PATH_INFO` as nginx and CGI set them, else the path
/// of `REQUEST_URI`.
fn request_path(params: &Params<'_>) -> String {
    match params.script_name().filter(|s| !s.is_empty()) {
        Some(script) => format!("{script}{}", params.path_info().unwrap_or("")),
        None => {
            let uri = params.request_uri().unwrap_or("/");
            uri.split('?').next().unwrap_or("/").to_owned()
        }
    }
}

impl Handler for Redirect {
    async fn handle(&self, req: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), HandlerError> {
        let params = req.params();
        let to = form::query_value(&params, "to");
        let status = form::query_value(&params, "status");
        let path = request_path(&params);
        let result = match (to, status) {
            (Some(to), Some(status)) => {
                let status = status.parse().unwrap_or(0);
                res.send_redirect_with_status(status, &to).await
            }
            (Some(to), None) => res.send_redirect(&to).await,
            (None, _) if path == "/local" => res.send_redirect("/target").await,
            (None, _) if path == "/target" => {
                let from = params.request_uri().unwrap_or("?");
                let body = format!("reached /target (request URI {from})\n");
                return Ok(res.send_response(200, content_type::TEXT, body.as_bytes()).await?);
            }
            (None, _) => return Ok(res.send_response(404, content_type::TEXT, b"not found\n").await?),
        };
        match result {
            // Nothing was written: the helpers validate before writing.
            Err(StreamError::InvalidHeader) => {
                res.send_response(400, content_type::TEXT, b"bad redirect target or status\n").await?
            }
            other => other?,
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    let args = common::parse_args("redirect", &[]);
    common::serve(&args, Redirect, Limits::default())
}
