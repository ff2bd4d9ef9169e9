//! The MPS2 AN386 board as QEMU models it: a 25 MHz Cortex-M4, a LAN9118 at
//! 0x4020_0000 on interrupt 13, semihosting for the console; and the network setup for QEMU's user-mode
//! network (guest 10.0.2.15/24, gateway 10.0.2.2).

use cortex_m::interrupt::InterruptNumber;
use cortex_m::peripheral::NVIC;
use cortex_m_rt::exception;
use embassy_net::{Ipv4Address, Ipv4Cidr, StaticConfigV4};

use crate::lan9118::{Lan9118, Lan9118Error, on_interrupt};
use crate::systick;

/// The LAN9118's register window on the MPS2 boards.
pub const LAN9118_BASE: usize = 0x4020_0000;
/// The LAN9118's interrupt line on the MPS2 boards.
pub const LAN9118_IRQ: u16 = 13;
/// Core clock of the MPS2 FPGA images.
pub const CORE_HZ: u32 = 25_000_000;
/// The firmware's address on QEMU's user network, and the port it serves.
pub const ADDRESS: Ipv4Address = Ipv4Address::new(10, 0, 2, 15);
pub const GATEWAY: Ipv4Address = Ipv4Address::new(10, 0, 2, 2);
pub const PORT: u16 = 9000;

/// Why the board could not be brought up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoardError {
    /// The core peripherals were already taken.
    PeripheralsTaken,
    /// The Ethernet controller did not come up.
    Ethernet(Lan9118Error),
}

impl core::fmt::Display for BoardError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::PeripheralsTaken => f.write_str("the core peripherals were already taken"),
            Self::Ethernet(e) => write!(f, "{e}"),
        }
    }
}

impl From<Lan9118Error> for BoardError {
    fn from(e: Lan9118Error) -> Self {
        Self::Ethernet(e)
    }
}

/// Starts the tick and brings up the Ethernet controller and its interrupt.
pub fn init() -> Result<Lan9118, BoardError> {
    let Some(peripherals) = cortex_m::Peripherals::take() else {
        return Err(BoardError::PeripheralsTaken);
    };
    // SAFETY: LAN9118_BASE is the controller on this board, and only this driver uses it.
    let nic = unsafe { Lan9118::new(LAN9118_BASE)? };
    systick::start(peripherals.SYST, CORE_HZ);
    // SAFETY: no critical section is open (we are in the executor's first poll, before any
    // task that could hold one), and `DefaultHandler` below handles this interrupt.
    unsafe { NVIC::unmask(EthernetIrq) };
    Ok(nic)
}

/// The static IPv4 configuration for QEMU's user network.
pub fn net_config() -> embassy_net::Config {
    embassy_net::Config::ipv4_static(StaticConfigV4 {
        address: Ipv4Cidr::new(ADDRESS, 24),
        gateway: Some(GATEWAY),
        dns_servers: heapless::Vec::new(),
    })
}

/// The seed of the stack's TCP sequence numbers and ports. The emulated board has no
/// entropy source, so it is fixed: fine for a test rig, not for the internet.
pub const SEED: u64 = 0x5eed_f00d_cafe_0001;

/// The Ethernet interrupt, as the NVIC knows it.
#[derive(Clone, Copy)]
struct EthernetIrq;

// SAFETY: 13 is a valid external interrupt of the board (the LAN9118's line).
unsafe impl InterruptNumber for EthernetIrq {
    fn number(self) -> u16 {
        LAN9118_IRQ
    }
}

#[exception]
fn SysTick() {
    systick::on_tick();
}

/// Every external interrupt without a handler of its own lands here (no device crate
/// names them); only the Ethernet line is enabled.
#[exception]
unsafe fn DefaultHandler(irqn: i16) {
    if irqn == LAN9118_IRQ as i16 {
        on_interrupt(LAN9118_BASE);
    }
}

/// Prints a line on the host's console (QEMU semihosting).
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => { cortex_m_semihosting::hprintln!($($arg)*) };
}

/// Reports a fatal error and ends the emulation with a failure code.
pub fn fail(what: &dyn core::fmt::Display) -> ! {
    cortex_m_semihosting::hprintln!("fatal: {}", what);
    cortex_m_semihosting::debug::exit(cortex_m_semihosting::debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    fail(info)
}
