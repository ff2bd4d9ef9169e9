//! Board support for the ember-fcgi firmware on QEMU's MPS2 AN386 (Cortex-M4): the
//! LAN9118 driver for embassy-net, the SysTick time driver, the board setup, and the
//! echo handler the firmware serves.
#![no_std]

pub mod board;
pub mod echo;
pub mod lan9118;
pub mod systick;
