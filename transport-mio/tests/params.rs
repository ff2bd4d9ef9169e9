//! Params over real TCP: a value longer than 65535 bytes (FastCGI lengths are 31-bit)
//! reaches the handler whole when the params store has room for it, and one over the
//! store still gets 431 with the connection kept.

mod common;

use common::*;
use ember_fcgi_core::prelude::*;
use ember_fcgi_mio::{Limits, Listen, Server};

/// The params store of these tests: room for a 200,000-byte value.
const PARAMS_CAPACITY: usize = 256 * 1024;

/// Answers "LEN HASH" for param `HTTP_X_BIG` (FNV-1a of its value), or "none".
#[derive(Clone, Copy, Debug)]
struct BigParam;

impl Handler for BigParam {
    async fn handle(&self, req: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), HandlerError> {
        let mut line = [0u8; 64];
        let text = match req.params().get("HTTP_X_BIG") {
            Some(value) => {
                let mut fnv = Fnv::new();
                fnv.update(value);
                fmt_into(&mut line, format_args!("{} {:016x}", value.len(), fnv.0))
            }
            None => fmt_into(&mut line, format_args!("none")),
        };
        let mut out = res.send_head(200, &[("Content-Type", "text/plain")]).await?;
        Ok(out.write_all(text).await?)
    }
}

fn big_param_server() -> Running {
    let capacities = Limits::SERVER_CAPACITIES.with_params(PARAMS_CAPACITY);
    let limits = test_limits().with_capacities(capacities);
    let listen = Listen::Tcp("127.0.0.1:0".parse().unwrap());
    Running::start(Server::bind(&listen, BigParam, limits).expect("bind"))
}

/// A keep-conn request whose params carry `value` as `HTTP_X_BIG`, among usual params.
fn request_with(value: &[u8], long_lengths: bool) -> Vec<u8> {
    let params: [(&[u8], &[u8]); 4] = [
        (b"REQUEST_METHOD", b"GET"),
        (b"SCRIPT_NAME", b"/big"),
        (b"HTTP_X_BIG", value),
        (b"SERVER_PROTOCOL", b"HTTP/1.1"),
    ];
    RequestSpec { keep_conn: true, params: &params, long_lengths, ..RequestSpec::default() }.encode()
}

fn expected(value: &[u8]) -> String {
    format!("{} {:016x}", value.len(), fnv1a(FNV_START, value))
}

#[test]
fn param_value_over_65535_bytes_reaches_the_handler_whole() {
    let server = big_param_server();
    let mut c = server.client();
    for (len, long_lengths) in [(70_000, false), (65_536, true), (65_535, false), (200_000, false), (0, true)]
    {
        let value = pattern_vec(len);
        c.send(&request_with(&value, long_lengths));
        let reply = c.reply(1);
        assert_eq!(reply.status(), 200, "len {len}: {:?}", reply.stdout_text());
        assert_eq!(reply.body_str(), expected(&value), "len {len}");
    }
    assert_eq!(c.get("/hello", "after"), "none");
    drop(c);
    server.wait_no_connections();
    let s = server.stop();
    assert_eq!((s.requests, s.closed_with_error), (6, 0));
}

#[test]
fn param_value_over_the_store_gets_431_and_the_connection_stays() {
    let server = big_param_server();
    let mut c = server.client();
    // The value alone fills the store; with its name and lengths it is over.
    let value = pattern_vec(PARAMS_CAPACITY);
    c.send(&request_with(&value, false));
    assert_eq!(c.reply(1).status(), 431);
    let value = pattern_vec(70_000);
    c.send(&request_with(&value, false));
    let reply = c.reply(1);
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.body_str(), expected(&value));
}
