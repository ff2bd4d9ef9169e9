//! The embassy transport on Linux: embassy-net on a TAP device (embassy-net-tuntap) under
//! embassy's std executor, serving the firmware's echo handler (and, for the query string
//! `hang`, a handler that never answers, for the request timeout; for `big`, 1 MiB of
//! `x`, for the send timeout). The nginx test runs it
//! in a network namespace of its own.
//!
//! ```text
//! tap-server --tap tap0 --address 10.77.0.2 --prefix 24 --port 9000 \
//!     [--idle-ms N] [--head-ms N] [--body-ms N] [--send-ms N] [--request-ms N] \
//!     [--check-ms N] [--allow IP]...
//! ```

#[path = "../../../firmware/src/echo.rs"]
mod echo;

use embassy_executor::Spawner;
use embassy_net::{IpAddress, Ipv4Address, Ipv4Cidr, Runner, Stack, StackResources, StaticConfigV4};
use embassy_net_tuntap::TunTapDevice;
use embassy_time::Duration;
use ember_fcgi_core::prelude::*;
use ember_fcgi_core::{Buffers, Config};
use ember_fcgi_embassy::{AllowedPeers, Limits, Slot, Stats, serve};
use static_cell::StaticCell;

use echo::Echo;

const CONNS: usize = 4;
type ConnSlot = Slot<16384, 16384, Buffers<4096, 4096, 4096, 1>>;

static SLOTS: [StaticCell<ConnSlot>; CONNS] = [const { StaticCell::new() }; CONNS];
static RESOURCES: StaticCell<StackResources<CONNS>> = StaticCell::new();
static CONFIG: Config = {
    let mut config = Config::new();
    config.max_conns = CONNS as u32;
    config
};
static LIMITS: StaticCell<Limits> = StaticCell::new();
static STATS: Stats = Stats::new();
static HANDLER: Tap = Tap(Echo { stats: &STATS });

/// The echo handler, except for the query strings `hang` (never answers, writes nothing)
/// and `big` (answers 1 MiB of `x`).
struct Tap(Echo);

impl Handler for Tap {
    async fn handle(&self, req: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), HandlerError> {
        match req.params().query_string() {
            "hang" => core::future::pending::<()>().await,
            "big" => {
                let mut body = res.send_head(200, &[("Content-Type", "text/plain")]).await?;
                for _ in 0..1024 {
                    body.write_all(&[b'x'; 1024]).await?;
                }
                return Ok(());
            }
            _ => {}
        }
        self.0.handle(req, res).await
    }
}

struct Args {
    tap: String,
    address: Ipv4Address,
    prefix: u8,
    gateway: Option<Ipv4Address>,
    port: u16,
    limits: Limits,
}

fn parse_args() -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let mut args = Args {
        tap: "tap0".into(),
        address: Ipv4Address::new(10, 77, 0, 2),
        prefix: 24,
        gateway: None,
        port: 9000,
        limits: Limits::new(),
    };
    let mut allowed = Vec::new();
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("tap") => args.tap = parser.value()?.string()?,
            Long("address") => args.address = parser.value()?.parse()?,
            Long("prefix") => args.prefix = parser.value()?.parse()?,
            Long("gateway") => args.gateway = Some(parser.value()?.parse()?),
            Long("port") => args.port = parser.value()?.parse()?,
            Long("idle-ms") => args.limits.idle_timeout = Duration::from_millis(parser.value()?.parse()?),
            Long("head-ms") => args.limits.head_timeout = Duration::from_millis(parser.value()?.parse()?),
            Long("body-ms") => args.limits.body_timeout = Duration::from_millis(parser.value()?.parse()?),
            Long("send-ms") => args.limits.send_timeout = Duration::from_millis(parser.value()?.parse()?),
            Long("request-ms") => {
                args.limits.request_timeout = Duration::from_millis(parser.value()?.parse()?);
            }
            Long("allow") => allowed.push(IpAddress::Ipv4(parser.value()?.parse()?)),
            Long("check-ms") => args.limits.check_interval = Duration::from_millis(parser.value()?.parse()?),
            _ => return Err(arg.unexpected()),
        }
    }
    if !allowed.is_empty() {
        if allowed.len() > AllowedPeers::MAX {
            return Err(format!("at most {} --allow", AllowedPeers::MAX).into());
        }
        args.limits.allowed_peers = AllowedPeers::only(&allowed);
    }
    Ok(args)
}

#[embassy_executor::task]
async fn net_task(mut runner: Runner<'static, TunTapDevice>) -> ! {
    runner.run().await
}

#[embassy_executor::task(pool_size = CONNS)]
async fn conn_task(
    stack: Stack<'static>,
    port: u16,
    slot: &'static mut ConnSlot,
    limits: &'static Limits,
) -> ! {
    serve(stack, port, slot, &HANDLER, &CONFIG, limits, &STATS).await
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    if let Err(e) = start(spawner) {
        eprintln!("tap-server: {e}");
        std::process::exit(2);
    }
}

fn start(spawner: Spawner) -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let device = TunTapDevice::new(&args.tap).map_err(|e| format!("opening TAP device {}: {e}", args.tap))?;
    let config = embassy_net::Config::ipv4_static(StaticConfigV4 {
        address: Ipv4Cidr::new(args.address, args.prefix),
        gateway: args.gateway,
        dns_servers: Default::default(),
    });
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos() as u64;
    let (stack, runner) = embassy_net::new(device, config, RESOURCES.init(StackResources::new()), seed);
    spawner.spawn(net_task(runner)?);
    let limits = LIMITS.init(args.limits);
    for slot in &SLOTS {
        spawner.spawn(conn_task(stack, args.port, slot.init_with(|| Slot::new(Buffers::new())), limits)?);
    }
    println!(
        "tap-server: FastCGI on {}:{} over {} with {CONNS} connections",
        args.address, args.port, args.tap
    );
    Ok(())
}
