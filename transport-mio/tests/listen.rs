//! Where the server listens: TCP over IPv4 and IPv6, a Unix socket path (mode, stale file),
//! the socket inherited as fd 0, and the FCGI_WEB_SERVER_ADDRS allow-list.

mod common;

use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::process::{Child, Command, Stdio};

use common::*;
use ember_fcgi_mio::{BindError, Limits, Listen, Server, WebServerAddrs};
use ember_fcgi_testkit::web::TempDir;

/// Set in the environment of a child that serves its fd 0 (see `serve_fd0_if_child`).
const CHILD_ENV: &str = "EMBER_MIO_FD0_CHILD";

/// The test that runs this binary again as its child calls this first: in the child it
/// serves the inherited fd 0 until killed and never returns; in the test it does nothing.
/// (The child runs the same test, so no helper is registered as a test of its own.)
fn serve_fd0_if_child() {
    if std::env::var_os(CHILD_ENV).is_some() {
        let server =
            Server::bind(&Listen::Inherited, TestHandler, test_limits()).expect("fd 0 is a listener");
        server.run().expect("run");
        std::process::exit(0);
    }
}

#[test]
fn tcp_ipv4_and_ipv6() {
    for addr in ["127.0.0.1:0", "[::1]:0"] {
        let listen: Listen = addr.parse().unwrap();
        let server = Running::start(Server::bind(&listen, TestHandler, test_limits()).unwrap());
        assert_eq!(server.addr.unwrap().is_ipv6(), addr.starts_with('['));
        let mut c = server.client();
        assert_eq!(c.get("/hello", addr), format!("hello {addr}"));
        drop(c);
        server.wait_no_connections();
        assert_eq!(server.stop().accepted, 1);
    }
}

#[test]
fn unix_socket_with_mode_replacing_a_stale_file() {
    let dir = TempDir::new("mio-unix");
    let path = dir.path().join("fcgi.sock");
    // A stale socket file: bound, then its owner went away without removing it.
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let listen = Listen::Unix { path: path.clone(), mode: Some(0o600), owner: None, group: None };
    let server = Server::bind(&listen, TestHandler, test_limits()).unwrap();
    assert_eq!(server.local_addr(), None);
    // Unix peers are not checked against the TCP allow-list.
    let server = Running::start(server.with_web_server_addrs(WebServerAddrs::parse("10.0.0.1")));
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    // A live socket is not replaced.
    assert!(matches!(Server::bind(&listen, TestHandler, test_limits()), Err(BindError::InUse(_))));
    let mut clients: Vec<Client> = (0..20).map(|_| Client::unix(&path)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(c.get("/hello", &i.to_string()), format!("hello {i}"));
    }
    drop(clients);
    server.wait_no_connections();
    let s = server.stop();
    // 20 clients, plus the probe `bind` made to see the socket is live.
    assert_eq!((s.accepted, s.refused_not_allowed), (21, 0));
    assert!(!path.exists(), "the socket file is removed when the server stops");
}

#[test]
fn web_server_addrs_refuses_other_tcp_peers() {
    let listen = Listen::Tcp("127.0.0.1:0".parse().unwrap());
    let server = Server::bind(&listen, TestHandler, test_limits()).unwrap();
    let server = Running::start(server.with_web_server_addrs(WebServerAddrs::parse("10.9.9.9")));
    let mut c = server.client();
    c.send(&request_bytes(1, true, "/hello", "x", b""));
    assert!(c.closed_by_server());
    let s = server.stop();
    assert_eq!((s.refused_not_allowed, s.accepted, s.requests), (1, 0, 0));

    let server = Server::bind(&listen, TestHandler, test_limits()).unwrap();
    let server = Running::start(server.with_web_server_addrs(WebServerAddrs::parse("10.9.9.9, 127.0.0.1")));
    assert_eq!(server.client().get("/hello", "ok"), "hello ok");
}

#[test]
fn no_inherited_socket_is_a_clear_error() {
    // The test's own stdin is not a listening socket.
    match Server::bind(&Listen::Inherited, TestHandler, Limits::default()) {
        Err(e @ BindError::NoInheritedSocket) => assert!(e.to_string().contains("fd 0")),
        other => panic!("expected NoInheritedSocket, got {other:?}"),
    }
}

/// Runs this test binary again as a FastCGI app whose fd 0 is `listener` (the child runs
/// `inherited_fd0_tcp_and_unix_with_env_allow_list`, which serves when `CHILD_ENV` is set).
fn spawn_child(listener: OwnedFd, web_server_addrs: Option<&str>) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "inherited_fd0_tcp_and_unix_with_env_allow_list",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_ENV, "1")
    .env_remove("FCGI_WEB_SERVER_ADDRS")
    .stdin(Stdio::from(listener))
    .stdout(Stdio::null())
    .stderr(Stdio::inherit());
    if let Some(list) = web_server_addrs {
        cmd.env("FCGI_WEB_SERVER_ADDRS", list);
    }
    cmd.spawn().expect("spawn child")
}

fn stop_child(mut child: Child) {
    // Our own child, by its id.
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn inherited_fd0_tcp_and_unix_with_env_allow_list() {
    serve_fd0_if_child();
    // TCP, peer allowed by FCGI_WEB_SERVER_ADDRS.
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = tcp.local_addr().unwrap();
    let child = spawn_child(OwnedFd::from(tcp), Some("127.0.0.1"));
    let mut c = Client::tcp(addr);
    assert_eq!(c.get("/hello", "fd0"), "hello fd0");
    drop(c);
    stop_child(child);

    // TCP, peer not in FCGI_WEB_SERVER_ADDRS: closed before a byte is read.
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = tcp.local_addr().unwrap();
    let child = spawn_child(OwnedFd::from(tcp), Some("192.0.2.1"));
    let mut c = Client::tcp(addr);
    c.send(&request_bytes(1, true, "/hello", "x", b""));
    assert!(c.closed_by_server());
    stop_child(child);

    // A Unix listening socket as fd 0.
    let dir = TempDir::new("mio-fd0");
    let path = dir.path().join("inherited.sock");
    let unix = UnixListener::bind(&path).unwrap();
    let child = spawn_child(OwnedFd::from(unix), None);
    let mut c = Client::unix(&path);
    assert_eq!(c.get("/hello", "unix fd0"), "hello unix fd0");
    assert_eq!(c.get("/hello", "again"), "hello again");
    drop(c);
    stop_child(child);
}
