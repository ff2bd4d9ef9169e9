//! What every example shares: the command line (`--transport`, `--listen` and the
//! example's own options), and running a handler on the chosen transport with SIGTERM and
//! SIGINT wired to a graceful shutdown and SIGUSR2 to a restart without downtime (the
//! listening socket handed to a new copy of the program). Each example file is then just
//! its handler.
//!
//! Not every example uses every item here.
#![allow(dead_code)]

use std::ffi::{OsStr, OsString};
use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ember_fcgi::Handler;
use ember_fcgi::server::handoff::{self, Handoff};
use ember_fcgi::server::{BindError, Limits, Listen, Listener, NameOrId};
use ember_fcgi::server::{ShutdownHandle, StatusPages};

/// The server that runs the handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// `ember_fcgi::mio`: one thread, one readiness loop.
    Mio,
    /// `ember_fcgi::smol`: the same runtime on a `polling` poller; handlers may await any
    /// smol async work.
    Smol,
}

/// An option of the command line, e.g. `--root DIR`: one entry of the usage text.
#[derive(Clone, Copy, Debug)]
pub struct Opt {
    /// The long name without dashes.
    pub name: &'static str,
    /// What the value is, for the usage line.
    pub value: &'static str,
    /// Whether the example refuses to start without it.
    pub required: bool,
    /// What it does, for the usage text (lines after the first are indented to match).
    pub help: &'static str,
}

impl Opt {
    /// How the option shows in the usage: `--name VALUE`, or `--name` for a switch.
    fn item(&self) -> String {
        match self.value {
            "" => format!("--{}", self.name),
            value => format!("--{} {value}", self.name),
        }
    }
}

/// The options every example takes, in usage order; an example's own follow them.
const COMMON_OPTS: &[Opt] = &[
    Opt {
        name: "transport",
        value: "mio|smol",
        required: false,
        help: "the server that runs the handler (default mio)",
    },
    Opt {
        name: "listen",
        value: "ADDR",
        required: false,
        help: "HOST:PORT, [V6]:PORT, unix:PATH, systemd[:NAME] or fd:0 (the default:\n\
               the socket systemd passed, else the listening socket a launcher such as\n\
               spawn-fcgi passes as fd 0)",
    },
    Opt {
        name: "socket-mode",
        value: "MODE",
        required: false,
        help: "a unix:PATH socket's permissions in octal, e.g. 0660 to let its group\n\
               connect (default: 0777 less the umask)",
    },
    Opt {
        name: "socket-owner",
        value: "USER",
        required: false,
        help: "a unix:PATH socket's owner, a name or uid (needs root)",
    },
    Opt {
        name: "socket-group",
        value: "GROUP",
        required: false,
        help: "a unix:PATH socket's group, a name or gid (root may give any; others\n\
               a group they are in), e.g. the web server's www-data",
    },
    Opt {
        name: "log",
        value: "LEVEL",
        required: false,
        help: "off, error, warn, info, debug or trace (default info)",
    },
    Opt {
        name: "access-log",
        value: "",
        required: false,
        help: "log each finished request at info (target ember_fcgi::access: client,\n\
               method, URI, status, bytes, duration, request id)",
    },
    Opt {
        name: "status-path",
        value: "PATH",
        required: false,
        help: "serve the live counters at PATH (?json, ?openmetrics)",
    },
    Opt { name: "ping-path", value: "PATH", required: false, help: "answer \"pong\" at PATH" },
];

/// Sets one field of `Limits` from an option's value, or says what is wrong with it.
type SetLimit = fn(&mut Limits, &str) -> Result<(), String>;

