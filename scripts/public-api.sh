#!/usr/bin/env bash
# The public API, as committed listings: one file per published crate in api/, made by
# cargo-public-api from rustdoc's JSON (RUSTC_BOOTSTRAP=1: rustdoc's JSON output is
# unstable, so stable Rust needs the bootstrap switch). The facade's listing shows what it
# re-exports by path; the listings of the crates behind it show those items' methods and
# fields.
#
#   bash scripts/public-api.sh           compare with api/ (the test command runs this)
#   bash scripts/public-api.sh --update  write api/ anew, to commit with an API change
set -euo pipefail
cd "$(dirname "$0")/.."

crates=(ember-fcgi ember-fcgi-core ember-fcgi-host ember-fcgi-mio ember-fcgi-smol ember-fcgi-tokio)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for crate in "${crates[@]}"; do
    # -ss leaves out blanket and auto-trait impls (Send, Sync, Into...): they follow from the rest.
    RUSTC_BOOTSTRAP=1 cargo public-api --package "$crate" --all-features -ss >"$out/$crate.txt" 2>"$out/$crate.log" || {
        cat "$out/$crate.log" >&2
        echo "public-api: cargo public-api failed for $crate" >&2
        exit 1
    }
done

if [ "${1:-}" = "--update" ]; then
    mkdir -p api
    cp "$out"/*.txt api/
    echo "public-api: wrote api/ ($(cat api/*.txt | wc -l) items)"
    exit 0
fi

changed=0
for crate in "${crates[@]}"; do
    if ! diff -u "api/$crate.txt" "$out/$crate.txt"; then
        changed=1
    fi
done
if [ "$changed" -ne 0 ]; then
    echo "public-api: the public API differs from api/ (above); if the change is meant, run" >&2
    echo "  bash scripts/public-api.sh --update   and commit api/ with it" >&2
    exit 1
fi
echo "public-api: unchanged ($(cat api/*.txt | wc -l) items in ${#crates[@]} crates)"
