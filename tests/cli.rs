//! The examples as programs: their command line and messages (what a newcomer sees first),
//! the README's example commands and its 15-line app, the listening socket inherited as
//! fd 0, and a graceful shutdown on SIGTERM that lets an in-flight request finish.

mod support;

use std::ffi::OsStr;
use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use ember_fcgi_testkit::wire::{self as fcgi, TextRequest as Request};
use support::{App, Combo, EchoOutput, Endpoint, Socket, TempDir, Transport, example, free_port, sha256_hex};

/// The examples that take the common command line (`examples/common`).
const EXAMPLES: [&str; 6] = ["inspect", "hello", "echo", "dirlist", "upload", "redirect"];

/// The options example `name` cannot start without.
fn required(name: &str) -> &'static [&'static str] {
    match name {
        "dirlist" => &["--root", "/"],
        "upload" => &["--dir", "/tmp"],
        _ => &[],
    }
}

/// How `required` shows in the usage and in suggested commands.
fn required_usage(name: &str) -> &'static str {
    match name {
        "dirlist" => "--root DIR ",
        "upload" => "--dir DIR ",
        _ => "",
    }
}

/// The usage text every example prints, byte for byte, for `--help` (stdout) and after a
/// bad argument (stderr).
fn usage(name: &str) -> String {
    let own = match name {
        "dirlist" => " --root DIR",
        "upload" => " --dir DIR",
        _ => "",
    };
    let own_line = match name {
        "dirlist" => {
            "  --root DIR              the directory to list; nothing outside it is served (required)\n"
        }
        "upload" => "  --dir DIR               the directory the uploaded files are stored in (required)\n",
        _ => "",
    };
    format!(
        "usage: {name} [--transport mio|smol] [--listen ADDR] [--socket-mode MODE] [--socket-owner USER] [--socket-group GROUP] [--log LEVEL] [--access-log] [--status-path PATH] [--ping-path PATH]{own} [LIMITS]\n\
         \x20 --transport mio|smol    the server that runs the handler (default mio)\n\
         \x20 --listen ADDR           HOST:PORT, [V6]:PORT, unix:PATH, systemd[:NAME] or fd:0 (the default:\n\
         \x20                         the socket systemd passed, else the listening socket a launcher such as\n\
         \x20                         spawn-fcgi passes as fd 0)\n\
         \x20 --socket-mode MODE      a unix:PATH socket's permissions in octal, e.g. 0660 to let its group\n\
         \x20                         connect (default: 0777 less the umask)\n\
         \x20 --socket-owner USER     a unix:PATH socket's owner, a name or uid (needs root)\n\
         \x20 --socket-group GROUP    a unix:PATH socket's group, a name or gid (root may give any; others\n\
         \x20                         a group they are in), e.g. the web server's www-data\n\
         \x20 --log LEVEL             off, error, warn, info, debug or trace (default info)\n\
         \x20 --access-log            log each finished request at info (target ember_fcgi::access: client,\n\
         \x20                         method, URI, status, bytes, duration, request id)\n\
         \x20 --status-path PATH      serve the live counters at PATH (?json, ?openmetrics)\n\
         \x20 --ping-path PATH        answer \"pong\" at PATH\n\
         {own_line}\
         \x20 -h, --help              this text\n\
         limits (memory per busy connection, timeouts):\n\
         \x20 --max-connections N     connections served at once (default 1024)\n\
         \x20 --max-requests N        concurrent requests per connection, 1 to 32 (default 1; more\n\
         \x20                         multiplexes, which nginx never asks for)\n\
         \x20 --params-bytes N        params store per request: CGI variables and HTTP headers; bigger\n\
         \x20                         heads get 431 (default 131072)\n\
         \x20 --input-bytes N         input buffer per busy connection (default 16384)\n\
         \x20 --output-bytes N        output buffer per busy connection (default 16384)\n\
         \x20 --window-bytes N        body bytes held per request while its handler is busy (default 16384)\n\
         \x20 --idle-timeout SECS     close a connection idle this long (default 120; \"never\" too)\n\
         \x20 --head-timeout SECS     a request's params must arrive within this (default 10)\n\
         \x20 --body-timeout SECS     a handler waiting this long for a body byte fails (default 60)\n\
         \x20 --send-timeout SECS     a response the web server takes no byte of for this long\n\
         \x20                         fails (default 60)\n\
         \x20 --request-timeout SECS  a request running this long is cut off: 504, or its connection\n\
         \x20                         closed if it began its response (default never)\n\
         \x20 --slow-request SECS     log a request still running after this long (default never)\n\
         \x20 --shutdown-timeout SECS in-flight requests get this long on SIGTERM (default 10)\n\
         example: {name} {}--listen 127.0.0.1:9000\n",
        required_usage(name)
    )
}

