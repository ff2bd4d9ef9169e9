//! A FastCGI "hello" app on the mio server, stopped gracefully by SIGTERM or SIGINT.
//!
//! `cargo run -p ember-fcgi-mio --example mio_hello -- 127.0.0.1:9000` (or `unix:/path`);
//! with no argument it serves the socket a FastCGI launcher passed as fd 0.

use ember_fcgi_core::prelude::*;
use ember_fcgi_mio::{Limits, Listen, Server};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

struct Hello;

impl Handler for Hello {
    async fn handle(&self, req: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), HandlerError> {
        let name = req.params().query_string();
        let mut out = res.send_head(200, &[("Content-Type", content_type::TEXT)]).await?;
        out.write_all(b"Hello, ").await?;
        out.write_all(if name.is_empty() { b"World" } else { name.as_bytes() }).await?;
        out.write_all(b"!\n").await?;
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listen: Listen = match std::env::args().nth(1) {
        Some(arg) => arg.parse()?,
        None => Listen::Inherited,
    };
    let server = Server::bind(&listen, Hello, Limits::default())?;
    eprintln!("listening on {listen}; memory ceiling: {}", server.memory_budget());
    let stop = server.shutdown_handle();
    let mut signals = Signals::new([SIGTERM, SIGINT])?;
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            stop.shutdown();
        }
    });
    server.run()?;
    eprintln!("stopped");
    Ok(())
}
