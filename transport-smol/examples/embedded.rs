//! FastCGI beside the other tasks of a smol application, on one thread: the handler shares
//! `Rc` state with a background task (so it is not `Send`) and awaits a timer.
//!
//! ```text
//! cargo run -p ember-fcgi-smol --example embedded -- 127.0.0.1:9000
//! cargo run -p ember-fcgi-smol --example embedded -- unix:/tmp/app.sock
//! spawn-fcgi -p 9000 -- target/debug/examples/embedded     # no argument: the socket on fd 0
//! ```

use std::cell::Cell;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use ember_fcgi_core::prelude::*;
use ember_fcgi_smol::{Limits, Listen, Server};

/// Answers with how many ticks the background task has counted.
struct Ticks(Rc<Cell<u64>>);

impl Handler for Ticks {
    async fn handle(&self, _: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), HandlerError> {
        smol::Timer::after(Duration::from_millis(5)).await; // any async work may happen here
        let body = format!("{} ticks\n", self.0.get());
        res.send_response(200, content_type::TEXT, body.as_bytes()).await?;
        Ok(())
    }
}

fn main() -> ExitCode {
    let listen = match std::env::args().nth(1).map(|a| a.parse::<Listen>()) {
        None => Listen::Inherited,
        Some(Ok(listen)) => listen,
        Some(Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ticks = Rc::new(Cell::new(0));
    let server = match Server::bind(&listen, Ticks(Rc::clone(&ticks)), Limits::default()) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("listening on {listen}");
    let ex = smol::LocalExecutor::new();
    let served = smol::block_on(ex.run(async {
        ex.spawn(async move {
            loop {
                smol::Timer::after(Duration::from_secs(1)).await;
                ticks.set(ticks.get() + 1);
            }
        })
        .detach();
        server.serve().await
    }));
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: the server failed: {e}");
            ExitCode::FAILURE
        }
    }
}
