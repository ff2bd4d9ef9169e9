//! The examples driven by libfcgi's `cgi-fcgi -bind -connect ADDR`, a second client that
//! shares no code with nginx: it sends its environment as the params and its stdin as the
//! body, and prints the raw CGI response. Each test body runs for every (transport, TCP or
//! Unix socket) pair.

mod support;

use std::ffi::OsStr;

use support::{App, Combo, EMPTY_SHA256, EchoOutput, TempDir, parse_ndjson, pattern, run_cgi_fcgi, tools};

socket_tests!(hello, echo, redirect, dirlist, upload);

/// The CGI head and body of cgi-fcgi's output.
fn split(output: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(output);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no CGI head in {text:?}"));
    (head.to_owned(), body.to_owned())
}

fn get_env<'a>(script: &'a str, query: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("GATEWAY_INTERFACE", "CGI/1.1"),
        ("QUERY_STRING", query),
        ("REQUEST_METHOD", "GET"),
        ("SCRIPT_NAME", script),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
    ]
}

fn hello(combo: Combo) {
    let tool = tools::cgi_fcgi();
    let app = App::start("hello", combo, &[]);
    for _ in 0..3 {
        let output = run_cgi_fcgi(&tool, &app.endpoint, &get_env("/", ""), b"");
        assert_eq!(
            String::from_utf8_lossy(&output),
            "Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n\r\nHello, World!\n"
        );
    }
}

fn echo(combo: Combo) {
    let tool = tools::cgi_fcgi();
    let app = App::start("echo", combo, &[]);

    // The environment goes out as the params (cgi-fcgi sends them in environ order, which
    // is sorted here); every byte comes back.
    let env = get_env("/echo", "a=1&b=%C3%A9&c");
    let output = run_cgi_fcgi(&tool, &app.endpoint, &env, b"");
    let (head, body) = split(&output);
    assert_eq!(head, "Status: 200 OK\r\nContent-Type: text/plain");
    let mut expected: String = env.iter().map(|(n, v)| format!("{n}={v}\n")).collect();
    expected += &format!("STDIN-LENGTH=0\nSTDIN-SHA256={EMPTY_SHA256}\n");
    assert_eq!(body, expected);

    // A 1 MiB POST body on stdin.
    let (bytes, sha) = pattern(1024 * 1024 + 1, 7);
    let length = bytes.len().to_string();
    let env = [
        ("CONTENT_LENGTH", length.as_str()),
        ("CONTENT_TYPE", "application/octet-stream"),
        ("REQUEST_METHOD", "POST"),
    ];
    let output = run_cgi_fcgi(&tool, &app.endpoint, &env, &bytes);
    let out = EchoOutput::parse(&split(&output).1);
    assert_eq!(out.get("CONTENT_LENGTH"), Some(length.as_str()));
    out.assert_stdin(bytes.len() as u64, &sha);
}

fn redirect(combo: Combo) {
    let tool = tools::cgi_fcgi();
    let app = App::start("redirect", combo, &[]);
    let run = |script: &str, query: &str| {
        String::from_utf8(run_cgi_fcgi(&tool, &app.endpoint, &get_env(script, query), b"")).unwrap()
    };
    assert_eq!(run("/local", ""), "Location: /target\r\n\r\n");
    assert_eq!(run("/", "to=https%3A%2F%2Fexample.com%2F"), "Location: https://example.com/\r\n\r\n");
    assert_eq!(
        run("/", "status=308&to=https://example.com/p"),
        "Status: 308 Permanent Redirect\r\nLocation: https://example.com/p\r\nContent-Type: text/plain; \
         charset=utf-8\r\n\r\nRedirecting to https://example.com/p\n"
    );
    assert!(run("/target", "").starts_with("Status: 200 OK\r\n"));
    assert!(run("/nope", "").starts_with("Status: 404 Not Found\r\n"));
    assert!(run("/", "to=javascript-no-colon").starts_with("Status: 400 Bad Request\r\n"));
}

fn dirlist(combo: Combo) {
    let tool = tools::cgi_fcgi();
    let root = TempDir::new("tree");
    std::fs::create_dir(root.path().join("d")).unwrap();
    std::fs::write(root.path().join("d").join("f.txt"), b"12345").unwrap();
    std::fs::create_dir(root.path().join("d").join("e")).unwrap();
    let app = App::start("dirlist", combo, &[OsStr::new("--root"), root.path().as_os_str()]);

    let output = run_cgi_fcgi(&tool, &app.endpoint, &get_env("/", "path=d"), b"");
    let (head, body) = split(&output);
    assert_eq!(head, "Status: 200 OK\r\nContent-Type: application/x-ndjson");
    let mut entries = parse_ndjson(&body);
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!((entries[0].name.as_str(), entries[0].kind.as_str()), ("e", "dir"));
    assert_eq!((entries[1].name.as_str(), entries[1].kind.as_str(), entries[1].size), ("f.txt", "file", 5));
    assert_eq!(entries.len(), 2);

    let output = run_cgi_fcgi(&tool, &app.endpoint, &get_env("/", "path=nope"), b"");
    assert!(String::from_utf8_lossy(&output).starts_with("Status: 404 Not Found\r\n"));
    let output = run_cgi_fcgi(&tool, &app.endpoint, &get_env("/", "path=../"), b"");
    assert!(String::from_utf8_lossy(&output).starts_with("Status: 403 Forbidden\r\n"));
}

fn upload(combo: Combo) {
    let tool = tools::cgi_fcgi();
    let dir = TempDir::new("uploads");
    let app = App::start("upload", combo, &[OsStr::new("--dir"), dir.path().as_os_str()]);
    let (bytes, sha) = pattern(500_000, 8);
    let length = bytes.len().to_string();
    let env =
        [("CONTENT_LENGTH", length.as_str()), ("QUERY_STRING", "name=data.bin"), ("REQUEST_METHOD", "PUT")];
    let output = run_cgi_fcgi(&tool, &app.endpoint, &env, &bytes);
    let (head, body) = split(&output);
    assert_eq!(body, format!("{{\"name\":\"data.bin\",\"size\":500000,\"sha256\":\"{sha}\"}}\n"));
    let expected_head =
        format!("Status: 201 Created\r\nContent-Type: application/json\r\nContent-Length: {}", body.len());
    assert_eq!(head, expected_head);
    assert_eq!(std::fs::read(dir.path().join("data.bin")).unwrap(), bytes);
}
