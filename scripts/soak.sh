#!/usr/bin/env bash
# Soak: mixed traffic (keep-alive, a new connection per request, 512 connections at once,
# bodies from 0 to 1 MiB) through an echo server on each transport, with the server's
# resident memory and its request-memory pool sampled every second; fails on any error
# and on memory growth that the pool's high-water mark does not account for (a leak).
#
#   bash scripts/soak.sh [--requests N | --seconds S] [--transport mio|smol|tokio]...
#                        [--leak BYTES] [--out DIR]
#
# The servers: the echo example on mio and smol (`echo --status-path /status`), and
# `fcgi-soak-serve --transport tokio` (bench/: echo's answer without the digests, behind the
# same status page) on tokio, which the examples do not run on. Per transport it builds
# release, starts the server on 127.0.0.1:0, and runs:
#
# 1. A warm-up cycle: every phase below with max(500, 8 x its connections) requests, each
#    run again (with twice, then four times as many requests) until the request-memory
#    pool holds a block for each of the phase's connections (at most SOAK_WARM_ROUNDS
#    times, default 10), so every phase's concurrency (up to 512 connections) has been
#    reached. The baseline is then the most RSS (VmRSS) seen in the warm-up (after each
#    phase and every second) and the pool's `memory_allocated_bytes` from the status page
#    (read with bench's `fcgi-get`).
# 2. The measured pass: the phases again, N requests split by the percentages below
#    (default 1,000,000; the counts add up to exactly N), or with --seconds S, S seconds
#    split the same way (the test command runs `--seconds 20`).
# 3. After a second at rest, RSS and the pool again; SIGTERM, and the server must exit 0
#    after its graceful shutdown.
#
# How it decides. The request-memory pool keeps every block it ever lent (a high-water
# mark: its size follows the most connections busy at once, bounded by max_connections),
# and the allocator keeps some of what 512 connections used; so RSS steps up when a phase
# has more connections busy at once than before, and stays there. That is not a leak. So
# the warm-up reaches every phase's concurrency before the baseline, the baseline is the
# warm-up's RSS high-water mark, and the check judges RSS growth net of the pool's growth:
# net = (RSS at end - baseline) - (pool at end - pool at baseline), and fails when net >
# max(SOAK_RSS_SLACK_KB, 10% of the baseline) (SOAK_RSS_SLACK_KB defaults to 1024). A leak
# grows with the requests served and has no ceiling, so it shows in `net`. The pool rarely
# grows after the warm-up; when it does, its growth (allocated bytes, of which only the
# pages used are resident) is a generous discount, so the summary prints the smallest leak
# per request the run surely catches: (allowance + pool growth) / requests.
#
# --leak BYTES runs every transport on `fcgi-soak-serve --leak BYTES`, whose handler leaks
# BYTES per request (a deliberate leak, in the bench binary only): the check must then say
# FAILED. It proves the check catches a leak.
#
# fcgi-load validates every response (record structure, END_REQUEST status, the CGI head,
# and the first line of the body) and counts anything else as an error. Exit status 1 if
# any transport had errors, memory growth or a bad exit. The samples (`rss-TRANSPORT.tsv`:
# seconds since start, VmRSS in kB, the pool's allocated kB, phase), the status page at
# baseline and end (`status-TRANSPORT-{warm,end}.txt`) and fcgi-load's output
# (`load-TRANSPORT.log`) are kept in DIR (default: a new temporary directory, printed at the
# end).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
    echo "usage: bash scripts/soak.sh [--requests N | --seconds S] [--transport mio|smol|tokio]... [--leak BYTES] [--out DIR]" >&2
    exit 2
}

requests=1000000
seconds=
transports=()
leak=0
out=
while [ $# -gt 0 ]; do
    case "$1" in
        --requests)
            [ $# -ge 2 ] || usage
            requests=$2
            shift
            ;;
        --seconds)
            [ $# -ge 2 ] || usage
            seconds=$2
            shift
            ;;
        --transport)
            [ $# -ge 2 ] || usage
            case "$2" in mio | smol | tokio) transports+=("$2") ;; *) usage ;; esac
            shift
            ;;
        --leak)
            [ $# -ge 2 ] || usage
            leak=$2
            shift
            ;;
        --out)
            [ $# -ge 2 ] || usage
            out=$2
            shift
            ;;
        -h | --help) usage ;;
        *) usage ;;
    esac
    shift
