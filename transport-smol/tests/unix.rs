//! Serving on a Unix socket path, and the errors binding reports.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use common::*;
use ember_fcgi_smol::{BindError, Listen, Server, WebServerAddrs};

fn socket_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("ember-smol-{}-{name}.sock", std::process::id()))
}

#[test]
fn unix_socket_serves_and_is_removed_after() {
    let path = socket_path("serve");
    let listen = Listen::Unix { path: path.clone(), mode: Some(0o600), owner: None, group: None };
    let app = TestApp::default();
    // An allow-list applies to TCP peers only: Unix peers are guarded by file permissions.
    let server = Server::bind(&listen, app.clone(), test_limits())
        .expect("bind")
        .with_web_server_addrs(WebServerAddrs::parse("10.9.9.9"));
    assert_eq!(server.local_addr(), None);
    let mode = std::fs::metadata(&path).expect("the socket file exists once bound").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the socket file has the mode asked for");
    let server = Running::start(server, app, 0);

    let mut c = Client::unix(&path);
    for i in 0..50 {
        let body = format!("unix {i}");
        assert_eq!(c.request(true, "/echo", "", body.as_bytes()).body(), body.as_bytes());
    }
    drop(c);
    let mut once = Client::unix(&path);
    assert_eq!(once.request(false, "/hello", "", b"").body(), b"Hello, World!\n");
    assert!(once.closed_by_server());

    // A second server on the same live path is refused with a clear error.
    let err = Server::bind(&listen, TestApp::default(), test_limits()).expect_err("in use");
    assert!(matches!(err, BindError::InUse(_)), "{err:?}");
    assert_eq!(err.to_string(), format!("cannot listen on unix:{}: address in use", path.display()));

    // Three: the second bind probed the live path with a connection of its own.
    let s = server.wait_for("all closed", |s| s.accepted == 3 && s.open_connections == 0);
    assert_eq!((s.requests, s.refused_not_allowed), (51, 0));
    server.stop().expect("run");
    assert!(!path.exists(), "the socket file is removed when the server stops");
}

#[test]
fn bind_errors_say_what_failed() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let listen = Listen::Tcp(taken.local_addr().unwrap());
    let err = Server::bind(&listen, TestApp::default(), test_limits()).expect_err("in use");
    assert_eq!(err.to_string(), format!("cannot listen on {}: address in use", taken.local_addr().unwrap()));

    // The test's stdin is not a listening socket.
    let err = Server::bind(&Listen::Inherited, TestApp::default(), test_limits()).expect_err("no fd 0");
    assert!(matches!(err, BindError::NoInheritedSocket));
    assert!(err.to_string().contains("FCGI_LISTENSOCK_FILENO"), "{err}");

    let listen = Listen::unix("/nonexistent-dir/x.sock");
    let err = Server::bind(&listen, TestApp::default(), test_limits()).expect_err("no dir");
    assert!(err.to_string().starts_with("cannot listen on unix:/nonexistent-dir/x.sock: "), "{err}");
}
