#!/usr/bin/env bash
# The documented benchmark (docs/performance.md): the no-parse baseline server and the
# hello example on both transports, loaded by fcgi-load over loopback TCP, then 10,000
# idle connections held by fcgi-idle. Prints one table (req/s, latency, ratio to the
# baseline measured in the same run, server CPU per request, idle memory) and writes the
# raw JSON lines to a file.
#
#   bash scripts/bench.sh [--duration SECS] [--rounds N] [--idle N] [--busy N] [--out FILE]
#                         [--servers baseline,mio,smol] [--scenarios keep1,keep64,new64,body1m]
#                         [--ref-bin HELLO] [--server-cpu N] [--load-cpu N] [--no-build]
#   bash scripts/bench.sh --anchor [--duration SECS] [--rounds N] [--routes plain,json]
#                         [--connections N] [--busy N] [--out FILE] [--no-build]
#
# Each server runs pinned to one core (--server-cpu, default 0) and the single-threaded
# loader to another (--load-cpu, default 1). All servers are started at once (an idle
# server costs no CPU) and the scenarios are interleaved: round 1 runs every scenario on
# every server, then round 2, ... (default 5 rounds; the order of the servers alternates
# from round to round); the table shows medians over the rounds, and each ratio is the
# median of the per-round ratios, so a noisy neighbour slows the baseline and the server
# under test alike. The idle-memory run uses a fresh server for each. Scenarios: keep1 (1
# connection, keep-conn), keep64 (64 connections, keep-conn), new64 (64 connections, a new
# connection per request), body1m (1 connection, keep-conn, 1 MiB request body). After the
# idle run, --busy N connections (default 1000) each hold a request in the middle of its
# head (the usual params and an 8 KiB cookie, params not ended), to measure the memory of
# busy connections. --ref-bin points at another build of the hello example (e.g. the
# previous release, built from a git worktree) and adds servers mio-ref and smol-ref, so
# old and new are compared in the same run. --servers may also name smol-serve
# (`fcgi-smol-serve`: smol's `Server::serve()` in `smol::block_on`, every wake-up through
# async-io), mio2 and smol2 (`fcgi-threads`: the hello handler on one server of 2 loops,
# `run_threads(2)`; pinned like the others to --server-cpu, which may name several cores,
# e.g. --server-cpu 0,1), tokio (`fcgi-tokio`: the tokio transport's `Server::run()`) and tokio-serve
# (`fcgi-tokio --serve`: `Server::serve()` on a `LocalSet` in a current-thread runtime).
#
# --anchor runs instead what users would pick instead of FastCGI: the axum example's
# `Router` (examples/axum.rs) behind one nginx (no master process, one worker), once over
# `fastcgi_pass` to the example on the tokio server through `ember_fcgi::tower`
# (`fastcgi_keep_conn on`, upstream keepalive) and once over `proxy_pass` HTTP/1.1 with
# upstream keepalive to the same binary with `--http` (`axum::serve`). wrk (Debian's;
# scripts/setup.sh installs it) loads nginx with --connections (default 64) connections,
# one thread; the two sides are interleaved route by route and round by round (the order
# alternates). Routes: plain (`GET /`, a static text) and json (`GET /items/7?q=ember&page=2`,
# `Path`, `Query` and `Json`). Per round: req/s, p99 latency (wrk --latency), and the CPU
# time (utime + stime from /proc/PID/stat) of the app process and of nginx, divided by the
# requests wrk completed. Both apps are pinned to --server-cpu, nginx and wrk to
# --load-cpu. Then --busy N connections (default 1000; 0 skips it) each send the FastCGI
# app a whole `POST /upload` head (1 MiB declared) and 8 KiB of the body and wait, and
# fcgi-idle reads its VmRSS and VmHWM (compared with `max_connections ×
# Capacities::memory_bytes()` of the default Limits).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

