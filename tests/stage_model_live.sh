#!/bin/sh
# stage_model_live.sh -- once /ready is 200 the server never reads the model
# file again: truncating model.safetensors under a running server, then
# overwriting it in place with other bytes, must change neither the
# embeddings nor the server's health (a mapping read per token would die of
# SIGBUS or silently embed with the new bytes).
set -u
BUILD=${BUILD:-build}
TESTMODEL=${TESTMODEL:-build/testmodel}
PYTHON=${PYTHON:-python3}
work=$(mktemp -d "${TMPDIR:-/tmp}/model_live.XXXXXX")
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
cp "$TESTMODEL/config.json" "$TESTMODEL/model.safetensors" "$TESTMODEL/sentencepiece.bpe.model" \
    "$work/"
size=$(wc -c <"$work/model.safetensors")
port=$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BUILD/embedserve" --model "$work" --host 127.0.0.1 --port "$port" --dtype f32 \
    --log-level warn >"$work/server.log" 2>&1 &
pid=$!
"$PYTHON" - "$port" "$work/model.safetensors" "$size" "$pid" <<'PY'
import json, os, sys, time, urllib.request
port, path, size, pid = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
base = "http://127.0.0.1:%d" % port
passed = failed = 0

def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
        print("ok   " + what)
    else:
        failed += 1
        print("FAIL " + what)

def embed():
    # many distinct words, so rows from all over the word table are read
    body = json.dumps({"input": ["alpha beta gamma %d delta" % i for i in range(8)] +
                       [" ".join(chr(0x4e00 + 37 * k) for k in range(40))],
                       "normalized": False}).encode()
    req = urllib.request.Request(base + "/v1/embeddings", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return [d["embedding"] for d in json.load(r)["data"]]

def alive():
    try:
        os.kill(pid, 0)
        with urllib.request.urlopen(base + "/health", timeout=10) as r:
            return r.status == 200
    except Exception:
        return False

until = time.time() + 60
while time.time() < until:
    try:
        with urllib.request.urlopen(base + "/ready", timeout=2) as r:
            if r.status == 200:
                break
    except Exception:
        time.sleep(0.1)
before = embed()
check(len(before) == 9, "embeddings before the file is touched")
open(path, "r+b").truncate(0)
try:
    after = embed()
except Exception as e:
    after = None
    print("request after truncation failed: %r" % e)
check(after == before, "embeddings unchanged after model.safetensors is truncated to 0 bytes")
check(alive(), "server alive after the truncation")
with open(path, "r+b") as f:  # other bytes, same size, in place
    f.write(os.urandom(size))
try:
    after = embed()
except Exception as e:
    after = None
    print("request after overwrite failed: %r" % e)
check(after == before, "embeddings unchanged after model.safetensors is overwritten in place")
check(alive(), "server alive after the overwrite")
print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
PY
rc=$?
kill -TERM "$pid" 2>/dev/null
wait "$pid"
src=$?
pid=
if [ "$src" -ne 0 ]; then
    echo "server exited $src (a signal is 128+N); log:"
    tail -n 20 "$work/server.log"
    echo "0 passed, 1 failed"
    exit 1
fi
exit $rc
