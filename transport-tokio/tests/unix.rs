//! Serving on a Unix socket path with `run()`.

mod common;

use common::*;
use ember_fcgi_tokio::{Listen, Server};

#[test]
fn unix_socket_serves_with_run() {
    let path = std::env::temp_dir().join(format!("ember-tokio-{}.sock", std::process::id()));
    let listen = Listen::Unix { path: path.clone(), mode: Some(0o600), owner: None, group: None };
    let app = TestApp::default();
    let server = Server::bind(&listen, app.clone(), test_limits()).expect("bind");
    assert_eq!(server.local_addr(), None);
    let server = Running::start(server, app, Mode::Run);
    let mut c = Client::unix(&path);
    for i in 0..20 {
        let body = format!("unix {i}");
        assert_eq!(c.request(true, "/echo", "", body.as_bytes()).body(), body.as_bytes());
    }
    assert_eq!(c.request(true, "/sleep", "ms=10", b"").status(), 200);
    assert_eq!(c.request(false, "/hello", "", b"").body(), b"Hello, World!\n");
    assert!(c.closed_by_server());
    server.wait_for("no open connections", |s| s.open_connections == 0);
    server.stop().expect("run returns Ok");
    assert!(!path.exists(), "the socket file is removed when the server stops");
}
