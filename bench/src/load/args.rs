//! Command-line options of `fcgi-load`, parsed with lexopt.

use std::time::Duration;

use crate::net::Addr;

pub const USAGE: &str = "usage: fcgi-load --connect HOST:PORT|[V6]:PORT|unix:PATH [--connections N] \
[--keep-conn|--no-keep-conn] [--params N] [--body BYTES[k|M|G]] [--requests N] [--duration SECS] \
[--warmup SECS] [--timeout SECS] [--expect-body-prefix STR] [--json]";

/// Everything one load run needs.
#[derive(Clone, Debug)]
pub struct Config {
    pub addr: Addr,
    pub connections: usize,
    pub keep_conn: bool,
    pub params: usize,
    pub body: u64,
    /// Stop after this many measured requests (ok or failed).
    pub requests: Option<u64>,
    /// Stop after this long past warmup; defaults to 5 s when `requests` is not given either.
    pub duration: Option<Duration>,
    pub warmup: Duration,
    /// A request (connect included) taking longer than this counts as an error.
    pub timeout: Duration,
    pub expect_body_prefix: Option<Vec<u8>>,
    pub json: bool,
}

/// What the command line asked for.
pub enum Parsed {
    Run(Config),
    Help,
}

/// Parse `args` (without the program name). Errors are messages for the user.
pub fn parse<I>(args: I) -> Result<Parsed, String>
where
    I: IntoIterator,
    I::Item: Into<std::ffi::OsString>,
{
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(args);
    let mut addr = None;
    let mut cfg = Config {
        addr: Addr::Unix("".into()),
        connections: 1,
        keep_conn: true,
        params: 25,
        body: 0,
        requests: None,
        duration: None,
        warmup: Duration::from_millis(500),
        timeout: Duration::from_secs(10),
        expect_body_prefix: None,
        json: false,
    };
    let err = |e: lexopt::Error| e.to_string();
    while let Some(arg) = p.next().map_err(err)? {
        match arg {
            Long("connect") => addr = Some(Addr::parse(&p.value().map_err(err)?.string().map_err(err)?)?),
            Long("connections") => cfg.connections = p.value().map_err(err)?.parse().map_err(err)?,
            Long("keep-conn") => cfg.keep_conn = true,
            Long("no-keep-conn") => cfg.keep_conn = false,
            Long("params") => cfg.params = p.value().map_err(err)?.parse().map_err(err)?,
            Long("body") => cfg.body = parse_size(&p.value().map_err(err)?.string().map_err(err)?)?,
            Long("requests") => cfg.requests = Some(p.value().map_err(err)?.parse().map_err(err)?),
            Long("duration") => {
                cfg.duration = Some(parse_secs(&p.value().map_err(err)?.string().map_err(err)?)?)
            }
            Long("warmup") => cfg.warmup = parse_secs(&p.value().map_err(err)?.string().map_err(err)?)?,
            Long("timeout") => cfg.timeout = parse_secs(&p.value().map_err(err)?.string().map_err(err)?)?,
            Long("expect-body-prefix") => {
                cfg.expect_body_prefix = Some(p.value().map_err(err)?.string().map_err(err)?.into_bytes())
            }
            Long("json") => cfg.json = true,
            Short('h') | Long("help") => return Ok(Parsed::Help),
            _ => return Err(arg.unexpected().to_string()),
        }
    }
    cfg.addr = addr.ok_or("--connect is required")?;
    if cfg.connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    if cfg.requests.is_none() && cfg.duration.is_none() {
        cfg.duration = Some(Duration::from_secs(5));
    }
    Ok(Parsed::Run(cfg))
}

/// Byte count with an optional binary suffix: `100`, `64k`, `1M`, `2G`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let bad = || format!("bad size {s:?}");
    let (digits, mult) = match s.as_bytes().last() {
        Some(b'k' | b'K') => (&s[..s.len() - 1], 1 << 10),
        Some(b'm' | b'M') => (&s[..s.len() - 1], 1 << 20),
        Some(b'g' | b'G') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    n.checked_mul(mult).ok_or_else(bad)
}

/// Non-negative (fractional) seconds.
pub fn parse_secs(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .and_then(|f| Duration::try_from_secs_f64(f).ok())
        .ok_or_else(|| format!("bad duration {s:?} (seconds)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Config, String> {
        match parse(args.iter().copied())? {
            Parsed::Run(c) => Ok(c),
            Parsed::Help => Err("help".into()),
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("12"), Ok(12));
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert!(parse_size("M").is_err());
        assert!(parse_size("1T").is_err());
    }

    #[test]
    fn defaults_and_flags() {
        let c = run(&["--connect", "127.0.0.1:9000"]).unwrap();
        assert_eq!((c.connections, c.keep_conn, c.params, c.body), (1, true, 25, 0));
        assert_eq!(c.duration, Some(Duration::from_secs(5)));
        assert_eq!(c.warmup, Duration::from_millis(500));
        let c = run(&["--connect=unix:/x", "--no-keep-conn", "--requests", "10", "--body", "1k", "--json"])
            .unwrap();
        assert!(!c.keep_conn && c.json);
        assert_eq!((c.requests, c.duration, c.body), (Some(10), None, 1024));
        assert!(run(&[]).is_err());
        assert!(run(&["--connect", "127.0.0.1:1", "--bogus"]).is_err());
        assert!(run(&["--connect", "127.0.0.1:1", "--connections", "0"]).is_err());
    }
}
