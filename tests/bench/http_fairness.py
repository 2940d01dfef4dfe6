"""http_fairness.py -- small queries behind a big request: while one request of
--big inputs runs, 1-input queries are sent one after another; their latency
percentiles are printed in seconds and as multiples of one forward pass. A
fair batcher keeps p99 near two passes however big the request ahead is.
The pass is the longest mean pass time (from /metrics) between two queries:
passes that carry part of the big request. A mean over the whole run would
count the one-query passes that run after its last pass, while its answer is
rendered and read, and made the figure look several times worse. Only
127.0.0.1 is contacted."""
import argparse, json, os, re, sys, threading, time, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import server  # noqa: E402  (tests/bench/server.py)

ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True)
ap.add_argument("--binary", default="build/embedserve")
ap.add_argument("--dtype", default="auto")
ap.add_argument("--big", type=int, default=2048, help="inputs of the big request")
ap.add_argument("--words", type=int, default=200, help="words per big input")
ap.add_argument("--queries", type=int, default=100, help="at most this many small queries")
ap.add_argument("--port", type=int, default=18934)
a = ap.parse_args()
url = "http://127.0.0.1:%d" % a.port
srv, _ = server.start(a.binary, a.model, a.port, a.dtype, 2, name="http_fairness")


def post(body):
    req = urllib.request.Request(url + "/v1/embeddings", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=3600) as r:
        r.read()
        assert r.status == 200


def passes():
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    s = sum(float(v) for v in re.findall(r"^embedserve_batch_duration_seconds_sum(?:\{[^}]*\})? (\S+)", text, re.M))
    n = sum(float(v) for v in re.findall(r"^embedserve_batches_total(?:\{[^}]*\})? (\S+)", text, re.M))
    return s, n


try:
    post({"input": ["warm up"]})
    text = " ".join("word%d" % (i % 113) for i in range(a.words))
    done = threading.Event()
    t = threading.Thread(target=lambda: (post({"input": [text] * a.big}), done.set()))
    _, nb = passes()
    t.start()
    while not done.is_set() and passes()[1] < nb + 1:  # the big request is running
        time.sleep(0.05)
    lat, marks = [], [passes()]  # marks: (seconds, passes) before each query and after the last
    while not done.is_set() and len(lat) < a.queries:
        q0 = time.time()
        post({"input": ["a small query %d" % len(lat)]})
        lat.append(time.time() - q0)
        marks.append(passes())
    t.join()
    one_pass = max([(s1 - s0) / (n1 - n0) for (s0, n0), (s1, n1) in zip(marks, marks[1:])
                    if n1 > n0] or [0.0])
    lat.sort()
    print("slowest: %s" % ", ".join("%.2f" % x for x in lat[-5:]))
    pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("nan")
    print("fairness: %d 1-input queries behind a %d-input request: p50 %.3f s, p99 %.3f s; "
          "one pass %.3f s; p99 = %.2f passes" % (len(lat), a.big, pct(0.5), pct(0.99), one_pass,
                                                  pct(0.99) / one_pass if one_pass else 0))
    print(json.dumps({"bench": "fairness", "queries": len(lat), "big_inputs": a.big,
                      "p50_s": pct(0.5), "p99_s": pct(0.99), "pass_s": one_pass,
                      "p99_passes": pct(0.99) / one_pass if one_pass else None}))
finally:
    server.stop(srv)
