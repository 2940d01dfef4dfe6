"""http_shares.py -- two HTTP figures for issue 3, on a real-size model:
  1. requests/s for 1-input requests from 16 concurrent clients (bounded
     by --seconds), with latency percentiles;
  2. for one 2048-input request, the share of end-to-end time spent outside
     the forward passes (client wall time vs the server's
     embedserve_batch_duration_seconds_sum delta), for float and base64.
Only 127.0.0.1 is contacted."""
import argparse, json, os, re, sys, threading, time, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import server  # noqa: E402  (tests/bench/server.py)

ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True)
ap.add_argument("--binary", default="build/embedserve")
ap.add_argument("--dtype", default="auto")
ap.add_argument("--seconds", type=float, default=20)
ap.add_argument("--port", type=int, default=18933)
a = ap.parse_args()
url = "http://127.0.0.1:%d" % a.port
srv, _ = server.start(a.binary, a.model, a.port, a.dtype, 2, name="http_shares")


def post(body):
    req = urllib.request.Request(url + "/v1/embeddings", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        data = r.read()
        assert r.status == 200
    return data


def batch_seconds():
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    return sum(float(v) for v in re.findall(r"^embedserve_batch_duration_seconds_sum(?:\{[^}]*\})? (\S+)", text, re.M))


try:
    post({"input": ["warm up"]})
    lat, stop = [], time.time() + a.seconds

    def client(i):
        n = 0
        while time.time() < stop:
            t = time.time()
            post({"input": ["what is the capital of country number %d" % (i * 1000 + n)],
                  "task": "retrieval.query"})
            lat.append(time.time() - t)
            n += 1

    ths = [threading.Thread(target=client, args=(i,)) for i in range(16)]
    start = time.time()
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    wall = time.time() - start
    lat.sort()
    out = {"one_input_req_s": round(len(lat) / wall, 1), "requests": len(lat),
           "p50_ms": round(1e3 * lat[len(lat) // 2], 1), "p99_ms": round(1e3 * lat[int(len(lat) * 0.99)], 1)}
    texts = ["passage %d about rivers, mountains and the weather in spring" % i for i in range(2048)]
    for enc in ("float", "base64"):
        b0 = batch_seconds()
        t = time.time()
        data = post({"input": texts, "embedding_type": enc, "task": "retrieval.passage"})
        e2e = time.time() - t
        fwd = batch_seconds() - b0
        out["req2048_%s_s" % enc] = round(e2e, 2)
        out["req2048_%s_outside_forward" % enc] = round(1 - fwd / e2e, 4)
        out["req2048_%s_bytes" % enc] = len(data)
    print(json.dumps(out))
finally:
    server.stop(srv)
