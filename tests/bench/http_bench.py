"""http_bench.py -- end-to-end throughput of build/embedserve over HTTP.

Starts the server on a loopback port with the given model and dtype, times
launch-to-/ready, then has 8 concurrent clients each send 32-input requests
of 128 tokens per input (<s> and </s> included; texts are built with the
model's own sentencepiece model). Prints one JSON line: tokens/s, startup
seconds, request latencies, and the server's peak RSS (VmHWM).
Only 127.0.0.1 is contacted; the loop is bounded by --requests.
"""
import argparse, json, os, random, sys, threading, time, urllib.request

import sentencepiece as spm

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import server  # noqa: E402  (tests/bench/server.py)

ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True)
ap.add_argument("--binary", default="build/embedserve")
ap.add_argument("--dtype", default="auto")
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--clients", type=int, default=8)
ap.add_argument("--requests", type=int, default=1, help="per client, after one warm-up")
ap.add_argument("--port", type=int, default=18931)
a = ap.parse_args()

sp = spm.SentencePieceProcessor(model_file=os.path.join(a.model, "sentencepiece.bpe.model"))
words = open("tests/data/corpus.txt", encoding="utf-8").read().split()
rng = random.Random(1)


def text_of(n_tokens):
    """A text that tokenises to exactly n_tokens - 2 pieces (plus <s>, </s>)."""
    while True:
        ws = []
        while len(sp.encode(" ".join(ws))) < n_tokens - 2:
            ws.append(rng.choice(words))
        while len(sp.encode(" ".join(ws))) > n_tokens - 2 and len(ws) > 1:
            ws.pop()
        if len(sp.encode(" ".join(ws))) == n_tokens - 2:
            return " ".join(ws)


body = json.dumps({"model": "jina-embeddings-v3", "embedding_type": "base64",
                   "input": [text_of(128) for _ in range(32)]}).encode()
url = "http://127.0.0.1:%d" % a.port
srv, ready = server.start(a.binary, a.model, a.port, a.dtype, a.threads, name="http_bench")
try:

    def post():
        req = urllib.request.Request(url + "/v1/embeddings", data=body,
                                     headers={"Content-Type": "application/json"})
        t = time.time()
        with urllib.request.urlopen(req, timeout=600) as r:
            r.read()
            assert r.status == 200
        return time.time() - t

    post()  # warm-up: page in the weights
    lat, errors = [], []

    def client():
        for _ in range(a.requests):
            try:
                lat.append(post())
            except Exception as e:  # noqa: BLE001 -- counted and reported
                errors.append(repr(e))

    start = time.time()
    ths = [threading.Thread(target=client) for _ in range(a.clients)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    wall = time.time() - start
    hwm = 0
    for line in open("/proc/%d/status" % srv.pid):
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) / 1048576.0
    lat.sort()
    n_tok = a.clients * a.requests * 32 * 128
    print(json.dumps({"http_dtype": a.dtype, "http_tok_s": round(n_tok / wall, 1),
                      "http_clients": a.clients, "http_requests": len(lat), "http_errors": len(errors),
                      "http_p50_s": round(lat[len(lat) // 2], 2) if lat else None,
                      "startup_ready_s": round(ready, 2), "server_peak_rss_gib": round(hwm, 3),
                      "first_error": errors[0] if errors else None}))
finally:
    server.stop(srv, timeout=60)
