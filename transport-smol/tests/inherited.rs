//! The FastCGI launch convention: a listening socket passed as fd 0, found without any
//! address given, and `FCGI_WEB_SERVER_ADDRS` from the environment. Each test runs this
//! binary again, running that same test, as the child server (see `serve_if_child`).

mod common;

use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::process::{Child, Command, Stdio};

use common::*;
use ember_fcgi_smol::{Listen, Server};

const CHILD: &str = "EMBER_SMOL_TEST_CHILD";

/// Every test calls this first: in a child started by [`spawn_child`] it serves the socket
/// inherited as fd 0 until killed and never returns; in the test itself it does nothing.
/// (So no helper is registered as a test that passes by doing nothing.)
fn serve_if_child() {
    if std::env::var_os(CHILD).is_some() {
        let server = Server::bind(&Listen::Inherited, TestApp::default(), test_limits()).expect("fd 0");
        server.run().expect("run");
        std::process::exit(0);
    }
}

/// Starts this test binary, running test `test`, as a FastCGI application whose fd 0 is
/// `listener`.
fn spawn_child(test: &str, listener: OwnedFd, env: &[(&str, &str)]) -> KillOnDrop {
    let exe = std::env::current_exe().expect("current_exe");
    let child = Command::new(exe)
        .args(["--exact", test, "--test-threads=1", "--nocapture"])
        .env(CHILD, "1")
        .env_remove("FCGI_WEB_SERVER_ADDRS")
        .envs(env.iter().copied())
        .stdin(Stdio::from(listener))
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn child");
    KillOnDrop(child)
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn inherited_tcp_socket() {
    serve_if_child();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    let _child = spawn_child("inherited_tcp_socket", listener.into(), &[]);
    assert_eq!(get_once(addr, "/hello", "").body(), b"Hello, World!\n");
    let mut c = Client::tcp(addr);
    for i in 0..20 {
        let body = format!("fd0 {i}");
        assert_eq!(c.request(true, "/echo", "", body.as_bytes()).body(), body.as_bytes());
    }
}

#[test]
fn inherited_unix_socket() {
    serve_if_child();
    let path = std::env::temp_dir().join(format!("ember-smol-{}-fd0.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).expect("bind");
    let _child = spawn_child("inherited_unix_socket", listener.into(), &[]);
    let mut c = Client::unix(&path);
    assert_eq!(c.request(true, "/hello", "", b"").body(), b"Hello, World!\n");
    drop(c);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn web_server_addrs_from_the_environment() {
    serve_if_child();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    let _child = spawn_child(
        "web_server_addrs_from_the_environment",
        listener.into(),
        &[("FCGI_WEB_SERVER_ADDRS", "10.20.30.40,192.0.2.7")],
    );
    let mut c = Client::tcp(addr);
    assert!(c.closed_by_server(), "127.0.0.1 is not in FCGI_WEB_SERVER_ADDRS");

    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    let _child = spawn_child(
        "web_server_addrs_from_the_environment",
        listener.into(),
        &[("FCGI_WEB_SERVER_ADDRS", "10.20.30.40, 127.0.0.1")],
    );
    assert_eq!(get_once(addr, "/hello", "").body(), b"Hello, World!\n");
}
