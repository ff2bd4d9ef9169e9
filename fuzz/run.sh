#!/usr/bin/env bash
# Runs every fuzz target for $1 seconds each (default 30); exits non-zero if any target
# crashed, failed an assertion, hung (-timeout) or failed to build.
# Needs cargo-fuzz (`cargo install cargo-fuzz`); works on stable via RUSTC_BOOTSTRAP=1.
# Crashes are written to fuzz/artifacts/TARGET/; new inputs to fuzz/corpus/TARGET/.
set -uo pipefail
secs="${1:-30}"
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP="${RUSTC_BOOTSTRAP:-1}"
targets=(nv_decoder record_header connection)

cargo fuzz build || exit 2
failed=()
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "seeds/$t"
    echo "== fuzz $t for ${secs}s"
    if ! cargo fuzz run "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1; then
        failed+=("$t")
    fi
done
if ((${#failed[@]})); then
    echo "fuzz: crashes in: ${failed[*]} (see fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz: ${#targets[@]} targets ran ${secs}s each, no crash"
