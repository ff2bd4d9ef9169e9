#!/usr/bin/env bash
# Installs what the examples and tests need on a fresh Debian machine; quick when all is there.
# nginx, cgi-fcgi (libfcgi-bin), lighttpd, apache2, libapache2-mod-fcgid (tests/axum.rs) and
# caddy for the end-to-end tests, wrk for `scripts/bench.sh --anchor` and `scripts/restart-under-load.sh`, systemd-socket-activate, spawn-fcgi and
# python3-prometheus-client for tests/ops.rs, the bare-metal target that proves the core is
# no_std, cargo-fuzz for the fuzz smoke run, and cargo-public-api for the public-API listing
# (scripts/public-api.sh).
# The tests run each web server from a config of their own and need none of the packages'
# services (where apt starts them, `systemctl disable --now apache2 lighttpd caddy` stops them).
set -euo pipefail

need_apt=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_apt+=(nginx)
command -v cgi-fcgi >/dev/null 2>&1 || need_apt+=(libfcgi-bin)
command -v lighttpd >/dev/null 2>&1 || [ -x /usr/sbin/lighttpd ] || need_apt+=(lighttpd)
command -v apache2 >/dev/null 2>&1 || [ -x /usr/sbin/apache2 ] || need_apt+=(apache2)
command -v caddy >/dev/null 2>&1 || [ -x /usr/bin/caddy ] || need_apt+=(caddy)
# tests/axum.rs: Apache's mod_fcgid starting the app itself (the shared-hosting path).
[ -f /usr/lib/apache2/modules/mod_fcgid.so ] || need_apt+=(libapache2-mod-fcgid)
command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)   # scripts/restart-under-load.sh, bench.sh --anchor
command -v curl >/dev/null 2>&1 || need_apt+=(curl) # scripts/restart-under-load.sh
command -v script >/dev/null 2>&1 || need_apt+=(bsdutils) # script(1): a terminal for tests/cli.rs
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)   # scripts/doc-check.sh reads cargo metadata
# tests/ops.rs: systemd's socket-activation launcher, spawn-fcgi, and Debian's python3 with
# the prometheus_client OpenMetrics parser.
[ -x /usr/bin/systemd-socket-activate ] || need_apt+=(systemd)
[ -x /usr/bin/spawn-fcgi ] || need_apt+=(spawn-fcgi)
/usr/bin/python3 -c 'import prometheus_client' >/dev/null 2>&1 || need_apt+=(python3-prometheus-client)
# The embassy proofs: QEMU's Cortex-M boards, and ip for network namespaces and TAP devices.
command -v qemu-system-arm >/dev/null 2>&1 || need_apt+=(qemu-system-arm)
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || need_apt+=(iproute2)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "setup: installing ${need_apt[*]} with apt-get" >&2
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# The embassy transport's targets (scripts/test-embassy.sh): the QEMU firmware's Cortex-M4F,
# and the RP2040's and ESP32-C3's, which have no compare-and-swap.
for target in thumbv7em-none-eabihf thumbv6m-none-eabi riscv32imc-unknown-none-elf; do
    if ! rustup target list --installed | grep -qx "$target"; then
        echo "setup: adding the $target target" >&2
        rustup target add "$target"
    fi
done

# cargo-public-api, for scripts/public-api.sh: the version pinned, as it reads the rustdoc
# JSON format of the toolchain it was made for.
if ! cargo public-api --version 2>/dev/null | grep -qx "cargo-public-api 0.52.0"; then
    echo "setup: installing cargo-public-api" >&2
    cargo install --locked cargo-public-api --version 0.52.0
fi

if [ "${1:-}" != "--no-fuzz" ] && ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "setup: installing cargo-fuzz" >&2
    cargo install --locked cargo-fuzz
fi
