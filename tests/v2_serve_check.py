#!/usr/bin/python3
"""One server, a jina-embeddings-v3 model and two jina-embeddings-v2 models (WordPiece and
byte-level BPE tokenizers from tokenizer.json; the en and the code layout), answering all
three in one run (stage_v2_serve.sh).

Checked:
- each v2 model's token ids from /v1/tokenize start with the tokenizer's [CLS]/<s> and end
  with [SEP]/</s>; its embeddings equal the float64 reference (tests/reference_v2.py) run on
  exactly those ids: max |diff| <= 1e-4 and cosine >= 0.99999;
- `task` and `input_type` are accepted and change nothing for a v2 model; `dimensions` at
  or over the width gives the whole vector, below it 422;
- late chunking on a v2 model: one vector per input, each the mean of its span of one
  joined sequence, against the reference on the ids of that sequence;
- v3 in the same process answers exactly (bitwise, base64) as the v3 model served alone;
- concurrent requests to all three models give the same answers as sequential ones;
- /v1/models lists the three.

Usage: BUILD=build TESTMODEL=build/testmodel TESTMODEL_V2=build/testmodel-v2 \
       /usr/bin/python3 tests/v2_serve_check.py
"""

import base64
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_v2 import ModelV2  # noqa: E402

BUILD = os.environ.get("BUILD", "build")
V3 = os.environ.get("TESTMODEL", "build/testmodel")
V2 = os.environ.get("TESTMODEL_V2", "build/testmodel-v2")
V2_MODELS = {"en": os.path.join(V2, "serve-en"), "code": os.path.join(V2, "serve-code")}

passed = failed = 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
        print("ok   " + what)
    else:
        failed += 1
        print("FAIL " + what)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def start(models, log):
    port = free_port()
    # f32: the checks below hold the embeddings to the float64 reference at
    # f32's tolerance; auto would pick bf16 on a CPU with AVX512_BF16 (the
    # engine suite holds bf16 and int8 to their own tolerances)
    args = [os.path.join(BUILD, "embedserve"), "--host", "127.0.0.1", "--port", str(port),
            "--threads", "2", "--log-level", "warn", "--dtype", "f32"]
    for m in models:
        args += ["--model", m]
    p = subprocess.Popen(args, stdout=log, stderr=log)
    for _ in range(600):
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/ready" % port, timeout=2) as r:
                if r.status == 200:
                    return p, port
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        if p.poll() is not None:
            break
        time.sleep(0.05)
    p.kill()
    sys.exit("v2_serve_check: the server did not become ready (see the log under %s)" % BUILD)


def post(port, path, body):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path),
                                 data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def get(port, path):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=30) as r:
        return r.status, json.loads(r.read())


def vectors(resp):
    return [np.asarray(d["embedding"], dtype=np.float64) for d in resp["data"]]


def unit(v):
    return v / max(float(np.linalg.norm(v)), 1e-12)


def compare(got, want):
    d = float(np.max(np.abs(got - want)))
    c = float(np.dot(got, want) / (np.linalg.norm(got) * np.linalg.norm(want)))
    return d, c


TEXTS = [
    "How do I reset my password?",
    "The Eiffel Tower is 330 metres tall.",
    "Der Eiffelturm ist 330 Meter hoch. Überall ÄÖÜ straße",
    "def add(a, b):\n    return a + b  # sum",
    "埃菲尔铁塔高330米。 naïve café résumé",
    "x",
]


