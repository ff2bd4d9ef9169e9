#!/usr/bin/env bash
# Restarts under load: the hello example behind nginx (upstream with `keepalive 8`,
# `fastcgi_keep_conn on`), wrk with --connections (default 64) for --duration seconds
# (default 30) while the app is replaced --restarts times (default 10, evenly spaced).
# Prints, per mode and socket, wrk's requests, non-2xx responses and socket errors, and
# how many requests nginx retried on another connection (its "upstream prematurely closed
# connection" errors: a keep-alive connection the old process closed as nginx sent on it;
# the client does not see those).
#
#   bash scripts/restart-under-load.sh [--modes plain,handoff,held] [--sockets tcp,unix]
#        [--duration SECS] [--restarts N] [--connections N] [--transport mio|smol]
#        [--bin HELLO] [--out FILE] [--keep] [--max-fails N] [--check]
#
# --check exits 1 if a request failed (non-2xx or socket error) in the handoff or held mode
# (the plain and kill modes are measured, not checked). The test command runs
# `--duration 6 --restarts 3 --modes handoff,held --check` (scripts/test-all.sh).
#
# --keep leaves the logs (app, nginx error.log, wrk) in the directory it names at the end.
#
# Modes:
#   plain    SIGTERM (graceful shutdown), wait for the exit, start a new process on the same
#            address: the baseline, as a restart without a socket holder does it.
#   handoff  SIGUSR2: the process starts its successor on the same listening socket, waits
#            until it is ready, then stops accepting, drains and exits
#            (ember_fcgi::server::handoff).
#   held     the socket held across restarts, as systemd does with a .socket unit and
#            `systemctl restart`: systemd-socket-activate makes the socket and starts a
#            holder shell with it (LISTEN_FDS); on SIGUSR1 the holder stops the app (SIGTERM,
#            waiting for its exit) and starts a new one with LISTEN_FDS/LISTEN_PID set for it.
#            Connections arriving meanwhile wait in the socket's backlog.
#   kill     three processes in one upstream; each restart SIGKILLs one (in turn) and starts
#            it again on its address: what nginx retried on the other two, and what was lost.
#            Not in the default --modes. nginx's default `max_fails=1 fail_timeout=10s` takes a
#            server that failed once out for 10 s: with restarts closer than that, all
#            three are out at times ("no live upstreams", 502). --max-fails N puts
#            `max_fails=N` on each server line (0: never taken out).
# A short variant for CI: --duration 6 --restarts 3.
# wrk, nginx and systemd-socket-activate come from scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/nginx-conf.sh
. scripts/nginx-conf.sh

MODES=plain,handoff,held SOCKETS=tcp,unix DURATION=30 RESTARTS=10 CONNECTIONS=64 TRANSPORT=mio
BIN="" OUT="" KEEP=0 MAX_FAILS="" CHECK=0 FAILED=0
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
while [ $# -gt 0 ]; do
    case "$1" in
        --modes) MODES=$2; shift 2 ;;
        --sockets) SOCKETS=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --restarts) RESTARTS=$2; shift 2 ;;
        --connections) CONNECTIONS=$2; shift 2 ;;
        --transport) TRANSPORT=$2; shift 2 ;;
        --bin) BIN=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --max-fails) MAX_FAILS=$2; shift 2 ;;
        --check) CHECK=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done
for tool in wrk nginx systemd-socket-activate; do
    command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || {
        echo "restart-under-load.sh: $tool is missing: run scripts/setup.sh" >&2
        exit 1
    }
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if [ -z "$BIN" ]; then
    cargo build --release --example hello >&2
    BIN=${CARGO_TARGET_DIR:-target}/release/examples/hello
fi
BIN=$(realpath "$BIN")
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    if [ "$KEEP" = 1 ]; then echo "logs in $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
INTERVAL=$(awk -v d="$DURATION" -v n="$RESTARTS" 'BEGIN { printf "%.3f", d / (n + 1) }')

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Waits until FILE has at least N lines matching PATTERN (10 s).
wait_lines() {
    local file=$1 pattern=$2 n=$3 i
    for i in $(seq 1000); do
        [ "$(grep -c -- "$pattern" "$file" 2>/dev/null || true)" -ge "$n" ] && return 0
        sleep 0.01
    done
    echo "restart-under-load.sh: no $n× \"$pattern\" in $file:" >&2
    cat "$file" >&2
    exit 1
}

