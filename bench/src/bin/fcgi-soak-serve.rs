//! `fcgi-soak-serve --transport mio|smol|tokio --listen HOST:PORT [--leak BYTES]`: the
//! server `scripts/soak.sh` soaks on the tokio transport (the examples run on mio and smol
//! only), and on any transport for its leak proof. The handler answers like the echo
//! example's: every param as a `NAME=VALUE` line in arrival order, then `STDIN-LENGTH=N`
//! (the body is read to its end). It sits behind `StatusPages` with the status page at
//! `/status` (`fcgi-get` reads it), as the examples' `--status-path /status` does.
//!
//! `--leak BYTES` makes the handler leak that many bytes per request (filled, so the pages
//! are resident): a deliberate leak, here only, to show that the soak check catches one.
//! Prints `listening on ADDR` to stderr; a graceful shutdown on SIGTERM or SIGINT.

use ember_fcgi_core::prelude::*;
use ember_fcgi_host::status::StatusPages;
use ember_fcgi_host::{Limits, Listen, Listener};
use lexopt::prelude::*;
use signal_hook::consts::{SIGINT, SIGTERM};

const USAGE: &str = "usage: fcgi-soak-serve --transport mio|smol|tokio --listen HOST:PORT [--leak BYTES]";

/// Echo's answer without the digests; leaks `leak` bytes per request.
struct Echo {
    leak: usize,
}

impl Handler for Echo {
    async fn handle(&self, req: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), HandlerError> {
        if self.leak > 0 {
            // The deliberate leak: written, so every page of it is resident, and kept from
            // the optimizer (an allocation nothing reads may be removed).
            std::hint::black_box(Box::leak(vec![0xa5u8; self.leak].into_boxed_slice()));
        }
        let mut buf = [0u8; 4096];
        let mut length = 0u64;
        loop {
            match req.read(&mut buf).await? {
                0 => break,
                n => length += n as u64,
            }
        }
        let mut out = res.send_head(200, &[("Content-Type", "text/plain")]).await?;
        for (name, value) in req.params() {
            out.write_all(name).await?;
            out.write_all(b"=").await?;
            out.write_all(value).await?;
            out.write_all(b"\n").await?;
        }
        out.write_all(format!("STDIN-LENGTH={length}\n").as_bytes()).await?;
        Ok(())
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("fcgi-soak-serve: {e}\n{USAGE}");
        std::process::exit(2);
    }
}

/// Binds, registers the stats with the status page, wires the signals, announces the
/// address and runs `$server`.
macro_rules! serve {
    ($server:path, $listener:expr, $handler:expr) => {{
        use $server as Server;
        let handler = $handler;
        let board = handler.board();
        let server = Server::from_listener($listener, handler, Limits::default())?;
        board.add(server.stats());
        let stop = server.shutdown_handle();
        let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])?;
        std::thread::spawn(move || {
            if signals.forever().next().is_some() {
                stop.shutdown();
            }
        });
        if let Some(addr) = server.local_addr() {
            eprintln!("listening on {addr}");
        }
        server.run()?;
    }};
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let (mut transport, mut listen, mut leak) = (None::<String>, None::<Listen>, 0usize);
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("transport") => transport = Some(parser.value()?.string()?),
            Long("listen") => listen = Some(parser.value()?.string()?.parse()?),
            Long("leak") => leak = parser.value()?.parse()?,
            _ => return Err(arg.unexpected().into()),
        }
    }
    let listen = listen.ok_or("--listen is required")?;
    let listener = Listener::bind(&listen)?;
    let handler = StatusPages::new(Echo { leak }).with_status_path("/status");
    match transport.as_deref() {
        Some("mio") => serve!(ember_fcgi_mio::Server, listener, handler),
        Some("smol") => serve!(ember_fcgi_smol::Server, listener, handler),
        Some("tokio") => serve!(ember_fcgi_tokio::Server, listener, handler),
        _ => return Err("--transport must be mio, smol or tokio".into()),
    }
    Ok(())
}
