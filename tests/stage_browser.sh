#!/bin/sh
# stage_browser.sh -- the page at `/` in a real browser: Debian's chromium
# (docker/apt-test.txt) driven headless by puppeteer-core, at the version
# pinned in tests/browser/package-lock.json (installed with `npm ci` when
# node_modules is missing or stale; if that fails, the stage FAILS rather
# than skipping). tests/browser/page.mjs starts its own servers on the
# generated model and saves a screenshot of each state under
# $BUILD/screenshots/. Prints "browser: N passed, N failed" last.
set -u
BUILD=${BUILD:-build}
TESTMODEL=${TESTMODEL:-build/testmodel}
dir=tests/browser
fail() {
    echo "stage_browser: $*"
    echo "0 passed, 1 failed"
    exit 1
}
command -v node >/dev/null 2>&1 || fail "node is not installed"
command -v npm >/dev/null 2>&1 || fail "npm is not installed"
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || fail "chromium is not installed (make deps)"
if [ ! -f "$dir/node_modules/.package-lock.json" ] ||
    [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) ||
        fail "npm ci failed (is the npm registry reachable?)"
fi
BUILD=$BUILD TESTMODEL=$TESTMODEL timeout 600 node "$dir/page.mjs"