# The nginx config: everything under DIR, port PORT, the app at UPSTREAM.
nginx_conf() {
    local dir=$1 port=$2 upstream=$3 server servers=""
    for server in $upstream; do servers+="        server $server${MAX_FAILS:+ max_fails=$MAX_FAILS};"$'\n'; done
    nginx_head "$dir" notice 4096
    cat <<EOF
    upstream app {
$servers        keepalive 8;
    }
    server {
        listen 127.0.0.1:$port;
        location / {
            fastcgi_pass app;
            fastcgi_keep_conn on;
            fastcgi_param REQUEST_METHOD \$request_method;
            fastcgi_param REQUEST_URI \$request_uri;
            fastcgi_param QUERY_STRING \$query_string;
            fastcgi_param SERVER_PROTOCOL \$server_protocol;
        }
    }
}
EOF
}

# The holder of the "held" mode, run by systemd-socket-activate with the socket as fd 3.
cat >"$WORK/holder.sh" <<'EOF'
#!/usr/bin/env bash
# Holds fd 3 (LISTEN_FDS=1) and runs "$@" on it, LISTEN_PID set to the app's pid as
# systemd does; SIGUSR1 restarts the app (SIGTERM, wait, start), SIGTERM stops both. (Not
# SIGHUP: a shell cannot trap a signal ignored when it started, as under nohup.)
set -u
start() {
    bash -c 'export LISTEN_PID=$$; exec "$@"' app "$@" &
    APP=$!
    echo "holder: started $APP" >&2
}
RESTART=0
trap 'RESTART=1' USR1
trap 'kill -TERM "$APP"; wait "$APP"; exit 0' TERM
start "$@"
while :; do
    wait "$APP" && status=0 || status=$?
    if [ "$RESTART" = 1 ]; then
        RESTART=0
        kill -TERM "$APP" 2>/dev/null || true
        while kill -0 "$APP" 2>/dev/null; do wait "$APP" || true; done
        start "$@"
    else
        echo "holder: the app exited with status $status" >&2
        exit "$status"
    fi
done
EOF
chmod +x "$WORK/holder.sh"

