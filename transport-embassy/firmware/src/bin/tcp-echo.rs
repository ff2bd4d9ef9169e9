//! The baseline for FastCGI's share of flash: the same board, stack, sockets and buffer
//! sizes as `fcgi`, serving a plain TCP echo on port 9000 instead of FastCGI. Like the
//! FastCGI handler it hashes what it receives (and sends the SHA-256 when the peer
//! closes its side), so the difference between the two images is FastCGI alone.
#![no_std]
#![no_main]

use embassy_executor::Spawner;
use embassy_net::tcp::TcpSocket;
use embassy_net::{Runner, Stack, StackResources};
use embedded_io_async::Write;
use ember_fcgi_firmware::board::{self, PORT};
use ember_fcgi_firmware::echo::hex;
use ember_fcgi_firmware::lan9118::Lan9118;
use ember_fcgi_firmware::log;
use sha2::{Digest, Sha256};
use static_cell::{ConstStaticCell, StaticCell};

const CONNS: usize = if cfg!(feature = "one-conn") {
    1
} else if cfg!(feature = "params-8k") {
    3
} else {
    4
};
const RX: usize = if cfg!(feature = "params-8k") { 2048 } else { 512 };
const TX: usize = RX;

struct SocketBuffers {
    rx: [u8; RX],
    tx: [u8; TX],
}

static BUFFERS: [ConstStaticCell<SocketBuffers>; CONNS] =
    [const { ConstStaticCell::new(SocketBuffers { rx: [0; RX], tx: [0; TX] }) }; CONNS];
static RESOURCES: StaticCell<StackResources<CONNS>> = StaticCell::new();

#[embassy_executor::task]
async fn net_task(mut runner: Runner<'static, Lan9118>) -> ! {
    runner.run().await
}

#[embassy_executor::task(pool_size = CONNS)]
async fn echo_task(stack: Stack<'static>, buffers: &'static mut SocketBuffers) -> ! {
    let mut chunk = [0u8; 256];
    loop {
        let mut socket = TcpSocket::new(stack, &mut buffers.rx, &mut buffers.tx);
        if socket.accept(PORT).await.is_err() {
            continue;
        }
        let mut sha = Sha256::new();
        loop {
            match socket.read(&mut chunk).await {
                Ok(0) => {
                    let _ = socket.write_all(&hex(&sha.finalize().into())).await;
                    break;
                }
                Err(_) => break,
                Ok(n) => {
                    sha.update(&chunk[..n]);
                    if socket.write_all(&chunk[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
        socket.close();
        let _ = socket.flush().await;
    }
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
    for buffers in &BUFFERS {
        match echo_task(stack, buffers.take()) {
            Ok(token) => spawner.spawn(token),
            Err(e) => board::fail(&e),
        }
    }
    // The same start-up line as the FastCGI firmware's (MAC included), so the flash
    // difference between the two is FastCGI's alone.
    log!(
        "tcp-echo firmware: mac {:02x?}, echo on {}:{} with {} connections",
        mac,
        board::ADDRESS,
        PORT,
        CONNS
    );
}
