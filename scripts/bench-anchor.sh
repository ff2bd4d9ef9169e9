# shellcheck shell=bash
# `bash scripts/bench.sh --anchor`: sourced by scripts/bench.sh (its header says what the
# mode measures), which defines the options, $BIN, $WORK, $OUT, the pinning and the
# start/stop/running/cpu_ns helpers used here. Not meant to be run on its own.

# shellcheck source=scripts/nginx-conf.sh
. scripts/nginx-conf.sh

# CPU ticks (utime + stime, /proc/PID/stat fields 14 and 15) of a process.
cpu_ticks() {
    local stat
    stat=$(cat /proc/"$1"/stat) || { echo "bench.sh: process $1 is gone" >&2; exit 1; }
    # The fields after the command name (which may hold spaces): state is field 3.
    awk '{ print $12 + $13 }' <<<"${stat##*) }"
}

# A free TCP port on 127.0.0.1 (bound and released; nothing else here takes ports).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# anchor_url ROUTE: the path wrk asks for.
anchor_path() {
    case "$1" in
        plain) echo "/" ;;
        json) echo "/items/7?q=ember&page=2" ;;
        *) echo "bench.sh: unknown route $1 (plain, json)" >&2; exit 2 ;;
    esac
}

anchor() {
    local tool nginx_bin
    for tool in wrk curl python3; do
        command -v "$tool" >/dev/null || { echo "bench.sh --anchor: $tool not found (scripts/setup.sh installs it)" >&2; exit 1; }
    done
    nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
    [ -x "$nginx_bin" ] || { echo "bench.sh --anchor: nginx not found (scripts/setup.sh installs it)" >&2; exit 1; }
    if [ "$BUILD" = 1 ]; then
        echo "== build (release)" >&2
        cargo build --release -p ember-fcgi-bench --bin fcgi-idle
        cargo build --release --features tokio,tower --example axum
    fi
    local b
    for b in fcgi-idle examples/axum; do
        [ -x "$BIN/$b" ] || { echo "bench.sh: $BIN/$b not found (build first, or drop --no-build)" >&2; exit 1; }
    done
    local clk_tck
    clk_tck=$(getconf CLK_TCK)

    # The two apps, pinned to the server core.
    local fcgi_pid fcgi_addr http_pid http_addr
    start axum-fcgi
    fcgi_pid=$SERVER_PID fcgi_addr=$SERVER_ADDR
    start axum-http
    http_pid=$SERVER_PID http_addr=$SERVER_ADDR
    echo "== axum on ember (FastCGI): pid $fcgi_pid on $fcgi_addr; axum::serve: pid $http_pid on $http_addr" >&2

    # One nginx (no master process: one process, the worker), pinned to the load core.
    local ndir=$WORK/nginx fcgi_port http_port
    mkdir -p "$ndir"
    fcgi_port=$(free_port)
    http_port=$(free_port)
    {
        nginx_head "$ndir" warn 4096
        cat <<EOF
    keepalive_requests 100000000;
    upstream ember { server $fcgi_addr; keepalive $CONNECTIONS; keepalive_requests 100000000; }
    upstream hyper { server $http_addr; keepalive $CONNECTIONS; keepalive_requests 100000000; }
    server {
        listen 127.0.0.1:$fcgi_port;
        location / {
            fastcgi_pass ember;
            fastcgi_keep_conn on;
EOF
        nginx_fastcgi_params
        cat <<EOF
        }
    }
    server {
        listen 127.0.0.1:$http_port;
        location / {
            proxy_pass http://hyper;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
    } >"$ndir/nginx.conf"
    "${pin_load[@]}" "$nginx_bin" -p "$ndir" -c "$ndir/nginx.conf" >"$ndir/stdout.log" 2>&1 &
    local nginx_pid=$!
    PIDS+=("$nginx_pid")
    local side route i ok
    declare -A port_of=([fcgi]=$fcgi_port [http]=$http_port)
    declare -A pid_of=([fcgi]=$fcgi_pid [http]=$http_pid)
    IFS=, read -r -a route_list <<<"$ROUTES"
    # Both sides answer each route alike before anything is measured.
    for route in "${route_list[@]}"; do
        anchor_path "$route" >/dev/null
        for side in fcgi http; do
            ok=0
            for i in $(seq 100); do
                if curl -fsS -o "$WORK/$side.$route.body" "http://127.0.0.1:${port_of[$side]}$(anchor_path "$route")" 2>/dev/null; then
                    ok=1
                    break
                fi
                running "$nginx_pid" || break
                sleep 0.1
            done
            if [ "$ok" = 0 ]; then
                echo "bench.sh --anchor: nginx gave no answer for $side $route:" >&2
                cat "$ndir/error.log" "$ndir/stdout.log" >&2 || true
                exit 1
            fi
        done
        cmp -s "$WORK/fcgi.$route.body" "$WORK/http.$route.body" || {
            echo "bench.sh --anchor: $route answers differ between FastCGI and HTTP" >&2
            exit 1
        }
        echo "== $route ($(anchor_path "$route")): $(head -c 80 "$WORK/fcgi.$route.body" | tr '\n' ' ')" >&2
    done

    : >"$OUT"
    printf '{"meta":{"mode":"anchor","date":"%s","git":"%s","dirty":%s,"kernel":"%s","cpus":%s,"duration_s":%s,"rounds":%s,"connections":%s,"nginx":"%s","loadavg":"%s"}}\n' \
        "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
        "$( [ -z "$(git status --porcelain 2>/dev/null)" ] && echo false || echo true)" \
        "$(uname -r)" "$(nproc)" "$DURATION" "$ROUNDS" "$CONNECTIONS" \
        "$("$nginx_bin" -v 2>&1 | sed 's/.*\///')" "$(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT"

    # wrk_run SIDE ROUTE SECS: wrk's report, parsed into one JSON object.
    wrk_run() {
        "${pin_load[@]}" wrk -t1 -c"$CONNECTIONS" -d"$3"s --latency \
            "http://127.0.0.1:${port_of[$1]}$(anchor_path "$2")" >"$WORK/wrk.out" 2>&1 || true
        python3 - "$WORK/wrk.out" <<'PY'
import json, re, sys
text = open(sys.argv[1]).read()
unit = {"us": 1, "ms": 1e3, "s": 1e6}
def latency(pct):
    m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    return float(m.group(1)) * unit[m.group(2)] if m else None
m = re.search(r"^\s+(\d+) requests in", text, re.M)
rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
errors = (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, sock.groups())) if sock else 0)
if not m or not rps:
    errors = -1
print(json.dumps({"requests": int(m.group(1)) if m else 0, "rps": float(rps.group(1)) if rps else 0,
                  "p50_us": latency(50), "p99_us": latency(99), "errors": errors}))
PY
    }

    # Warm-up: fills nginx's upstream keepalive pools and the apps' allocators.
    for side in fcgi http; do
        wrk_run "$side" "${route_list[0]}" 1 >/dev/null
    done

    local r order line a0 a1 s0 s1 n0 n1
    for r in $(seq "$ROUNDS"); do
        order=(fcgi http)
        [ $((r % 2)) = 0 ] && order=(http fcgi)
        for route in "${route_list[@]}"; do
            for side in "${order[@]}"; do
                a0=$(cpu_ticks "${pid_of[$side]}") s0=$(cpu_ns "${pid_of[$side]}") n0=$(cpu_ticks "$nginx_pid")
                line=$(wrk_run "$side" "$route" "$DURATION")
                a1=$(cpu_ticks "${pid_of[$side]}") s1=$(cpu_ns "${pid_of[$side]}") n1=$(cpu_ticks "$nginx_pid")
                printf '{"anchor":"%s","route":"%s","round":%s,"clk_tck":%s,"app_cpu_ticks":%s,"app_sched_ns":%s,"nginx_cpu_ticks":%s,"wrk":%s}\n' \
                    "$side" "$route" "$r" "$clk_tck" "$((a1 - a0))" "$((s1 - s0))" "$((n1 - n0))" "$line" >>"$OUT"
                echo "round $r $route $side: $line app $((a1 - a0)) ticks" >&2
            done
        done
    done
    stop "$nginx_pid"
    stop "$fcgi_pid"
    stop "$http_pid"

    if [ "$BUSY" -gt 0 ]; then
        # The FastCGI app with room for the busy connections; each sends a whole POST
        # /upload head (1 MiB declared) and 8 KiB of the body, then waits.
        start axum-fcgi $((BUSY + 64))
        line=$("${pin_load[@]}" "$BIN/fcgi-idle" --connect "$SERVER_ADDR" --connections "$BUSY" \
            --mid-body 8192 --uri /upload --pid "$SERVER_PID" | tail -n1) || true
        stop "$SERVER_PID"
        case "$line" in
            '{'*) ;;
            *) echo "bench.sh: fcgi-idle --mid-body gave no result" >&2; line='{"connections":0}' ;;
        esac
        printf '{"anchor":"fcgi","scenario":"mid-upload","max_connections":%s,"idle":%s}\n' "$((BUSY + 64))" "$line" >>"$OUT"
        echo "mid-upload: $line" >&2
    fi

    python3 - "$OUT" <<'PY'
