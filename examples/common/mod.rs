//! What every example shares: the command line (`--transport`, `--listen` and the
//! example's own options), and running a handler on the chosen transport with SIGTERM and
//! SIGINT wired to a graceful shutdown. Each example file is then just its handler.
//!
//! Not every example uses every item here.
#![allow(dead_code)]

use std::ffi::{OsStr, OsString};
use std::io::Write as _;
use std::os::unix::ffi::OsStringExt;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use ember_fcgi::Handler;
use ember_fcgi::host::status::StatusPages;
use ember_fcgi::host::{Limits, Listen, Listener};

/// The server that runs the handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// `ember_fcgi::mio`: one thread, one readiness loop.
    Mio,
    /// `ember_fcgi::smol`: tasks on the smol executor; handlers may await other async work.
    Smol,
}

/// An option of one example besides `--transport` and `--listen`, e.g. `--root DIR`.
#[derive(Clone, Copy, Debug)]
pub struct Opt {
    /// The long name without dashes.
    pub name: &'static str,
    /// What the value is, for the usage line.
    pub value: &'static str,
    /// Whether the example refuses to start without it.
    pub required: bool,
}

/// The parsed command line.
#[derive(Debug)]
pub struct Args {
    pub transport: Transport,
    pub listen: Listen,
    /// `--max-connections N`: overrides `Limits::max_connections` (default 1024).
    pub max_connections: Option<usize>,
    /// `--log LEVEL` (off, error, warn, info, debug, trace; default info), `--status-path`,
    /// `--ping-path`.
    pub ops: Ops,
    extra: Vec<(&'static str, OsString)>,
}

/// The operator's options: log level, status and ping pages.
#[derive(Debug)]
pub struct Ops {
    pub log: log::LevelFilter,
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

impl Args {
    /// The value of the example's own option `name`, if given.
    pub fn get(&self, name: &str) -> Option<&OsStr> {
        self.extra.iter().rev().find(|(n, _)| *n == name).map(|(_, v)| v.as_os_str())
    }
}

fn usage(program: &str, opts: &[Opt]) -> String {
    let mut line = format!(
        "usage: {program} [--transport mio|smol] [--listen HOST:PORT|[V6]:PORT|unix:PATH] [--max-connections N]"
    ) + " [--log LEVEL] [--status-path PATH] [--ping-path PATH]";
    for opt in opts {
        let item = format!("--{} {}", opt.name, opt.value);
        if opt.required {
            line += &format!(" {item}");
        } else {
            line += &format!(" [{item}]");
        }
    }
    line + "\n  without --listen, serves the listening socket inherited as fd 0 (FCGI_LISTENSOCK_FILENO)"
}

/// Parses the command line; on a bad argument prints the problem and the usage line to
/// stderr and exits with status 2 (`--help` prints the usage to stdout and exits 0).
pub fn parse_args(program: &str, opts: &[Opt]) -> Args {
    match try_parse(opts) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{}", usage(program, opts));
            std::process::exit(0);
        }
        Err(message) => {
            eprintln!("{program}: {message}\n{}", usage(program, opts));
            std::process::exit(2);
        }
    }
}

fn try_parse(opts: &[Opt]) -> Result<Option<Args>, String> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_env();
    let mut transport = Transport::Mio;
    let mut listen = Listen::from_launcher();
    let mut max_connections = None;
    let mut ops = Ops { log: log::LevelFilter::Info, status_path: None, ping_path: None };
    let mut extra = Vec::new();
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("transport") => {
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
                listen = text.parse().map_err(|e: ember_fcgi::host::ParseListenError| e.to_string())?;
            }
            Long("max-connections") => {
                let value = parser.value().map_err(|e| e.to_string())?;
                let n = value.to_str().and_then(|v| v.parse::<usize>().ok()).filter(|n| *n > 0);
                max_connections = Some(n.ok_or_else(|| {
                    format!("bad --max-connections {value:?}: expected a positive integer")
                })?);
            }
            Long(name @ ("log" | "status-path" | "ping-path")) => {
                let name = name.to_owned();
                ops.set(&name, parser.value().map_err(|e| e.to_string())?)?;
            }
            Short('h') | Long("help") => return Ok(None),
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
    Ok(Some(Args { transport, listen, max_connections, ops, extra }))
}

