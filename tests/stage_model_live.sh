#!/bin/sh
# stage_model_live.sh -- model.safetensors changed under a running server.
#
# By default the server reads each token's word-embedding row from the file
# (pread) per pass. Another file renamed over the name changes nothing (the
# server reads the file it opened, here still reachable through a hard link).
# After that file is overwritten or cut in place, a request gets a JSON error
# (5xx), never embeddings computed from the new bytes and never a crash (a
# mapping read per token would die of SIGBUS), the log says what happened,
# and the server goes on answering.
# With --embeddings-in-memory it never reads the file after /ready: the
# embeddings stay the same through all three changes.
set -u
BUILD=${BUILD:-build}
TESTMODEL=${TESTMODEL:-build/testmodel}
PYTHON=${PYTHON:-python3}
work=$(mktemp -d "${TMPDIR:-/tmp}/model_live.XXXXXX")
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
fails=0
run() { # run MODE [server options]: MODE is "file" or "memory"
    mode=$1
    shift
    cp "$TESTMODEL/config.json" "$TESTMODEL/model.safetensors" \
        "$TESTMODEL/sentencepiece.bpe.model" "$work/"
    size=$(wc -c <"$work/model.safetensors")
    rm -f "$work/model.link"
    ln "$work/model.safetensors" "$work/model.link" # the inode the server opens
    port=$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    "$BUILD/embedserve" --model "$work" --host 127.0.0.1 --port "$port" --dtype f32 \
        --log-level warn "$@" >"$work/server.log" 2>&1 &
    pid=$!
    "$PYTHON" - "$port" "$work/model.safetensors" "$size" "$pid" "$mode" "$work/server.log" \
        "$work/model.link" <<'PY'
import json, os, sys, time, urllib.error, urllib.request
port, name, size, pid, mode, log, path = (int(sys.argv[1]), sys.argv[2], int(sys.argv[3]),
                                          int(sys.argv[4]), sys.argv[5], sys.argv[6], sys.argv[7])
base = "http://127.0.0.1:%d" % port
passed = failed = 0

def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
        print("ok   %s: %s" % (mode, what))
    else:
        failed += 1
        print("FAIL %s: %s" % (mode, what))

def embed():
    """The embeddings, or the HTTP status and JSON error body of a refusal."""
    # many distinct words, so rows from all over the word table are read
    body = json.dumps({"input": ["alpha beta gamma %d delta" % i for i in range(8)] +
                       [" ".join(chr(0x4e00 + 37 * k) for k in range(40))],
                       "normalized": False}).encode()
    req = urllib.request.Request(base + "/v1/embeddings", body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return [d["embedding"] for d in json.load(r)["data"]]
    except urllib.error.HTTPError as e:
        try:
            return (e.code, json.load(e))
        except ValueError:
            return (e.code, None)

def alive():
    try:
        os.kill(pid, 0)
        with urllib.request.urlopen(base + "/health", timeout=10) as r:
            return r.status == 200
    except Exception:
        return False

def changed(what, result):
    if mode == "memory":
        check(result == before, "embeddings unchanged after model.safetensors is " + what)
    else:
        check(isinstance(result, tuple) and result[0] >= 500 and isinstance(result[1], dict) and
              "error" in json.dumps(result[1]),
              "a JSON 5xx error, no embeddings, after model.safetensors is %s (got %s)" %
              (what, str(result)[:120]))
    check(alive(), "server alive after model.safetensors is " + what)

until = time.time() + 60
while time.time() < until:
    try:
        with urllib.request.urlopen(base + "/ready", timeout=2) as r:
            if r.status == 200:
                break
    except Exception:
        time.sleep(0.1)
before = embed()
check(isinstance(before, list) and len(before) == 9, "embeddings before the file is touched")
again = embed()
check(again == before, "the same embeddings from a second request")
with open(name + ".new", "wb") as f:  # other bytes, renamed over the name
    f.write(os.urandom(size))
os.rename(name + ".new", name)
check(embed() == before, "embeddings unchanged after another file is renamed over the name")
with open(path, "r+b") as f:  # other bytes, same size, in place
    f.write(os.urandom(size))
changed("overwritten in place", embed())
open(path, "r+b").truncate(0)
changed("truncated to 0 bytes", embed())
if mode == "file":
    time.sleep(0.5)
    text = open(log).read()
    check("weights file changed since it was loaded" in text,
          "the log says the weights file changed since it was loaded")
print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
PY
    rc=$?
    kill -TERM "$pid" 2>/dev/null
    wait "$pid"
    src=$?
    pid=
    if [ "$src" -ne 0 ]; then
        echo "$mode: server exited $src (a signal is 128+N); log:"
        tail -n 20 "$work/server.log"
        rc=1
    fi
    [ "$rc" -eq 0 ] || fails=$((fails + 1))
}
run file
run memory --embeddings-in-memory
[ "$fails" -eq 0 ]
