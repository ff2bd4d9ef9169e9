//! The examples as programs: their command line, the listening socket inherited as fd 0,
//! and a graceful shutdown on SIGTERM that lets an in-flight request finish.

mod support;

use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use ember_fcgi_testkit::wire::{self as fcgi, TextRequest as Request};
use support::{App, Combo, EchoOutput, Endpoint, Socket, TempDir, Transport, example, sha256_hex};

const EXAMPLES: [&str; 5] = ["hello", "echo", "dirlist", "upload", "redirect"];

#[test]
fn bad_arguments_print_usage_and_exit_2() {
    let cases: &[&[&str]] = &[
        &["--transport", "tokio"],
        &["--transport"],
        &["--listen", "not an address"],
        &["--listen", "unix:"],
        &["--no-such-option"],
        &["positional"],
    ];
    for name in EXAMPLES {
        let required: &[&str] = match name {
            "dirlist" => &["--root", "/"],
            "upload" => &["--dir", "/tmp"],
            _ => &[],
        };
        for case in cases {
            let output = Command::new(example(name)).args(required).args(*case).output().unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(2), "{name} {case:?}: {stderr}");
            assert!(
                stderr.contains(&format!("usage: {name} [--transport mio|smol]")),
                "{name} {case:?}: {stderr}"
            );
        }
        let output = Command::new(example(name)).arg("--help").output().unwrap();
        assert_eq!(output.status.code(), Some(0));
        assert!(String::from_utf8_lossy(&output.stdout).starts_with(&format!("usage: {name} ")));
    }
    for (name, arg) in [("dirlist", "--root"), ("upload", "--dir")] {
        let output = Command::new(example(name)).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{name} without {arg}");
        assert!(String::from_utf8_lossy(&output.stderr).contains(&format!("{arg} DIR is required")));
    }
}

#[test]
fn without_listen_and_without_a_socket_on_fd_0_it_says_so() {
    for transport in ["mio", "smol"] {
        let output = Command::new(example("hello"))
            .args(["--transport", transport])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("fd 0 is not a listening socket"), "{stderr}");
    }
}

#[test]
fn an_address_in_use_is_an_error() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    for transport in ["mio", "smol"] {
        let output = Command::new(example("hello"))
            .args(["--transport", transport, "--listen", &addr])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("address in use"), "{stderr}");
    }
}

/// Started the FastCGI way (spawn-fcgi, lighttpd `bin-path`): the listening socket is fd 0.
fn serves_inherited_socket(transport: Transport, socket: Socket) {
    let dir = TempDir::new("fd0");
    let (fd, endpoint): (OwnedFd, Endpoint) = match socket {
        Socket::Tcp => {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            (listener.into(), Endpoint::Tcp(addr))
        }
        Socket::Unix => {
            let path = dir.path().join("fd0.sock");
            (UnixListener::bind(&path).unwrap().into(), Endpoint::Unix(path))
        }
    };
    let mut command = Command::new(example("hello"));
    command.args(["--transport", transport.arg()]).stdin(Stdio::from(fd));
    let app = App::spawn("hello", command, dir, Some(endpoint.clone()));
    assert_eq!(app.endpoint, endpoint, "`listening on` names the inherited socket");
    for _ in 0..2 {
        let reply = app.endpoint.connect().roundtrip(&Request::default());
        assert_eq!(reply.split().1, "Hello, World!\n");
    }
}

#[test]
fn inherited_tcp_socket_mio() {
    serves_inherited_socket(Transport::Mio, Socket::Tcp);
}

#[test]
fn inherited_tcp_socket_smol() {
    serves_inherited_socket(Transport::Smol, Socket::Tcp);
}

#[test]
fn inherited_unix_socket_mio() {
    serves_inherited_socket(Transport::Mio, Socket::Unix);
}

#[test]
fn inherited_unix_socket_smol() {
    serves_inherited_socket(Transport::Smol, Socket::Unix);
}

/// SIGTERM while a request's body is half sent: the request completes, then the process
/// exits 0.
fn sigterm_is_graceful(transport: Transport) {
    let combo = Combo { transport, socket: Socket::Tcp, keepalive: false };
    let mut app = App::start("echo", combo, &[]);
    let mut conn = app.endpoint.connect();
    let body = b"0123456789";
    let mut first = fcgi::record(fcgi::BEGIN_REQUEST, 1, &[0, 1, 0, 0, 0, 0, 0, 0]);
    first.extend(fcgi::record(
        fcgi::PARAMS,
        1,
        &ember_fcgi_testkit::encode_pairs(&[("CONTENT_LENGTH", "10")]),
    ));
    first.extend(fcgi::record(fcgi::PARAMS, 1, b""));
    first.extend(fcgi::record(fcgi::STDIN, 1, &body[..4]));
    conn.send(&first);
    std::thread::sleep(Duration::from_millis(200));
    app.terminate();
    std::thread::sleep(Duration::from_millis(200));
    let mut rest = fcgi::record(fcgi::STDIN, 1, &body[4..]);
    rest.extend(fcgi::record(fcgi::STDIN, 1, b""));
    conn.send(&rest);
    let reply = conn.reply(1);
    EchoOutput::parse(&reply.split().1).assert_stdin(10, &sha256_hex(body));
    drop(conn);
    assert_eq!(app.wait_exit(Duration::from_secs(15)), Some(0), "exit status; stderr:\n{}", app.log());
}

#[test]
fn sigterm_is_graceful_mio() {
    sigterm_is_graceful(Transport::Mio);
}

#[test]
fn sigterm_is_graceful_smol() {
    sigterm_is_graceful(Transport::Smol);
}

/// `--listen [::1]:0` (fails where the host has no IPv6 loopback).
#[test]
fn listens_on_ipv6_loopback() {
    ember_fcgi_testkit::tools::require_ipv6_loopback();
    for transport in [Transport::Mio, Transport::Smol] {
        let mut command = Command::new(example("hello"));
        command.args(["--transport", transport.arg(), "--listen", "[::1]:0"]).stdin(Stdio::null());
        let app = App::spawn("hello", command, TempDir::new("v6"), None);
        assert!(matches!(app.endpoint, Endpoint::Tcp(addr) if addr.is_ipv6()), "{:?}", app.endpoint);
        let reply = app.endpoint.connect().roundtrip(&Request::default());
        assert_eq!(reply.split().1, "Hello, World!\n");
    }
}

/// `FCGI_WEB_SERVER_ADDRS` from the environment: a TCP peer not on the list is closed
/// without a reply; a listed one is served.
#[test]
fn web_server_addrs_from_the_environment() {
    for transport in [Transport::Mio, Transport::Smol] {
        for (list, served) in [("192.0.2.1", false), ("192.0.2.1, 127.0.0.1", true)] {
            let mut command = Command::new(example("hello"));
            command
                .args(["--transport", transport.arg(), "--listen", "127.0.0.1:0"])
                .env("FCGI_WEB_SERVER_ADDRS", list)
                .stdin(Stdio::null());
            let app = App::spawn("hello", command, TempDir::new("allow"), None);
            let mut conn = app.endpoint.connect();
            let _ = conn.try_send(&Request::default().encode());
            let mut answer = Vec::new();
            let _ = std::io::Read::read_to_end(&mut conn.stream, &mut answer);
            assert_eq!(!answer.is_empty(), served, "{transport:?} with FCGI_WEB_SERVER_ADDRS={list}");
        }
    }
}
