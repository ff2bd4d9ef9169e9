//! The notes example behind a real nginx, on both transports (TCP, keep-alive): create,
//! fetch, list (streamed), bad input, concurrent writers, and the data still there after a
//! graceful restart of the app on the same database file.

mod support;

use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;

use support::{Combo, Socket, Stack, TempDir, Transport, agent, send};

fn combo(transport: Transport) -> Combo {
    Combo { transport, socket: Socket::Tcp, keepalive: true }
}

fn start(transport: Transport, db: &Path) -> Stack {
    Stack::start("notes", combo(transport), &[OsStr::new("--db"), db.as_os_str()])
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"))
}

fn post(stack: &Stack, body: &str) -> support::Reply {
    send(agent().post(&stack.url("/notes")).set("Content-Type", "application/json").send_string(body))
}

/// The NDJSON listing as (id, title) pairs.
fn list(stack: &Stack) -> Vec<(i64, String)> {
    let reply = send(agent().get(&stack.url("/notes")).call());
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.content_type.as_deref(), Some("application/x-ndjson"));
    reply
        .body
        .lines()
        .map(|line| {
            let v = json(line);
            (v["id"].as_i64().expect("id"), v["title"].as_str().expect("title").to_owned())
        })
        .collect()
}

fn create_fetch_and_bad_input(transport: Transport) {
    let dir = TempDir::new("notes");
    let db = dir.path().join("notes.db");
    let stack = start(transport, &db);
    let agent = agent();

    let reply = post(&stack, r#"{"title":"  first  ","body":"hello <world>"}"#);
    assert_eq!(reply.status, 201, "{reply:?}");
    assert_eq!(reply.content_type.as_deref(), Some("application/json"));
    let note = json(&reply.body);
    let id = note["id"].as_i64().expect("id");
    assert_eq!((note["title"].as_str(), note["body"].as_str()), (Some("first"), Some("hello <world>")));
    assert_eq!(reply.location, Some(format!("/notes/{id}")));

    let fetched = send(agent.get(&stack.url(&format!("/notes/{id}"))).call());
    assert_eq!(fetched.status, 200);
    assert_eq!(json(&fetched.body), note);

    let home = send(agent.get(&stack.url("/")).call());
    assert_eq!(home.status, 200);
    assert_eq!(home.content_type.as_deref(), Some("text/html; charset=utf-8"));
    assert!(home.body.contains(&format!("<a href=\"/notes/{id}\">first</a>")), "{}", home.body);

    // Bad input: the status and the reason.
    let cases: [(&str, u16, &str); 5] = [
        ("not json", 400, "the body must be a JSON object"),
        (r#"{"body":"no title"}"#, 400, "title is required"),
        (r#"{"title":"   "}"#, 400, "title is required"),
        (r#"{"title":"x","body":7}"#, 400, "body must be a string"),
        (&format!(r#"{{"title":"{}"}}"#, "t".repeat(201)), 400, "title is longer than 200 characters"),
    ];
    for (body, status, error) in cases {
        let reply = post(&stack, body);
        assert_eq!((reply.status, json(&reply.body)["error"].as_str()), (status, Some(error)), "{body}");
    }
    let big = format!(r#"{{"title":"big","body":"{}"}}"#, "b".repeat(20_000));
    assert_eq!(post(&stack, &big).status, 413);
    assert_eq!(send(agent.get(&stack.url("/notes/99999")).call()).status, 404);
    assert_eq!(send(agent.get(&stack.url("/notes/abc")).call()).status, 400);
    assert_eq!(send(agent.get(&stack.url("/nowhere")).call()).status, 404);
    let put = send(agent.put(&stack.url("/notes")).send_string("{}"));
    assert_eq!(put.status, 405);
    let patch = agent.request("PATCH", &stack.url(&format!("/notes/{id}"))).call();
    let allow = match patch {
        Err(ureq::Error::Status(405, r)) => r.header("Allow").map(str::to_owned),
        other => panic!("PATCH: {other:?}"),
    };
    assert_eq!(allow.as_deref(), Some("GET, DELETE"));

    // Delete, then it is gone.
    assert_eq!(send(agent.delete(&stack.url(&format!("/notes/{id}"))).call()).status, 204);
    assert_eq!(send(agent.get(&stack.url(&format!("/notes/{id}"))).call()).status, 404);
    assert_eq!(send(agent.delete(&stack.url(&format!("/notes/{id}"))).call()).status, 404);
    assert!(list(&stack).is_empty());
    stack.nginx.assert_clean_log();
}

fn concurrent_writers_then_restart(transport: Transport) {
    const WRITERS: usize = 8;
    const EACH: usize = 40;
    let dir = TempDir::new("notes");
    let db = dir.path().join("notes.db");
    let stack = start(transport, &db);
    std::thread::scope(|scope| {
        for w in 0..WRITERS {
            let stack = &stack;
            scope.spawn(move || {
                for i in 0..EACH {
                    let reply =
                        post(stack, &format!(r#"{{"title":"w{w} n{i}","body":"{}"}}"#, "x".repeat(i * 50)));
                    assert_eq!(reply.status, 201, "{reply:?}");
                }
            });
        }
    });
    let listed = list(&stack);
    assert_eq!(listed.len(), WRITERS * EACH, "every note stored once, listed over several pages");
    assert!(listed.windows(2).all(|w| w[0].0 < w[1].0), "in id order, no duplicates");
    for w in 0..WRITERS {
        for i in 0..EACH {
            assert!(listed.iter().any(|(_, t)| *t == format!("w{w} n{i}")), "w{w} n{i} missing");
        }
    }
    stack.nginx.assert_clean_log();

    // Graceful restart of the app on the same database file.
    let Stack { nginx, mut app } = stack;
    drop(nginx);
    app.terminate();
    assert_eq!(app.wait_exit(Duration::from_secs(10)), Some(0), "{}", app.log());
    let again = start(transport, &db);
    assert_eq!(list(&again), listed, "the notes survive a restart");
    let one = &listed[17];
    let fetched = send(agent().get(&again.url(&format!("/notes/{}", one.0))).call());
    assert_eq!(json(&fetched.body)["title"].as_str(), Some(one.1.as_str()));
    again.nginx.assert_clean_log();
}

#[test]
fn mio_create_fetch_and_bad_input() {
    create_fetch_and_bad_input(Transport::Mio);
}

#[test]
fn smol_create_fetch_and_bad_input() {
    create_fetch_and_bad_input(Transport::Smol);
}

#[test]
fn mio_concurrent_writers_then_restart() {
    concurrent_writers_then_restart(Transport::Mio);
}

#[test]
fn smol_concurrent_writers_then_restart() {
    concurrent_writers_then_restart(Transport::Smol);
}
