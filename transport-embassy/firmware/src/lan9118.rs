//! A polled driver for the SMSC LAN9118 Ethernet controller (as on the MPS2 boards and in
//! QEMU's model), for embassy-net. Frames move through the controller's FIFOs word by
//! word: a received frame is announced by a word in the RX status FIFO (its length,
//! CRC included) and read from the RX data FIFO; a frame is sent by writing two command
//! words and its data to the TX data FIFO. MAC registers sit behind an indirect CSR port.
//!
//! The controller raises its interrupt line when a frame is waiting (the RX status FIFO
//! level interrupt); the board routes it to [`on_interrupt`], which wakes the stack.

use core::task::Context;

use embassy_net_driver::{Capabilities, HardwareAddress, LinkState};
use embassy_sync::waitqueue::AtomicWaker;

/// Register offsets from the controller's base address.
mod reg {
    pub const RX_DATA_FIFO: usize = 0x00;
    pub const TX_DATA_FIFO: usize = 0x20;
    pub const RX_STATUS_FIFO: usize = 0x40;
    pub const TX_STATUS_FIFO: usize = 0x48;
    pub const ID_REV: usize = 0x50;
    pub const IRQ_CFG: usize = 0x54;
    pub const INT_STS: usize = 0x58;
    pub const INT_EN: usize = 0x5c;
    pub const BYTE_TEST: usize = 0x64;
    pub const FIFO_INT: usize = 0x68;
    pub const RX_CFG: usize = 0x6c;
    pub const TX_CFG: usize = 0x70;
    pub const HW_CFG: usize = 0x74;
    pub const RX_FIFO_INF: usize = 0x7c;
    pub const TX_FIFO_INF: usize = 0x80;
    pub const PMT_CTRL: usize = 0x84;
    pub const MAC_CSR_CMD: usize = 0xa4;
    pub const MAC_CSR_DATA: usize = 0xa8;
}

/// MAC CSR indexes (behind `MAC_CSR_CMD`/`MAC_CSR_DATA`).
mod mac {
    pub const CR: u32 = 1;
    pub const ADDRH: u32 = 2;
    pub const ADDRL: u32 = 3;
    pub const MII_ACC: u32 = 6;
    pub const MII_DATA: u32 = 7;
    pub const CR_FDPX: u32 = 1 << 20;
    pub const CR_TXEN: u32 = 1 << 3;
    pub const CR_RXEN: u32 = 1 << 2;
}

const BYTE_TEST_VALUE: u32 = 0x8765_4321;
const HW_CFG_SRST: u32 = 1;
const PMT_CTRL_READY: u32 = 1;
const TX_CFG_TX_ON: u32 = 1 << 1;
/// IRQ_CFG: interrupt output enabled, active high, push-pull.
const IRQ_CFG_ACTIVE_HIGH: u32 = (1 << 8) | (1 << 4) | 1;
/// INT_STS / INT_EN: the RX status FIFO holds more entries than FIFO_INT's RX level.
const INT_RSFL: u32 = 1 << 3;
const CSR_BUSY: u32 = 1 << 31;
const CSR_READ: u32 = 1 << 30;
const MII_BUSY: u32 = 1;
const MII_WRITE: u32 = 1 << 1;
const PHY_ADDR: u32 = 1;
const PHY_BMCR: u32 = 0;
const PHY_BMSR: u32 = 1;
const BMCR_AUTONEG: u32 = 0x1000;
const BMCR_RESTART_AUTONEG: u32 = 0x0200;
const BMSR_LINK: u32 = 0x0004;
/// RX status: frame length (CRC included) in bits 29:16, error summary in bit 15.
const RX_STS_ERROR: u32 = 1 << 15;
/// TX command A: first and last segment of a frame.
const TX_CMD_A_FIRST: u32 = 1 << 13;
const TX_CMD_A_LAST: u32 = 1 << 12;
/// Polls of a self-clearing bit before the controller counts as absent.
const SPIN_LIMIT: u32 = 100_000;

/// Largest Ethernet frame without CRC; the buffers hold a whole frame.
pub const MTU: usize = 1514;
const FRAME_BUF: usize = 1536;

static RX_WAKER: AtomicWaker = AtomicWaker::new();

/// Why the controller could not be brought up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lan9118Error {
    /// BYTE_TEST did not read 0x87654321: no LAN9118 at this address.
    NotFound(u32),
    /// A reset or CSR access did not finish.
    Stuck(&'static str),
}

impl core::fmt::Display for Lan9118Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotFound(v) => write!(f, "no LAN9118: BYTE_TEST reads {v:#010x}"),
            Self::Stuck(what) => write!(f, "LAN9118 {what} did not complete"),
        }
    }
}

/// The controller's register window.
#[derive(Clone, Copy)]
struct Regs {
    base: usize,
}