import json, statistics, sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
meta = next((r["meta"] for r in rows if "meta" in r), {})
runs = [r for r in rows if "wrk" in r]
routes = list(dict.fromkeys(r["route"] for r in runs))
paths = {"plain": "GET /", "json": "GET /items/7?q=ember&page=2"}

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None

def app_us(r):
    n = r["wrk"]["requests"]
    return r["app_cpu_ticks"] * 1e6 / r["clk_tck"] / n if n else None

def sched_us(r):
    n = r["wrk"]["requests"]
    return r["app_sched_ns"] / 1e3 / n if n else None

def nginx_us(r):
    n = r["wrk"]["requests"]
    return r["nginx_cpu_ticks"] * 1e6 / r["clk_tck"] / n if n else None

print(f"\nember-fcgi anchor {meta.get('date', '?')} (git {meta.get('git', '?')}{', dirty' if meta.get('dirty') else ''}), "
      f"{meta.get('cpus', '?')} CPUs, load avg at start {meta.get('loadavg', '?')}, nginx {meta.get('nginx', '?')}, "
      f"wrk -c{meta.get('connections', '?')}, {meta.get('rounds', '?')} round(s) x {meta.get('duration_s', '?')} s; medians over rounds")
print("fcgi: nginx fastcgi_pass (keep-conn) -> axum Router on ember's tokio server (ember_fcgi::tower)")
print("http: nginx proxy_pass HTTP/1.1 (keepalive) -> the same Router on axum::serve")
hdr = (f"{'route':<28} {'side':<5} {'req/s':>9} {'p50 us':>8} {'p99 us':>9} {'app us/req':>10} {'(sched)':>8} "
       f"{'nginx us/req':>12} {'errors':>6}")