/// The options that size memory and set timeouts, each named after its `Limits` field
/// (all optional; the defaults are `Limits::default()`'s).
const LIMIT_OPTS: &[(Opt, SetLimit)] = &[
    (limit("max-connections", "N", "connections served at once (default 1024)"), |l, v| {
        l.max_connections = count(v)?;
        Ok(())
    }),
    (
        limit(
            "max-requests",
            "N",
            "concurrent requests per connection, 1 to 32 (default 1; more\nmultiplexes, which nginx never asks for)",
        ),
        |l, v| {
            l.capacities.requests = count(v)?;
            Ok(())
        },
    ),
    (
        limit(
            "params-bytes",
            "N",
            "params store per request: CGI variables and HTTP headers; bigger\nheads get 431 (default 131072)",
        ),
        |l, v| {
            l.capacities.params = count(v)?;
            Ok(())
        },
    ),
    (limit("input-bytes", "N", "input buffer per busy connection (default 16384)"), |l, v| {
        l.capacities.input = count(v)?;
        Ok(())
    }),
    (limit("output-bytes", "N", "output buffer per busy connection (default 16384)"), |l, v| {
        l.capacities.output = count(v)?;
        Ok(())
    }),
    (
        limit("window-bytes", "N", "body bytes held per request while its handler is busy (default 16384)"),
        |l, v| {
            l.capacities.window = count(v)?;
            Ok(())
        },
    ),
    (
        limit("idle-timeout", "SECS", "close a connection idle this long (default 120; \"never\" too)"),
        |l, v| {
            l.idle_timeout = seconds(v)?;
            Ok(())
        },
    ),
    (limit("head-timeout", "SECS", "a request's params must arrive within this (default 10)"), |l, v| {
        l.head_timeout = seconds(v)?;
        Ok(())
    }),
    (
        limit("body-timeout", "SECS", "a handler waiting this long for a body byte fails (default 60)"),
        |l, v| {
            l.body_timeout = seconds(v)?;
            Ok(())
        },
    ),
    (
        limit(
            "send-timeout",
            "SECS",
            "a response the web server takes no byte of for this long\nfails (default 60)",
        ),
        |l, v| {
            l.send_timeout = seconds(v)?;
            Ok(())
        },
    ),
    (
        limit(
            "request-timeout",
            "SECS",
            "a request running this long is cut off: 504, or its connection\nclosed if it began its response (default never)",
        ),
        |l, v| {
            l.request_timeout = seconds(v)?;
            Ok(())
        },
    ),
    (limit("slow-request", "SECS", "log a request still running after this long (default never)"), |l, v| {
        l.slow_request_after = seconds(v)?;
        Ok(())
    }),
    (
        limit("shutdown-timeout", "SECS", "in-flight requests get this long on SIGTERM (default 10)"),
        |l, v| {
            l.shutdown_timeout = seconds(v)?;
            Ok(())
        },
    ),
];

/// An optional limit option.
const fn limit(name: &'static str, value: &'static str, help: &'static str) -> Opt {
    Opt { name, value, required: false, help }
}

/// A positive integer.
fn count(value: &str) -> Result<usize, String> {
    value.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| "expected a positive integer".to_owned())
}

/// Seconds (fractions allowed), or `never`.
fn seconds(value: &str) -> Result<Duration, String> {
    if value == "never" {
        return Ok(Duration::MAX);
    }
    value
        .parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| "expected seconds, e.g. 30 or 0.5, or never".to_owned())
}

/// The parsed command line.
#[derive(Debug)]
pub struct Args {
    pub transport: Transport,
    pub listen: Listen,
    /// Whether `--listen` was given (else `listen` is the inherited fd 0).
    pub listen_given: bool,
    /// The limit options given, in order (applied over the example's `Limits` by `serve`).
    limits: Vec<(SetLimit, String)>,
    /// `--log LEVEL`, `--status-path`, `--ping-path`.
    pub ops: Ops,
    extra: Vec<(&'static str, OsString)>,
    program: &'static str,
    opts: Vec<Opt>,
    /// `Some(FEATURES)` for an example that runs on the tokio server only
    /// ([`parse_tokio_args`]): the cargo features it needs.
    tokio: Option<&'static str>,
}

/// The operator's options: log level, access log, status and ping pages.
#[derive(Debug)]
pub struct Ops {
    pub log: log::LevelFilter,
    /// `--access-log`: the target `ember_fcgi::access` at info, whatever `--log` says
    /// (else off).
    pub access_log: bool,
    pub status_path: Option<String>,
    pub ping_path: Option<String>,
}

impl Ops {
    /// Takes the value of `--log`, `--status-path` or `--ping-path`.
    fn set(&mut self, name: &str, value: OsString) -> Result<(), String> {
        let value = value.into_string().map_err(|v| format!("--{name} {v:?} is not UTF-8"))?;
        match name {
            "log" => {
                self.log = value.parse().map_err(|_| {
                    format!("bad --log {value:?}: expected off, error, warn, info, debug or trace")
                })?
            }
            "status-path" => self.status_path = Some(value),
            _ => self.ping_path = Some(value),
        }
        Ok(())
    }
}

/// `--socket-mode`, `--socket-owner`, `--socket-group`: for a `unix:PATH` listen address.
#[derive(Debug, Default)]
struct SocketAccess {
    mode: Option<u32>,
    owner: Option<NameOrId>,
    group: Option<NameOrId>,
    /// The first of them given, for the message when the address is not `unix:PATH`.
    first: Option<String>,
}

impl SocketAccess {
    /// Takes the value of `--socket-mode`, `--socket-owner` or `--socket-group`.
    fn set(&mut self, name: &str, value: OsString) -> Result<(), String> {
        let bad = |why: &str| format!("bad --{name} {value:?}: {why}");
        let text = value.to_str().ok_or_else(|| bad("not UTF-8"))?;
        match name {
            "socket-mode" => {
                let digits = text.strip_prefix("0o").unwrap_or(text);
                let mode = u32::from_str_radix(digits, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777 && !digits.starts_with('+'))
                    .ok_or_else(|| bad("expected permissions in octal, e.g. 0660"))?;
                self.mode = Some(mode);
            }
            "socket-owner" => {
                self.owner = Some(text.parse().map_err(|_| bad("expected a user name or uid"))?)
            }
            _ => self.group = Some(text.parse().map_err(|_| bad("expected a group name or gid"))?),
        }
        self.first.get_or_insert_with(|| name.to_owned());
        Ok(())
    }

