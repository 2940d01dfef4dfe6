"""first_request.py -- latency of the first request after /ready, with the
server's warm-up (the default) and without it (--warmup=false).

--runs times, alternating the two modes: start build/embedserve on a free loopback port,
wait for /ready, then time one embeddings request (one input of about 64
tokens, no task) and a second, identical one. Prints one JSON line with the
medians in seconds. Only 127.0.0.1 is contacted; every wait is bounded."""
import argparse, json, os, socket, statistics, sys, time, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import server  # noqa: E402  (tests/bench/server.py)

ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True)
ap.add_argument("--binary", default="build/embedserve")
ap.add_argument("--dtype", default="auto")
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--runs", type=int, default=3)
ap.add_argument("--task", default=None, help="task of the timed requests (default none)")
a = ap.parse_args()

words = open("tests/data/corpus.txt", encoding="utf-8").read().split()
req = {"model": "jina-embeddings-v3", "input": [" ".join(words[:48])]}
if a.task:
    req["task"] = a.task
body = json.dumps(req).encode()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port):
    r = urllib.request.Request("http://127.0.0.1:%d/v1/embeddings" % port, data=body,
                               headers={"Content-Type": "application/json"})
    t = time.time()
    with urllib.request.urlopen(r, timeout=600) as resp:
        resp.read()
        assert resp.status == 200
    return time.time() - t


modes = (("warm", ()), ("cold", ("--warmup=false",)))
first, second, ready = ({m: [] for m, _ in modes} for _ in range(3))
for _ in range(a.runs):  # the modes alternate, so load changes hit both alike
    for mode, extra in modes:
        port = free_port()
        srv, rd = server.start(a.binary, a.model, port, a.dtype, a.threads, name="first_request",
                               extra=extra)
        try:
            first[mode].append(post(port))
            second[mode].append(post(port))
            ready[mode].append(rd)
        finally:
            server.stop(srv, timeout=60)
res = {}
for mode, _ in modes:
    res["first_req_%s_s" % mode] = round(statistics.median(first[mode]), 4)
    res["second_req_%s_s" % mode] = round(statistics.median(second[mode]), 4)
    res["ready_%s_s" % mode] = round(statistics.median(ready[mode]), 2)
res.update({"first_req_dtype": a.dtype, "first_req_runs": a.runs, "first_req_task": a.task or "none"})
print(json.dumps(res))
