//! The deployment guide's (`docs/deploying.md`) snippets for lighttpd, Apache
//! (mod_proxy_fcgi) and Caddy, proved end to end: the `echo` and `redirect` examples behind each real server, driven over HTTP
//! with ureq, for every (transport, TCP or Unix socket) pair; lighttpd also starting the app
//! itself (`bin-path`, the listening socket as fd 0); and a check that the guide shows
//! exactly the snippets these configs are built from. See `ember_fcgi_testkit::web::servers` for the configs.

mod support;

use support::web::{self, Kind, WebServer, WebStack};
use support::{Combo, EMPTY_SHA256, EchoOutput, Endpoint, Transport, agent, pattern, send};

socket_tests!(lighttpd_echo, lighttpd_redirect, apache_echo, apache_redirect, caddy_echo, caddy_redirect);

fn lighttpd_echo(combo: Combo) {
    echo(Kind::Lighttpd, combo);
}

fn apache_echo(combo: Combo) {
    echo(Kind::Apache, combo);
}

fn caddy_echo(combo: Combo) {
    echo(Kind::Caddy, combo);
}

fn lighttpd_redirect(combo: Combo) {
    redirect(Kind::Lighttpd, combo);
}

fn apache_redirect(combo: Combo) {
    redirect(Kind::Apache, combo);
}

fn caddy_redirect(combo: Combo) {
    redirect(Kind::Caddy, combo);
}

fn echo(kind: Kind, combo: Combo) {
    let stack = WebStack::start(kind, "echo", combo);
    check_echo(&stack.server);
}

/// GETs with a query string, a 1 MiB POST hashed on both sides, and GETs after it (on
/// connections the server may reuse), all through `server` to echo.
fn check_echo(server: &WebServer) {
    let kind = server.kind;
    let agent = agent();
    let get = |n: usize| {
        let reply =
            send(agent.get(&server.url(&format!("/a/b?x={n}&y=two%20words"))).set("X-Test", "yes").call());
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.content_type.as_deref(), Some("text/plain"));
        let out = EchoOutput::parse(&reply.body);
        assert_eq!(out.get("QUERY_STRING"), Some(format!("x={n}&y=two%20words").as_str()), "{out:?}");
        assert_eq!(out.get("REQUEST_METHOD"), Some("GET"));
        assert_eq!(out.get("REQUEST_URI"), Some(format!("/a/b?x={n}&y=two%20words").as_str()));
        assert_eq!(out.get("GATEWAY_INTERFACE"), Some("CGI/1.1"));
        assert_eq!(out.get("SERVER_PROTOCOL"), Some("HTTP/1.1"));
        assert_eq!(out.get("HTTP_X_TEST"), Some("yes"));
        assert!(out.get("SERVER_SOFTWARE").is_some_and(|s| s.starts_with(kind.software())), "{out:?}");
        out.assert_stdin(0, EMPTY_SHA256);
    };
    get(1);
    get(2);

    let (body, sha) = pattern(1024 * 1024 + 1, 11);
    let reply = send(
        agent
            .post(&server.url("/upload?k=v"))
            .set("Content-Type", "application/octet-stream")
            .send_bytes(&body),
    );
    assert_eq!(reply.status, 200, "{reply:?}");
    let out = EchoOutput::parse(&reply.body);
    assert_eq!(out.get("REQUEST_METHOD"), Some("POST"));
    assert_eq!(out.get("QUERY_STRING"), Some("k=v"));
    assert_eq!(out.get("CONTENT_LENGTH"), Some(body.len().to_string().as_str()));
    assert_eq!(out.get("CONTENT_TYPE"), Some("application/octet-stream"));
    out.assert_stdin(body.len() as u64, &sha);

    get(3);
    server.assert_clean_log();
}

/// The redirect example's answers as the client sees them: each server passes `Location`
/// on; a `Location`-only answer gets the server's own status (`Kind::location_only_status`).
fn redirect(kind: Kind, combo: Combo) {
    let stack = WebStack::start(kind, "redirect", combo);
    let agent = agent();
    let get = |path: &str| send(agent.get(&stack.url(path)).call());

    // Local redirect (RFC 3875 §6.2.2): passed on as it is, not followed internally.
    let reply = get("/local");
    assert_eq!(reply.status, kind.location_only_status(), "{reply:?}");
    assert_eq!(reply.location.as_deref(), Some("/target"));

    // Client redirect (§6.2.3).
    let reply = get("/?to=https://example.com/x%3Fy");
    assert_eq!(reply.status, kind.location_only_status(), "{reply:?}");
    assert_eq!(reply.location.as_deref(), Some("https://example.com/x?y"));

    // Client redirect with document (§6.2.4): the status the app chose, in every server.
    for status in [301, 303, 307, 308] {
        let reply = get(&format!("/?status={status}&to=https://example.com/moved"));
        assert_eq!(reply.status, status, "{reply:?}");
        assert_eq!(reply.location.as_deref(), Some("https://example.com/moved"));
        assert_eq!(reply.body, "Redirecting to https://example.com/moved\n");
    }

    let reply = get("/target");
    assert_eq!((reply.status, reply.body.as_str()), (200, "reached /target (request URI /target)\n"));
    assert_eq!(get("/?to=no-scheme").status, 400);
    assert_eq!(get("/elsewhere").status, 404);
    stack.server.assert_clean_log();
}

