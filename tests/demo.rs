//! `scripts/demo.sh`, the README's first command: without nginx it prints the install
//! command and exits 1; with nginx it serves the `inspect` page until interrupted and cleans
//! up after itself. And the `inspect` example itself, over FastCGI.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use ember_fcgi_testkit::wire::TextRequest as Request;
use support::{App, Combo, Socket, Transport, agent, free_port, send};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts").join("demo.sh")
}

#[test]
fn without_nginx_it_prints_the_install_command() {
    let output = Command::new("bash").arg(script()).env("NGINX", "/nonexistent/nginx").output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("apt-get install -y nginx"), "{stderr}");
}

#[test]
fn serves_until_interrupted_then_cleans_up() {
    let nginx = support::tools::nginx();
    support::examples_dir(); // built already: the script's own cargo build is a no-op
    let port = free_port();
    // SIGINT back to its default for the script: a shell that starts with it ignored (as
    // a background job of a shell without job control does) cannot trap it, and would
    // never stop.
    let mut child = Command::new("env")
        .args(["--default-signal=INT", "bash"])
        .arg(script())
        .args(["--transport", "smol", "--port", &port.to_string()])
        .env("NGINX", nginx)
        .env("CARGO_TARGET_DIR", support::target_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut conf = None;
    loop {
        let Ok(line) = rx.recv_timeout(Duration::from_secs(300)) else {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let output = child.wait_with_output().unwrap();
            panic!("demo.sh did not come up: {}", String::from_utf8_lossy(&output.stderr));
        };
        if let Some(path) = line.trim().strip_prefix("nginx config") {
            conf = Some(PathBuf::from(path.trim()));
        }
        if line.contains("Ctrl-C to stop") {
            break;
        }
    }
    let conf = conf.expect("the script names its nginx config");
    let text = std::fs::read_to_string(&conf).unwrap();
    assert!(text.contains("keepalive 8;") && text.contains("fastcgi_keep_conn on;"), "{text}");

    // The default example is `inspect`: the page shows the request nginx passed on.
    let url = format!("http://127.0.0.1:{port}/demo/page?x=1");
    let reply = send(agent().get(&url).call());
    assert_eq!(reply.status, 200);
    for row in [
        "<h1><code>GET /demo/page?x=1</code></h1>",
        "<tr><th>path</th><td><code>/demo/page</code></td></tr>",
        "<tr><th>HTTP_HOST</th><td><code>127.0.0.1:",
        "<form method=\"post\" action=\"\">",
    ] {
        assert!(reply.body.contains(row), "{row} in {}", reply.body);
    }
    let form = [("name", "you"), ("message", "<hi> & bye")];
    let reply = send(agent().post(&url).send_form(&form));
    assert!(reply.body.contains("<tr><th>method</th><td><code>POST</code></td></tr>"), "{}", reply.body);
    assert!(
        reply.body.contains("<code>message</code> = <code>&lt;hi&gt; &amp; bye</code>"),
        "{}",
        reply.body
    );

    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(!conf.parent().unwrap().exists(), "the temporary directory is removed");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "nginx is gone");
}

/// The `inspect` page for a request with a query, a form body and a hostile value: every
/// value escaped, query and form fields decoded, the body shown in full.
fn inspect_shows_the_request(transport: Transport) {
    let combo = Combo { transport, socket: Socket::Unix, keepalive: false };
    let app = App::start("inspect", combo, &[]);
    let body = b"name=you&message=%3Cb%3Ehi%3C%2Fb%3E+there";
    let length = body.len().to_string();
    let params = [
        ("REQUEST_METHOD", "POST"),
        ("REQUEST_URI", "/some/path?a=1&b=%3Cx%3E"),
        ("QUERY_STRING", "a=1&b=%3Cx%3E"),
        ("CONTENT_TYPE", "application/x-www-form-urlencoded"),
        ("CONTENT_LENGTH", &length),
        ("HTTP_USER_AGENT", "<script>"),
    ];
    let reply =
        app.endpoint.connect().roundtrip(&Request { params: &params, stdin: body, ..Request::default() });
    let (head, page) = reply.split();
    assert!(head.starts_with("Status: 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"), "{head}");
    let expected = [
        "<title>POST /some/path?a=1&amp;b=%3Cx%3E</title>",
        "<tr><th>method</th><td><code>POST</code></td></tr>\n\
         <tr><th>path</th><td><code>/some/path</code></td></tr>\n\
         <tr><th>query</th><td><code>a=1&amp;b=%3Cx%3E</code></td></tr>\n\
         <tr><th></th><td><code>a</code> = <code>1</code></td></tr>\n\
         <tr><th></th><td><code>b</code> = <code>&lt;x&gt;</code></td></tr>\n\
         <tr><th>body</th><td><code>42 bytes</code></td></tr>\n\
         <tr><th>content type</th><td><code>application/x-www-form-urlencoded</code></td></tr>\n\
         <tr><th></th><td><code>name</code> = <code>you</code></td></tr>\n\
         <tr><th></th><td><code>message</code> = <code>&lt;b&gt;hi&lt;/b&gt; there</code></td></tr>\n\
         </table>\n<h2>the body</h2>\n<pre>name=you&amp;message=%3Cb%3Ehi%3C%2Fb%3E+there</pre>\n",
        "<tr><th>HTTP_USER_AGENT</th><td><code>&lt;script&gt;</code></td></tr>",
    ];
    for part in expected {
        assert!(page.contains(part), "{part}\nnot in\n{page}");
    }
    assert!(!page.contains("<script>") && !page.contains("<x>"), "unescaped: {page}");

    // A long body: counted in full, the first 4 KiB shown.
    let big = vec![b'z'; 10_000];
    let params = [("REQUEST_METHOD", "PUT"), ("CONTENT_LENGTH", "10000")];
    let reply =
        app.endpoint.connect().roundtrip(&Request { params: &params, stdin: &big, ..Request::default() });
    let page = reply.split().1;
    assert!(page.contains("<tr><th>body</th><td><code>10000 bytes</code></td></tr>"), "{page}");
    let shown = format!("<h2>its first 4 KiB</h2>\n<pre>{}</pre>\n", "z".repeat(4096));
    assert!(page.contains(&shown), "{page}");
}

#[test]
fn inspect_shows_the_request_mio() {
    inspect_shows_the_request(Transport::Mio);
}

#[test]
fn inspect_shows_the_request_smol() {
    inspect_shows_the_request(Transport::Smol);
}
