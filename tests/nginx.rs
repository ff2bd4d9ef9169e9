//! The examples behind a real nginx, driven over HTTP with ureq: every test body runs for
//! each (transport, TCP or Unix socket, nginx keep-alive or not) combination; the 100 MiB
//! upload runs once per transport. See `support` for how binaries and nginx are set up.

mod support;

use std::ffi::OsStr;
use std::io::Read;
use std::time::{SystemTime, UNIX_EPOCH};

use support::{
    Combo, EMPTY_SHA256, EchoOutput, FASTCGI_PARAMS, HashingReader, PatternReader, Socket, Stack, TempDir,
    Transport, agent, parse_ndjson, pattern, send,
};

matrix_tests!(
    hello,
    echo_params_and_bodies,
    browser_heads_with_default_nginx_buffers,
    params_over_the_configured_cap,
    echo_concurrent_clients,
    redirects,
    dirlist,
    upload
);

fn hello(combo: Combo) {
    let stack = Stack::start("hello", combo, &[]);
    let agent = agent();
    for path in ["/", "/some/path?x=1", "/again"] {
        let reply = send(agent.get(&stack.url(path)).call());
        assert_eq!(reply.status, 200);
        assert_eq!(reply.content_type.as_deref(), Some("text/plain"));
        assert_eq!(reply.body, "Hello, World!\n");
    }
    let reply = send(agent.post(&stack.url("/")).send_bytes(&[7u8; 100_000]));
    assert_eq!((reply.status, reply.body.as_str()), (200, "Hello, World!\n"), "unread body is skipped");
    stack.nginx.assert_clean_log();
}

fn echo_params_and_bodies(combo: Combo) {
    let stack = Stack::start("echo", combo, &[]);
    let agent = agent();

    // GET with a query string and headers: the params arrive in the order nginx sends them.
    let reply = send(agent.get(&stack.url("/a/b?x=1&y=two%20words")).set("X-Test", "yes").call());
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.content_type.as_deref(), Some("text/plain"));
    let out = EchoOutput::parse(&reply.body);
    let expected: Vec<&str> = FASTCGI_PARAMS.iter().map(|(n, _)| *n).collect();
    assert_eq!(out.names()[..expected.len()], expected[..], "params in the order received");
    assert_eq!(out.get("QUERY_STRING"), Some("x=1&y=two%20words"));
    assert_eq!(out.get("REQUEST_METHOD"), Some("GET"));
    assert_eq!(out.get("SCRIPT_NAME"), Some("/a/b"));
    assert_eq!(out.get("REQUEST_URI"), Some("/a/b?x=1&y=two%20words"));
    assert_eq!(out.get("SERVER_PROTOCOL"), Some("HTTP/1.1"));
    assert_eq!(out.get("GATEWAY_INTERFACE"), Some("CGI/1.1"));
    assert_eq!(out.get("CONTENT_LENGTH"), Some(""));
    assert_eq!(out.get("HTTP_X_TEST"), Some("yes"));
    assert!(out.get("HTTP_HOST").is_some_and(|h| h.starts_with("127.0.0.1:")), "{out:?}");
    assert!(out.get("HTTP_USER_AGENT").is_some_and(|h| h.starts_with("ureq")), "{out:?}");
    out.assert_stdin(0, EMPTY_SHA256);
    let tail = &out.names()[out.0.len() - 2..];
    assert_eq!(tail, ["STDIN-LENGTH", "STDIN-SHA256"]);
    assert!(out.get("DATA-LENGTH").is_none());

    // A small POST with Content-Length.
    let reply = send(
        agent
            .post(&stack.url("/form"))
            .set("Content-Type", "application/x-www-form-urlencoded")
            .send_bytes(b"hello=world"),
    );
    let out = EchoOutput::parse(&reply.body);
    assert_eq!(out.get("REQUEST_METHOD"), Some("POST"));
    assert_eq!(out.get("CONTENT_TYPE"), Some("application/x-www-form-urlencoded"));
    assert_eq!(out.get("CONTENT_LENGTH"), Some("11"));
    out.assert_stdin(11, &support::sha256_hex(b"hello=world"));

    // A 3 MiB POST with Content-Length, streamed from a generator.
    let len = 3 * 1024 * 1024 + 17;
    let mut body = HashingReader::new(PatternReader::new(len, 1));
    let reply = send(agent.put(&stack.url("/big")).set("Content-Length", &len.to_string()).send(&mut body));
    let out = EchoOutput::parse(&reply.body);
    assert_eq!(out.get("REQUEST_METHOD"), Some("PUT"));
    out.assert_stdin(len, &body.hex());

    // A chunked request body (no length): nginx buffers it and sets CONTENT_LENGTH.
    let len = 1024 * 1024 + 3;
    let mut body = HashingReader::new(PatternReader::new(len, 2));
    let reply = send(agent.post(&stack.url("/chunked")).send(&mut body));
    let out = EchoOutput::parse(&reply.body);
    assert_eq!(out.get("CONTENT_LENGTH"), Some(len.to_string().as_str()), "{out:?}");
    assert_eq!(out.get("HTTP_TRANSFER_ENCODING"), Some("chunked"));
    out.assert_stdin(len, &body.hex());

    // An empty chunked body.
    let reply = send(agent.post(&stack.url("/empty")).send(&b""[..]));
    EchoOutput::parse(&reply.body).assert_stdin(0, EMPTY_SHA256);

    stack.nginx.assert_clean_log();
}