/// lighttpd's `bin-path`: lighttpd creates the listening Unix socket, starts echo with it as
/// fd 0 and no `--listen` (FCGI_LISTENSOCK_FILENO), and stops it when it stops itself.
fn lighttpd_spawns(transport: Transport) {
    let binary = Kind::Lighttpd.binary();
    let echo = support::example("echo");
    let program = echo.to_str().expect("UTF-8 path").to_owned();
    assert!(!program.contains(char::is_whitespace), "lighttpd splits bin-path at whitespace: {program:?}");
    let server =
        WebServer::start_lighttpd_spawning(&binary, &format!("{program} --transport {}", transport.arg()));

    check_echo(&server);

    // The app is lighttpd's child, started without --listen, serving the socket on fd 0.
    let expected = vec![program.clone(), "--transport".to_owned(), transport.arg().to_owned()];
    let children = server.descendants();
    let pid = children
        .iter()
        .find(|(_, cmdline)| *cmdline == expected)
        .map(|(pid, _)| *pid)
        .unwrap_or_else(|| panic!("lighttpd did not start {expected:?}; its descendants: {children:?}"));
    let fd0 = std::fs::read_link(format!("/proc/{pid}/fd/0")).expect("read the app's fd 0");
    assert!(fd0.to_string_lossy().starts_with("socket:"), "the app's fd 0 is {fd0:?}");
    assert!(server.dir().join("lighty.sock-0").exists(), "lighttpd's socket:\n{}", server.logs());
    assert!(server.output().contains("listening on fd:0"), "{}", server.logs());

    // Stopping lighttpd stops the app (the drop would kill a leftover anyway).
    let status = std::process::Command::new("kill").args(["-TERM", &server.pid().to_string()]).status();
    assert!(status.expect("kill").success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while web::process_state(pid).is_some_and(|s| s != 'Z') {
        assert!(std::time::Instant::now() < deadline, "the app lighttpd started outlived it");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn lighttpd_spawns_mio() {
    lighttpd_spawns(Transport::Mio);
}

#[test]
fn lighttpd_spawns_smol() {
    lighttpd_spawns(Transport::Smol);
}

/// The deployment guide the snippets are checked against.
const GUIDE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/deploying.md");

/// The fenced blocks under the guide's heading that starts with `heading`, with comments and
/// blank lines dropped and trailing whitespace trimmed.
fn guide_blocks(heading: &str) -> Vec<String> {
    let guide = std::fs::read_to_string(GUIDE).expect("docs/deploying.md");
    let section = guide
        .split("\n## ")
        .find(|s| s.starts_with(heading))
        .unwrap_or_else(|| panic!("docs/deploying.md has no `## {heading}` section"));
    section
        .split("```")
        .skip(1)
        .step_by(2)
        .map(|block| normalize(block.split_once('\n').map_or("", |b| b.1)))
        .collect()
}

fn normalize(config: &str) -> String {
    config
        .lines()
        .map(|l| l.split('#').next().unwrap().trim_end())
        .filter(|l| !l.is_empty())
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The deployment guide's lighttpd, Apache and Caddy snippets are the ones the tests above
/// run with, for the guide's paths: the (comment-stripped) snippet appears in a block of its
/// section.
#[test]
fn guide_snippets_are_the_tested_configs() {
    let unix = Endpoint::Unix("/run/app.sock".into());
    let tcp = Endpoint::Tcp("127.0.0.1:9000".parse().unwrap());
    let cases = [
        ("lighttpd (tested end to end)", web::lighttpd_snippet(&unix)),
        (
            "lighttpd (tested end to end)",
            web::lighttpd_spawn_snippet("/run/app.sock".as_ref(), "/usr/local/bin/app --transport mio"),
        ),
        ("Apache (mod_proxy_fcgi, tested end to end)", web::apache_snippet(&unix)),
        ("Caddy (tested end to end)", web::caddy_snippet(&unix)),
    ];
    for (heading, snippet) in cases {
        let blocks = guide_blocks(heading);
        let snippet = normalize(&snippet);
        assert!(
            blocks.iter().any(|b| b.contains(&snippet)),
            "docs/deploying.md `## {heading}` does not show\n{snippet}\nits blocks (comments stripped):\n{}",
            blocks.join("----\n")
        );
    }
    // The TCP forms are shown in comments, verbatim.
    let guide = std::fs::read_to_string(GUIDE).unwrap();
    for line in [
        web::lighttpd_snippet(&tcp).lines().nth(2).unwrap().trim().to_owned(),
        web::apache_snippet(&tcp).trim().to_owned(),
        web::caddy_snippet(&tcp).lines().next().unwrap().trim().trim_end_matches(" {").to_owned(),
    ] {
        assert!(
            guide.contains(&format!("# or, over TCP: {line}")),
            "docs/deploying.md lacks `# or, over TCP: {line}`"
        );
    }
}