print(hdr)
print("-" * len(hdr))
for route in routes:
    by = {s: {r["round"]: r for r in runs if r["route"] == route and r["anchor"] == s} for s in ("fcgi", "http")}
    for s in ("fcgi", "http"):
        rs = list(by[s].values())
        if not rs:
            continue
        f = lambda v, spec: format(v, spec) if v is not None else format("-", ">" + spec.split(".")[0])
        print(f"{paths.get(route, route):<28} {s:<5} {f(med([r['wrk']['rps'] for r in rs]), '9.0f')} "
              f"{f(med([r['wrk']['p50_us'] for r in rs]), '8.0f')} {f(med([r['wrk']['p99_us'] for r in rs]), '9.0f')} "
              f"{f(med([app_us(r) for r in rs]), '10.2f')} {f(med([sched_us(r) for r in rs]), '8.2f')} "
              f"{f(med([nginx_us(r) for r in rs]), '12.2f')} {sum(max(r['wrk']['errors'], 0) if r['wrk']['errors'] >= 0 else 1 for r in rs):>6}")
    rounds = [k for k in by["fcgi"] if k in by["http"]]
    def ratio(get):
        return med([get(by["fcgi"][k]) / get(by["http"][k]) for k in rounds if get(by["fcgi"][k]) and get(by["http"][k])])
    rps = ratio(lambda r: r["wrk"]["rps"])
    p99 = ratio(lambda r: r["wrk"]["p99_us"])
    cpu = ratio(app_us)
    sch = ratio(sched_us)
    ngx = ratio(nginx_us)
    if None not in (rps, p99, cpu, sch, ngx):
        print(f"{'':<28} fcgi/http: req/s {rps:.2f}x, p99 {p99:.2f}x, app CPU/req {cpu:.2f}x (sched {sch:.2f}x), "
              f"nginx CPU/req {ngx:.2f}x  goal app CPU/req <= 1.00x: {'ok' if cpu <= 1.0 else 'MISS'}")

for r in rows:
    if r.get("scenario") == "mid-upload":
        i = r["idle"]
        n = i.get("connections", 0)
        if not n:
            print("\nmid-upload: no result")
            continue
        cap = i["capacities_bytes"]
        bound = r["max_connections"] * cap
        print(f"\n{n} connections in the middle of an upload (POST /upload, 1 MiB declared, 8 KiB sent) on the FastCGI app, "
              f"max_connections {r['max_connections']}: {i['alive']} alive, RSS {i['rss_kib'] / 1024:.1f} MiB "
              f"(before {i['rss_before_kib'] / 1024:.1f}), peak {i['peak_rss_kib'] / 1024:.1f} MiB, "
              f"{i['bytes_per_connection']} B/connection; max_connections x Capacities::memory_bytes() = "
              f"{r['max_connections']} x {cap} B = {bound / 2**20:.1f} MiB "
              f"(default 1024 connections: {1024 * cap / 2**20:.1f} MiB)")
print(f"\nraw JSON lines: {sys.argv[1]}")
PY
}
