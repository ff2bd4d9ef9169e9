//! The nginx config of `docs/deploying.md`, run verbatim: the block between its
//! `<!-- BEGIN nginx-app.conf` and `<!-- END nginx-app.conf -->` markers, with only its two
//! placeholders replaced (the listen port, the upstream address), in a standalone config
//! file of a temporary directory, in front of the `echo` example. A GET and a 3 MB POST
//! (over nginx's default 1 MiB body cap) must come through. A missing nginx fails the test.

mod support;

use support::{App, Combo, EchoOutput, HashingReader, Nginx, PatternReader, Socket, Transport, agent, send};

const GUIDE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/deploying.md");

/// The placeholders the guide documents, as they appear in its block.
const LISTEN: &str = "listen 80;";
const UPSTREAM: &str = "unix:/run/app.sock";

/// The fenced block between the guide's markers, without its fences.
fn guide_block() -> String {
    let guide = std::fs::read_to_string(GUIDE).expect("docs/deploying.md");
    let (_, rest) = guide.split_once("<!-- BEGIN nginx-app.conf").expect("BEGIN nginx-app.conf marker");
    let (marked, _) = rest.split_once("<!-- END nginx-app.conf -->").expect("END nginx-app.conf marker");
    let (_, fenced) = marked.split_once("```nginx\n").expect("a ```nginx block after the BEGIN marker");
    let (block, after) = fenced.split_once("```").expect("the block's closing fence");
    assert!(after.trim().is_empty(), "one block between the markers, found more: {after:?}");
    block.to_owned()
}

/// `text` with `placeholder` (which must occur exactly once) replaced by `value`.
fn substitute(text: &str, placeholder: &str, value: &str) -> String {
    assert_eq!(text.matches(placeholder).count(), 1, "placeholder {placeholder:?} once in:\n{text}");
    text.replacen(placeholder, value, 1)
}

/// The guide's block inside the minimal main context an unprivileged nginx needs, as the
/// guide shows it: everything it writes stays under `dir`.
fn standalone_conf(dir: &std::path::Path, port: u16, upstream: &str) -> String {
    let block = guide_block();
    let block = substitute(&block, LISTEN, &format!("listen 127.0.0.1:{port};"));
    let block = substitute(&block, UPSTREAM, upstream);
    let d = dir.display();
    format!(
        "daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log notice;
events {{}}
http {{
    access_log off;
    client_body_temp_path {d}/client_body_temp;
    fastcgi_temp_path {d}/fastcgi_temp;
    proxy_temp_path {d}/proxy_temp;
    uwsgi_temp_path {d}/uwsgi_temp;
    scgi_temp_path {d}/scgi_temp;
# ---- docs/deploying.md, nginx-app.conf ----
{block}}}
"
    )
}

#[test]
fn the_guides_nginx_block_serves_a_get_and_a_3_mb_post() {
    let binary = support::tools::nginx();
    let combo = Combo { transport: Transport::Mio, socket: Socket::Unix, keepalive: true };
    let app = App::start("echo", combo, &[]);
    let upstream = app.endpoint.nginx_address();
    assert!(upstream.starts_with("unix:"), "{upstream}");
    let nginx = Nginx::launch(&binary, |dir, port| standalone_conf(dir, port, &upstream));
    let agent = agent();

    let reply = send(agent.get(&nginx.url("/some/path?x=1&y=2")).call());
    assert_eq!(reply.status, 200, "{reply:?}");
    let out = EchoOutput::parse(&reply.body);
    assert_eq!(out.get("REQUEST_METHOD"), Some("GET"));
    assert_eq!(out.get("QUERY_STRING"), Some("x=1&y=2"));
    assert_eq!(out.get("REQUEST_URI"), Some("/some/path?x=1&y=2"));
    // From /etc/nginx/fastcgi_params, which the block includes by its absolute path.
    assert_eq!(out.get("GATEWAY_INTERFACE"), Some("CGI/1.1"));

    // 3 MB: over nginx's default client_max_body_size (1 MiB), which the block raises.
    let len = 3_000_000;
    let mut body = HashingReader::new(PatternReader::new(len, 7));
    let reply =
        send(agent.post(&nginx.url("/upload")).set("Content-Length", &len.to_string()).send(&mut body));
    assert_eq!(reply.status, 200, "{reply:?}");
    let out = EchoOutput::parse(&reply.body);
    assert_eq!(out.get("REQUEST_METHOD"), Some("POST"));
    out.assert_stdin(len, &body.hex());

    // Keep-alive to the app (the block's upstream keepalive + fastcgi_keep_conn): again.
    let reply = send(agent.get(&nginx.url("/again")).call());
    assert_eq!(reply.status, 200, "{reply:?}");
    nginx.assert_clean_log();
}
