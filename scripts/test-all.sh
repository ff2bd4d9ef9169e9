#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, docs, the no_std proof, every unit,
# property, integration and end-to-end test (through a real nginx), a short fuzz run and a
# short soak run (FUZZ_SECONDS and SOAK_SECONDS set their lengths, default 20 s each).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --all-features -- -D warnings

echo "== docs: no rustdoc warning, no unlinked link"
bash scripts/doc-check.sh

echo "== public API: the committed listing in api/ (bash scripts/public-api.sh --update after a meant change)"
bash scripts/public-api.sh

echo "== no_std: the core on a bare-metal target, and linked into a no_std, no-alloc binary"
cargo build -p ember-fcgi-core --target thumbv7em-none-eabihf
cargo build --manifest-path nostd-check/Cargo.toml --target thumbv7em-none-eabihf --release

echo "== embassy: the transport, TAP and QEMU firmware proofs behind nginx"
bash scripts/test-embassy.sh

echo "== fuzz smoke run"
bash fuzz/run.sh "${FUZZ_SECONDS:-20}"

echo "== soak: mixed traffic on mio, smol and tokio; no error, no memory growth beyond the pool's mark"
bash scripts/soak.sh --seconds "${SOAK_SECONDS:-20}"

echo "== tests"
cargo build --release --examples --all-features
echo "== restarts under load through nginx: no failed request across handoffs and held-socket restarts"
bash scripts/restart-under-load.sh --duration 6 --restarts 3 --modes handoff,held --check \
    --bin "${CARGO_TARGET_DIR:-target}/release/examples/hello"
cargo test --workspace --all-features
