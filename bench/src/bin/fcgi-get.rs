//! `fcgi-get --connect HOST:PORT [--uri /status?json]`: one GET over FastCGI, as a web
//! server would send it (`DOCUMENT_URI`, `REQUEST_URI`, `QUERY_STRING`), and the response
//! body on stdout; exit status 1 unless it was answered completely with a 200 head.
//! `scripts/soak.sh` reads the status page's counters with it.

use std::net::SocketAddr;

use ember_fcgi_testkit::client::Client;
use ember_fcgi_testkit::wire::{REQUEST_COMPLETE, TextRequest};
use lexopt::prelude::*;

const USAGE: &str = "usage: fcgi-get --connect HOST:PORT [--uri PATH[?QUERY]]";

fn main() {
    match run() {
        Ok(body) => print!("{body}"),
        Err(e) => {
            eprintln!("fcgi-get: {e}\n{USAGE}");
            std::process::exit(1);
        }
    }
}

fn run() -> Result<String, Box<dyn std::error::Error>> {
    let (mut addr, mut uri) = (None::<SocketAddr>, "/status".to_owned());
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("connect") => addr = Some(parser.value()?.parse()?),
            Long("uri") => uri = parser.value()?.string()?,
            _ => return Err(arg.unexpected().into()),
        }
    }
    let addr = addr.ok_or("--connect is required")?;
    let (path, query) = uri.split_once('?').unwrap_or((&uri, ""));
    let params = [
        ("REQUEST_METHOD", "GET"),
        ("SCRIPT_NAME", path),
        ("DOCUMENT_URI", path),
        ("REQUEST_URI", uri.as_str()),
        ("QUERY_STRING", query),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("REMOTE_ADDR", "127.0.0.1"),
    ];
    let mut client = Client::tcp(addr); // panics (exit status 101) on a failed connection or read
    let reply = client.roundtrip(&TextRequest { params: &params, ..Default::default() });
    let head = String::from_utf8_lossy(&reply.stdout[..reply.stdout.len() - reply.body().len()]).into_owned();
    if reply.protocol_status != REQUEST_COMPLETE
        || (head.starts_with("Status:") && !head.starts_with("Status: 200"))
    {
        return Err(format!("{uri}: not answered with 200: {head:?}").into());
    }
    Ok(reply.body_str())
}
