//! What nginx and cgi-fcgi never send, with the testkit's FastCGI client: the
//! Authorizer and Filter roles, a role the example does not accept, several requests on one
//! kept connection, and record-level checks (a flushed write is a record of its own). Each
//! test body runs for every (transport, TCP or Unix socket) pair.

mod support;

use std::ffi::OsStr;

use ember_fcgi_testkit::wire::{AUTHORIZER, FILTER, TextRequest as Request};
use support::{App, Combo, EMPTY_SHA256, EchoOutput, TempDir, pattern, sha256_hex};

socket_tests!(
    echo_roles_and_kept_connection,
    unaccepted_role,
    dirlist_flushes_each_entry,
    a_full_params_record
);

/// One PARAMS record of nearly 64 KiB, with hundreds of params (as nginx sends the largest
/// heads its default buffers admit): served whole with the default limits.
fn a_full_params_record(combo: Combo) {
    let app = App::start("echo", combo, &[]);
    let mut conn = app.endpoint.connect();
    let names: Vec<String> = (0..400).map(|i| format!("HTTP_X_HEADER_{i}")).collect();
    let values: Vec<String> = (0..400).map(|i| format!("{i:03}").repeat(45)).collect();
    let mut params: Vec<(&str, &str)> =
        names.iter().zip(&values).map(|(n, v)| (n.as_str(), v.as_str())).collect();
    params.push(("QUERY_STRING", "last=1"));
    let encoded = ember_fcgi_testkit::encode_pairs(&params).len();
    assert!((60_000..=65_535).contains(&encoded), "{encoded} bytes: one record");
    let reply = conn.roundtrip(&Request { keep_conn: true, params: &params, ..Request::default() });
    assert_eq!((reply.protocol_status, reply.app_status), (0, 0));
    let (head, body) = reply.split();
    assert!(head.starts_with("Status: 200 OK"), "{head}");
    let out = EchoOutput::parse(&body);
    for (name, value) in &params {
        assert_eq!(out.get(name), Some(*value), "{name}");
    }
    // The connection goes on.
    let params = [("QUERY_STRING", "again")];
    let reply = conn.roundtrip(&Request { keep_conn: true, params: &params, ..Request::default() });
    assert_eq!(EchoOutput::parse(&reply.split().1).get("QUERY_STRING"), Some("again"));
}

fn echo_roles_and_kept_connection(combo: Combo) {
    let app = App::start("echo", combo, &[]);
    let mut conn = app.endpoint.connect();

    // Authorizer: no body; 200 plus a Variable-* header grants access.
    let params = [("REMOTE_USER", "bob"), ("REQUEST_METHOD", "GET"), ("REQUEST_URI", "/private")];
    let reply =
        conn.roundtrip(&Request { role: AUTHORIZER, keep_conn: true, params: &params, ..Request::default() });
    assert_eq!((reply.protocol_status, reply.app_status), (0, 0));
    let (head, body) = reply.split();
    assert_eq!(head, "Status: 200 OK\r\nContent-Type: text/plain\r\nVariable-AUTH-ECHO: 1");
    assert_eq!(
        body,
        format!(
            "REMOTE_USER=bob\nREQUEST_METHOD=GET\nREQUEST_URI=/private\nSTDIN-LENGTH=0\nSTDIN-SHA256={EMPTY_SHA256}\n"
        )
    );

    // Filter: FCGI_STDIN, then the file to filter on FCGI_DATA.
    let (data, data_sha) = pattern(200_000, 9);
    let data_length = data.len().to_string();
    let params = [("FCGI_DATA_LENGTH", data_length.as_str()), ("CONTENT_LENGTH", "5")];
    let request = Request {
        id: 2,
        role: FILTER,
        keep_conn: true,
        params: &params,
        stdin: b"input",
        data: &data,
        ..Request::default()
    };
    let reply = conn.roundtrip(&request);
    let (head, body) = reply.split();
    assert_eq!(head, "Status: 200 OK\r\nContent-Type: text/plain");
    let out = EchoOutput::parse(&body);
    out.assert_stdin(5, &sha256_hex(b"input"));
    assert_eq!(out.get("DATA-LENGTH"), Some(data_length.as_str()));
    assert_eq!(out.get("DATA-SHA256"), Some(data_sha.as_str()));

    // More Responder requests on the same connection, reusing request ids.
    for id in [1, 1, 7] {
        let query = format!("id={id}");
        let params = [("QUERY_STRING", query.as_str())];
        let reply = conn.roundtrip(&Request { id, keep_conn: true, params: &params, ..Request::default() });
        let out = EchoOutput::parse(&reply.split().1);
        assert_eq!(out.get("QUERY_STRING"), Some(query.as_str()));
        assert!(out.get("DATA-LENGTH").is_none());
    }

    // Without FCGI_KEEP_CONN the application closes the connection after the reply.
    let reply = conn.roundtrip(&Request::default());
    assert_eq!(reply.protocol_status, 0);
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut conn.stream, &mut rest).expect("clean close");
    assert!(rest.is_empty(), "nothing after END_REQUEST: {rest:?}");
}

fn unaccepted_role(combo: Combo) {
    // hello keeps the default limits: Responder only.
    let app = App::start("hello", combo, &[]);
    let mut conn = app.endpoint.connect();
    let reply = conn.roundtrip(&Request { role: FILTER, keep_conn: true, data: b"x", ..Request::default() });
    assert_eq!(reply.protocol_status, 3, "FCGI_UNKNOWN_ROLE");
    assert!(reply.stdout.is_empty());
    let reply = conn.roundtrip(&Request { role: AUTHORIZER, keep_conn: true, ..Request::default() });
    assert_eq!(reply.protocol_status, 3, "FCGI_UNKNOWN_ROLE");
    // The connection is still good for a Responder.
    let reply = conn.roundtrip(&Request { keep_conn: true, ..Request::default() });
    assert_eq!(reply.protocol_status, 0);
    assert!(reply.stdout_text().ends_with("\r\n\r\nHello, World!\n"));
}

fn dirlist_flushes_each_entry(combo: Combo) {
    let root = TempDir::new("tree");
    for i in 0..40 {
        std::fs::write(root.path().join(format!("file{i}")), b"").unwrap();
    }
    let app = App::start("dirlist", combo, &[OsStr::new("--root"), root.path().as_os_str()]);
    let mut conn = app.endpoint.connect();
    let reply = conn.roundtrip(&Request { params: &[("QUERY_STRING", "path=/")], ..Request::default() });
    let (_, body) = reply.split();
    assert_eq!(support::parse_ndjson(&body).len(), 40);
    // The head goes out with the first entry; every later entry is flushed on its own.
    assert!(reply.stdout_records >= 40, "{} STDOUT records for 40 flushed entries", reply.stdout_records);
}