/// A cookie of `len` bytes like a real site's: many `name=value` pairs.
fn cookie(len: usize, seed: u8) -> String {
    let mut out = String::new();
    let mut i = 0u32;
    while out.len() < len {
        let sep = if out.is_empty() { "" } else { "; " };
        out += &format!("{sep}c{i}_{seed}=v{:08x}", i.wrapping_mul(2_654_435_761));
        i += 1;
    }
    out.truncate(len);
    out
}

/// What browsers send through an nginx with its default header buffers
/// (`large_client_header_buffers 4 8k`): 5 KB and 8 KB cookies, and about 30 KB of headers
/// in all, arrive whole with the default limits.
fn browser_heads_with_default_nginx_buffers(combo: Combo) {
    let stack = Stack::start("echo", combo, &[]);
    let agent = agent();
    for len in [5 * 1024, 8 * 1024 - 200] {
        let cookie = cookie(len, 1);
        let reply = send(agent.get(&stack.url("/page?x=1")).set("Cookie", &cookie).call());
        assert_eq!(reply.status, 200, "{len}-byte cookie: {reply:?}");
        let out = EchoOutput::parse(&reply.body);
        assert_eq!(out.get("HTTP_COOKIE"), Some(cookie.as_str()), "{len}-byte cookie arrives whole");
        assert_eq!(out.get("QUERY_STRING"), Some("x=1"));
    }
    // Four header lines of 7,500 bytes (each fits one of nginx's 8 KiB buffers): ~30 KB.
    let values: Vec<String> = (0..4u8).map(|i| cookie(7_500, i + 2)).collect();
    let mut request = agent.get(&stack.url("/big-head"));
    for (i, value) in values.iter().enumerate() {
        request = request.set(&format!("X-Large-{i}"), value);
    }
    let reply = send(request.call());
    assert_eq!(reply.status, 200, "{reply:?}");
    let out = EchoOutput::parse(&reply.body);
    for (i, value) in values.iter().enumerate() {
        assert_eq!(out.get(&format!("HTTP_X_LARGE_{i}")), Some(value.as_str()));
    }
    let total: usize = out.0.iter().map(|(n, v)| n.len() + v.len()).sum();
    assert!(total > 30_000, "{total} bytes of params");
    stack.nginx.assert_clean_log();
}

/// Params over the configured cap (`--params-bytes 4096`): 431, and the connection lives on.
fn params_over_the_configured_cap(combo: Combo) {
    let args = [OsStr::new("--params-bytes"), OsStr::new("4096")];
    let stack = Stack::start("echo", combo, &args);
    let agent = agent();
    let big = "v".repeat(6000);
    let reply = send(agent.get(&stack.url("/huge-header")).set("X-Big", &big).call());
    assert_eq!(reply.status, 431, "{reply:?}");
    let reply = send(agent.get(&stack.url("/after?ok")).call());
    assert_eq!(EchoOutput::parse(&reply.body).get("QUERY_STRING"), Some("ok"));
    stack.nginx.assert_clean_log();
}