def check_v2(port, kind, path, name):
    ref = ModelV2(path)
    st, tk = post(port, "/v1/tokenize", {"model": name, "input": TEXTS})
    check(st == 200 and len(tk.get("data", [])) == len(TEXTS),
          "%s: /v1/tokenize answers one sequence per input (%d)" % (kind, st))
    if st != 200:
        return None
    ids = [d["tokens"] for d in tk["data"]]
    bos, eos = ids[0][0], ids[0][-1]
    # the ids the tokenizer.json's post-processor names for the sequence ends
    pp = json.load(open(os.path.join(path, "tokenizer.json"), encoding="utf-8"))["post_processor"]
    if pp["type"] == "RobertaProcessing":
        want = (pp["cls"][1], pp["sep"][1])
    else:  # TemplateProcessing: [CLS] $A [SEP]
        sp = pp["special_tokens"]
        want = (sp["[CLS]"]["ids"][0], sp["[SEP]"]["ids"][0])
    check((bos, eos) == tuple(want), "%s: the ends are the post-processor's %s" % (kind, want))
    check(all(s[0] == bos and s[-1] == eos and len(s) >= 3 for s in ids),
          "%s: every sequence opens with %d and closes with %d" % (kind, bos, eos))
    st, emb = post(port, "/v1/embeddings", {"model": name, "input": TEXTS})
    check(st == 200 and len(emb["data"]) == len(TEXTS), "%s: /v1/embeddings 200" % kind)
    got = vectors(emb)
    worst_d, worst_c = 0.0, 1.0
    for s, g in zip(ids, got):
        want = unit(ref.forward(s).mean(axis=0))
        d, c = compare(g, want)
        worst_d, worst_c = max(worst_d, d), min(worst_c, c)
    check(worst_d <= 1e-4 and worst_c >= 0.99999,
          "%s: embeddings equal the float64 reference on the served ids (max |diff| %.2e, "
          "min cos %.9f)" % (kind, worst_d, worst_c))
    check(emb["usage"]["total_tokens"] == sum(len(s) for s in ids),
          "%s: usage counts the tokenized ids (%d)" % (kind, emb["usage"]["total_tokens"]))

    # task and input_type: accepted, ignored (no prefix, the same vectors)
    st, t1 = post(port, "/v1/embeddings", {"model": name, "input": TEXTS,
                                           "task": "retrieval.query"})
    st2, t2 = post(port, "/v1/embeddings", {"model": name, "input": TEXTS,
                                            "input_type": "document"})
    check(st == 200 and st2 == 200 and all(np.array_equal(a, b) for a, b in zip(vectors(t1), got))
          and all(np.array_equal(a, b) for a, b in zip(vectors(t2), got)),
          "%s: task and input_type accepted and ignored" % kind)

    # dimensions: the width or more gives the whole vector; below it 422
    H = ref.H
    st, full = post(port, "/v1/embeddings", {"model": name, "input": TEXTS[:1], "dimensions": H})
    st2, over = post(port, "/v1/embeddings", {"model": name, "input": TEXTS[:1],
                                              "dimensions": H + 100})
    check(st == 200 and st2 == 200 and len(full["data"][0]["embedding"]) == H
          and len(over["data"][0]["embedding"]) == H,
          "%s: dimensions %d and %d give the whole %d-wide vector" % (kind, H, H + 100, H))
    st, low = post(port, "/v1/embeddings", {"model": name, "input": TEXTS[:1], "dimensions": 8})
    check(st == 422, "%s: dimensions 8 (below the width) is 422 (got %d)" % (kind, st))

    # late chunking: the inputs' tokens joined into one sequence, one mean per span
    st, lc = post(port, "/v1/embeddings", {"model": name, "input": TEXTS[:3],
                                           "late_chunking": True})
    check(st == 200 and len(lc.get("data", [])) == 3, "%s: late chunking answers 3 vectors" % kind)
    if st == 200:
        inner = [s[1:-1] for s in ids[:3]]
        joined = [bos] + inner[0] + inner[1] + inner[2] + [eos]
        h = ref.forward(joined)
        a, spans = 0, []
        for k, t in enumerate(inner):
            start = 0 if k == 0 else a
            a = (1 if k == 0 else a) + len(t)
            spans.append([start, a])
        spans[-1][1] = len(joined)
        worst_d, worst_c = 0.0, 1.0
        for (s0, s1), g in zip(spans, vectors(lc)):
            d, c = compare(g, unit(h[s0:s1].mean(axis=0)))
            worst_d, worst_c = max(worst_d, d), min(worst_c, c)
        check(worst_d <= 1e-4 and worst_c >= 0.99999,
              "%s: late-chunking vectors equal the reference's span means (max |diff| %.2e, "
              "min cos %.9f)" % (kind, worst_d, worst_c))
    return got


