#!/usr/bin/env bash
# Builds the API docs of every crate with rustdoc warnings as errors, then looks at the HTML
# for links rustdoc left as text without a warning. The docs end up in target/doc.
#
# rustdoc links to another crate's pages only if that crate's doc directory exists when it
# runs, and cargo deletes a crate's directory before documenting it again
# (rust-lang/cargo#8487). `cargo doc --workspace` documents the crates in parallel, so after a
# fresh clone or a change to the core, the transports' pages can show
# "[ember_fcgi_core::serve_connection]" as text. Here each crate is documented once, on a
# clean doc directory, after the crates it links to.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTDOCFLAGS="${RUSTDOCFLAGS:-} -D warnings"
doc="${CARGO_TARGET_DIR:-target}/doc"

rm -rf "$doc"
# The core with the std features the transports turn on in a workspace build: the
# embedded-io traits it re-exports link to std::io in their docs.
cargo doc --no-deps -p ember-fcgi-core -F embedded-io/std -F embedded-io-async/std
ordered=(ember-fcgi-host ember-fcgi-mio ember-fcgi-smol ember-fcgi)
# Then every other workspace member (bench, and any crate added later), one at a time.
members=$(cargo metadata --no-deps --format-version 1 |
    python3 -c 'import json, sys; print(*(p["name"] for p in json.load(sys.stdin)["packages"]))')
for crate in "${ordered[@]}" $members; do
    case " ember-fcgi-core ${done_crates:-} " in *" $crate "*) continue ;; esac
    cargo doc --no-deps -p "$crate"
    done_crates="${done_crates:-} $crate"
done

# A link to another crate of ours that rustdoc resolved but could not point anywhere shows
# as "[<code>ember_fcgi_x::Item</code>]", or as an href that is that path. (Links to crates.io
# dependencies look the same here, where --no-deps gives them no pages, and are fine on
# docs.rs: they are not checked.)
if grep -rEn --include='*.html' '\[<code>ember_fcgi[a-z_]*::[A-Za-z0-9_:]+</code>\]|href="ember_fcgi[a-z_]*::' "$doc"/ember_fcgi*/; then
    echo "doc-check: the pages above have links rustdoc left as text" >&2
    exit 1
fi
echo "doc-check: no rustdoc warning, no unlinked link; open $doc/ember_fcgi/index.html"