fn echo_concurrent_clients(combo: Combo) {
    const THREADS: usize = 32;
    const REQUESTS: usize = 20;
    let stack = Stack::start("echo", combo, &[]);
    let agent = agent();
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let agent = agent.clone();
            let stack = &stack;
            scope.spawn(move || {
                for r in 0..REQUESTS {
                    let url = stack.url(&format!("/c?t={t}&r={r}"));
                    let reply = if r % 4 == 3 {
                        let body = format!("thread {t} request {r}");
                        send(agent.post(&url).send_bytes(body.as_bytes()))
                    } else {
                        send(agent.get(&url).set("X-Thread", &t.to_string()).call())
                    };
                    assert_eq!(reply.status, 200, "{reply:?}");
                    let out = EchoOutput::parse(&reply.body);
                    assert_eq!(out.get("QUERY_STRING"), Some(format!("t={t}&r={r}").as_str()));
                    if r % 4 == 3 {
                        let body = format!("thread {t} request {r}");
                        out.assert_stdin(body.len() as u64, &support::sha256_hex(body.as_bytes()));
                    } else {
                        assert_eq!(out.get("HTTP_X_THREAD"), Some(t.to_string().as_str()));
                        out.assert_stdin(0, EMPTY_SHA256);
                    }
                }
            });
        }
    });
    stack.nginx.assert_clean_log();
}

fn redirects(combo: Combo) {
    let stack = Stack::start("redirect", combo, &[]);
    let agent = agent();
    let get = |path: &str| send(agent.get(&stack.url(path)).call());

    // A Location-only answer: nginx answers 302 (and passes the local path on as it is).
    let reply = get("/local");
    assert_eq!(reply.status, 302, "{reply:?}");
    assert_eq!(reply.location.as_deref(), Some("/target"));

    let reply = get("/?to=https://example.com/x%3Fy");
    assert_eq!(reply.status, 302, "{reply:?}");
    assert_eq!(reply.location.as_deref(), Some("https://example.com/x?y"));

    for status in [301, 303, 307, 308] {
        let reply = get(&format!("/?status={status}&to=https://example.com/moved"));
        assert_eq!(reply.status, status, "{reply:?}");
        assert_eq!(reply.location.as_deref(), Some("https://example.com/moved"));
        assert_eq!(reply.body, "Redirecting to https://example.com/moved\n");
    }

    let reply = get("/target");
    assert_eq!((reply.status, reply.body.as_str()), (200, "reached /target (request URI /target)\n"));
    assert_eq!(get("/?to=no-scheme").status, 400);
    assert_eq!(get("/?status=200&to=https://example.com/").status, 400);
    assert_eq!(get("/elsewhere").status, 404);
    stack.nginx.assert_clean_log();
}

/// A tree for dirlist: files, a subdirectory, 300 entries, symlinks in and out of it.
fn dirlist_tree() -> TempDir {
    let root = TempDir::new("tree");
    let p = root.path();
    std::fs::write(p.join("a.txt"), b"hello world\n").unwrap();
    std::fs::write(p.join("q\"uote é.txt"), b"x").unwrap();
    std::fs::create_dir(p.join("sub")).unwrap();
    std::fs::write(p.join("sub").join("b.bin"), vec![0u8; 4097]).unwrap();
    std::fs::create_dir(p.join("many")).unwrap();
    for i in 0..300 {
        std::fs::write(p.join("many").join(format!("f{i:03}")), vec![b'x'; i]).unwrap();
    }
    std::os::unix::fs::symlink(p.join("sub"), p.join("link_in")).unwrap();
    std::os::unix::fs::symlink("/", p.join("link_out")).unwrap();
    std::os::unix::fs::symlink(p.join("nowhere"), p.join("dangling")).unwrap();
    root
}

