#!/usr/bin/env bash
# Server CPU per request with many idle keep-alive connections open: the cost of what the
# runtime does per connection (its deadline sweep) rather than per request. Compares two
# builds of the hello example, alternating them round by round on a noisy machine.
#
#   bash scripts/idle-cpu.sh --old HELLO --new HELLO [--transport mio|smol] [--idle N]
#                            [--busy N] [--duration SECS] [--rounds N] [--bin DIR]
#                            [--server-cpu N] [--load-cpu N] [--out FILE] [--callgrind]
#
# Each round, for each build (the order alternates from round to round): start the server
# (pinned to --server-cpu, default 0) with --max-connections idle + busy + 16; open --idle
# (default 10000) connections with fcgi-idle --warm (each completes one keep-conn request,
# then is held); once the server holds them, run fcgi-load with --busy (default 64)
# keep-conn connections for --duration seconds (default 10) (pinned to --load-cpu, default
# 1) and read the server's CPU time (all its threads, /proc/PID/task/*/schedstat) over the
# load. Prints one line per run, then per build the median CPU µs per request and req/s,
# and the median over rounds of the per-round ratio new/old. fcgi-load and fcgi-idle come
# from --bin (default target/release; `cargo build --release -p ember-fcgi-bench --bins`).
# Raises the open-file limit to idle + busy + 256 (the hard limit must allow it).
#
# --callgrind instead counts the server's instructions per request under valgrind (not
# affected by the machine's load): for each build, the server holding --idle warmed idle
# connections serves 2,000 and then (another server) 12,000 requests over --busy keep-conn
# connections; the difference divided by 10,000 is printed (start-up, the idle
# connections' warm-up and the shutdown cancel out; what the runtime does per connection
# while the load runs does not).
set -euo pipefail
cd "$(dirname "$0")/.."

OLD="" NEW="" TRANSPORT=mio CALLGRIND=0 IDLE=10000 BUSY=64 DURATION=10 ROUNDS=4
BIN=${CARGO_TARGET_DIR:-target}/release SERVER_CPU=0 LOAD_CPU=1 OUT=""
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
while [ $# -gt 0 ]; do
    case "$1" in
        --old) OLD=$2; shift 2 ;;
        --new) NEW=$2; shift 2 ;;
        --transport) TRANSPORT=$2; shift 2 ;;
        --idle) IDLE=$2; shift 2 ;;
        --busy) BUSY=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --bin) BIN=$2; shift 2 ;;
        --server-cpu) SERVER_CPU=$2; shift 2 ;;
        --load-cpu) LOAD_CPU=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --callgrind) CALLGRIND=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done
[ -n "$OLD" ] && [ -n "$NEW" ] || { usage >&2; exit 2; }
for b in "$OLD" "$NEW" "$BIN/fcgi-load" "$BIN/fcgi-idle"; do
    [ -x "$b" ] || { echo "idle-cpu.sh: $b not found" >&2; exit 1; }
done
ulimit -n $((IDLE + BUSY + 256))
WORK=$(mktemp -d)
OUT=${OUT:-$WORK/idle-cpu.jsonl}
: >"$OUT"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%.0f", s }'; }
fds() { find /proc/"$1"/fd -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }

# run NAME BIN ROUND: one measurement, appended to $OUT.
run() {
    local name=$1 bin=$2 round=$3 log=$WORK/$1.$3.log waited=0
    taskset -c "$SERVER_CPU" "$bin" --transport "$TRANSPORT" --listen 127.0.0.1:0 \
        --max-connections $((IDLE + BUSY + 16)) >"$log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    until grep -q "^listening on " "$log" 2>/dev/null; do
        sleep 0.05
        waited=$((waited + 1))
        [ "$waited" -lt 200 ] || { echo "idle-cpu.sh: $name did not start" >&2; cat "$log" >&2; exit 1; }
    done
    local addr base
    sleep 0.2 # the line may be written in pieces (stderr is unbuffered)
    addr=$(sed -n 's/^listening on //p' "$log" | head -n1)
    base=$(fds "$pid")
    taskset -c "$LOAD_CPU" "$BIN/fcgi-idle" --connect "$addr" --connections "$IDLE" --warm --pid "$pid" \
        --hold 600 >/dev/null 2>"$WORK/idle.$name.$round.log" &
    local idle_pid=$!
    PIDS+=("$idle_pid")
    waited=0
    until [ "$(fds "$pid")" -ge $((base + IDLE)) ]; do
        sleep 0.2
        waited=$((waited + 1))
        [ "$waited" -lt 600 ] || { echo "idle-cpu.sh: $name: idle connections not open" >&2; exit 1; }
    done
    # The last connections finish their warm-up request; their memory goes back.
    sleep 1
    local before after line
    before=$(cpu_ns "$pid")
    line=$(taskset -c "$LOAD_CPU" "$BIN/fcgi-load" --connect "$addr" --connections "$BUSY" --keep-conn \
        --duration "$DURATION" --json | tail -n1)
    after=$(cpu_ns "$pid")
    local open
    open=$(($(fds "$pid") - base))
    kill -KILL "$idle_pid" 2>/dev/null || true
    wait "$idle_pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    printf '{"build":"%s","round":%s,"idle":%s,"open_during":%s,"server_cpu_ns":%s,"load":%s}\n' \
        "$name" "$round" "$IDLE" "$open" "$((after - before))" "$line" >>"$OUT"
    echo "round $round $name: $(tail -n1 "$OUT")" >&2
}