/// Binds `args.listen` on `args.transport`, prints `listening on ADDR` to stderr, and runs
/// `handler` until SIGTERM or SIGINT has finished a graceful shutdown (a second signal
/// exits at once). Exit status 1 if binding or serving fails. `--max-connections` (if
/// given) replaces `limits.max_connections`.
pub fn serve<H: Handler + 'static>(args: &Args, handler: H, mut limits: Limits) -> ExitCode {
    if let Some(n) = args.max_connections {
        limits.max_connections = n;
    }
    env_logger::Builder::new().filter_level(args.ops.log).init();
    let mut handler = StatusPages::new(handler);
    if let Some(path) = &args.ops.status_path {
        handler = handler.with_status_path(path);
    }
    if let Some(path) = &args.ops.ping_path {
        handler = handler.with_ping_path(path);
    }
    let result = match args.transport {
        Transport::Mio => run_mio(args, handler, limits),
        Transport::Smol => run_smol(args, handler, limits),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Binds `listen`; also says where, as `announce` prints it.
fn bind(listen: &Listen) -> Result<(Listener, String), String> {
    let listener = Listener::bind(listen).map_err(|e| e.to_string())?;
    let shown = match listen {
        Listen::Inherited => listen.to_string(),
        _ => listener.describe(),
    };
    Ok((listener, shown))
}

#[cfg(feature = "mio")]
fn run_mio<H: Handler + 'static>(args: &Args, handler: StatusPages<H>, limits: Limits) -> Result<(), String> {
    let (listener, shown) = bind(&args.listen)?;
    let board = handler.board();
    let server = ember_fcgi::mio::Server::<StatusPages<H>>::from_listener(listener, handler, limits)
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    board.add(server.stats());
    let handle = server.shutdown_handle();
    on_signals(move || handle.shutdown())?;
    announce(&shown);
    server.run().map_err(|e| format!("the mio server failed: {e}"))
}

#[cfg(not(feature = "mio"))]
fn run_mio<H: Handler>(_: &Args, _: H, _: Limits) -> Result<(), String> {
    Err("this build has no mio transport (feature \"mio\" is off)".into())
}

#[cfg(feature = "smol")]
fn run_smol<H: Handler + 'static>(
    args: &Args,
    handler: StatusPages<H>,
    limits: Limits,
) -> Result<(), String> {
    let (listener, shown) = bind(&args.listen)?;
    let board = handler.board();
    let server = ember_fcgi::smol::Server::<StatusPages<H>>::from_listener(listener, handler, limits)
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    board.add(server.stats());
    let handle = server.shutdown_handle();
    on_signals(move || handle.shutdown())?;
    announce(&shown);
    server.run().map_err(|e| format!("the smol server failed: {e}"))
}

#[cfg(not(feature = "smol"))]
fn run_smol<H: Handler>(_: &Args, _: H, _: Limits) -> Result<(), String> {
    Err("this build has no smol transport (feature \"smol\" is off)".into())
}

/// The one line tests and scripts wait for: `listening on 127.0.0.1:40123` (the real port
/// when port 0 was asked for; also for a socket from systemd), `listening on unix:/path`,
/// or `listening on fd:0`.
fn announce(shown: &str) {
    let line = format!("listening on {shown}");
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{line}");
    let _ = stderr.flush();
}

/// Calls `shutdown` on the first SIGTERM or SIGINT, from a thread of its own; a second
/// signal exits the process at once.
fn on_signals(shutdown: impl Fn() + Send + 'static) -> Result<(), String> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals =
        signal_hook::iterator::Signals::new([SIGTERM, SIGINT]).map_err(|e| format!("signal setup: {e}"))?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut forever = signals.forever();
            if let Some(signal) = forever.next() {
                eprintln!("signal {signal}: shutting down gracefully (again to exit now)");
                shutdown();
            }
            if forever.next().is_some() {
                std::process::exit(130);
            }
        })
        .map_err(|e| format!("signal thread: {e}"))?;
    Ok(())
}

/// The value of `name` in an `application/x-www-form-urlencoded` query string, decoded
/// (`+` is a space, `%XX` a byte); the first occurrence wins.
pub fn query_param(query: &str, name: &str) -> Option<Vec<u8>> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(key.as_bytes()) == name.as_bytes()).then(|| percent_decode(value.as_bytes()))
    })
}

/// Decodes `%XX` escapes and `+`; a `%` not followed by two hex digits stays as it is.
pub fn percent_decode(input: &[u8]) -> Vec<u8> {
    let digit = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        if b == b'%'
            && let (Some(h), Some(l)) =
                (input.get(i + 1).copied().and_then(digit), input.get(i + 2).copied().and_then(digit))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(if b == b'+' { b' ' } else { b });
        i += 1;
    }
    out
}

/// Bytes (from a query string) as a path component source, without assuming UTF-8.
pub fn os_string(bytes: Vec<u8>) -> OsString {
    OsString::from_vec(bytes)
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