    /// Puts what was given into `listen`, which must then be a `unix:PATH` address.
    fn apply(self, listen: &mut Listen) -> Result<(), String> {
        let Some(first) = self.first else { return Ok(()) };
        match listen {
            Listen::Unix { mode, owner, group, .. } => {
                *mode = self.mode.or(*mode);
                *owner = self.owner.or(owner.take());
                *group = self.group.or(group.take());
                Ok(())
            }
            _ => Err(format!("--{first} is for a Unix socket: it needs --listen unix:PATH")),
        }
    }
}

impl Args {
    /// The value of the example's own option `name`, if given.
    pub fn get(&self, name: &str) -> Option<&OsStr> {
        self.extra.iter().rev().find(|(n, _)| *n == name).map(|(_, v)| v.as_os_str())
    }
}

/// The usage text: a synopsis, one line per option, and a command line that works.
fn usage(program: &str, opts: &[Opt], tokio: Option<&str>) -> String {
    // A tokio-only example has no `--transport`.
    let all = || COMMON_OPTS.iter().filter(|o| tokio.is_none() || o.name != "transport").chain(opts);
    let mut text = format!("usage: {program}");
    for opt in all() {
        let item = opt.item();
        text += &if opt.required { format!(" {item}") } else { format!(" [{item}]") };
    }
    text += " [LIMITS]\n";
    let line = |opt: &Opt| {
        let item = opt.item();
        let help = opt.help.replace('\n', &format!("\n{:26}", ""));
        let required = if opt.required { " (required)" } else { "" };
        format!("  {item:<24}{help}{required}\n")
    };
    for opt in all() {
        text += &line(opt);
    }
    text += &format!("  {:<24}this text\n", "-h, --help");
    text += "limits (memory per busy connection, timeouts):\n";
    for (opt, _) in LIMIT_OPTS {
        text += &line(opt);
    }
    text += &format!("example: {program} {}", tcp_args(opts));
    text
}

/// The arguments that serve on a TCP port: the required options, then `--listen`.
fn tcp_args(opts: &[Opt]) -> String {
    let mut args = String::new();
    for opt in opts.iter().filter(|o| o.required) {
        args += &format!("--{} {} ", opt.name, opt.value);
    }
    args + "--listen 127.0.0.1:9000"
}

/// Parses the command line; on a bad argument prints the problem and the usage to stderr
/// and exits with status 2 (`--help` prints the usage to stdout and exits 0).
pub fn parse_args(program: &'static str, opts: &[Opt]) -> Args {
    parse_args_for(program, opts, None)
}

/// [`parse_args`] for an example that runs on the tokio server only ([`serve_tokio`]):
/// no `--transport`, and `features` (e.g. `tokio,tower`) in the `cargo run` it suggests.
pub fn parse_tokio_args(program: &'static str, opts: &[Opt], features: &'static str) -> Args {
    parse_args_for(program, opts, Some(features))
}

fn parse_args_for(program: &'static str, opts: &[Opt], tokio: Option<&'static str>) -> Args {
    let usage = usage(program, opts, tokio);
    match parse(program, opts, tokio) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{usage}");
            std::process::exit(0);
        }
        Err(message) => {
            eprintln!("{program}: {message}\n{usage}");
            std::process::exit(2);
        }
    }
}