printf '%-8s %-5s %9s %9s %14s %8s  %s\n' mode socket requests non-2xx socket-errors retried "wrk socket errors (connect/read/write/timeout)"
run() {
    local mode=$1 socket=$2 dir="$WORK/$1-$2" port listen upstream app_pid=""
    mkdir -p "$dir"
    port=$(free_port)
    case "$socket" in
        tcp) local app_port; app_port=$(free_port); listen="127.0.0.1:$app_port"; upstream=$listen ;;
        unix) listen="unix:$dir/app.sock"; upstream=$listen ;;
        *) echo "unknown socket $socket" >&2; exit 2 ;;
    esac
    local log="$dir/app.log"
    : >"$log"
    local args=(--transport "$TRANSPORT" --log warn)
    case "$mode" in
        plain | handoff)
            "$BIN" "${args[@]}" --listen "$listen" 2>>"$log" &
            app_pid=$!
            PIDS+=("$app_pid")
            wait_lines "$log" "^listening on" 1
            ;;
        held)
            systemd-socket-activate -l "${listen#unix:}" "$WORK/holder.sh" "$BIN" "${args[@]}" --listen systemd \
                2>>"$log" &
            app_pid=$! # the holder, once systemd-socket-activate execs it
            PIDS+=("$app_pid")
            ;;
        kill)
            # Three processes: listens[k] and pids[k].
            local listens=() pids=() k
            for k in 0 1 2; do
                case "$socket" in
                    tcp) listens+=("127.0.0.1:$(free_port)") ;;
                    unix) listens+=("unix:$dir/app$k.sock") ;;
                esac
                "$BIN" "${args[@]}" --listen "${listens[$k]}" 2>>"$log" &
                pids+=($!)
                PIDS+=($!)
                wait_lines "$log" "^listening on" $((k + 1))
            done
            upstream="${listens[*]}"
            ;;
        *) echo "unknown mode $mode" >&2; exit 2 ;;
    esac
    nginx_conf "$dir" "$port" "$upstream" >"$dir/nginx.conf"
    "$NGINX" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" 2>/dev/null &
    local nginx_pid=$!
    PIDS+=("$nginx_pid")
    local i
    for i in $(seq 500); do
        curl -sf -o /dev/null "http://127.0.0.1:$port/" && break # (held: starts the app)
        sleep 0.02
    done
    curl -sf -o /dev/null "http://127.0.0.1:$port/" || { echo "$mode/$socket: no answer" >&2; cat "$log" "$dir/error.log" >&2; exit 1; }
    wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" "http://127.0.0.1:$port/" >"$dir/wrk.txt" 2>&1 &
    local wrk_pid=$!
    for i in $(seq "$RESTARTS"); do
        sleep "$INTERVAL"
        case "$mode" in
            plain)
                kill -TERM "$app_pid"
                wait "$app_pid" || true
                "$BIN" "${args[@]}" --listen "$listen" 2>>"$log" &
                app_pid=$!
                PIDS+=("$app_pid")
                wait_lines "$log" "^listening on" $((i + 1))
                ;;
            handoff)
                kill -USR2 "$app_pid"
                wait_lines "$log" "^handoff: successor pid" "$i"
                app_pid=$(grep "^handoff: successor pid" "$log" | sed -n "${i}p" | awk '{print $4}')
                PIDS+=("$app_pid")
                ;;
            held)
                kill -USR1 "$app_pid"
                wait_lines "$log" "^holder: started" $((i + 1))
                ;;
            kill)
                k=$(((i - 1) % 3))
                kill -KILL "${pids[$k]}"
                wait "${pids[$k]}" 2>/dev/null || true
                "$BIN" "${args[@]}" --listen "${listens[$k]}" 2>>"$log" &
                pids[k]=$!
                PIDS+=($!)
                wait_lines "$log" "^listening on" $((i + 3))
                ;;
        esac
    done
    wait "$wrk_pid"
    if [ "$mode" = kill ]; then kill -TERM "${pids[@]}" 2>/dev/null || true; fi
    [ -z "$app_pid" ] || kill -TERM "$app_pid" 2>/dev/null || true
    kill -KILL "$nginx_pid" 2>/dev/null || true
    wait "$nginx_pid" 2>/dev/null || true
    grep -q "handoff failed" "$log" && { echo "$mode/$socket: a handoff failed:" >&2; cat "$log" >&2; }
    local requests non2xx errors detail retried
    requests=$(awk '/requests in/ { print $1 }' "$dir/wrk.txt")
    non2xx=$(awk -F': ' '/Non-2xx/ { print $2 }' "$dir/wrk.txt")
    detail=$(awk '/Socket errors/ { gsub(/,/, ""); print $4 "/" $6 "/" $8 "/" $10 }' "$dir/wrk.txt")
    errors=$(awk '/Socket errors/ { gsub(/,/, ""); print $4 + $6 + $8 + $10 }' "$dir/wrk.txt")
    retried=$(grep -c "upstream prematurely closed connection" "$dir/error.log" || true)
    if [ "$mode" = kill ]; then
        # Every upstream error nginx logged, by kind (each one was retried or answered 502).
        echo "kill/$socket: nginx upstream errors by kind:" >&2
        grep '\[error\]' "$dir/error.log" | sed -E 's/.*\[error\] [0-9#]+: \*[0-9]+ //; s/, client:.*//' | sort | uniq -c >&2 || true
        retried=$(grep -c '\[error\]' "$dir/error.log" || true)
    fi
    printf '%-8s %-5s %9s %9s %14s %8s  %s\n' "$mode" "$socket" "${requests:-?}" "${non2xx:-0}" "${errors:-0}" \
        "$retried" "${detail:-0/0/0/0}"
    case "$mode" in
        handoff | held)
            if [ "${requests:-0}" -eq 0 ] || [ "${non2xx:-0}" -ne 0 ] || [ "${errors:-0}" -ne 0 ]; then
                FAILED=1
            fi
            ;;
    esac
    if [ -n "$OUT" ]; then
        printf '{"mode":"%s","socket":"%s","requests":%s,"non_2xx":%s,"socket_errors":%s,"nginx_retried":%s,"duration":%s,"restarts":%s,"connections":%s}\n' \
            "$mode" "$socket" "${requests:-0}" "${non2xx:-0}" "${errors:-0}" "$retried" "$DURATION" "$RESTARTS" \
            "$CONNECTIONS" >>"$OUT"
    fi
    sleep 0.2
}

for mode in ${MODES//,/ }; do
    for socket in ${SOCKETS//,/ }; do
        run "$mode" "$socket"
    done
done
if [ "$CHECK" = 1 ] && [ "$FAILED" = 1 ]; then
    echo "restart-under-load.sh: requests failed across a handoff or a held-socket restart" >&2
    exit 1
fi
