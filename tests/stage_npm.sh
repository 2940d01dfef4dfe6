#!/bin/sh
# stage_npm.sh -- real npm clients against a live server: the openai SDK
# (base64 by default), @langchain/community's JinaEmbeddings and ollama, at the
# versions pinned in tests/npm/package-lock.json. Installs them with `npm ci`
# when node_modules is missing or stale; if that fails (no registry), the
# stage FAILS rather than skipping. Prints "N passed, N failed" last.
set -u
BUILD=${BUILD:-build}
TESTMODEL=${TESTMODEL:-build/testmodel}
PYTHON=${PYTHON:-python3}
dir=tests/npm
fail() {
    echo "stage_npm: $*"
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
port=$($PYTHON -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$BUILD/embedserve" --model "$TESTMODEL" --host 127.0.0.1 --port "$port" --dtype f32 \
    --log-level warn 2>"$BUILD/stage_npm_server.log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null' EXIT
i=0
until curl -sf "http://127.0.0.1:$port/ready" >/dev/null 2>&1; do
    i=$((i + 1))
    [ $i -gt 400 ] && fail "server did not become ready (see $BUILD/stage_npm_server.log)"
    sleep 0.05
done
EMBEDSERVE_URL="http://127.0.0.1:$port" node "$dir/clients.mjs"