/// The arguments, `None` for `--help`, or what is wrong with them.
fn parse(program: &'static str, opts: &[Opt], tokio: Option<&'static str>) -> Result<Option<Args>, String> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_env();
    let mut transport = Transport::Mio;
    let mut listen = Listen::from_launcher();
    let mut listen_given = false;
    let mut socket = SocketAccess::default();
    let mut ops = Ops { log: log::LevelFilter::Info, access_log: false, status_path: None, ping_path: None };
    let mut limits: Vec<(SetLimit, String)> = Vec::new();
    let mut extra = Vec::new();
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("transport") if tokio.is_none() => {
                let value = parser.value().map_err(|e| e.to_string())?;
                transport = match value.to_str() {
                    Some("mio") => Transport::Mio,
                    Some("smol") => Transport::Smol,
                    _ => return Err(format!("unknown transport {value:?}: expected mio or smol")),
                }
            }
            Long("listen") => {
                let value = parser.value().map_err(|e| e.to_string())?;
                let text = value.to_str().ok_or("the listen address is not UTF-8")?;
                listen = text.parse().map_err(|e: ember_fcgi::server::ParseListenError| e.to_string())?;
                listen_given = true;
            }
            Long(name @ ("socket-mode" | "socket-owner" | "socket-group")) => {
                let name = name.to_owned();
                socket.set(&name, parser.value().map_err(|e| e.to_string())?)?;
            }
            Long(name @ ("log" | "status-path" | "ping-path")) => {
                let name = name.to_owned();
                ops.set(&name, parser.value().map_err(|e| e.to_string())?)?;
            }
            Long("access-log") => ops.access_log = true,
            Short('h') | Long("help") => return Ok(None),
            Long(name) if LIMIT_OPTS.iter().any(|(o, _)| o.name == name) => {
                let name = name.to_owned();
                let value = parser.value().map_err(|e| e.to_string())?;
                let (_, set) = LIMIT_OPTS.iter().find(|(o, _)| o.name == name).ok_or("unreachable")?;
                let bad = |why: String| format!("bad --{name} {value:?}: {why}");
                let text = value.to_str().ok_or_else(|| bad("not UTF-8".to_owned()))?.to_owned();
                let mut scratch = Limits::default();
                set(&mut scratch, &text)
                    .and_then(|()| scratch.capacities.check().map_err(|e| e.to_string()))
                    .map_err(bad)?;
                limits.push((*set, text));
            }
            Long(name) => match opts.iter().find(|o| o.name == name) {
                Some(opt) => extra.push((opt.name, parser.value().map_err(|e| e.to_string())?)),
                None => return Err(format!("unknown option --{name}")),
            },
            other => return Err(other.unexpected().to_string()),
        }
    }
    if let Some(missing) = opts.iter().find(|o| o.required && !extra.iter().any(|(n, _)| *n == o.name)) {
        return Err(format!("--{} {} is required", missing.name, missing.value));
    }
    socket.apply(&mut listen)?;
    Ok(Some(Args {
        transport,
        listen,
        listen_given,
        limits,
        ops,
        extra,
        program,
        opts: opts.to_vec(),
        tokio,
    }))
}

/// Binds `args.listen` on `args.transport`, prints `listening on ADDR` to stderr, and runs
/// `handler` until SIGTERM or SIGINT has finished a graceful shutdown (a second signal
/// exits at once), or SIGUSR2 handed the socket to a new copy of the program and the
/// in-flight requests were drained (see `on_signals`). Exit status 1 if binding or
/// serving fails. The limit options given (`--params-bytes`, `--idle-timeout`, ...)
/// replace those fields of `limits`.
pub fn serve<H: Handler + 'static>(args: &Args, handler: H, limits: Limits) -> ExitCode {
    serve_on(args, args.transport, handler, limits)
}

