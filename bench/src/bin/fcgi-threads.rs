//! `fcgi-threads --listen HOST:PORT [--transport mio|smol] [--threads N]`: the hello
//! handler on one server of N loops, `Server::run_threads(N)` (default mio, 2 loops). Set
//! against `hello --transport mio` (one loop) by `scripts/bench.sh --servers mio,mio2`, it
//! measures what a second loop gives (and costs) on one listener. Prints
//! `listening on ADDR` to stderr; stops on SIGTERM.

use ember_fcgi_core::prelude::*;
use lexopt::prelude::*;
use signal_hook::consts::{SIGINT, SIGTERM};

const USAGE: &str = "usage: fcgi-threads --listen HOST:PORT [--transport mio|smol] [--threads N]";

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
        eprintln!("fcgi-threads: {e}\n{USAGE}");
        std::process::exit(2);
    }
}

/// Stops the server on SIGTERM or SIGINT.
fn stop_on_signal(stop: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])?;
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            stop();
        }
    });
    Ok(())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let (mut listen, mut transport, mut threads) = (None::<String>, String::from("mio"), 2usize);
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("listen") => listen = Some(parser.value()?.string()?),
            Long("transport") => transport = parser.value()?.string()?,
            Long("threads") => threads = parser.value()?.parse()?,
            _ => return Err(arg.unexpected().into()),
        }
    }
    let listen = listen.ok_or("--listen is required")?;
    match transport.as_str() {
        "mio" => {
            use ember_fcgi_mio::{Limits, Listen, Server};
            let server = Server::bind(&listen.parse::<Listen>()?, Hello, Limits::default())?;
            if let Some(addr) = server.local_addr() {
                eprintln!("listening on {addr}");
            }
            let stop = server.shutdown_handle();
            stop_on_signal(move || stop.shutdown())?;
            server.run_threads(threads)?;
        }
        "smol" => {
            use ember_fcgi_smol::{Limits, Listen, Server};
            let server = Server::bind(&listen.parse::<Listen>()?, Hello, Limits::default())?;
            if let Some(addr) = server.local_addr() {
                eprintln!("listening on {addr}");
            }
            let stop = server.shutdown_handle();
            stop_on_signal(move || stop.shutdown())?;
            server.run_threads(threads)?;
        }
        other => return Err(format!("unknown transport {other:?} (mio or smol)").into()),
    }
    Ok(())
}