#[test]
fn bad_arguments_print_usage_and_exit_2() {
    let cases: &[(&[&str], &str)] = &[
        (&["--transport", "tokio"], "unknown transport \"tokio\": expected mio or smol"),
        (&["--transport"], "missing argument for option '--transport'"),
        (
            &["--listen", "not an address"],
            "invalid listen address \"not an address\": expected HOST:PORT, [V6]:PORT, unix:PATH, fd:0, systemd or systemd:NAME",
        ),
        (&["--listen", "unix:"], "invalid listen address \"unix:\""),
        (&["--max-connections", "0"], "bad --max-connections \"0\": expected a positive integer"),
        (&["--max-requests", "33"], "bad --max-requests \"33\": 33 requests per connection: must be 1 to 32"),
        (
            &["--input-bytes", "8"],
            "bad --input-bytes \"8\": input buffer of 8 bytes is below the minimum of 16",
        ),
        (
            &["--idle-timeout", "soon"],
            "bad --idle-timeout \"soon\": expected seconds, e.g. 30 or 0.5, or never",
        ),
        (
            &["--request-timeout", "-1"],
            "bad --request-timeout \"-1\": expected seconds, e.g. 30 or 0.5, or never",
        ),
        (&["--slow-request", "x"], "bad --slow-request \"x\": expected seconds, e.g. 30 or 0.5, or never"),
        (&["--access-log=yes"], "unexpected argument for option '--access-log'"),
        (&["--socket-mode", "999"], "bad --socket-mode \"999\": expected permissions in octal, e.g. 0660"),
        (&["--socket-mode", "+660"], "bad --socket-mode \"+660\": expected permissions in octal, e.g. 0660"),
        (
            &["--socket-mode", "10000"],
            "bad --socket-mode \"10000\": expected permissions in octal, e.g. 0660",
        ),
        (&["--socket-owner", ""], "bad --socket-owner \"\": expected a user name or uid"),
        (
            &["--socket-group", "4294967296"],
            "bad --socket-group \"4294967296\": expected a group name or gid",
        ),
        (&["--socket-mode", "0660"], "--socket-mode is for a Unix socket: it needs --listen unix:PATH"),
        (
            &["--socket-group", "www-data", "--listen", "127.0.0.1:0"],
            "--socket-group is for a Unix socket: it needs --listen unix:PATH",
        ),
        (&["--no-such-option"], "unknown option --no-such-option"),
        (&["positional"], "unexpected argument \"positional\""),
    ];
    for name in EXAMPLES {
        for (args, problem) in cases {
            let output = Command::new(example(name)).args(required(name)).args(*args).output().unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(2), "{name} {args:?}: {stderr}");
            let (first, rest) = stderr.split_once('\n').unwrap_or_default();
            assert!(first.starts_with(&format!("{name}: {problem}")), "{name} {args:?}: {stderr}");
            assert_eq!(rest, usage(name), "{name} {args:?}");
        }
        let output = Command::new(example(name)).arg("--help").output().unwrap();
        assert_eq!(output.status.code(), Some(0));
        assert_eq!(String::from_utf8_lossy(&output.stdout), usage(name), "{name} --help");
    }
    for (name, arg) in [("dirlist", "--root"), ("upload", "--dir")] {
        let output = Command::new(example(name)).arg("--listen").arg("127.0.0.1:0").output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{name} without {arg}");
        let expected = format!("{name}: {arg} DIR is required\n{}", usage(name));
        assert_eq!(String::from_utf8_lossy(&output.stderr), expected);
    }
}

/// Started from a shell without `--listen` (fd 0 is then a terminal, here /dev/null): the
/// example says there is no socket on fd 0, suggests `--listen 127.0.0.1:9000` in a command
/// that works, prints the usage and exits 2.
#[test]
fn without_listen_and_without_a_socket_on_fd_0_it_suggests_listen() {
    for name in EXAMPLES {
        for transport in ["mio", "smol"] {
            let output = Command::new(example(name))
                .args(["--transport", transport])
                .args(required(name))
                .stdin(Stdio::null())
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(2), "{name} {transport}: {stderr}");
            let expected = format!(
                "{name}: no --listen given, and fd 0 is not a listening socket (that is where a FastCGI \
                 launcher such as spawn-fcgi or lighttpd's bin-path passes one)\n\
                 to serve on a TCP port instead, add --listen 127.0.0.1:9000:\n    \
                 cargo run --release --example {name} -- {}--listen 127.0.0.1:9000\n{}",
                required_usage(name),
                usage(name),
            );
            assert_eq!(stderr, expected, "{name} {transport}");
        }
    }
}

