#!/bin/sh
# stage_shutdown.sh -- SIGTERM with --shutdown-timeout while a big request
# runs: the process exits within the timeout plus about one short pass
# (passes are capped while draining, and none is started that would end
# past the deadline), a small request admitted just before SIGTERM still
# gets its 200 (it is computed in the next pass, and computed results are
# delivered), and the exit status is 0. Pass lengths are measured on this
# machine first, so the bound scales with its speed.
set -u
BUILD=${BUILD:-build}
TESTMODEL=${TESTMODEL:-build/testmodel}
PYTHON=${PYTHON:-python3}
exec "$PYTHON" - "$BUILD/embedserve" "$TESTMODEL" <<'PY'
import json, os, signal, socket, subprocess, sys, threading, time, urllib.request
exe, model = sys.argv[1], sys.argv[2]
passed = failed = 0

def check(ok, what):
    global passed, failed
    passed, failed = passed + bool(ok), failed + (not ok)
    print(("ok   " if ok else "FAIL ") + what)

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def post(port, texts, out, key, timeout=300):
    body = json.dumps({"input": texts, "truncate": True}).encode()
    req = urllib.request.Request("http://127.0.0.1:%d/v1/embeddings" % port, body)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            out[key] = (r.status, len(json.load(r)["data"]))
    except urllib.error.HTTPError as e:
        out[key] = (e.code, 0)
    except Exception as e:
        out[key] = (0, repr(e))

def start(port, timeout_s):
    p = subprocess.Popen([exe, "--model", model, "--host", "127.0.0.1", "--port", str(port),
                          "--dtype", "f32", "--max-batch-tokens", "8192", "--max-input-tokens",
                          "1024", "--shutdown-timeout", str(timeout_s), "--log-level", "info"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    until = time.time() + 60
    while time.time() < until:
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/ready" % port, timeout=2) as r:
                if r.status == 200: return p
        except Exception:
            time.sleep(0.1)
    return p

long_text = " ".join("w%d" % (i % 97) for i in range(3000))  # > 1024 tokens: truncated to 1024
port = free_port()
p = start(port, 1)
out = {}
t0 = time.time(); post(port, [long_text], out, "one"); t1 = time.time() - t0  # one 1024-token pass
t0 = time.time(); post(port, [long_text] * 8, out, "eight"); t8 = time.time() - t0
p.send_signal(signal.SIGTERM); p.communicate(timeout=120)
print("one 1024-token sequence: %.2f s; a pass of 8: %.2f s" % (t1, t8))
timeout_s = int(t8 + 3 * t1 + 2)  # outlasts the pass running at SIGTERM
port = free_port()
p = start(port, timeout_s)
big = threading.Thread(target=post, args=(port, [long_text] * 64, out, "big"))
big.start()
time.sleep(min(t8 / 2, 5))  # the first (full, 8192-token) pass is running
small = threading.Thread(target=post, args=(port, ["a small query"], out, "small"))
small.start()
time.sleep(0.2)  # admitted
t0 = time.time()
p.send_signal(signal.SIGTERM)
log = p.communicate(timeout=300)[0].decode(errors="replace")
took = time.time() - t0
big.join(); small.join()
# the pass running at SIGTERM ends (well before the deadline), then passes of
# one sequence until the deadline: the last one ends near it
bound = timeout_s + t1 + 1.0
print("--shutdown-timeout %d: exited %.2f s after SIGTERM (bound %.2f); big %s, small %s" %
      (timeout_s, took, bound, out.get("big"), out.get("small")))
check(p.returncode == 0, "exit status 0 after SIGTERM (got %s)" % p.returncode)
check(took <= bound, "exit within the timeout plus one short pass")
check(out.get("small") == (200, 1), "the small request admitted before SIGTERM gets its 200")
check(out.get("big", (0,))[0] in (200, 503), "the big request: 200 or 503, nothing else")
if failed: print(log[-3000:])
print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
PY
