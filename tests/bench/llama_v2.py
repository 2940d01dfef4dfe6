"""llama_v2.py --model DIR --binary build/embedserve [--threads 2] [--runs 3]

The llama.cpp side of `make bench` (BENCH_LLAMA=1): llama.cpp's
`jina-bert-v2` on the same random weights as the bench's v2-base row.

1. llama.cpp's source comes from the npm package node-llama-cpp (pinned
   below), whose tarball carries a git bundle of the llama.cpp release it
   builds; the tarball is fetched with `npm pack` and checked against the
   sha512 integrity the npm registry publishes for that version. It is built
   once with cmake (Release, CPU only, GGML_NATIVE, no curl, only
   llama-embedding) into ~/.cache/embedserve/llama.cpp-<version>/, timed.
2. The checkpoint is converted to GGUF by tests/bench/v2_to_gguf.py with the
   bundle's own gguf-py (f32, and f16 beside embedserve's bf16).
3. Fidelity: a few texts embedded by embedserve (HTTP, f32) and by
   llama-embedding (--pooling mean --embd-normalize 2); the cosine of each
   pair is printed; below 0.999 the script fails (a wrong conversion), since
   the timings would then compare different models.
4. Speed, the bench's batch shape: 32 inputs of 128 tokens ([CLS] + 126 whole
   words of the vocabulary + [SEP]), N threads, each llama-embedding run
   timed after llama.cpp's warm-up pass from its log's timestamps, from the
   first batch_decode line to the perf print after the last decode (the
   forward passes and pooling, not loading or tokenising; its own "prompt
   eval" counter leaves the first decode out), medians of
   --runs; peak RSS of the process from GNU time. Two batchings are measured: all 32 sequences in one
   4096-token ubatch (llama.cpp's default for many prompts; its non-causal
   attention then runs across the whole ubatch, masked) and one sequence per
   128-token ubatch; the summary shows both.
Prints human lines and one JSON line per precision for tests/bench/summary.py.
Only 127.0.0.1 is contacted once the tarball is fetched."""
import argparse, base64, hashlib, json, os, re, shutil, statistics, subprocess, sys, tempfile, time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import server  # noqa: E402

NLC_VERSION = "3.22.1"
HERE = os.path.dirname(os.path.abspath(__file__))


def cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "embedserve", "llama.cpp-" + NLC_VERSION)