impl Regs {
    fn read(self, offset: usize) -> u32 {
        // SAFETY: `Lan9118::new`'s caller guarantees `base` is the controller's 256-byte
        // MMIO window; every offset used is a 4-aligned register inside it, and reading a
        // device register touches no Rust-visible memory.
        unsafe { core::ptr::read_volatile((self.base + offset) as *const u32) }
    }

    fn write(self, offset: usize, value: u32) {
        // SAFETY: as in `read`; a register write changes only the device.
        unsafe { core::ptr::write_volatile((self.base + offset) as *mut u32, value) }
    }

    /// Spins until `done` holds of the register at `offset`.
    fn wait(
        self,
        offset: usize,
        done: impl Fn(u32) -> bool,
        what: &'static str,
    ) -> Result<u32, Lan9118Error> {
        for _ in 0..SPIN_LIMIT {
            let v = self.read(offset);
            if done(v) {
                return Ok(v);
            }
        }
        Err(Lan9118Error::Stuck(what))
    }

    fn mac_read(self, index: u32) -> Result<u32, Lan9118Error> {
        self.wait(reg::MAC_CSR_CMD, |v| v & CSR_BUSY == 0, "MAC CSR")?;
        self.write(reg::MAC_CSR_CMD, CSR_BUSY | CSR_READ | index);
        self.wait(reg::MAC_CSR_CMD, |v| v & CSR_BUSY == 0, "MAC CSR read")?;
        Ok(self.read(reg::MAC_CSR_DATA))
    }

    fn mac_write(self, index: u32, value: u32) -> Result<(), Lan9118Error> {
        self.wait(reg::MAC_CSR_CMD, |v| v & CSR_BUSY == 0, "MAC CSR")?;
        self.write(reg::MAC_CSR_DATA, value);
        self.write(reg::MAC_CSR_CMD, CSR_BUSY | index);
        self.wait(reg::MAC_CSR_CMD, |v| v & CSR_BUSY == 0, "MAC CSR write").map(|_| ())
    }

    fn phy_read(self, phy_reg: u32) -> Result<u32, Lan9118Error> {
        self.mac_write(mac::MII_ACC, (PHY_ADDR << 11) | (phy_reg << 6) | MII_BUSY)?;
        self.wait_mii()?;
        self.mac_read(mac::MII_DATA)
    }

    fn phy_write(self, phy_reg: u32, value: u32) -> Result<(), Lan9118Error> {
        self.mac_write(mac::MII_DATA, value)?;
        self.mac_write(mac::MII_ACC, (PHY_ADDR << 11) | (phy_reg << 6) | MII_WRITE | MII_BUSY)?;
        self.wait_mii()
    }

    fn wait_mii(self) -> Result<(), Lan9118Error> {
        for _ in 0..SPIN_LIMIT {
            if self.mac_read(mac::MII_ACC)? & MII_BUSY == 0 {
                return Ok(());
            }
        }
        Err(Lan9118Error::Stuck("MII access"))
    }

    /// Frames waiting in the RX status FIFO.
    fn rx_frames(self) -> u32 {
        (self.read(reg::RX_FIFO_INF) >> 16) & 0xff
    }
}

/// The controller, with one frame buffer each way (embassy-net's tokens lend them out).
pub struct Lan9118 {
    regs: Regs,
    mac: [u8; 6],
    rx: [u8; FRAME_BUF],
    tx: [u8; FRAME_BUF],
}

impl Lan9118 {
    /// Resets the controller at `base` and starts its MAC with the address the
    /// controller holds (loaded from its EEPROM; QEMU's `-nic ...,mac=`).
    ///
    /// # Safety
    /// `base` must be the address of a LAN9118's register window, used by nothing else.
    pub unsafe fn new(base: usize) -> Result<Self, Lan9118Error> {
        let regs = Regs { base };
        let test = regs.read(reg::BYTE_TEST);
        if test != BYTE_TEST_VALUE {
            return Err(Lan9118Error::NotFound(test));
        }
        regs.write(reg::HW_CFG, HW_CFG_SRST);
        regs.wait(reg::HW_CFG, |v| v & HW_CFG_SRST == 0, "soft reset")?;
        regs.wait(reg::PMT_CTRL, |v| v & PMT_CTRL_READY != 0, "power-up")?;

        let low = regs.mac_read(mac::ADDRL)?.to_le_bytes();
        let high = regs.mac_read(mac::ADDRH)?.to_le_bytes();
        let mac = [low[0], low[1], low[2], low[3], high[0], high[1]];

        regs.phy_write(PHY_BMCR, BMCR_AUTONEG | BMCR_RESTART_AUTONEG)?;
        // Exact address filter plus broadcast; full duplex; both directions on.
        regs.mac_write(mac::CR, mac::CR_FDPX | mac::CR_TXEN | mac::CR_RXEN)?;
        regs.write(reg::RX_CFG, 0);
        regs.write(reg::TX_CFG, TX_CFG_TX_ON);
        // Interrupt as soon as one frame waits (RX status level 0).
        regs.write(reg::FIFO_INT, 0);
        regs.write(reg::INT_STS, u32::MAX);
        regs.write(reg::INT_EN, INT_RSFL);
        regs.write(reg::IRQ_CFG, IRQ_CFG_ACTIVE_HIGH);
        Ok(Self { regs, mac, rx: [0; FRAME_BUF], tx: [0; FRAME_BUF] })
    }