DURATION=${BENCH_DURATION:-5}
ROUNDS=${BENCH_ROUNDS:-5}
IDLE=${BENCH_IDLE:-10000}
BUSY=${BENCH_BUSY:-1000}
REF_BIN=""
SERVERS=baseline,mio,smol
SCENARIOS=keep1,keep64,new64,body1m
SERVER_CPU=0
LOAD_CPU=1
BUILD=1
OUT=""
ANCHOR=0
ROUTES=plain,json
CONNECTIONS=64

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --duration) DURATION=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --idle) IDLE=$2; shift 2 ;;
        --busy) BUSY=$2; shift 2 ;;
        --ref-bin) REF_BIN=$2; SERVERS=$SERVERS,mio-ref,smol-ref; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --servers) SERVERS=$2; shift 2 ;;
        --scenarios) SCENARIOS=$2; shift 2 ;;
        --server-cpu) SERVER_CPU=$2; shift 2 ;;
        --load-cpu) LOAD_CPU=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --anchor) ANCHOR=1; shift ;;
        --routes) ROUTES=$2; shift 2 ;;
        --connections) CONNECTIONS=$2; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "bench.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
done

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/release
if [ -z "$OUT" ]; then
    mkdir -p "$TARGET/bench"
    OUT=$TARGET/bench/bench-$(date +%Y%m%d-%H%M%S).jsonl
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ember-bench.XXXXXX")
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Pinning: without taskset, or with fewer than two cores, run unpinned (and say so).
pin_server=() pin_load=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    pin_server=(taskset -c "$SERVER_CPU")
    pin_load=(taskset -c "$LOAD_CPU")
else
    echo "bench.sh: taskset missing or fewer than 2 cores: running unpinned (ratios are less meaningful)" >&2
fi

if [ "$ANCHOR" = 0 ] && [ "$BUILD" = 1 ]; then
    echo "== build (release)" >&2
    cargo build --release -p ember-fcgi-bench --bins
    cargo build --release --example hello
fi
[ "$ANCHOR" = 1 ] || for b in fcgi-load fcgi-baseline fcgi-idle fcgi-smol-serve fcgi-threads fcgi-tokio examples/hello; do
    [ -x "$BIN/$b" ] || { echo "bench.sh: $BIN/$b not found (build first, or drop --no-build)" >&2; exit 1; }
done

# server_cmd NAME [MAX_CONNECTIONS]: the command line of a server.
server_cmd() {
    local max=${2:-}
    case "$1" in
        baseline) echo "$BIN/fcgi-baseline --listen 127.0.0.1:0" ;;
        mio) echo "$BIN/examples/hello --transport mio --listen 127.0.0.1:0${max:+ --max-connections $max}" ;;
        smol) echo "$BIN/examples/hello --transport smol --listen 127.0.0.1:0${max:+ --max-connections $max}" ;;
        mio-ref) echo "$REF_BIN --transport mio --listen 127.0.0.1:0${max:+ --max-connections $max}" ;;
        smol-ref) echo "$REF_BIN --transport smol --listen 127.0.0.1:0${max:+ --max-connections $max}" ;;
        smol-serve) echo "$BIN/fcgi-smol-serve --listen 127.0.0.1:0" ;;
        mio2) echo "$BIN/fcgi-threads --transport mio --threads 2 --listen 127.0.0.1:0" ;;
        smol2) echo "$BIN/fcgi-threads --transport smol --threads 2 --listen 127.0.0.1:0" ;;
        tokio) echo "$BIN/fcgi-tokio --listen 127.0.0.1:0${max:+ --max-connections $max}" ;;
        tokio-serve) echo "$BIN/fcgi-tokio --serve --listen 127.0.0.1:0${max:+ --max-connections $max}" ;;
        axum-fcgi) echo "$BIN/examples/axum --listen 127.0.0.1:0${max:+ --max-connections $max}" ;;
        axum-http) echo "$BIN/examples/axum --http 127.0.0.1:0" ;;
        *) echo "bench.sh: unknown server $1" >&2; exit 2 ;;
    esac
}

