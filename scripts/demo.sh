#!/usr/bin/env bash
# ember-fcgi quick start: builds an example in release, runs it on a Unix socket, puts a
# private nginx in front of it on 127.0.0.1:8080 (or the next free port), and prints the URL
# and a curl command. Ctrl-C stops both and removes every file it made. The default example,
# inspect, answers a page that shows the request (method, path, query, form fields, params)
# with forms to send more.
#
#   bash scripts/demo.sh [inspect|hello|echo|redirect|dirlist|upload|notes] [--transport mio|smol]
#                        [--port N] [--tcp] [--no-keepalive]
#
# nginx runs unprivileged in the foreground with everything (config, pid, logs, temp
# files) in one temporary directory; the config has the same shape as the one the
# end-to-end tests generate (tests/support/mod.rs, `nginx_conf`).
set -euo pipefail

usage() {
    echo "usage: bash scripts/demo.sh [inspect|hello|echo|redirect|dirlist|upload|notes] [--transport mio|smol] [--port N] [--tcp] [--no-keepalive]" >&2
    exit 2
}

example=inspect
transport=mio
port=
socket=unix
keepalive=1
while [ $# -gt 0 ]; do
    case "$1" in
        inspect | hello | echo | redirect | dirlist | upload | notes) example=$1 ;;
        --transport)
            [ $# -ge 2 ] || usage
            transport=$2
            shift
            ;;
        --port)
            [ $# -ge 2 ] || usage
            port=$2
            shift
            ;;
        --tcp) socket=tcp ;;
        --no-keepalive) keepalive=0 ;;
        -h | --help) usage ;;
        *)
            echo "demo.sh: unknown argument: $1" >&2
            usage
            ;;
    esac
    shift
done
case "$transport" in mio | smol) ;; *) usage ;; esac

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/nginx-conf.sh
. "$repo/scripts/nginx-conf.sh"

# --- tools -------------------------------------------------------------------------------
nginx_bin=${NGINX:-}
if [ -z "$nginx_bin" ]; then
    if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ] && command -v apt-get >/dev/null; then
        # A fresh machine: the demo needs nginx only (scripts/setup.sh installs what the tests need).
        echo "demo.sh: installing nginx with apt-get" >&2
        apt_sudo=
        [ "$(id -u)" -eq 0 ] || apt_sudo=sudo
        { $apt_sudo apt-get update -qq &&
            $apt_sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null; } || true
    fi
    nginx_bin=$(command -v nginx || true)
    [ -n "$nginx_bin" ] || { [ -x /usr/sbin/nginx ] && nginx_bin=/usr/sbin/nginx; } || true
fi
if [ -z "$nginx_bin" ] || [ ! -x "$nginx_bin" ]; then
    sudo=
    [ "$(id -u)" -eq 0 ] || sudo="sudo "
    echo "demo.sh: nginx is not installed. Install it, then run this again:" >&2
    echo >&2
    echo "    ${sudo}apt-get install -y nginx" >&2
    echo >&2
    exit 1
fi
if ! command -v cargo >/dev/null; then
    echo "demo.sh: cargo is not installed (https://rustup.rs), needed to build the example" >&2
    exit 1
fi

# --- build -------------------------------------------------------------------------------
echo "demo.sh: building the $example example (release; cargo shows its progress)..." >&2
(cd "$repo" && cargo build --release --example "$example")
app_bin=${CARGO_TARGET_DIR:-$repo/target}/release/examples/$example
[ -x "$app_bin" ] || { echo "demo.sh: built binary not found at $app_bin" >&2; exit 1; }

# --- clean up on exit --------------------------------------------------------------------
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ember-demo.XXXXXX")
app_pid=
nginx_pid=
cleanup() {
    trap - EXIT INT TERM
    for pid in $nginx_pid $app_pid; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in $nginx_pid $app_pid; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'echo; echo "demo.sh: stopping" >&2; cleanup; exit 0' INT TERM

# --- the app -----------------------------------------------------------------------------
extra=()
case "$example" in
    dirlist) extra=(--root "$repo") ;;
    upload)
        mkdir "$tmp/uploads"
        extra=(--dir "$tmp/uploads")
        ;;
    notes) extra=(--db "${NOTES_DB:-$tmp/notes.db}") ;;