fn dirlist(combo: Combo) {
    let tree = dirlist_tree();
    let extra = [OsStr::new("--root"), tree.path().as_os_str()];
    let stack = Stack::start("dirlist", combo, &extra);
    let agent = agent();
    let get = |path: &str| send(agent.get(&stack.url(path)).call());
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;

    let reply = get("/");
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.content_type.as_deref(), Some("application/x-ndjson"));
    let mut entries = parse_ndjson(&reply.body);
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let summary: Vec<(&str, &str)> = entries.iter().map(|e| (e.name.as_str(), e.kind.as_str())).collect();
    assert_eq!(
        summary,
        [
            ("a.txt", "file"),
            ("link_in", "dir"),
            ("link_out", "dir"),
            ("many", "dir"),
            ("q\"uote é.txt", "file"),
            ("sub", "dir")
        ],
        "dangling symlinks are skipped"
    );
    assert_eq!(entries[0].size, 12);
    for entry in entries.iter().filter(|e| e.name != "link_out") {
        assert!((now_ms - entry.mtime).abs() < 600_000, "{entry:?} mtime is ms since the epoch");
    }

    for path in ["/?path=sub", "/?path=%2Fsub%2F", "/?path=link_in", "/x?path=many/../sub"] {
        let reply = get(path);
        assert_eq!(reply.status, 200, "{path}: {reply:?}");
        let entries = parse_ndjson(&reply.body);
        assert_eq!(entries.len(), 1, "{path}");
        assert_eq!(
            (entries[0].name.as_str(), entries[0].kind.as_str(), entries[0].size),
            ("b.bin", "file", 4097)
        );
    }

    let reply = get("/?path=many");
    let mut entries = parse_ndjson(&reply.body);
    assert_eq!(entries.len(), 300);
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(entries.iter().enumerate().all(|(i, e)| e.name == format!("f{i:03}") && e.size == i as u64));

    for (path, status) in [
        ("/?path=missing", 404),
        ("/?path=a.txt", 404),
        ("/?path=dangling", 404),
        ("/?path=..", 403),
        ("/?path=sub/../..", 403),
        ("/?path=..%2F..%2Fetc", 403),
        ("/?path=link_out", 403),
        ("/?path=link_out/etc", 403),
    ] {
        let reply = get(path);
        assert_eq!(reply.status, status, "{path}: {reply:?}");
    }
    stack.nginx.assert_clean_log();
}

fn upload(combo: Combo) {
    let dir = TempDir::new("uploads");
    let extra = [OsStr::new("--dir"), dir.path().as_os_str()];
    let stack = Stack::start("upload", combo, &extra);
    let agent = agent();

    // A named upload with Content-Length; the name is reduced to a safe file name.
    let len = 2 * 1024 * 1024 + 5;
    let mut body = HashingReader::new(PatternReader::new(len, 3));
    let url = stack.url("/?name=..%2F..%2Fetc%2Fmy%20report.pdf");
    let reply = send(agent.post(&url).set("Content-Length", &len.to_string()).send(&mut body));
    let sha = body.hex();
    assert_eq!(reply.status, 201, "{reply:?}");
    assert_eq!(reply.content_type.as_deref(), Some("application/json"));
    assert_eq!(reply.body, format!("{{\"name\":\"my_report.pdf\",\"size\":{len},\"sha256\":\"{sha}\"}}\n"));
    let stored = std::fs::read(dir.path().join("my_report.pdf")).unwrap();
    assert_eq!((stored.len() as u64, support::sha256_hex(&stored)), (len, sha));

    // A chunked upload without a name gets a generated one.
    let (bytes, sha) = pattern(300_000, 4);
    let reply = send(agent.put(&stack.url("/")).send(&bytes[..]));
    assert_eq!(reply.status, 201, "{reply:?}");
    let name = reply.body.split('"').nth(3).unwrap().to_owned();
    assert!(name.starts_with("upload-") && name.ends_with(".bin"), "{name}");
    assert!(reply.body.contains(&format!("\"size\":300000,\"sha256\":\"{sha}\"")), "{}", reply.body);
    assert_eq!(std::fs::read(dir.path().join(&name)).unwrap(), bytes);

    let reply = send(agent.get(&stack.url("/?name=x")).call());
    assert_eq!(reply.status, 405);

    let mut files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files, ["my_report.pdf".to_owned(), name], "no .part files left behind");
    stack.nginx.assert_clean_log();
}

/// 100 MiB through nginx (which spools it to disk) to echo, hashed on both sides; the
/// example's peak memory shows the body was streamed.
fn post_100_mib(transport: Transport) {
    let combo = Combo { transport, socket: Socket::Tcp, keepalive: true };
    let stack = Stack::start("echo", combo, &[]);
    let len: u64 = 100 * 1024 * 1024;
    let started = std::time::Instant::now();
    let mut body = HashingReader::new(PatternReader::new(len, 5));
    let reply =
        send(agent().post(&stack.url("/big")).set("Content-Length", &len.to_string()).send(&mut body));
    assert_eq!(body.count, len);
    let out = EchoOutput::parse(&reply.body);
    out.assert_stdin(len, &body.hex());
    let rss = stack.app.peak_rss_kib();
    support::loud(&format!(
        "100 MiB POST via nginx to echo on {transport:?}: {:.1?}, peak RSS {rss} KiB",
        started.elapsed()
    ));
    assert!(rss < 64 * 1024, "echo's peak RSS is {rss} KiB: the body was not streamed");
    stack.nginx.assert_clean_log();
}

