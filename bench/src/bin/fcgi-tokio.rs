//! `fcgi-tokio --listen HOST:PORT [--serve] [--max-connections N]`: the hello handler on the
//! tokio transport, with `Server::run()` (its own current-thread runtime), or with
//! `--serve` as `Server::serve()` spawned on a `LocalSet` in a current-thread runtime the
//! binary builds (as an application's `#[tokio::main]` would). `scripts/bench.sh --servers
//! tokio,tokio-serve` runs it. Prints `listening on ADDR` to stderr; stops on SIGTERM.

use ember_fcgi_core::prelude::*;
use ember_fcgi_tokio::{Limits, Listen, Server};
use lexopt::prelude::*;
use signal_hook::consts::{SIGINT, SIGTERM};

const USAGE: &str = "usage: fcgi-tokio --listen HOST:PORT [--serve] [--max-connections N]";

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
        eprintln!("fcgi-tokio: {e}\n{USAGE}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let (mut listen, mut serve, mut max) = (None::<Listen>, false, None::<usize>);
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("listen") => listen = Some(parser.value()?.string()?.parse()?),
            Long("serve") => serve = true,
            Long("max-connections") => max = Some(parser.value()?.parse()?),
            _ => return Err(arg.unexpected().into()),
        }
    }
    let listen = listen.ok_or("--listen is required")?;
    let mut limits = Limits::default();
    if let Some(max) = max {
        limits = limits.with_max_connections(max);
    }
    let server = Server::bind(&listen, Hello, limits)?;
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
    if serve {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let local = tokio::task::LocalSet::new();
        local.block_on(&runtime, async { tokio::task::spawn_local(server.serve()).await })??;
    } else {
        server.run()?;
    }
    Ok(())
}
