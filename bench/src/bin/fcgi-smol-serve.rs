//! `fcgi-smol-serve --listen HOST:PORT`: the hello handler on the smol transport run as
//! `Server::serve()` inside `smol::block_on`, so every wake-up goes through async-io's
//! reactor (the path an application embedding the server in its executor takes). Set
//! against `hello --transport smol` (`run`, which sleeps in the transport's own poller) by
//! `scripts/bench.sh --servers smol,smol-serve`, it measures what async-io costs per
//! request. Prints `listening on ADDR` to stderr; stops on SIGTERM.

use ember_fcgi_core::prelude::*;
use ember_fcgi_smol::{Limits, Listen, Server};
use lexopt::prelude::*;
use signal_hook::consts::{SIGINT, SIGTERM};

const USAGE: &str = "usage: fcgi-smol-serve --listen HOST:PORT";

/// The hello example's handler.
struct Hello;

impl Handler for Hello {
    async fn handle(&self, _req: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), HandlerError> {
        res.send_response(200, "text/plain", b"Hello, World!\n").await?;
        Ok(())
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("fcgi-smol-serve: {e}\n{USAGE}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut listen: Option<Listen> = None;
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("listen") => listen = Some(parser.value()?.string()?.parse()?),
            _ => return Err(arg.unexpected().into()),
        }
    }
    let listen = listen.ok_or("--listen is required")?;
    let server = Server::bind(&listen, Hello, Limits::default())?;
    if let Some(addr) = server.local_addr() {
        eprintln!("listening on {addr}");
    }
    let stop = server.shutdown_handle();
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])?;
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            stop.shutdown();
        }
    });
    smol::block_on(server.serve())?;
    Ok(())
}
