//! The FastCGI firmware: embassy-net on the LAN9118, `CONNS` sockets accepting on port
//! 9000, each serving the echo handler through ember-fcgi-embassy.
#![no_std]
#![no_main]

use embassy_executor::Spawner;
use embassy_net::{IpAddress, Runner, Stack, StackResources};
use embassy_time::Duration;
use ember_fcgi_core::{Buffers, Config};
use ember_fcgi_embassy::{AllowedPeers, Limits, Slot, Stats, serve};
use ember_fcgi_firmware::board::{self, PORT};
use ember_fcgi_firmware::echo::Echo;
use ember_fcgi_firmware::lan9118::Lan9118;
use ember_fcgi_firmware::log;
use static_cell::StaticCell;

/// Sockets accepting on the port: two for nginx's kept-alive connections (two
/// concurrent clients), and two more so that one is listening while others close
/// (embassy-net has no backlog: a SYN that finds no listening socket is reset).
const CONNS: usize = if cfg!(feature = "one-conn") {
    1
} else if cfg!(feature = "params-8k") {
    // Four connections with 8 KiB of params each do not fit in 64 KiB: the link fails.
    3
} else {
    4
};

/// The smallest configuration that serves nginx's requests: 1 KiB of params (nginx's
/// usual params take 0.5 to 1 KiB; more gets 431), 128-byte I/O buffers (the output
/// minimum), a 64-byte body window (the handler reads its body as it comes), 512-byte TCP
/// windows.
#[cfg(not(feature = "params-8k"))]
mod sizes {
    pub type Fcgi = ember_fcgi_core::Buffers<128, 128, 1024, 1, 64>;
    pub const RX: usize = 512;
    pub const TX: usize = 512;
}

/// A typical nginx deployment: up to 8 KiB of params, a 512-byte body window, 2 KiB TCP
/// windows.
#[cfg(feature = "params-8k")]
mod sizes {
    pub type Fcgi = ember_fcgi_core::Buffers<512, 512, 8192, 1, 512>;
    pub const RX: usize = 2048;
    pub const TX: usize = 2048;
}

type ConnSlot = Slot<{ sizes::RX }, { sizes::TX }, sizes::Fcgi>;

// Filled at boot, so the slots live in .bss, not as a flash image in .data.
static SLOTS: [StaticCell<ConnSlot>; CONNS] = [const { StaticCell::new() }; CONNS];
static RESOURCES: StaticCell<StackResources<CONNS>> = StaticCell::new();
static CONFIG: Config = {
    let mut config = Config::new();
    config.max_conns = CONNS as u32;
    config
};
/// The default limits, but a 2 s body timeout (the QEMU test stalls a body) and only QEMU's
/// user-network gateway, through which every connection arrives, as the web server.
static LIMITS: Limits = Limits::new()
    .with_body_timeout(Duration::from_secs(2))
    .with_allowed_peers(AllowedPeers::only(&[IpAddress::Ipv4(board::GATEWAY)]));
static STATS: Stats = Stats::new();
static HANDLER: Echo = Echo { stats: &STATS };

#[embassy_executor::task]
async fn net_task(mut runner: Runner<'static, Lan9118>) -> ! {
    runner.run().await
}

#[embassy_executor::task(pool_size = CONNS)]
async fn conn_task(stack: Stack<'static>, slot: &'static mut ConnSlot) -> ! {
    serve(stack, PORT, slot, &HANDLER, &CONFIG, &LIMITS, &STATS).await
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    let nic = match board::init() {
        Ok(nic) => nic,
        Err(e) => board::fail(&e),
    };
    let mac = nic.mac();
    let (stack, runner) =
        embassy_net::new(nic, board::net_config(), RESOURCES.init(StackResources::new()), board::SEED);
    match net_task(runner) {
        Ok(token) => spawner.spawn(token),
        Err(e) => board::fail(&e),
    }
    for slot in &SLOTS {
        match conn_task(stack, slot.init_with(|| Slot::new(Buffers::new()))) {
            Ok(token) => spawner.spawn(token),
            Err(e) => board::fail(&e),
        }
    }
    log!(
        "ember-fcgi firmware: mac {:02x?}, FastCGI on {}:{} with {} connections",
        mac,
        board::ADDRESS,
        PORT,
        CONNS
    );
}
