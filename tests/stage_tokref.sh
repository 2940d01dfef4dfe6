#!/bin/sh
# stage_tokref.sh -- the tokenizer.json loader against Hugging Face's own
# tokenizers (npm package `tokenizers`, pinned in tests/tokref/package-lock.json):
# the library encodes the comparison corpus (tests/tokref/text.mjs: seeds,
# Unicode edge cases, long words, code, random code points, every code point
# of planes 0-2) with each committed fixture in tests/data/tokenizers/, and
# the C suite `tokref` checks that tok_encode gives the same ids. Installs the
# package with `npm ci` when node_modules is missing or stale; if that fails
# (no registry), the stage FAILS rather than skipping. Prints "N passed, N failed" last.
set -u
BUILD=${BUILD:-build}
dir=tests/tokref
fail() {
    echo "stage_tokref: $*"
    echo "0 passed, 1 failed"
    exit 1
}
command -v node >/dev/null 2>&1 || fail "node is not installed"
command -v npm >/dev/null 2>&1 || fail "npm is not installed"
if [ ! -f "$dir/node_modules/.package-lock.json" ] ||
    [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) ||
        fail "npm ci failed (is the npm registry reachable?)"
fi
out="$BUILD/tokref"
rm -rf "$out"
node "$dir/reference.mjs" "$out" tests/data/tokenizers/*.json || fail "reference.mjs failed"
TOKREF_DIR="$out" "$BUILD/test_all" tokref