def run(cmd, **kw):
    print("+ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, **kw)


def fetch_and_build(root):
    """llama-embedding's path; fetches, verifies and builds once."""
    exe = os.path.join(root, "build", "bin", "llama-embedding")
    if os.path.isfile(exe) and os.access(exe, os.X_OK):
        return exe
    os.makedirs(root, exist_ok=True)
    src = os.path.join(root, "src")
    if not os.path.isdir(os.path.join(src, ".git")):
        spec = "node-llama-cpp@" + NLC_VERSION
        want = subprocess.run(["npm", "view", spec, "dist.integrity"], check=True, capture_output=True,
                              text=True).stdout.strip()
        if not want.startswith("sha512-"):
            sys.exit("llama_v2: no sha512 integrity for %s from the registry (%r)" % (spec, want))
        with tempfile.TemporaryDirectory() as td:
            run(["npm", "pack", "--loglevel=error", spec, "--pack-destination", td], stdout=subprocess.DEVNULL)
            tgz = [f for f in os.listdir(td) if f.endswith(".tgz")]
            if len(tgz) != 1:
                sys.exit("llama_v2: npm pack gave %r" % tgz)
            h = hashlib.sha512()
            with open(os.path.join(td, tgz[0]), "rb") as f:
                for blk in iter(lambda: f.read(1 << 20), b""):
                    h.update(blk)
            got = "sha512-" + base64.b64encode(h.digest()).decode()
            if got != want:
                sys.exit("llama_v2: %s: tarball sha512 %s, registry says %s" % (spec, got, want))
            run(["tar", "-xzf", os.path.join(td, tgz[0]), "-C", td, "package/llama/gitRelease.bundle"])
            if os.path.isdir(src):
                shutil.rmtree(src)
            run(["git", "-c", "advice.detachedHead=false", "clone", "-q", os.path.join(td, "package", "llama", "gitRelease.bundle"), src])
    bld = os.path.join(root, "build")
    t0 = time.time()
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    run(["cmake", "-S", src, "-B", bld] + gen + ["-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=ON", "-DLLAMA_CURL=OFF",
         "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_SERVER=OFF", "-DBUILD_SHARED_LIBS=OFF"],
        stdout=subprocess.DEVNULL)
    run(["cmake", "--build", bld, "-j", os.environ.get("BENCH_LLAMA_JOBS", "2"), "--target", "llama-embedding"],
        stdout=subprocess.DEVNULL)
    with open(os.path.join(root, "build-seconds"), "w") as f:
        f.write("%.0f\n" % (time.time() - t0))
    return exe


def gguf_for(root, model, outtype):
    """The converted model, redone when the checkpoint is newer."""
    out = os.path.join(root, "%s-%s.gguf" % (os.path.basename(os.path.normpath(model)), outtype))
    st = os.path.join(model, "model.safetensors")
    if not os.path.isfile(out) or os.path.getmtime(out) < os.path.getmtime(st):
        run([sys.executable, os.path.join(HERE, "v2_to_gguf.py"), "--gguf-py", os.path.join(root, "src", "gguf-py"),
             "--model", model, "--out", out + ".tmp", "--outtype", outtype])
        os.replace(out + ".tmp", out)
    return out


def llama_embed(exe, gguf, texts, threads, ctx, extra=()):
    """(embeddings or None, prompt-eval tok/s, prompt tokens, peak RSS GiB)."""
    with tempfile.TemporaryDirectory() as td:
        pf = os.path.join(td, "prompts.txt")
        with open(pf, "w", encoding="utf-8") as f:
            f.write("\n".join(texts))
        tf = os.path.join(td, "time.txt")
        cmd = ["/usr/bin/time", "-f", "%M", "-o", tf, exe, "-m", gguf, "-f", pf, "-t", str(threads),
               "-tb", str(threads), "-c", str(ctx), "-b", str(ctx), "-ub", str(ctx), "--pooling", "mean",
               "--embd-normalize", "2", "--perf", "-lv", "4"] + list(extra)
        # llama.cpp's logger writes from a thread and now and then loses the
        # last lines at exit: such a run is repeated (at most 3 tries)
        for _ in range(3):
            # errors="replace": the verbose log prints token pieces, which may be
            # partial UTF-8 sequences (sentencepiece vocabularies)
            p = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
            if p.returncode:
                sys.exit("llama_v2: llama-embedding failed (%d):\n%s" % (p.returncode, p.stderr[-3000:]))
            m = re.search(r"prompt eval time =\s*([\d.]+) ms /\s*(\d+) tokens", p.stderr)
            if m and ("--embd-output-format" not in extra or p.stdout.strip().endswith("}")):
                break
        else:
            sys.exit("llama_v2: no prompt eval timing in llama-embedding's output")
        rss_gib = int(open(tf).read().split()[-1]) / 1048576.0
    # llama.cpp's "prompt eval" time leaves out the first decode (it counts it
    # as load time: 0 ms when one decode does the whole batch; its token count
    # is right), so the forward time is taken from
    # the log's timestamps: the first "batch_decode" line (just before the
    # first llama_decode) to the perf print after the last one
    stamps = {}
    for line in p.stderr.splitlines():
        for key in ("batch_decode:", "prompt eval time"):
            if key in line and key not in stamps:
                a, b, c, d = (int(x) for x in line.split()[0].split("."))
                stamps[key] = a * 60 + b + c / 1e3 + d / 1e6
    if len(stamps) != 2:
        sys.exit("llama_v2: no log timestamps in llama-embedding's output")
    ms, ntok = 1e3 * (stamps["prompt eval time"] - stamps["batch_decode:"]), int(m.group(2))
    emb = None
    if "--embd-output-format" in extra:
        emb = [d["embedding"] for d in json.loads(p.stdout)["data"]]
    return emb, 1e3 * ntok / ms, ntok, rss_gib


def embedserve_embed(binary, model, texts, threads):
    port = int(os.environ.get("BENCH_LLAMA_PORT", "0")) or free_port()
    srv, _ = server.start(binary, model, port, dtype="f32", threads=threads, name="llama_v2")
    try:
        req = urllib.request.Request("http://127.0.0.1:%d/v1/embeddings" % port,
                                     data=json.dumps({"input": texts}).encode(),
                                     headers={"Content-Type": "application/json"})
        body = json.load(urllib.request.urlopen(req, timeout=300))
    finally:
        server.stop(srv)
    return [d["embedding"] for d in sorted(body["data"], key=lambda d: d["index"])], body["usage"]


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    na = sum(x * x for x in a) ** 0.5
    nb = sum(y * y for y in b) ** 0.5
    return dot / (na * nb)


def whole_words(model):
    """The tokenizer's plain lower-case word pieces (each encodes as itself)."""
    vocab = json.load(open(os.path.join(model, "tokenizer.json"), encoding="utf-8"))["model"]["vocab"]
    return sorted(t for t in vocab if re.fullmatch(r"[a-z]{2,}", t))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--binary", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dtypes", default="f32,f16")
    args = ap.parse_args()
    if not os.path.isfile(os.path.join(args.model, "tokenizer.json")):
        sys.exit("llama_v2: %s has no tokenizer.json" % args.model)
    root = cache_dir()
    had = os.path.isfile(os.path.join(root, "build", "bin", "llama-embedding"))
    exe = fetch_and_build(root)
    bs = os.path.join(root, "build-seconds")
    build_s = float(open(bs).read()) if os.path.isfile(bs) else None
    print("llama.cpp (node-llama-cpp %s bundle): %s%s" % (NLC_VERSION, "cached build" if had else "built",
                                                          ", build took %.0f s" % build_s if build_s else ""))

    words = whole_words(args.model)
    if len(words) < 200:
        sys.exit("llama_v2: too few whole-word tokens in tokenizer.json")
    # fidelity texts: natural text with punctuation and accents, and word runs
    texts = ["The quick brown fox jumps over the lazy dog.",
             "Caf\u00e9 na\u00efve r\u00e9sum\u00e9, co-operate; e-mail: x@y.z (2024)!",
             " ".join(words[0:40]), " ".join(words[100:300]), "hello"]
    ours, usage = embedserve_embed(args.binary, args.model, texts, args.threads)
    fid = {}
    for dt in args.dtypes.split(","):
        g = gguf_for(root, args.model, dt)
        theirs, _, ntok, _ = llama_embed(exe, g, texts, args.threads, 4096,
                                         ("--embd-output-format", "json"))
        cos = [cosine(a, b) for a, b in zip(ours, theirs)]
        print("fidelity %s: cosine embedserve f32 vs llama.cpp %s per text: %s (tokens: embedserve %d, "
              "llama.cpp %d)" % (dt, dt, " ".join("%.6f" % c for c in cos), usage["prompt_tokens"], ntok))
        fid[dt] = min(cos)
        if dt == "f32" and min(cos) < 0.999:
            sys.exit("llama_v2: llama.cpp disagrees with embedserve (min cosine %.5f): conversion wrong?"
                     % min(cos))

    # speed: 32 x (126 words + [CLS] + [SEP]) = 4096 tokens
    batch = [" ".join(words[(i * 126 + j) % len(words)] for j in range(126)) for i in range(32)]
    for dt in args.dtypes.split(","):
        g = gguf_for(root, args.model, dt)
        res = {}
        # per sequence: a 128-token batch holds one input; -np 32 since with
        # -np 1 this llama.cpp version asserts on a context below the input count
        for mode, ctx, extra in (("one_ubatch", 4096, ()), ("per_sequence", 128, ("-np", "32"))):
            tps, rss = [], []
            for _ in range(args.runs):
                _, t, ntok, r = llama_embed(exe, g, batch, args.threads, ctx, extra)
                if ntok != 4096:
                    sys.exit("llama_v2: the batch tokenised to %d tokens, not 4096" % ntok)
                tps.append(t)
                rss.append(r)
            res[mode] = (statistics.median(tps), max(rss))
            print("llama.cpp %s, %d threads, batch 32x128 (%s): %.1f tok/s (runs %s), peak RSS %.2f GiB"
                  % (dt, args.threads, mode, res[mode][0], " ".join("%.1f" % t for t in tps), res[mode][1]))
        print(json.dumps({"llama_cpp": "jina-bert-v2", "llama_version": NLC_VERSION, "dtype": dt,
                          "threads": args.threads, "runs": args.runs,
                          "batch_tok_s": res["one_ubatch"][0], "peak_rss_gib": res["one_ubatch"][1],
                          "seq_batch_tok_s": res["per_sequence"][0], "seq_peak_rss_gib": res["per_sequence"][1],
                          "cosine_min": fid[dt], "build_s": build_s}))


if __name__ == "__main__":
    main()