/// [`serve`] on the tokio server (`ember_fcgi::tokio`), for handlers that await tokio's
/// timers and sockets (the axum example, whose arguments [`parse_tokio_args`] parsed).
#[cfg(feature = "tokio")]
pub fn serve_tokio<H: Handler + 'static>(args: &Args, handler: H, limits: Limits) -> ExitCode {
    serve_on(args, Server::Tokio, handler, limits)
}

/// Which server [`serve_on`] runs: `--transport`'s, or tokio.
#[derive(Clone, Copy)]
enum Server {
    Mio,
    Smol,
    #[cfg(feature = "tokio")]
    Tokio,
}

impl From<Transport> for Server {
    fn from(transport: Transport) -> Self {
        match transport {
            Transport::Mio => Self::Mio,
            Transport::Smol => Self::Smol,
        }
    }
}

fn serve_on<H: Handler + 'static>(
    args: &Args,
    server: impl Into<Server>,
    handler: H,
    mut limits: Limits,
) -> ExitCode {
    for (set, value) in &args.limits {
        // Checked when parsed.
        let _ = set(&mut limits, value);
    }
    const ACCESS_TARGET: &str = "ember_fcgi::access";
    let access = if args.ops.access_log { log::LevelFilter::Info } else { log::LevelFilter::Off };
    env_logger::Builder::new().filter_level(args.ops.log).filter_module(ACCESS_TARGET, access).init();
    let mut handler = StatusPages::new(handler);
    if let Some(path) = &args.ops.status_path {
        handler = handler.with_status_path(path);
    }
    if let Some(path) = &args.ops.ping_path {
        handler = handler.with_ping_path(path);
    }
    let result = match server.into() {
        Server::Mio => run_mio(args, handler, limits),
        Server::Smol => run_smol(args, handler, limits),
        #[cfg(feature = "tokio")]
        Server::Tokio => run_tokio(args, handler, limits),
    };
    let program = args.program;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Bind(BindError::NoInheritedSocket)) => no_socket(args),
        Err(Failure::Bind(e)) => {
            eprintln!("{program}: {e}");
            ExitCode::FAILURE
        }
        Err(Failure::Serve(message)) => {
            eprintln!("{program}: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Why `serve` stopped with an error.
enum Failure {
    /// The listening socket could not be had.
    Bind(BindError),
    /// Anything after that: the signal handler, the server loop.
    Serve(String),
}

impl From<BindError> for Failure {
    fn from(e: BindError) -> Self {
        Self::Bind(e)
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Self::Serve(message)
    }
}

/// There is no socket on fd 0: usually the example was started from a shell without
/// `--listen`. Says what fd 0 is instead and what to type; without `--listen` it is a
/// usage error (status 2, with the usage), with `--listen fd:0` a failure (status 1).
fn no_socket(args: &Args) -> ExitCode {
    let program = args.program;
    let fd0 = if std::io::stdin().is_terminal() {
        "a terminal, not a listening socket"
    } else {
        "not a listening socket"
    };
    let given = if args.listen_given { "--listen fd:0 given" } else { "no --listen given" };
    eprintln!(
        "{program}: {given}, and fd 0 is {fd0} (that is where a FastCGI launcher such as \
         spawn-fcgi or lighttpd's bin-path passes one)\n\
         to serve on a TCP port instead, add --listen 127.0.0.1:9000:\n    \
         cargo run --release{} --example {program} -- {}",
        args.tokio.map(|f| format!(" --features {f}")).unwrap_or_default(),
        tcp_args(&args.opts)
    );
    if args.listen_given {
        ExitCode::FAILURE
    } else {
        eprintln!("{}", usage(program, &args.opts, args.tokio));
        ExitCode::from(2)
    }
}

/// Binds `listen`; also says where, as `announce` prints it.
fn bind(listen: &Listen) -> Result<(Listener, String), BindError> {
    let listener = Listener::bind(listen)?;
    let shown = match listen {
        Listen::Inherited => listen.to_string(),
        _ => listener.describe(),
    };
    Ok((listener, shown))
}

/// Binds, registers the server's stats with the status pages, wires the signals, announces
/// the address and runs `$server` (`ember_fcgi::mio::Server` or `ember_fcgi::smol::Server`).
macro_rules! run_server {
    ($server:path, $name:literal, $args:expr, $handler:expr, $limits:expr) => {{
        use $server as Server;
        let (listener, shown) = bind(&$args.listen)?;
        let handoff = Handoff::new(&listener).map_err(|e| e.to_string())?;
        let handler = $handler;
        let board = handler.board();
        let server = Server::from_listener(listener, handler, $limits)
            .map_err(|e| BindError::Io($args.listen.clone(), e))?;
        board.add(server.stats());
        on_signals(server.shutdown_handle(), handoff)?;
        announce(&shown);
        // Started by a predecessor's handoff: it stops accepting and drains now.
        handoff::ready().map_err(|e| e.to_string())?;
        server.run().map_err(|e| Failure::Serve(format!("the {} server failed: {e}", $name)))
    }};
}

#[cfg(feature = "mio")]
fn run_mio<H: Handler + 'static>(
    args: &Args,
    handler: StatusPages<H>,
    limits: Limits,
) -> Result<(), Failure> {
    run_server!(ember_fcgi::mio::Server, "mio", args, handler, limits)
}

#[cfg(not(feature = "mio"))]
fn run_mio<H: Handler>(_: &Args, _: StatusPages<H>, _: Limits) -> Result<(), Failure> {
    Err(Failure::Serve("this build has no mio transport (feature \"mio\" is off)".into()))
}

#[cfg(feature = "smol")]
fn run_smol<H: Handler + 'static>(
    args: &Args,
    handler: StatusPages<H>,
    limits: Limits,
) -> Result<(), Failure> {
    run_server!(ember_fcgi::smol::Server, "smol", args, handler, limits)
}