    /// The controller's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Whether the PHY reports a link.
    pub fn link_up(&self) -> Result<bool, Lan9118Error> {
        Ok(self.regs.phy_read(PHY_BMSR)? & BMSR_LINK != 0)
    }

    /// ID_REV (chip id in the high half).
    pub fn id(&self) -> u32 {
        self.regs.read(reg::ID_REV)
    }

    /// Reads the next good frame into `rx`; returns its length. Bad frames are dropped.
    fn next_frame(&mut self) -> Option<usize> {
        while self.regs.rx_frames() > 0 {
            let status = self.regs.read(reg::RX_STATUS_FIFO);
            let len = ((status >> 16) & 0x3fff) as usize;
            let words = len.div_ceil(4);
            let good = status & RX_STS_ERROR == 0 && (18..=FRAME_BUF).contains(&len);
            for i in 0..words {
                let word = self.regs.read(reg::RX_DATA_FIFO).to_le_bytes();
                if good {
                    self.rx[i * 4..i * 4 + 4].copy_from_slice(&word);
                }
            }
            if good {
                return Some(len - 4);
            }
        }
        None
    }

    fn tx_space(&self) -> bool {
        (self.regs.read(reg::TX_FIFO_INF) & 0xffff) as usize >= FRAME_BUF + 8
    }
}

/// The controller's interrupt handler: acknowledges it and wakes the stack, which then
/// reads every waiting frame (the driver registers its waker before it looks, so a frame
/// that arrives meanwhile raises the interrupt again and is not missed).
pub fn on_interrupt(base: usize) {
    let regs = Regs { base };
    regs.write(reg::INT_STS, regs.read(reg::INT_STS));
    RX_WAKER.wake();
}

/// A received frame, lent to the stack.
pub struct RxToken<'a> {
    frame: &'a mut [u8],
}

impl embassy_net_driver::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, f: F) -> R {
        f(self.frame)
    }
}

/// Room for one frame to send.
pub struct TxToken<'a> {
    regs: Regs,
    buf: &'a mut [u8; FRAME_BUF],
}

impl embassy_net_driver::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let len = len.min(MTU);
        let result = f(&mut self.buf[..len]);
        let regs = self.regs;
        regs.write(reg::TX_DATA_FIFO, TX_CMD_A_FIRST | TX_CMD_A_LAST | len as u32);
        regs.write(reg::TX_DATA_FIFO, ((len as u32) << 16) | len as u32);
        for chunk in self.buf[..len].chunks(4) {
            let mut word = [0u8; 4];
            word[..chunk.len()].copy_from_slice(chunk);
            regs.write(reg::TX_DATA_FIFO, u32::from_le_bytes(word));
        }
        // Drop the TX status words so that FIFO never fills.
        while (regs.read(reg::TX_FIFO_INF) >> 16) & 0xff > 0 {
            regs.read(reg::TX_STATUS_FIFO);
        }
        result
    }
}

impl embassy_net_driver::Driver for Lan9118 {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, cx: &mut Context) -> Option<(RxToken<'_>, TxToken<'_>)> {
        RX_WAKER.register(cx.waker());
        if !self.tx_space() {
            cx.waker().wake_by_ref();
            return None;
        }
        let len = self.next_frame()?;
        let regs = self.regs;
        Some((RxToken { frame: &mut self.rx[..len] }, TxToken { regs, buf: &mut self.tx }))
    }

    fn transmit(&mut self, cx: &mut Context) -> Option<TxToken<'_>> {
        if !self.tx_space() {
            cx.waker().wake_by_ref();
            return None;
        }
        Some(TxToken { regs: self.regs, buf: &mut self.tx })
    }

    fn link_state(&mut self, _cx: &mut Context) -> LinkState {
        // QEMU's link is up from reset and stays up; `new` restarted autonegotiation.
        LinkState::Up
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::default();
        caps.max_transmission_unit = MTU;
        // The RX FIFO holds several full frames; the sockets' windows bound the bursts.
        caps.max_burst_size = None;
        caps
    }

    fn hardware_address(&self) -> HardwareAddress {
        HardwareAddress::Ethernet(self.mac)
    }
}
