#!/usr/bin/env bash
# Flash and static RAM of the embassy firmware (QEMU mps2-an386, thumbv7em-none-eabihf,
# opt-level s, LTO), as a markdown table:
# - flash = .vector_table + .text + .rodata + .data of the ELF; FastCGI's share is the
#   `fcgi` image minus `tcp-echo` (same board, stack, sockets, hashing; no FastCGI);
# - static RAM per connection = (.data + .bss with N connections - with 1) / (N - 1), N = 4
#   (3 with 8 KiB params: 4 do not fit in 64 KiB): the socket buffers, the FastCGI
#   buffers, the smoltcp socket and the connection task.
# Then it checks the budget and fails when over it: static RAM at most 4 KiB per connection
# in the smallest configuration, and FastCGI's flash share at most 24 KiB (FLASH_GOAL; it
# was 23,764 B on 2026-12-07, with the request, body and send timeouts and the
# allow-list). Both images are built with the firmware's one release profile.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/../transport-embassy/firmware"
target="${CARGO_TARGET_DIR:-$PWD/../target}/firmware"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# section NAME ELF: the size of one section, 0 if absent.
section() { size -A "$2" | awk -v s="$1" '$1 == s { print $2; found = 1 } END { if (!found) print 0 }'; }
flash() { echo $(( $(section .vector_table "$1") + $(section .text "$1") + $(section .rodata "$1") + $(section .data "$1") )); }
ram() { echo $(( $(section .data "$1") + $(section .bss "$1") )); }

# build TAG FEATURES BIN: builds one image, copies it aside (the next build with other
# features overwrites it) and prints the copy's path.
build() {
    CARGO_TARGET_DIR="$target" cargo build -q --release --target thumbv7em-none-eabihf --bin "$3" ${2:+--features "$2"} >&2
    cp "$target/thumbv7em-none-eabihf/release/$3" "$out/$3-$1"
    echo "$out/$3-$1"
}

fcgi=$(build default "" fcgi)
echo_=$(build default "" tcp-echo)
fcgi1=$(build one "one-conn" fcgi)
big=$(build big "params-8k" fcgi)
big1=$(build big1 "params-8k,one-conn" fcgi)

share=$(( $(flash "$fcgi") - $(flash "$echo_") ))
per_conn=$(( ($(ram "$fcgi") - $(ram "$fcgi1")) / 3 ))
kib() { awk -v b="$1" 'BEGIN { printf "%.1f KiB (%d B)", b / 1024, b }'; }
echo "| figure | value |"
echo "|---|---|"
echo "| flash, FastCGI firmware (\`fcgi\`) | $(kib "$(flash "$fcgi")") |"
echo "| flash, TCP echo baseline (\`tcp-echo\`) | $(kib "$(flash "$echo_")") |"
echo "| flash, FastCGI's share | $(kib "$share") |"
echo "| static RAM, \`fcgi\` with 4 connections (of 64 KiB) | $(kib "$(ram "$fcgi")") |"
echo "| static RAM, \`fcgi\` with 8 KiB params and 3 connections | $(kib "$(ram "$big")") |"
echo "| static RAM per connection, smallest (1 KiB params, 128 B in/out, 512 B TCP windows) | $(kib "$per_conn") |"
echo "| static RAM per connection, 8 KiB params (512 B in/out, 2 KiB TCP windows) | $(kib $(( ($(ram "$big") - $(ram "$big1")) / 2 ))) |"

# The budget.
FLASH_GOAL=$(( 24 * 1024 ))
ram_budget=$(( 4 * 1024 ))
over=0
if (( share > FLASH_GOAL )); then
    echo "embassy-footprint: FastCGI's flash share is $share B, over the budget of $FLASH_GOAL B (24 KiB)" >&2
    over=1
fi
if (( per_conn > ram_budget )); then
    echo "embassy-footprint: static RAM per connection (smallest) is $per_conn B, over the budget of $ram_budget B" >&2
    over=1
fi
if (( over )); then
    exit 1
fi
echo "embassy-footprint: within the budget (flash share $share <= $FLASH_GOAL B, RAM per connection $per_conn <= $ram_budget B)"