# instructions BIN REQUESTS: callgrind's total for the server BIN holding $IDLE idle
# connections while it serves REQUESTS requests over $BUSY connections.
instructions() {
    local log=$WORK/cg.log out=$WORK/cg.out waited=0 addr pid base idle_pid
    valgrind --tool=callgrind --callgrind-out-file="$out" "$1" --transport "$TRANSPORT" \
        --listen 127.0.0.1:0 --max-connections $((IDLE + BUSY + 16)) --log off >"$log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    until grep -q "^listening on " "$log" 2>/dev/null; do
        sleep 0.1
        waited=$((waited + 1))
        [ "$waited" -lt 600 ] || { echo "idle-cpu.sh: the server did not start" >&2; cat "$log" >&2; exit 1; }
    done
    sleep 0.2 # the line may be written in pieces (stderr is unbuffered)
    addr=$(sed -n 's/^listening on //p' "$log" | head -n1)
    base=$(fds "$pid")
    "$BIN/fcgi-idle" --connect "$addr" --connections "$IDLE" --warm --pid "$pid" --hold 3600 \
        >/dev/null 2>"$WORK/idle.log" &
    idle_pid=$!
    PIDS+=("$idle_pid")
    until [ "$(fds "$pid")" -ge $((base + IDLE)) ]; do
        kill -0 "$idle_pid" 2>/dev/null || { echo "idle-cpu.sh: fcgi-idle failed:" >&2; cat "$WORK/idle.log" >&2; exit 1; }
        sleep 0.2
    done
    sleep 2
    "$BIN/fcgi-load" --connect "$addr" --connections "$BUSY" --keep-conn --warmup 0 --requests "$2" >/dev/null
    kill -KILL "$idle_pid" 2>/dev/null || true
    wait "$idle_pid" 2>/dev/null || true
    kill -INT "$pid"
    wait "$pid" || true
    awk '/^(summary|totals):/ { print $2; exit }' "$out"
}

if [ "$CALLGRIND" = 1 ]; then
    for b in ${CALLGRIND_BUILDS:-old new}; do
        bin=$OLD
        [ "$b" = new ] && bin=$NEW
        small=$(instructions "$bin" 2000)
        big=$(instructions "$bin" 12000)
        echo "$b ($bin): $(( (big - small) / 10000 )) instructions per request ($TRANSPORT, $IDLE idle, $BUSY busy)"
    done
    exit 0
fi

for r in $(seq "$ROUNDS"); do
    if [ $((r % 2)) = 1 ]; then
        run old "$OLD" "$r"; run new "$NEW" "$r"
    else
        run new "$NEW" "$r"; run old "$OLD" "$r"
    fi
done

python3 - "$OUT" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
per = {}
for r in rows:
    req = r["load"]["requests"]
    per.setdefault(r["round"], {})[r["build"]] = (r["server_cpu_ns"] / 1000 / max(req, 1), r["load"]["rps"])
for b in ("old", "new"):
    us = [v[b][0] for v in per.values() if b in v]
    rps = [v[b][1] for v in per.values() if b in v]
    print(f"{b}: median {statistics.median(us):.2f} µs CPU/request ({', '.join(f'{x:.2f}' for x in us)}), "
          f"median {statistics.median(rps):.0f} req/s")
cpu = [v["new"][0] / v["old"][0] for v in per.values() if len(v) == 2]
rps = [v["new"][1] / v["old"][1] for v in per.values() if len(v) == 2]
print(f"new/old CPU per request: median {statistics.median(cpu):.3f} ({', '.join(f'{x:.3f}' for x in cpu)})")
print(f"new/old req/s: median {statistics.median(rps):.3f} ({', '.join(f'{x:.3f}' for x in rps)})")
EOF
echo "raw: $OUT" >&2