def main():
    os.makedirs(BUILD, exist_ok=True)
    log = open(os.path.join(BUILD, "stage_v2_serve.log"), "w")
    for kind, path in V2_MODELS.items():
        if not os.path.exists(os.path.join(path, "tokenizer.json")):
            sys.exit("v2_serve_check: %s has no tokenizer.json (make testmodel makes it)" % path)
    # v3 alone first: the reference answer for the same requests in the shared server
    p, port = start([V3], log)
    v3_body = {"input": TEXTS, "task": "retrieval.query", "encoding_type": "base64"}
    st, v3_alone = post(port, "/v1/embeddings", v3_body)
    p.terminate()
    p.wait(timeout=60)
    check(st == 200, "v3 alone answers")

    p, port = start([V3] + list(V2_MODELS.values()), log)
    try:
        st, models = get(port, "/v1/models")
        ids = [m["id"] for m in models["data"]]
        names = {}
        for kind, path in V2_MODELS.items():
            cfg = json.load(open(os.path.join(path, "config.json")))
            names[kind] = cfg["_name_or_path"].split("/")[-1]
        check(all(n in ids for n in names.values()) and "jina-embeddings-v3" in ids,
              "/v1/models lists v3 and both v2 models (%s)" % ", ".join(ids))
        seq = {}
        for kind, path in V2_MODELS.items():
            seq[kind] = check_v2(port, kind, path, names[kind])
        st, v3_shared = post(port, "/v1/embeddings", dict(v3_body, model="jina-embeddings-v3"))
        check(st == 200 and [d["embedding"] for d in v3_shared["data"]]
              == [d["embedding"] for d in v3_alone["data"]],
              "v3 beside two v2 models answers bit for bit as alone")

        # all three at once: each model batches its own; answers as sequential ones
        results, errors = {}, []

        def worker(key, body):
            st_, r = post(port, "/v1/embeddings", body)
            if st_ != 200:
                errors.append((key, st_))
            results[key] = r

        threads = []
        for rep in range(4):
            for kind in V2_MODELS:
                threads.append(threading.Thread(target=worker, args=(
                    (kind, rep), {"model": names[kind], "input": TEXTS})))
            threads.append(threading.Thread(target=worker, args=(
                ("v3", rep), dict(v3_body, model="jina-embeddings-v3"))))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        same = not errors
        for (key, rep), r in results.items():
            if key == "v3":
                same &= [d["embedding"] for d in r["data"]] == \
                    [d["embedding"] for d in v3_alone["data"]]
            else:
                same &= seq[key] is not None and r is not None and \
                    all(np.array_equal(a, b) for a, b in zip(vectors(r), seq[key]))
        check(same and len(results) == 12,
              "12 concurrent requests over the three models equal the sequential answers "
              "(errors: %s)" % errors)
    finally:
        p.terminate()
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
    check(p.returncode == 0, "server exits cleanly on SIGTERM (rc %s)" % p.returncode)

    # a tokenizer whose ids pass the model's vocabulary is refused at startup
    small = os.path.join(BUILD, "v2-vocab-mismatch")
    subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "gen_model_v2.py"),
                    "--out", small, "--vocab", "1000", "--tokenizer-json",
                    os.path.join(V2_MODELS["en"], "tokenizer.json")],
                   check=True, stdout=subprocess.DEVNULL)
    r = subprocess.run([os.path.join(BUILD, "embedserve"), "--model", small, "--host",
                        "127.0.0.1", "--port", str(free_port())],
                       capture_output=True, text=True, timeout=60)
    check(r.returncode != 0 and "do not fit the model's vocabulary of 1000" in r.stderr,
          "a 4000-id tokenizer on a 1000-word model stops the server at startup (rc %d: %s)"
          % (r.returncode, r.stderr.strip().splitlines()[-1:] if r.stderr else ""))
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