esac
if [ "$socket" = unix ]; then
    listen="unix:$tmp/app.sock"
else
    listen="127.0.0.1:0"
fi
"$app_bin" --transport "$transport" --listen "$listen" "${extra[@]}" 2>"$tmp/app.log" &
app_pid=$!
upstream=
for _ in $(seq 100); do
    line=$(grep -m1 '^listening on ' "$tmp/app.log" || true)
    if [ -n "$line" ]; then
        upstream=${line#listening on }
        break
    fi
    kill -0 "$app_pid" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$upstream" ]; then
    echo "demo.sh: the $example example did not start:" >&2
    cat "$tmp/app.log" >&2
    exit 1
fi

# --- nginx -------------------------------------------------------------------------------
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if [ -z "$port" ]; then
    port=8080
    while port_busy "$port"; do
        port=$((port + 1))
        [ "$port" -lt 8180 ] || { echo "demo.sh: no free port in 8080..8179" >&2; exit 1; }
    done
fi

if [ "$keepalive" = 1 ]; then
    upstream_block="
    upstream ember {
        server $upstream;
        keepalive 8;
    }
"
    pass=ember
    keep_conn="            fastcgi_keep_conn on;
"
else
    upstream_block=
    pass=$upstream
    keep_conn=
fi

{
    echo "# Generated by ember-fcgi scripts/demo.sh (tests/support/mod.rs writes the same shape)."
    nginx_head "$tmp" notice 1024
    cat <<EOF
    client_max_body_size 0;
$upstream_block
    server {
        listen 127.0.0.1:$port;
        location / {
            fastcgi_pass $pass;
EOF
    printf '%s' "$keep_conn"
    nginx_fastcgi_params
    cat <<EOF
        }
    }
}
EOF
} >"$tmp/nginx.conf"

"$nginx_bin" -p "$tmp" -c "$tmp/nginx.conf" -e "$tmp/error.log" </dev/null &
nginx_pid=$!
for _ in $(seq 100); do
    port_busy "$port" && break
    if ! kill -0 "$nginx_pid" 2>/dev/null; then
        echo "demo.sh: nginx failed to start:" >&2
        cat "$tmp/error.log" >&2
        exit 1
    fi
    sleep 0.1
done
port_busy "$port" || { echo "demo.sh: nginx does not accept on port $port" >&2; exit 1; }

url="http://127.0.0.1:$port"
case "$example" in
    inspect) try="curl -d 'name=you&message=hi' '$url/some/path?a=1'    # or the forms on the page" ;;
    echo) try="curl -i --data-binary 'hello' '$url/some/path?a=1&b=2'" ;;
    redirect) try="curl -i '$url/local'    # also /?to=https://example.com/ and /?status=301&to=https://example.com/" ;;
    dirlist) try="curl -N '$url/?path=examples'" ;;
    upload) try="curl -i --data-binary @Cargo.toml '$url/?name=Cargo.toml'    # stored in $tmp/uploads" ;;
    notes) try="curl -i -d '{\"title\":\"hi\",\"body\":\"there\"}' '$url/notes'    # then $url/notes/1, $url/notes" ;;
    *) try="curl -i '$url/'" ;;
esac
keep="keep-alive (fastcgi_keep_conn on, keepalive 8)"
[ "$keepalive" = 1 ] || keep="a new FastCGI connection per request"
cat <<EOF

  ember-fcgi demo: the $example example on the $transport transport, behind nginx
  app listens on  $upstream   (nginx uses $keep)
  open            $url/
  try             $try
  nginx config    $tmp/nginx.conf

  Ctrl-C to stop.
EOF

# Run until Ctrl-C, or until either process dies.
set +e
wait -n "$app_pid" "$nginx_pid"
echo "demo.sh: a process exited unexpectedly; app log:" >&2
cat "$tmp/app.log" >&2
cat "$tmp/error.log" >&2 2>/dev/null
exit 1
