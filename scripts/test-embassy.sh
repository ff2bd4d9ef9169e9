#!/usr/bin/env bash
# The embassy proofs: fmt and clippy of the embassy crates, the transport built for
# thumbv7em-none-eabihf, thumbv6m-none-eabi and riscv32imc-unknown-none-elf, the firmware
# (its linker script allows 64 KiB of RAM), embassy-net over TAP in a network namespace
# behind nginx, the firmware under QEMU behind nginx, and the footprint table, checked
# against the budget (FastCGI's flash share at most 24 KiB, static RAM at most 4 KiB per
# connection in the smallest configuration). Needs root, /dev/net/tun, nginx,
# qemu-system-arm (scripts/setup.sh); the tests fail, never pass, without them.
set -euo pipefail
cd "$(dirname "$0")/../transport-embassy"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

echo "== embassy: format and lints"
cargo fmt --all -- --check
(cd firmware && cargo fmt -- --check)
cargo clippy --workspace --all-targets -- -D warnings
(cd firmware && CARGO_TARGET_DIR="$CARGO_TARGET_DIR/firmware" cargo clippy --release --target thumbv7em-none-eabihf -- -D warnings)

echo "== embassy: the transport on thumbv7em-none-eabihf (Cortex-M4F), thumbv6m-none-eabi (RP2040) and riscv32imc-unknown-none-elf (ESP32-C3); the firmware"
cargo build -p ember-fcgi-embassy --target thumbv7em-none-eabihf
# The two without compare-and-swap: the firmware picks how portable-atomic's counters
# work; `critical-section` is what a firmware with embassy has.
for target in thumbv6m-none-eabi riscv32imc-unknown-none-elf; do
    cargo build -p ember-fcgi-embassy --target "$target" --features portable-atomic/critical-section
done
(cd firmware && CARGO_TARGET_DIR="$CARGO_TARGET_DIR/firmware" cargo build --release --target thumbv7em-none-eabihf)

echo "== embassy: TAP in a network namespace, and the firmware under QEMU, behind nginx"
EMBER_FIRMWARE="$CARGO_TARGET_DIR/firmware/thumbv7em-none-eabihf/release/fcgi" \
    cargo test -p ember-fcgi-embassy-e2e -- --include-ignored --nocapture

echo "== embassy: footprint"
bash ../scripts/embassy-footprint.sh
