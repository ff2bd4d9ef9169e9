#!/usr/bin/env bash
# User-space instructions per request, counted by callgrind (repeatable, unlike timings):
# - engine: `fcgi-engine`, the protocol engine alone over in-memory I/O (hello handler,
#   25 nginx params, keep-conn, one request per read);
# - mio, smol: the hello example on each transport, loaded by fcgi-load over loopback with
#   1 and with 64 keep-conn connections (the count moves by a few percent from run to run
#   with how events batch, and under valgrind a resting connection's request memory is
#   recalled every few requests rather than every few hundred).
# Each figure is the difference of a run with N + 10,000 requests and one with N, divided
# by 10,000, so start-up costs cancel out.
#
#   bash scripts/instructions.sh [--ref-engine BIN] [--ref-hello BIN] [--no-build]
#
# --ref-engine and --ref-hello add the same figures for other builds (e.g. an older release
# built in a git worktree), measured in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
REF_ENGINE="" REF_HELLO="" BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
        --ref-engine) REF_ENGINE=$2; shift 2 ;;
        --ref-hello) REF_HELLO=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        *) echo "instructions.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
command -v valgrind >/dev/null || { echo "instructions.sh: valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
TARGET=${CARGO_TARGET_DIR:-target}
if [ "$BUILD" = 1 ]; then
    cargo build -q --release -p ember-fcgi-bench
    cargo build -q --release --example hello
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# total FILE: the program's total instruction count in a callgrind output file.
total() { awk '/^(summary|totals):/ { print $2; exit }' "$1"; }

# engine BIN: instructions of BIN serving $REQUESTS requests.
engine() {
    valgrind --tool=callgrind --callgrind-out-file="$work/cg" "$1" "$REQUESTS" >/dev/null 2>&1
    total "$work/cg"
}

# server BIN TRANSPORT CONNECTIONS [ARGS...]: instructions of the hello server BIN while
# it serves $REQUESTS requests (none of them warm-up: every request is counted).
server() {
    local port=$((20000 + RANDOM % 20000)) pid
    valgrind --tool=callgrind --callgrind-out-file="$work/cg" "$1" --transport "$2" \
        --listen "127.0.0.1:$port" "${@:4}" >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
    "$TARGET/release/fcgi-load" --connect "127.0.0.1:$port" --connections "$3" --keep-conn \
        --warmup 0 --requests "$REQUESTS" >/dev/null
    kill -INT "$pid"
    wait "$pid" || true
    total "$work/cg"
}

# per_request CMD...: instructions per request of CMD.
per_request() {
    local small big
    small=$(REQUESTS=2000 "$@")
    big=$(REQUESTS=12000 "$@")
    echo $(( (big - small) / 10000 ))
}

echo "| what | instructions per request |"
echo "|---|---:|"
echo "| engine | $(per_request engine "$TARGET/release/fcgi-engine") |"
if [ -n "$REF_ENGINE" ]; then echo "| engine, $REF_ENGINE | $(per_request engine "$REF_ENGINE") |"; fi
for transport in mio smol; do
    for conns in 1 64; do
        echo "| hello on $transport, $conns connection(s) | $(per_request server "$TARGET/release/examples/hello" "$transport" "$conns" --log off) |"
        if [ -n "$REF_HELLO" ]; then
            echo "| hello on $transport, $conns connection(s), $REF_HELLO | $(per_request server "$REF_HELLO" "$transport" "$conns" --log off) |"
        fi
    done
done
