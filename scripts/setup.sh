#!/usr/bin/env bash
# Installs what the examples and tests need on a fresh Debian machine; quick when all is there.
# nginx and cgi-fcgi (libfcgi-bin) for the end-to-end tests, the bare-metal target that
# proves the core is no_std, and cargo-fuzz for the fuzz smoke run.
set -euo pipefail

need_apt=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_apt+=(nginx)
command -v cgi-fcgi >/dev/null 2>&1 || need_apt+=(libfcgi-bin)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "setup: installing ${need_apt[*]} with apt-get" >&2
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! rustup target list --installed | grep -qx thumbv7em-none-eabihf; then
    echo "setup: adding the thumbv7em-none-eabihf target" >&2
    rustup target add thumbv7em-none-eabihf
fi

if [ "${1:-}" != "--no-fuzz" ] && ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "setup: installing cargo-fuzz" >&2
    cargo install --locked cargo-fuzz
fi
