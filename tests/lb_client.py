#!/usr/bin/python3
"""lb_client.py -- the HTTP client of tests/stage_lb.sh (Python stdlib only).

  lb_client.py refs --url URL --dim N --out FILE
      Sends each request of the fixed set once to URL (a replica, directly)
      and saves the answers: the references the load is compared against.
  lb_client.py load --url URL --refs FILE --n N [--concurrency C] [--id-prefix P]
                    [--at K --pid PID --signal SIG] [--while-pid PID]
      Sends N requests (cycling through the set) with C threads, each with its
      own X-Request-Id, and checks every answer: status 200, the id echoed,
      the JSON shape, one embedding per input of the right size, finite, unit
      length when normalized, and equal to the reference. With --at, after the
      K-th answer it sends signal SIG to PID (a replica dies mid-run with
      requests in flight). With --while-pid, it stops early once PID has
      exited (traffic that spans a drain). Prints a JSON summary; exits 1 if
      any answer failed.
  lb_client.py hold --url URL --refs FILE --n N --metrics URL --pid PID
                    [--flag FILE --delay S]
      Sends N slow requests at once straight to one replica, waits until the
      replica reports all N admitted (embedserve_queue_depth; nothing else may
      be sending to it meanwhile), then creates FILE, waits S seconds (the
      caller starts other traffic), sends the replica SIGTERM, and checks that
      every one of the N still gets a full answer.

Every request has a timeout and every loop a bound: nothing here can hang.
"""
import argparse
import base64
import json
import math
import os
import signal
import struct
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

# seconds, per request: under the replicas' --shutdown-timeout (120 s), and
# long enough for sanitizer builds on a loaded 2-core machine, where a held
# request (the fair batcher advances all six together) took over 30 s
TIMEOUT = 100
WORDS = ("the quick brown fox jumps over the lazy dog while seven wizards quietly judge "
         "boxing matches near a river bank under grey autumn skies").split()


def text(seed, n_words):
    return " ".join(WORDS[(seed * 7 + i) % len(WORDS)] for i in range(n_words))


def request_set():
    """The fixed bodies: several shapes, tasks, sizes and encodings."""
    return [
        {"model": "jina-embeddings-v3", "input": [text(1, 12), text(2, 30)]},
        {"model": "jina-embeddings-v3", "input": text(3, 20), "task": "retrieval.query"},
        {"input": [text(4, 8), text(5, 40), text(6, 3)], "task": "retrieval.passage",
         "dimensions": 32},
        {"model": "jina-embeddings-v3", "input": [{"text": text(7, 25)}], "task": "text-matching",
         "normalized": False},
        {"model": "jina-embeddings-v3", "input": [text(8, 60)], "embedding_type": "base64"},
        {"model": "jina-embeddings-v3", "input": [text(9, 5), text(10, 15), text(11, 45),
                                                  text(12, 2)], "task": "classification"},
    ]


def heavy_body():
    """One long input: a few hundred ms of engine time on the test model."""
    return {"model": "jina-embeddings-v3", "input": [text(13, 1000)], "truncate": True}


def post(url, body, rid=None):
    """POST body as JSON; returns (status, headers, parsed body or None, seconds)."""
    data = json.dumps(body).encode()
    h = {"Content-Type": "application/json"}
    if rid:
        h["X-Request-Id"] = rid
    req = urllib.request.Request(url, data=data, headers=h, method="POST")
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
            status, headers, raw = r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        status, headers, raw = e.code, e.headers, e.read()
    dt = time.monotonic() - t0
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = None
    return status, headers, parsed, dt