done
[[ "$requests" =~ ^[0-9]+$ ]] && [ "$requests" -ge 100 ] || { echo "--requests must be a number >= 100" >&2; exit 2; }
[ -z "$seconds" ] || [[ "$seconds" =~ ^[0-9]+$ && "$seconds" -ge 5 ]] || { echo "--seconds must be a whole number >= 5" >&2; exit 2; }
[[ "$leak" =~ ^[0-9]+$ ]] || { echo "--leak must be a number of bytes" >&2; exit 2; }
[ ${#transports[@]} -gt 0 ] || transports=(mio smol tokio)
slack_kb=${SOAK_RSS_SLACK_KB:-1024}
warm_rounds=${SOAK_WARM_ROUNDS:-10}
if [ -z "$out" ]; then
    out=$(mktemp -d "${TMPDIR:-/tmp}/ember-soak.XXXXXX")
else
    mkdir -p "$out"
fi

echo "== building (release)"
cargo build --release --quiet -p ember-fcgi --example echo
cargo build --release --quiet -p ember-fcgi-bench --bin fcgi-load --bin fcgi-get --bin fcgi-soak-serve
target=${CARGO_TARGET_DIR:-target}
echo_bin=$target/release/examples/echo
load_bin=$target/release/fcgi-load
get_bin=$target/release/fcgi-get
serve_bin=$target/release/fcgi-soak-serve
for b in "$echo_bin" "$load_bin" "$get_bin" "$serve_bin"; do
    [ -x "$b" ] || { echo "$b not found" >&2; exit 1; }
done

# The phases: name, percent of the requests (or seconds), fcgi-load options. The last
# phase takes whatever rounding left, so the counts add up to exactly --requests.
phases=(
    "small:35:--connections 64 --body 0"
    "1k:20:--connections 16 --body 1k"
    "16k:15:--connections 8 --body 16k"
    "many-conns:10:--connections 512 --body 4k"
    "no-keep-conn:10:--connections 8 --no-keep-conn --body 0"
    "64k:9:--connections 4 --body 64k"
    "1M:1:--connections 2 --body 1M"
)
# echo answers with the params in arrival order; fcgi-load sends SCRIPT_FILENAME first.
prefix="SCRIPT_FILENAME=/var/www/html/index.php"

server_pid=
sampler_pid=
cleanup() {
    [ -n "$sampler_pid" ] && kill "$sampler_pid" 2>/dev/null || true
    [ -n "$server_pid" ] && kill -KILL "$server_pid" 2>/dev/null || true
}
trap cleanup EXIT

rss_kb() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0
}

# pool_kb ADDR [FILE]: the pool's memory_allocated_bytes in kB, from the status page
# (which is also kept in FILE); empty when the page cannot be read.
pool_kb() {
    local page
    page=$("$get_bin" --connect "$1" --uri /status 2>/dev/null) || return 0
    [ -z "${2:-}" ] || printf '%s\n' "$page" >"$2"
    awk '$1 == "memory_allocated_bytes:" { printf "%d\n", $2 / 1024 }' <<<"$page"
}

failed=0
summary=()
for transport in "${transports[@]}"; do
    log=$out/load-$transport.log
    samples=$out/rss-$transport.tsv
    phase_file=$out/.phase-$transport
    : >"$log"
    echo "warmup" >"$phase_file"
    if [ "$leak" -gt 0 ]; then
        server=(fcgi-soak-serve --transport "$transport" --leak "$leak")
        cmd=("$serve_bin" --transport "$transport" --leak "$leak")
    elif [ "$transport" = tokio ]; then
        server=(fcgi-soak-serve --transport tokio)
        cmd=("$serve_bin" --transport tokio)
    else
        server=(echo --transport "$transport" --status-path /status)
        cmd=("$echo_bin" --transport "$transport" --status-path /status)
    fi
    echo "== $transport: starting ${server[*]}"
    : >"$out/server-$transport.err" # before the server starts, so that reading it cannot race
    "${cmd[@]}" --listen 127.0.0.1:0 2>"$out/server-$transport.err" &
    server_pid=$!
    addr=
    for _ in $(seq 1 100); do
        addr=$(sed -n 's/^listening on //p' "$out/server-$transport.err" | head -n1)
        [ -n "$addr" ] && break
        sleep 0.05
    done
    [ -n "$addr" ] || { echo "the server did not start:" >&2; cat "$out/server-$transport.err" >&2; exit 1; }
    start=$(date +%s.%N)
    (
        printf 'seconds\trss_kb\tpool_kb\tphase\n'
        while kill -0 "$server_pid" 2>/dev/null; do
            now=$(date +%s.%N)
            printf '%.1f\t%s\t%s\t%s\n' "$(echo "$now - $start" | bc)" "$(rss_kb "$server_pid")" \
                "$(pool_kb "$addr" || true)" "$(cat "$phase_file" 2>/dev/null)"
            sleep 1
        done
    ) >"$samples" &
    sampler_pid=$!

    total_ok=0
    total_errors=0
    empty_phases=0
    rss_warm_max=0
    stage=warmup
    # The request memory of one busy connection: the size of the pool's blocks.
    block_kb=$("$get_bin" --connect "$addr" --uri /status | awk '$1 == "memory_request_bytes:" { printf "%d\n", $2 / 1024 }')
    # run_phase NAME HOW OPTIONS...: one fcgi-load run (HOW: `--requests N` or `--duration
    # S`); adds to the totals.
    run_phase() {
        local name=$1 how=$2
        shift 2
        local line ok errors
        echo "-- $transport $name: $how ($*)" >>"$log"
        # shellcheck disable=SC2086 # how is an option and its value
        line=$("$load_bin" --connect "$addr" --warmup 0 $how --timeout 30 \
            --expect-body-prefix "$prefix" --json "$@" 2>>"$log" | tee -a "$log" | grep '^{' || true)
        ok=$(sed -n 's/.*"requests":\([0-9]*\).*/\1/p' <<<"$line")
        errors=$(sed -n 's/.*"errors":\([0-9]*\).*/\1/p' <<<"$line")
        if [ -z "$ok" ] || [ -z "$errors" ]; then
            echo "   $name: fcgi-load gave no report (see $log)" >&2
            ok=0
            errors=1
        fi
        [ "$ok" -gt 0 ] || empty_phases=$((empty_phases + 1))
        total_ok=$((total_ok + ok))
        total_errors=$((total_errors + errors))
        last_rss=$(rss_kb "$server_pid")
        last_pool=$(pool_kb "$addr")
        last_pool=${last_pool:-0}
        [ "$stage" != warmup ] || [ "$last_rss" -le "$rss_warm_max" ] || rss_warm_max=$last_rss
        printf '   %-13s %9d ok %6d errors   RSS %6d kB, pool %6d kB\n' "$name" "$ok" "$errors" "$last_rss" "$last_pool"
    }

    echo "   warm-up cycle (every phase at its concurrency, again while the pool grows)"
    for p in "${phases[@]}"; do
        IFS=: read -r name pct opts <<<"$p"
        conns=$(sed -n 's/.*--connections \([0-9]*\).*/\1/p' <<<"$opts")
        n=$((conns * 8))
        [ "$n" -ge 500 ] || n=500
        for round in $(seq 1 "$warm_rounds"); do
            # shellcheck disable=SC2086 # opts is a list of options
            run_phase "$name" "--requests $n" $opts
            [ "$last_pool" -lt $((conns * block_kb)) ] || break
            [ "$round" -gt 2 ] || n=$((n * 2))
        done
    done
    warm_ok=$total_ok
    warm_errors=$((total_errors + empty_phases))
    total_ok=0
    total_errors=0
    empty_phases=0
    sleep 1
    rss_rest=$(rss_kb "$server_pid")
    # The baseline: the most RSS seen in the warm-up (after each phase, and every second).
    rss_warm=$(awk -F'\t' -v m="$rss_warm_max" 'NR > 1 && $4 == "warmup" && $2 > m { m = $2 } END { print m + 0 }' "$samples")
    [ "$rss_rest" -le "$rss_warm" ] || rss_warm=$rss_rest
    pool_warm=$(pool_kb "$addr" "$out/status-$transport-warm.txt")
    echo "measured" >"$phase_file"
    stage=measured
    if [ -n "$seconds" ]; then
        echo "   measured pass: $seconds s (baseline: RSS $rss_warm kB at most, $rss_rest kB at rest; pool $pool_warm kB)"
    else
        echo "   measured pass: $requests requests (baseline: RSS $rss_warm kB at most, $rss_rest kB at rest; pool $pool_warm kB)"
    fi
    t0=$(date +%s.%N)
    left=$requests
    for i in "${!phases[@]}"; do
        IFS=: read -r name pct opts <<<"${phases[$i]}"
        if [ -n "$seconds" ]; then
            how="--duration $(echo "scale=2; $seconds * $pct / 100" | bc)"
        else
            n=$((requests * pct / 100))
            [ "$i" -lt $((${#phases[@]} - 1)) ] || n=$left
            left=$((left - n))
            how="--requests $n"
        fi
        # shellcheck disable=SC2086
        run_phase "$name" "$how" $opts
    done
    t1=$(date +%s.%N)
    sleep 1
    rss_end=$(rss_kb "$server_pid")
    pool_end=$(pool_kb "$addr" "$out/status-$transport-end.txt")
    echo "end" >"$phase_file"
    sleep 1.2 # one more sample at the end
    rss_max=$(awk -F'\t' 'NR > 1 && $4 != "warmup" && $2 > m { m = $2 } END { print m + 0 }' "$samples")
    [ "$rss_end" -le "$rss_max" ] || rss_max=$rss_end
    kill -TERM "$server_pid"
    status=0
    wait "$server_pid" || status=$?
    server_pid=
    wait "$sampler_pid" 2>/dev/null || true
    sampler_pid=
    rm -f "$phase_file"

    allowed=$((rss_warm / 10))
    [ "$allowed" -ge "$slack_kb" ] || allowed=$slack_kb
    growth=$((rss_end - rss_warm))
    verdict=ok
    if [ -z "$pool_warm" ] || [ -z "$pool_end" ]; then
        verdict="FAILED (the status page could not be read)"
        pool_warm=${pool_warm:-0} pool_end=${pool_end:-0}
    fi
    pool_growth=$((pool_end - pool_warm))
    net=$((growth - pool_growth))
    if [ "$verdict" != ok ]; then
        :
    elif [ "$total_errors" -ne 0 ] || [ "$warm_errors" -ne 0 ] || [ "$empty_phases" -ne 0 ] ||
        { [ -z "$seconds" ] && [ "$total_ok" -ne "$requests" ]; }; then
        verdict="FAILED (requests or errors)"
    elif [ "$net" -gt "$allowed" ]; then
        verdict="FAILED (RSS grew $growth kB, $net kB net of the pool's $pool_growth kB, more than $allowed kB: a leak)"
    elif [ "$status" -ne 0 ]; then
        verdict="FAILED (the server exited with status $status)"
    fi
    [ "$verdict" = ok ] || failed=1
    secs=$(echo "$t1 - $t0" | bc)
    # The smallest leak per request this run catches: the allowance over the requests.
    catches=$(echo "scale=1; ($allowed + $((pool_growth > 0 ? pool_growth : 0))) * 1024 / $((total_ok > 0 ? total_ok : 1))" | bc)
    summary+=("$(printf '%-5s requests %d (+%d warm-up), errors %d (+%d warm-up), %.1f s; RSS kB: baseline %d (warm-up max; %d at rest), end %d (%+d), max %d; pool kB: baseline %d, end %d (%+d); net %+d kB, allowed %d kB (catches > %s B/request); exit %d: %s' \
        "$transport" "$total_ok" "$warm_ok" "$total_errors" "$warm_errors" "$secs" "$rss_warm" "$rss_rest" "$rss_end" "$growth" "$rss_max" \
        "$pool_warm" "$pool_end" "$pool_growth" "$net" "$allowed" "$catches" "$status" "$verdict")")
done

echo "== soak summary (samples and logs in $out)"
for line in "${summary[@]}"; do
    echo "$line"
done
exit "$failed"