#[cfg(feature = "tokio")]
fn run_tokio<H: Handler + 'static>(
    args: &Args,
    handler: StatusPages<H>,
    limits: Limits,
) -> Result<(), Failure> {
    run_server!(ember_fcgi::tokio::Server, "tokio", args, handler, limits)
}

#[cfg(not(feature = "smol"))]
fn run_smol<H: Handler>(_: &Args, _: StatusPages<H>, _: Limits) -> Result<(), Failure> {
    Err(Failure::Serve("this build has no smol transport (feature \"smol\" is off)".into()))
}

/// The one line tests and scripts wait for: `listening on 127.0.0.1:40123` (the real port
/// when port 0 was asked for; also for a socket from systemd), `listening on unix:/path`,
/// or `listening on fd:0`.
fn announce(shown: &str) {
    say(&format!("listening on {shown}"));
}

/// Writes `line` and a newline to stderr in one `write`: a successor after a handoff writes
/// to the same stderr, and a line written in pieces could be split by one of its lines.
fn say(line: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(format!("{line}\n").as_bytes());
    let _ = stderr.flush();
}

/// Wires the signals, from a thread of its own: the first SIGTERM or SIGINT starts the
/// graceful shutdown through `handle` (a second one exits the process at once); SIGUSR2
/// restarts without downtime: `handoff` starts this program again (same executable and
/// arguments) on the same listening socket, and once the successor reports ready this
/// process stops accepting, drains its in-flight requests within `shutdown_timeout` and
/// exits. If the successor fails to start, this process says why and keeps serving.
fn on_signals(handle: ShutdownHandle, handoff: Handoff) -> Result<(), String> {
    use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR2};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGUSR2])
        .map_err(|e| format!("signal setup: {e}"))?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut stopping = false;
            for signal in signals.forever() {
                match (signal, stopping) {
                    (SIGUSR2, true) => say("signal USR2: already stopping; ignored"),
                    (SIGUSR2, false) => {
                        say("signal USR2: starting a successor on the listening socket");
                        match handoff.start_successor() {
                            Ok(pid) => {
                                // Said first: once drained, the process may exit at once.
                                say(&format!("handoff: successor pid {pid} is ready; draining and exiting"));
                                handle.shutdown();
                                stopping = true;
                            }
                            Err(e) => say(&format!("handoff failed, still serving: {e}")),
                        }
                    }
                    (_, true) => std::process::exit(130),
                    (_, false) => {
                        say(&format!("signal {signal}: shutting down gracefully (again to exit now)"));
                        handle.shutdown();
                        stopping = true;
                    }
                }
            }
        })
        .map_err(|e| format!("signal thread: {e}"))?;
    Ok(())
}

/// Milliseconds since the Unix epoch (negative before it), as the seeds report `mtime`.
pub fn unix_millis(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// Appends `text` to `out` as a JSON string literal (quotes included).
pub fn json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Lowercase hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