#[test]
fn post_100_mib_mio() {
    post_100_mib(Transport::Mio);
}

#[test]
fn post_100_mib_smol() {
    post_100_mib(Transport::Smol);
}

/// A streamed response (no Content-Length) passes through nginx as a chunked response.
/// (That each entry is flushed as a record of its own is checked by `raw_fcgi.rs`.)
#[test]
fn streamed_response_arrives_in_pieces() {
    let tree = dirlist_tree();
    let extra = [OsStr::new("--root"), tree.path().as_os_str()];
    let combo = Combo { transport: Transport::Smol, socket: Socket::Unix, keepalive: true };
    let stack = Stack::start("dirlist", combo, &extra);
    let response = agent().get(&stack.url("/?path=many")).call().expect("GET");
    assert_eq!(response.header("Transfer-Encoding"), Some("chunked"), "no Content-Length: streamed");
    let mut text = String::new();
    response.into_reader().read_to_string(&mut text).unwrap();
    assert_eq!(parse_ndjson(&text).len(), 300);
}

/// With `fastcgi_request_buffering off` nginx passes the body on while the client is still
/// sending it: a 64 MiB upload reaches the disk whole, the file grows before the body is
/// complete, and a client that disconnects mid-body leaves nothing behind.
fn unbuffered_uploads(transport: Transport) {
    let binary = support::tools::nginx();
    let dir = TempDir::new("uploads");
    let combo = Combo { transport, socket: Socket::Unix, keepalive: true };
    let app = support::App::start("upload", combo, &[OsStr::new("--dir"), dir.path().as_os_str()]);
    let nginx = support::Nginx::start_with(&binary, &app.endpoint, true, false);
    let files = || -> Vec<(String, u64)> {
        let mut list: Vec<(String, u64)> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| (e.file_name().into_string().unwrap(), e.metadata().unwrap().len()))
            .collect();
        list.sort();
        list
    };

    let len: u64 = 64 * 1024 * 1024;
    let mut body = HashingReader::new(PatternReader::new(len, 6));
    let reply = send(
        agent().post(&nginx.url("/?name=big.bin")).set("Content-Length", &len.to_string()).send(&mut body),
    );
    assert_eq!(reply.status, 201, "{reply:?}");
    assert!(reply.body.contains(&format!("\"size\":{len},\"sha256\":\"{}\"", body.hex())), "{}", reply.body);
    assert_eq!(files(), [("big.bin".to_owned(), len)]);

    // Half a body, then the client goes away.
    let mut client = std::net::TcpStream::connect(("127.0.0.1", nginx.port)).unwrap();
    let head = "POST /?name=partial.bin HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10000000\r\n\r\n";
    std::io::Write::write_all(&mut client, head.as_bytes()).unwrap();
    let (chunk, _) = pattern(1024 * 1024, 7);
    std::io::Write::write_all(&mut client, &chunk).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !files().iter().any(|(name, size)| name.ends_with(".part") && *size > 0) {
        assert!(std::time::Instant::now() < deadline, "the body is not streamed: {:?}", files());
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    drop(client);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while files().len() != 1 {
        assert!(std::time::Instant::now() < deadline, "an aborted upload left {:?}", files());
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(files(), [("big.bin".to_owned(), len)]);

    // The next upload goes through as usual.
    let reply = send(agent().post(&nginx.url("/?name=small.txt")).send_bytes(b"small"));
    assert_eq!(reply.status, 201, "{reply:?}");
    assert_eq!(std::fs::read(dir.path().join("small.txt")).unwrap(), b"small");
}

#[test]
fn unbuffered_uploads_mio() {
    unbuffered_uploads(Transport::Mio);
}

#[test]
fn unbuffered_uploads_smol() {
    unbuffered_uploads(Transport::Smol);
}