def vectors(body, resp):
    """The embeddings of resp as lists of floats (base64 decoded)."""
    out = []
    for d in resp["data"]:
        e = d["embedding"]
        if isinstance(e, str):
            raw = base64.b64decode(e)
            e = list(struct.unpack("<%df" % (len(raw) // 4), raw))
        out.append(e)
    return out


def n_inputs(body):
    return 1 if not isinstance(body["input"], list) else len(body["input"])


def check(body, status, headers, resp, rid, ref, dim):
    """'' if the answer is right, else the reason."""
    if status != 200:
        return "status %d: %s" % (status, (resp or {}).get("detail", ""))
    if rid and headers.get("X-Request-Id") != rid:
        return "X-Request-Id %r, sent %r" % (headers.get("X-Request-Id"), rid)
    if not isinstance(resp, dict) or resp.get("object") != "list" or "data" not in resp:
        return "not an embedding list"
    if len(resp["data"]) != n_inputs(body):
        return "%d embeddings for %d inputs" % (len(resp["data"]), n_inputs(body))
    want = body.get("dimensions") or dim
    vs = vectors(body, resp)
    for i, (d, v) in enumerate(zip(resp["data"], vs)):
        if d.get("index") != i or d.get("object") != "embedding":
            return "data[%d] has index %r object %r" % (i, d.get("index"), d.get("object"))
        if len(v) != want:
            return "embedding %d has %d values, want %d" % (i, len(v), want)
        if not all(math.isfinite(x) for x in v):
            return "embedding %d is not finite" % i
        if body.get("normalized", True) and abs(math.sqrt(sum(x * x for x in v)) - 1) > 1e-3:
            return "embedding %d is not unit length" % i
    if ref is not None:
        diff = max(abs(a - b) for v, w in zip(vs, ref) for a, b in zip(v, w))
        if diff > 1e-4:
            return "differs from the direct answer by %g" % diff
    return ""


def max_diff(vs, ref):
    return max(abs(a - b) for v, w in zip(vs, ref) for a, b in zip(v, w))


def cmd_refs(a):
    refs = []
    for body in request_set() + [heavy_body()]:
        status, headers, resp, _ = post(a.url, body)
        reason = check(body, status, headers, resp, None, None, a.dim)
        if reason:
            print("reference request failed: %s" % reason, file=sys.stderr)
            return 1
        refs.append(vectors(body, resp))
    with open(a.out, "w") as f:
        json.dump({"dim": a.dim, "refs": refs}, f)
    return 0


def cmd_load(a):
    with open(a.refs) as f:
        saved = json.load(f)
    bodies = request_set()
    lock = threading.Lock()
    st = {"sent": a.n, "ok": 0, "failed": 0, "reasons": {}, "max_diff": 0.0,
          "max_seconds": 0.0, "signalled_at": None, "in_flight_at_signal": None}
    done = [0]
    in_flight = [0]

    def one(i):
        body = bodies[i % len(bodies)]
        rid = "%s-%d" % (a.id_prefix, i)
        with lock:
            in_flight[0] += 1
        try:
            status, headers, resp, dt = post(a.url, body, rid)
            reason = check(body, status, headers, resp, rid, saved["refs"][i % len(bodies)],
                           saved["dim"])
            diff = 0.0 if reason else max_diff(vectors(body, resp), saved["refs"][i % len(bodies)])
        except Exception as e:  # connection refused, reset, timeout: all count
            reason, diff, dt = "%s: %s" % (type(e).__name__, e), 0.0, 0.0
        with lock:
            in_flight[0] -= 1
            done[0] += 1
            st["max_seconds"] = max(st["max_seconds"], dt)
            if reason:
                st["failed"] += 1
                st["reasons"][reason] = st["reasons"].get(reason, 0) + 1
            else:
                st["ok"] += 1
                st["max_diff"] = max(st["max_diff"], diff)
            if a.at and done[0] == a.at:
                st["signalled_at"] = done[0]
                st["in_flight_at_signal"] = in_flight[0]
                os.kill(a.pid, getattr(signal, a.signal))

    next_i = [0]

    def worker():
        while True:
            with lock:
                i = next_i[0]
                if i >= a.n or (a.while_pid and not alive(a.while_pid)):
                    return
                next_i[0] += 1
            one(i)

    with ThreadPoolExecutor(a.concurrency) as ex:
        for f in [ex.submit(worker) for _ in range(a.concurrency)]:
            f.result()
    st["sent"] = next_i[0]
    print(json.dumps(st, sort_keys=True))
    return 0 if st["failed"] == 0 else 1


def alive(pid):
    """True while pid runs (a zombie counts as exited)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def queue_depth(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            total, seen = 0.0, False
            for line in r.read().decode().splitlines():  # one series per model
                if line.startswith(("embedserve_queue_depth ", "embedserve_queue_depth{")):
                    total += float(line.rsplit(None, 1)[1])
                    seen = True
            if seen:
                return total
    except (OSError, ValueError):
        pass
    return -1


def cmd_hold(a):
    with open(a.refs) as f:
        saved = json.load(f)
    body, ref = heavy_body(), saved["refs"][-1]
    st = {"sent": a.n, "ok": 0, "failed": 0, "reasons": {}, "depth_at_signal": None,
          "depth_when_admitted": None}
    with ThreadPoolExecutor(a.n) as ex:
        futs = [ex.submit(post, a.url, body, "hold-%d" % i) for i in range(a.n)]
        end = time.monotonic() + 10
        depth = -1
        while time.monotonic() < end:
            depth = queue_depth(a.metrics)
            if depth >= a.n:
                break
            time.sleep(0.01)
        st["depth_when_admitted"] = depth
        if a.flag:
            open(a.flag, "w").close()
            time.sleep(a.delay)
        st["depth_at_signal"] = queue_depth(a.metrics)
        os.kill(a.pid, signal.SIGTERM)
        for i, fu in enumerate(futs):
            try:
                status, headers, resp, _ = fu.result()
                reason = check(body, status, headers, resp, "hold-%d" % i, ref, saved["dim"])
            except Exception as e:
                reason = "%s: %s" % (type(e).__name__, e)
            if reason:
                st["failed"] += 1
                st["reasons"][reason] = st["reasons"].get(reason, 0) + 1
            else:
                st["ok"] += 1
    print(json.dumps(st, sort_keys=True))
    return 0 if st["failed"] == 0 and depth >= a.n else 1


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("refs")
    r.add_argument("--url", required=True)
    r.add_argument("--dim", type=int, required=True)
    r.add_argument("--out", required=True)
    ld = sub.add_parser("load")
    ld.add_argument("--url", required=True)
    ld.add_argument("--refs", required=True)
    ld.add_argument("--n", type=int, required=True)
    ld.add_argument("--concurrency", type=int, default=8)
    ld.add_argument("--id-prefix", default="lb")
    ld.add_argument("--at", type=int, default=0)
    ld.add_argument("--pid", type=int, default=0)
    ld.add_argument("--signal", default="SIGKILL")
    ld.add_argument("--while-pid", type=int, default=0)
    h = sub.add_parser("hold")
    h.add_argument("--url", required=True)
    h.add_argument("--refs", required=True)
    h.add_argument("--n", type=int, required=True)
    h.add_argument("--metrics", required=True)
    h.add_argument("--pid", type=int, required=True)
    h.add_argument("--flag", default="")
    h.add_argument("--delay", type=float, default=0.0)
    a = p.parse_args()
    return {"refs": cmd_refs, "load": cmd_load, "hold": cmd_hold}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
