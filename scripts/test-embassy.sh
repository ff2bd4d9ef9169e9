#!/usr/bin/env bash
# The embassy proofs: fmt and clippy of the embassy crates, the transport built for
# thumbv7em-none-eabihf, the firmware (its linker script allows 64 KiB of RAM), embassy-net
# over TAP in a network namespace behind nginx, the firmware under QEMU behind nginx, and
# the footprint table. Needs root, /dev/net/tun, nginx, qemu-system-arm (scripts/setup.sh);
# the tests fail, never pass, without them.
set -euo pipefail
cd "$(dirname "$0")/../transport-embassy"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

echo "== embassy: format and lints"
cargo fmt --all -- --check
(cd firmware && cargo fmt -- --check)
cargo clippy --workspace --all-targets -- -D warnings
(cd firmware && CARGO_TARGET_DIR="$CARGO_TARGET_DIR/firmware" cargo clippy --release --target thumbv7em-none-eabihf -- -D warnings)

echo "== embassy: the transport and the firmware on thumbv7em-none-eabihf"
cargo build -p ember-fcgi-embassy --target thumbv7em-none-eabihf
(cd firmware && CARGO_TARGET_DIR="$CARGO_TARGET_DIR/firmware" cargo build --release --target thumbv7em-none-eabihf)

echo "== embassy: TAP in a network namespace, and the firmware under QEMU, behind nginx"
EMBER_FIRMWARE="$CARGO_TARGET_DIR/firmware/thumbv7em-none-eabihf/release/fcgi" \
    cargo test -p ember-fcgi-embassy-e2e -- --include-ignored --nocapture

echo "== embassy: footprint"
bash ../scripts/embassy-footprint.sh