# start NAME [MAX]: starts a pinned server; sets SERVER_PID and SERVER_ADDR once it printed
# its `listening on` line (stdout for the baseline, stderr for the examples).
STARTS=0
start() {
    STARTS=$((STARTS + 1))
    local log=$WORK/$1.$STARTS.log
    # shellcheck disable=SC2046
    "${pin_server[@]}" $(server_cmd "$1" "${2:-}") >"$log" 2>&1 &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    local waited=0
    until grep -q '^listening on ' "$log" 2>/dev/null; do
        if ! running "$SERVER_PID"; then
            echo "bench.sh: $1 exited before listening:" >&2
            cat "$log" >&2
            exit 1
        fi
        sleep 0.05
        waited=$((waited + 1))
        if [ "$waited" -gt 200 ]; then
            echo "bench.sh: $1 did not print 'listening on' within 10 s" >&2
            exit 1
        fi
    done
    SERVER_ADDR=$(sed -n 's/^listening on //p' "$log" | head -n1)
    SERVER_ADDR=${SERVER_ADDR#http://}
}

# Whether process PID is still running (a zombie counts as gone).
running() {
    local state
    state=$(awk '{ print $3 }' /proc/"$1"/stat 2>/dev/null) || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}

# stop PID: SIGTERM (graceful), SIGKILL after 5 s.
stop() {
    local pid=$1 i rest=()
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 100); do
        running "$pid" || break
        sleep 0.05
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for i in "${PIDS[@]}"; do
        [ "$i" = "$pid" ] || rest+=("$i")
    done
    PIDS=("${rest[@]}")
}

# CPU time (ns) of every thread of a process, from the scheduler's accounting.
cpu_ns() {
    cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%.0f", s }'
}

scenario_args() {
    case "$1" in
        keep1) echo "--connections 1 --keep-conn" ;;
        keep64) echo "--connections 64 --keep-conn" ;;
        new64) echo "--connections 64 --no-keep-conn" ;;
        body1m) echo "--connections 1 --keep-conn --body 1M" ;;
        *) echo "bench.sh: unknown scenario $1" >&2; exit 2 ;;
    esac
}

if [ "$ANCHOR" = 1 ]; then
    # shellcheck source=scripts/bench-anchor.sh
    . "$ROOT/scripts/bench-anchor.sh"
    anchor
    exit 0
fi

IFS=, read -r -a server_list <<<"$SERVERS"
IFS=, read -r -a scenario_list <<<"$SCENARIOS"

: >"$OUT"
printf '{"meta":{"date":"%s","git":"%s","dirty":%s,"kernel":"%s","cpus":%s,"duration_s":%s,"rounds":%s,"loadavg":"%s"}}\n' \
    "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    "$( [ -z "$(git status --porcelain 2>/dev/null)" ] && echo false || echo true)" \
    "$(uname -r)" "$(nproc)" "$DURATION" "$ROUNDS" "$(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT"

declare -A PID_OF ADDR_OF
for s in "${server_list[@]}"; do
    start "$s"
    PID_OF[$s]=$SERVER_PID
    ADDR_OF[$s]=$SERVER_ADDR
    echo "== $s: pid $SERVER_PID on $SERVER_ADDR" >&2
done

reversed=()
for ((i = ${#server_list[@]} - 1; i >= 0; i--)); do
    reversed+=("${server_list[$i]}")
done
for r in $(seq "$ROUNDS"); do
    order=("${server_list[@]}")
    if [ $((r % 2)) = 0 ]; then
        order=("${reversed[@]}")
    fi
    for sc in "${scenario_list[@]}"; do
        for s in "${order[@]}"; do
            pid=${PID_OF[$s]}
            before=$(cpu_ns "$pid")
            # shellcheck disable=SC2046
            line=$("${pin_load[@]}" "$BIN/fcgi-load" --connect "${ADDR_OF[$s]}" $(scenario_args "$sc") \
                --duration "$DURATION" --json | tail -n1) || true
            after=$(cpu_ns "$pid")
            case "$line" in
                '{'*) ;;
                *) echo "bench.sh: fcgi-load gave no result for $s/$sc" >&2; line='{"rps":0,"errors":-1}' ;;
            esac
            printf '{"server":"%s","scenario":"%s","round":%s,"server_cpu_ns":%s,"load":%s}\n' \
                "$s" "$sc" "$r" "$((after - before))" "$line" >>"$OUT"
            echo "round $r $sc $s: $line" >&2
        done
    done
done
for s in "${server_list[@]}"; do
    stop "${PID_OF[$s]}"
done

if [ "$IDLE" -gt 0 ]; then
    for s in "${server_list[@]}"; do
        start "$s" $((IDLE + 64))
        line=$("${pin_load[@]}" "$BIN/fcgi-idle" --connect "$SERVER_ADDR" --connections "$IDLE" --warm \
            --pid "$SERVER_PID" | tail -n1) || true
        stop "$SERVER_PID"
        case "$line" in
            '{'*) ;;
            *) echo "bench.sh: fcgi-idle gave no result for $s" >&2; line='{"connections":0}' ;;
        esac
        printf '{"server":"%s","scenario":"idle","idle":%s}\n' "$s" "$line" >>"$OUT"
        echo "idle $s: $line" >&2
    done
