//! Hello, World: every request gets `200 OK`, `text/plain`, `Hello, World!`.
//!
//! ```text
//! cargo run --release --example hello -- --listen 127.0.0.1:9000 [--transport smol]
//! ```

mod common;

use std::process::ExitCode;

use ember_fcgi::prelude::*;
use ember_fcgi::server::Limits;

struct Hello;

impl Handler for Hello {
    async fn handle(&self, _req: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), HandlerError> {
        res.send_response(200, "text/plain", b"Hello, World!\n").await?;
        Ok(())
    }
}

fn main() -> ExitCode {
    let args = common::parse_args("hello", &[]);
    common::serve(&args, Hello, Limits::default())
}