/// What a newcomer sees: `hello` started in a terminal (a pseudo-terminal from util-linux's
/// `script`, in Debian's essential bsdutils) says fd 0 is a terminal and suggests `--listen`.
#[test]
fn started_in_a_terminal_it_says_so() {
    let hello = example("hello");
    let output = Command::new("script")
        .args(["-qec", &format!("{} --transport mio", hello.display()), "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("run script(1) from bsdutils (apt-get install -y bsdutils)");
    let text = String::from_utf8_lossy(&output.stdout).replace("\r\n", "\n");
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(
        text.starts_with(
            "hello: no --listen given, and fd 0 is a terminal, not a listening socket (that is where"
        ),
        "{text}"
    );
    assert!(
        text.contains("\n    cargo run --release --example hello -- --listen 127.0.0.1:9000\n"),
        "{text}"
    );
    assert!(text.ends_with(&usage("hello")), "{text}");
}

/// Runs `hello --transport TRANSPORT --listen LISTEN` with stdin on /dev/null: its exit
/// status and stderr.
fn run_hello(transport: &str, listen: &str) -> (Option<i32>, String) {
    let output = Command::new(example("hello"))
        .args(["--transport", transport, "--listen", listen])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// `--listen fd:0` asks for the inherited socket explicitly: same advice, no usage, status 1.
#[test]
fn listen_fd_0_without_a_socket_is_a_failure_with_the_same_advice() {
    for transport in ["mio", "smol"] {
        let (status, stderr) = run_hello(transport, "fd:0");
        assert_eq!(status, Some(1), "{stderr}");
        assert_eq!(
            stderr,
            "hello: --listen fd:0 given, and fd 0 is not a listening socket (that is where a FastCGI \
             launcher such as spawn-fcgi or lighttpd's bin-path passes one)\n\
             to serve on a TCP port instead, add --listen 127.0.0.1:9000:\n    \
             cargo run --release --example hello -- --listen 127.0.0.1:9000\n"
        );
    }
}

/// A Unix socket in a directory that does not exist: the message names the directory.
#[test]
fn a_missing_socket_directory_is_named() {
    let dir = TempDir::new("nodir");
    let missing = dir.path().join("missing");
    let socket = missing.join("app.sock");
    for transport in ["mio", "smol"] {
        let (status, stderr) = run_hello(transport, &format!("unix:{}", socket.display()));
        assert_eq!(status, Some(1), "{stderr}");
        assert_eq!(
            stderr,
            format!(
                "hello: cannot listen on unix:{}: the directory {} does not exist (create it first)\n",
                socket.display(),
                missing.display()
            )
        );
        assert!(!missing.exists(), "nothing was created");
    }
}

/// `--socket-owner`, `--socket-group` (by name and by id) and `--socket-mode` give the
/// socket file its owner, group and permissions, whichever comes first on the line. Needs
/// root (giving a file away does), and fails without it.
#[test]
fn socket_owner_group_and_mode_from_the_command_line() {
    use std::os::unix::fs::MetadataExt as _;
    support::tools::require_root("it gives the socket file to user nobody");
    let (uid, gid, group) = support::tools::user_ids("nobody");
    let cases: [(&[&str], u32); 3] = [
        (&["--socket-owner", "nobody", "--socket-group", &group, "--socket-mode", "0640"], 0o640),
        (
            &["--socket-mode", "600", "--socket-owner", &uid.to_string(), "--socket-group", &gid.to_string()],
            0o600,
        ),
        (&["--socket-group", &group, "--socket-owner", "nobody", "--socket-mode", "0o2770"], 0o2770),
    ];
    for (transport, (flags, mode)) in [Transport::Mio, Transport::Smol, Transport::Mio].into_iter().zip(cases)
    {
        let dir = TempDir::new("own");
        let path = dir.path().join("s.sock");
        let mut command = Command::new(example("hello"));
        command
            .args(["--transport", transport.arg(), "--listen", &format!("unix:{}", path.display())])
            .args(flags)
            .stdin(Stdio::null());
        let app = App::spawn("hello", command, dir, None);
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!((meta.uid(), meta.gid(), meta.mode() & 0o7777), (uid, gid, mode), "{flags:?}");
        let reply = app.endpoint.connect().roundtrip(&Request::default());
        assert_eq!(reply.split().1, "Hello, World!\n", "root still connects");
    }
}

/// An unknown owner or group is an error before the socket file exists.
#[test]
fn an_unknown_socket_owner_or_group_is_named() {
    let dir = TempDir::new("unknown");
    let socket = dir.path().join("s.sock");
    let listen = format!("unix:{}", socket.display());
    for (flag, kind) in [("--socket-owner", "user"), ("--socket-group", "group")] {
        for transport in ["mio", "smol"] {
            let output = Command::new(example("hello"))
                .args(["--transport", transport, "--listen", &listen, flag, "no-such-ember-name"])
                .stdin(Stdio::null())
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(1), "{stderr}");
            let what = if kind == "user" { "owner" } else { "group" };
            assert_eq!(
                stderr,
                format!(
                    "hello: cannot listen on {listen}: no {kind} named \"no-such-ember-name\" for the socket's {what}\n"
                )
            );
            assert!(!socket.exists(), "no socket file is left behind");
        }
    }
}

/// Every example says where it listens as soon as it does, with the port it got, and
/// answers there.
#[test]
fn each_example_prints_where_it_listens() {
    for name in EXAMPLES {
        for transport in [Transport::Mio, Transport::Smol] {
            let combo = Combo { transport, socket: Socket::Tcp, keepalive: false };
            let extra: Vec<&OsStr> = required(name).iter().map(OsStr::new).collect();
            let app = App::start(name, combo, &extra);
            let Endpoint::Tcp(addr) = app.endpoint else { panic!("{:?}", app.endpoint) };
            // `App::start` returned: it read `listening on 127.0.0.1:PORT` from stderr.
            assert!(addr.ip().is_loopback() && addr.port() != 0, "{name}: {addr}");
            let request = Request { params: &[("REQUEST_METHOD", "GET")], ..Request::default() };
            let reply = app.endpoint.connect().roundtrip(&request);
            assert!(reply.stdout_text().starts_with("Status: "), "{name}: {}", reply.stdout_text());
        }
    }
}

/// The README's fenced blocks right under `## {heading}`, as text.
fn readme_blocks(heading: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with(heading))
        .unwrap_or_else(|| panic!("README has no `## {heading}`"));
    section
        .split("```")
        .skip(1)
        .step_by(2)
        .map(|block| block.split_once('\n').unwrap().1.to_owned())
        .collect()
}

/// The README's "A FastCGI app in 18 lines" is `examples/minimal.rs` (after its doc
/// comment), has 18 lines, blank ones included, and prints where it listens.
#[test]
fn the_readme_app_is_minimal_rs_and_says_where_it_listens() {
    let blocks = readme_blocks("A FastCGI app in 18 lines");
    let source =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/minimal.rs")).unwrap();
    let code: String = source
        .lines()
        .skip_while(|l| l.starts_with("//!") || l.is_empty())
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(blocks[0], code, "README and examples/minimal.rs differ");
    assert_eq!(code.lines().count(), 18, "the README's heading says 18 lines");

    let addr = format!("127.0.0.1:{}", free_port());
    let mut command = Command::new(example("minimal"));
    command.arg(&addr).stdin(Stdio::null());
    let app = App::spawn("minimal", command, TempDir::new("minimal"), None);
    assert_eq!(app.endpoint, Endpoint::Tcp(addr.parse().unwrap()));
    let request = Request { params: &[("REQUEST_URI", "/hi?x=1")], ..Request::default() };
    let reply = app.endpoint.connect().roundtrip(&request);
    assert_eq!(reply.split().1, "Hello from ember-fcgi! You asked for /hi?x=1\n");
}

/// Each `cargo run --release --example` line of the README's "The examples" starts its
/// example as written (with port 0 for 9000), and every example is there.
#[test]
fn the_readme_example_commands_start_every_example() {
    let blocks = readme_blocks("The examples");
    let mut seen = Vec::new();
    for line in blocks[0].lines() {
        let command = line.split('#').next().unwrap().trim();
        let rest = command.strip_prefix("cargo run --release --example ").expect(line);
        let (name, args) = rest.split_once(" -- ").expect(line);
        let args: Vec<&str> =
            args.split_whitespace().map(|a| if a == "127.0.0.1:9000" { "127.0.0.1:0" } else { a }).collect();
        let mut command = Command::new(example(name));
        command.args(&args).current_dir(env!("CARGO_MANIFEST_DIR")).stdin(Stdio::null());
        let app = App::spawn(name, command, TempDir::new("readme"), None);
        assert!(matches!(app.endpoint, Endpoint::Tcp(_)), "{line}");
        seen.push(name.to_owned());
    }
    let mut expected: Vec<String> = EXAMPLES.iter().map(|n| n.to_string()).collect();
    expected.sort();
    seen.sort();
    assert_eq!(seen, expected);
}

#[test]
fn an_address_in_use_is_an_error() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    for transport in ["mio", "smol"] {
        let (status, stderr) = run_hello(transport, &addr);
        assert_eq!(status, Some(1), "{stderr}");
        assert_eq!(stderr, format!("hello: cannot listen on {addr}: address in use\n"));
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