fi

if [ "$BUSY" -gt 0 ]; then
    for s in "${server_list[@]}"; do
        [ "$s" = baseline ] && continue
        start "$s" $((BUSY + 64))
        line=$("${pin_load[@]}" "$BIN/fcgi-idle" --connect "$SERVER_ADDR" --connections "$BUSY" --mid-head 8192 \
            --pid "$SERVER_PID" | tail -n1) || true
        stop "$SERVER_PID"
        case "$line" in
            '{'*) ;;
            *) echo "bench.sh: fcgi-idle --mid-head gave no result for $s" >&2; line='{"connections":0}' ;;
        esac
        printf '{"server":"%s","scenario":"busy","idle":%s}\n' "$s" "$line" >>"$OUT"
        echo "busy $s: $line" >&2
    done
fi

python3 - "$OUT" <<'PY'
import json, statistics, sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
meta = next((r["meta"] for r in rows if "meta" in r), {})
runs = [r for r in rows if "load" in r]
idle = {r["server"]: r["idle"] for r in rows if "idle" in r and r.get("scenario") == "idle"}
busy = {r["server"]: r["idle"] for r in rows if "idle" in r and r.get("scenario") == "busy"}
servers = list(dict.fromkeys(r["server"] for r in runs)) or list(idle)
scenarios = list(dict.fromkeys(r["scenario"] for r in runs))
names = {"keep1": "1 conn, keep-conn", "keep64": "64 conns, keep-conn",
         "new64": "64 conns, new conn/request", "body1m": "1 conn, 1 MiB body"}
# Goals (issue 7): throughput ratio floor per server and scenario, p99 ratio ceiling.
floor = {("mio", s): 0.90 for s in ("keep1", "keep64", "new64")}
floor.update({("smol", s): 0.75 for s in ("keep1", "keep64", "new64")})
floor.update({("mio", "body1m"): 0.95, ("smol", "body1m"): 0.95})
# Issue 23: hello on the tokio server >= 0.9x the baseline with 1 and 64 keep-conn connections.
floor.update({("tokio", s): 0.90 for s in ("keep1", "keep64")})
# Against the previous build (--ref-bin), in the same run: the new one keeps >= 0.95x.
ref = {"mio": "mio-ref", "smol": "smol-ref"}
# Variants set against the server they vary (in the same run): req/s and CPU per request.
versus = {"mio2": "mio", "smol2": "smol", "smol-serve": "smol", "tokio-serve": "tokio"}
p99_ceiling = {("mio", s): 1.2 for s in ("keep1", "keep64", "new64")}

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None

def pick(server, scenario):
    return {r["round"]: r for r in runs if r["server"] == server and r["scenario"] == scenario}

print(f"\nember-fcgi bench {meta.get('date', '?')} (git {meta.get('git', '?')}{', dirty' if meta.get('dirty') else ''}), "
      f"{meta.get('cpus', '?')} CPUs, load avg at start {meta.get('loadavg', '?')}, "
      f"{meta.get('rounds', '?')} round(s) x {meta.get('duration_s', '?')} s per cell; medians over rounds")
