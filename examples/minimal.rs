//! The README's "A FastCGI app in 18 lines", verbatim (`tests/cli.rs` checks that they
//! match, and runs it): serves on the address given as its argument, 127.0.0.1:9000 without.

use ember_fcgi::prelude::*;

struct Hello;

impl Handler for Hello {
    async fn handle(&self, req: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), HandlerError> {
        let uri = req.params().request_uri().unwrap_or("/");
        let body = format!("Hello from ember-fcgi! You asked for {uri}\n");
        Ok(res.send_response(200, content_type::TEXT, body.as_bytes()).await?)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listen = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9000".into());
    let server = ember_fcgi::mio::Server::bind(&listen.parse()?, Hello, Default::default())?;
    eprintln!("listening on {listen}");
    Ok(server.run()?)
}
