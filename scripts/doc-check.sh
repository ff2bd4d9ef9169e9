#!/usr/bin/env bash
# `cargo doc` for the workspace with rustdoc warnings as errors, then a look at the HTML for
# links rustdoc left unlinked without a warning.
#
# rustdoc links to another crate's page only if that crate's doc directory exists when it
# runs (rust-lang/cargo#8487), and cargo documents a workspace's crates in parallel: on a
# fresh target the transports' pages can show "[ember_fcgi_core::serve_connection]" as text.
# So the crates are documented one at a time, each after those it links to.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTDOCFLAGS="${RUSTDOCFLAGS:-} -D warnings"

for crate in ember-fcgi-core ember-fcgi-host ember-fcgi-mio ember-fcgi-smol; do
    cargo doc --no-deps -p "$crate"
done
cargo doc --no-deps --workspace

doc="${CARGO_TARGET_DIR:-target}/doc"
# An intra-doc link whose target rustdoc could not link to shows as "[<code>path</code>]"
# or as an href that is a Rust path.
if grep -rEn --include='*.html' '\[<code>[A-Za-z0-9_:]+</code>\]|href="[A-Za-z0-9_]+::' "$doc"/ember_fcgi*/; then
    echo "doc-check: the pages above have links rustdoc could not resolve" >&2
    exit 1
fi
echo "doc-check: no rustdoc warning, no unlinked link"