hdr = f"{'scenario':<28} {'server':<9} {'req/s':>9} {'p50 us':>8} {'p99 us':>9} {'cpu us/req':>10} {'x base':>7} {'p99 x':>6}  goal"
print(hdr)
print("-" * len(hdr) + "-" * 14)
for sc in scenarios:
    base = pick("baseline", sc)
    for s in servers:
        mine = pick(s, sc)
        if not mine:
            continue
        load = [m["load"] for m in mine.values()]
        rps = med([l.get("rps") for l in load])
        p50 = med([l.get("p50_us") for l in load])
        p99 = med([l.get("p99_us") for l in load])
        cpu = med([m["server_cpu_ns"] / 1000 / l["requests"] for m, l in zip(mine.values(), load) if l.get("requests")])
        errors = sum(max(l.get("errors", 0), 0) for l in load)
        ratio = p99r = None
        if s != "baseline" and base:
            ratio = med([mine[k]["load"]["rps"] / base[k]["load"]["rps"] for k in mine if k in base and base[k]["load"].get("rps")])
            p99r = med([mine[k]["load"]["p99_us"] / base[k]["load"]["p99_us"] for k in mine if k in base and base[k]["load"].get("p99_us")])
        goal = []
        theirs = pick(ref[s], sc) if s in ref else {}
        if theirs:
            refr = med([mine[k]["load"]["rps"] / theirs[k]["load"]["rps"] for k in mine if k in theirs and theirs[k]["load"].get("rps")])
            if refr is not None:
                goal.append(f"{refr:.2f}x ref {'ok' if refr >= 0.95 else 'MISS'} >=0.95")
        other = pick(versus[s], sc) if s in versus else {}
        if other:
            cpu_of = lambda m: m["server_cpu_ns"] / m["load"]["requests"] if m["load"].get("requests") else None
            vr = med([mine[k]["load"]["rps"] / other[k]["load"]["rps"] for k in mine if k in other and other[k]["load"].get("rps")])
            vc = med([cpu_of(mine[k]) / cpu_of(other[k]) for k in mine if k in other and cpu_of(mine[k]) and cpu_of(other[k])])
            if vr is not None and vc is not None:
                goal.append(f"{vr:.2f}x {versus[s]} req/s, {vc:.2f}x its cpu/req")
        if (s, sc) in floor and ratio is not None:
            goal.append(f"{'ok' if ratio >= floor[(s, sc)] else 'MISS'} >={floor[(s, sc)]:.2f}x")
        if (s, sc) in p99_ceiling and p99r is not None:
            goal.append(f"p99 {'ok' if p99r <= p99_ceiling[(s, sc)] else 'MISS'} <={p99_ceiling[(s, sc)]:.1f}x")
        if errors:
            goal.append(f"{errors} ERRORS")
        f = lambda v, spec: format(v, spec) if v is not None else format("-", ">" + spec.split(".")[0])
        print(f"{names.get(sc, sc):<28} {s:<9} {f(rps, '9.0f')} {f(p50, '8.1f')} {f(p99, '9.1f')} {f(cpu, '10.2f')} "
              f"{f(ratio, '7.2f')} {f(p99r, '6.2f')}  {', '.join(goal)}")
def memory_table(title, results, goal_mib):
    """One row per server: connections held, RSS, and bytes per connection."""
    print(f"\n{title}")
    hdr = f"{'server':<9} {'conns':>6} {'alive':>6} {'RSS MiB':>8} {'peak MiB':>9} {'B/conn':>7} {'peak B/conn':>11}  goal"
    print(hdr)
    print("-" * len(hdr) + "-" * 14)
    for s, i in results.items():
        n = i.get("connections", 0)
        if not n:
            print(f"{s:<9} (no result)")
            continue
        peak_per = (i["peak_rss_kib"] - i["rss_before_kib"]) * 1024 / n
        goal = ""
        if goal_mib and s in ("mio", "smol", "tokio"):
            goal = f"{'ok' if i['peak_rss_kib'] < goal_mib * 1024 else 'MISS'} peak < {goal_mib} MiB"
        print(f"{s:<9} {n:>6} {i['alive']:>6} {i['rss_kib'] / 1024:8.1f} {i['peak_rss_kib'] / 1024:9.1f} "
              f"{i['bytes_per_connection']:>7} {peak_per:11.0f}  {goal}")

if idle:
    memory_table("idle connections (fcgi-idle --warm: one keep-conn request each, then held)", idle, 30)
if busy:
    memory_table("busy connections (fcgi-idle --mid-head 8192: each in the middle of a head with an 8 KiB cookie)", busy, None)
print(f"\nraw JSON lines: {sys.argv[1]}")
PY
