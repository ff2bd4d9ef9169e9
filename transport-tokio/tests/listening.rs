//! What the other servers have, on tokio too: the status and ping pages (`StatusPages`
//! around any handler), `FCGI_WEB_SERVER_ADDRS` (set, and from the environment), the
//! socket a FastCGI launcher passes as fd 0, and `max_connections`. The fd-0 tests run this
//! binary again, running that same test, as the child server (see `serve_if_child`).

mod common;

use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::process::{Child, Command, Stdio};

use common::*;
use ember_fcgi::server::StatusPages;
use ember_fcgi_testkit::RequestSpec;
use ember_fcgi_tokio::{Listen, Server, WebServerAddrs};

const CHILD: &str = "EMBER_TOKIO_TEST_CHILD";

#[test]
fn status_and_ping_pages_wrap_the_handler() {
    serve_if_child();
    let pages = StatusPages::new(TestApp::default()).with_status_path("/status").with_ping_path("/ping");
    let board = pages.board();
    let server = Server::bind(&"127.0.0.1:0".parse().unwrap(), pages, test_limits()).expect("bind");
    board.add(server.stats());
    let (addr, stop) = (server.local_addr().unwrap(), server.shutdown_handle());
    let thread = std::thread::spawn(move || server.run());
    let mut c = Client::tcp(addr);
    let get = |c: &mut Client, uri: &str| {
        let params: &[(&str, &str)] =
            &[("SCRIPT_NAME", uri), ("DOCUMENT_URI", uri), ("REQUEST_METHOD", "GET")];
        c.roundtrip(&RequestSpec { keep_conn: true, params, ..RequestSpec::default() })
    };
    assert_eq!(get(&mut c, "/hello").body(), b"Hello, World!\n");
    assert_eq!(get(&mut c, "/ping").body(), b"pong\n");
    let status = get(&mut c, "/status");
    assert_eq!(status.status(), 200);
    assert!(status.body_str().contains("requests"), "{}", status.body_str());
    drop(c);
    stop.shutdown();
    thread.join().unwrap().expect("run returns Ok");
}

#[test]
fn peer_outside_web_server_addrs_is_refused() {
    serve_if_child();
    let app = TestApp::default();
    let server = Server::bind(&"127.0.0.1:0".parse().unwrap(), app.clone(), test_limits())
        .expect("bind")
        .with_web_server_addrs(WebServerAddrs::parse("10.1.2.3, 192.0.2.1"));
    let server = Running::start(server, app, Mode::Serve);
    let mut c = Client::tcp(server.addr());
    assert!(c.closed_by_server());
    let s = server.wait_for("the refusal", |s| s.refused_not_allowed == 1);
    assert_eq!((s.accepted, s.open_connections), (0, 0));
}

#[test]
fn over_max_connections_is_accepted_and_closed() {
    serve_if_child();
    let server = Running::tcp(test_limits().with_max_connections(2), Mode::Run);
    let mut c1 = Client::tcp(server.addr());
    let mut c2 = Client::tcp(server.addr());
    assert_eq!(c1.request(true, "/hello", "", b"").status(), 200);
    assert_eq!(c2.request(true, "/hello", "", b"").status(), 200);
    let mut c3 = Client::tcp(server.addr());
    assert!(c3.closed_by_server());
    let s = server.wait_for("a refusal", |s| s.refused_over_limit == 1);
    assert_eq!(s.open_connections, 2);
    assert_eq!(c1.get_values(&["FCGI_MAX_CONNS"]), [("FCGI_MAX_CONNS".to_owned(), "2".to_owned())]);
    drop((c1, c2));
    // Or the next connection could still be over the limit.
    server.wait_for("no open connections", |s| s.open_connections == 0);
    server.check_healthy();
}

#[test]
fn inherited_tcp_socket_and_web_server_addrs_from_the_environment() {
    serve_if_child();
    let test = "inherited_tcp_socket_and_web_server_addrs_from_the_environment";
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    let _child = spawn_child(test, listener.into(), &[("FCGI_WEB_SERVER_ADDRS", "10.20.30.40, 127.0.0.1")]);
    let mut c = Client::tcp(addr);
    for i in 0..10 {
        let body = format!("fd0 {i}");
        assert_eq!(c.request(true, "/echo", "", body.as_bytes()).body(), body.as_bytes());
    }
    assert_eq!(c.request(true, "/sleep", "ms=5", b"").status(), 200);

    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    let _child = spawn_child(test, listener.into(), &[("FCGI_WEB_SERVER_ADDRS", "10.20.30.40")]);
    assert!(Client::tcp(addr).closed_by_server(), "127.0.0.1 is not in FCGI_WEB_SERVER_ADDRS");
}

/// Every test calls this first: in a child started by [`spawn_child`] it serves the socket
/// inherited as fd 0 until killed and never returns; in the test itself it does nothing.
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
