#!/usr/bin/env bash
# Soak: a million requests of mixed sizes through the echo example on each transport,
# with the server's resident memory sampled every second. Not part of the test suite
# (it takes about a minute per transport on a 2-core machine).
#
#   bash scripts/soak.sh [--requests N] [--transport mio|smol]... [--out DIR]
#
# Per transport it builds release, starts `echo --listen 127.0.0.1:0`, runs a warm-up
# pass (2% of each phase, at least 500 requests), notes the RSS, then runs the measured
# phases below (their request counts add up to exactly N, default 1,000,000), and stops
# the server with SIGTERM (it must exit 0 after a graceful shutdown). fcgi-load validates
# every response (record structure, END_REQUEST status, the CGI head, and the first line
# of echo's body) and counts anything else as an error.
#
# It prints the requests, the errors (must be 0) and the RSS after warm-up, at the end
# and its maximum after warm-up; the RSS is flat when the end is within
# max(SOAK_RSS_SLACK_KB, 10% of the warm-up RSS) of the warm-up RSS (SOAK_RSS_SLACK_KB
# defaults to 1024). Exit status 1 if any transport had errors, memory growth or a bad
# exit. The samples (`rss-TRANSPORT.tsv`: seconds since start, VmRSS in kB, phase) and
# fcgi-load's output (`load-TRANSPORT.log`) are kept in DIR (default: a new temporary
# directory, printed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
    echo "usage: bash scripts/soak.sh [--requests N] [--transport mio|smol]... [--out DIR]" >&2
    exit 2
}

requests=1000000
transports=()
out=
while [ $# -gt 0 ]; do
    case "$1" in
        --requests)
            [ $# -ge 2 ] || usage
            requests=$2
            shift
            ;;
        --transport)
            [ $# -ge 2 ] || usage
            case "$2" in mio | smol) transports+=("$2") ;; *) usage ;; esac
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
[ ${#transports[@]} -gt 0 ] || transports=(mio smol)
slack_kb=${SOAK_RSS_SLACK_KB:-1024}
if [ -z "$out" ]; then
    out=$(mktemp -d "${TMPDIR:-/tmp}/ember-soak.XXXXXX")
else
    mkdir -p "$out"
fi

echo "== building (release)"
cargo build --release --quiet -p ember-fcgi --example echo
cargo build --release --quiet -p ember-fcgi-bench --bin fcgi-load
target=${CARGO_TARGET_DIR:-target}
echo_bin=$target/release/examples/echo
load_bin=$target/release/fcgi-load
[ -x "$echo_bin" ] && [ -x "$load_bin" ] || { echo "binaries not found under $target/release" >&2; exit 1; }

# The phases: name, percent of the requests, fcgi-load options. The last phase takes
# whatever rounding left, so the counts add up to exactly --requests.
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

failed=0
summary=()
for transport in "${transports[@]}"; do
    log=$out/load-$transport.log
    samples=$out/rss-$transport.tsv
    phase_file=$out/.phase-$transport
    : >"$log"
    echo "warmup" >"$phase_file"
    echo "== $transport: starting echo"
    "$echo_bin" --transport "$transport" --listen 127.0.0.1:0 2>"$out/echo-$transport.err" &
    server_pid=$!
    addr=
    for _ in $(seq 1 100); do
        addr=$(sed -n 's/^listening on //p' "$out/echo-$transport.err" | head -n1)
        [ -n "$addr" ] && break
        sleep 0.05
    done
    [ -n "$addr" ] || { echo "echo did not start:" >&2; cat "$out/echo-$transport.err" >&2; exit 1; }
    start=$(date +%s.%N)
    (
        printf 'seconds\trss_kb\tphase\n'
        while kill -0 "$server_pid" 2>/dev/null; do
            now=$(date +%s.%N)
            printf '%.1f\t%s\t%s\n' "$(echo "$now - $start" | bc)" "$(rss_kb "$server_pid")" "$(cat "$phase_file")"
            sleep 1
        done
    ) >"$samples" &
    sampler_pid=$!

    total_ok=0
    total_errors=0
    # run_phase NAME COUNT OPTIONS...: one fcgi-load run; adds to the totals.
    run_phase() {
        local name=$1 count=$2
        shift 2
        local line ok errors
        echo "-- $transport $name: $count requests ($*)" >>"$log"
        line=$("$load_bin" --connect "$addr" --warmup 0 --requests "$count" --timeout 30 \
            --expect-body-prefix "$prefix" --json "$@" 2>>"$log" | tee -a "$log" | grep '^{' || true)
        ok=$(sed -n 's/.*"requests":\([0-9]*\).*/\1/p' <<<"$line")
        errors=$(sed -n 's/.*"errors":\([0-9]*\).*/\1/p' <<<"$line")
        if [ -z "$ok" ] || [ -z "$errors" ]; then
            echo "   $name: fcgi-load gave no report (see $log)" >&2
            ok=0
            errors=$count
        fi
        total_ok=$((total_ok + ok))
        total_errors=$((total_errors + errors))
        printf '   %-13s %9d ok %6d errors\n' "$name" "$ok" "$errors"
    }

    echo "   warm-up pass"
    for p in "${phases[@]}"; do
        IFS=: read -r name pct opts <<<"$p"
        n=$((requests * pct / 100 / 50))
        [ "$n" -ge 500 ] || n=500
        # shellcheck disable=SC2086 # opts is a list of options
        run_phase "$name" "$n" $opts
    done
    warm_ok=$total_ok
    warm_errors=$total_errors
    total_ok=0
    total_errors=0
    sleep 1
    rss_warm=$(rss_kb "$server_pid")
    echo "measured" >"$phase_file"
    echo "   measured pass: $requests requests (RSS after warm-up: $rss_warm kB)"
    t0=$(date +%s.%N)
    left=$requests
    for i in "${!phases[@]}"; do
        IFS=: read -r name pct opts <<<"${phases[$i]}"
        n=$((requests * pct / 100))
        [ "$i" -lt $((${#phases[@]} - 1)) ] || n=$left
        left=$((left - n))
        # shellcheck disable=SC2086
        run_phase "$name" "$n" $opts
    done
    t1=$(date +%s.%N)
    sleep 1
    rss_end=$(rss_kb "$server_pid")
    echo "end" >"$phase_file"
    sleep 1.2 # one more sample at the end
    rss_max=$(awk -F'\t' 'NR > 1 && $3 != "warmup" && $2 > m { m = $2 } END { print m + 0 }' "$samples")
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
    if [ "$total_ok" -ne "$requests" ] || [ "$total_errors" -ne 0 ] || [ "$warm_errors" -ne 0 ]; then
        verdict="FAILED (requests or errors)"
    elif [ "$growth" -gt "$allowed" ]; then
        verdict="FAILED (RSS grew $growth kB, more than $allowed kB)"
    elif [ "$status" -ne 0 ]; then
        verdict="FAILED (echo exited with status $status)"
    fi
    [ "$verdict" = ok ] || failed=1
    secs=$(echo "$t1 - $t0" | bc)
    summary+=("$(printf '%-5s requests %d (+%d warm-up), errors %d (+%d warm-up), %.1f s; RSS kB: after warm-up %d, end %d, max %d; exit %d: %s' \
        "$transport" "$total_ok" "$warm_ok" "$total_errors" "$warm_errors" "$secs" "$rss_warm" "$rss_end" "$rss_max" "$status" "$verdict")")
done

echo "== soak summary (samples and logs in $out)"
for line in "${summary[@]}"; do
    echo "$line"
done
exit "$failed"
