"""llama_v3.py --model DIR --binary build/embedserve [--threads 2] [--runs 3]
               [--formats f16,bf16,f32,q8_0] [--dtypes f32,int8,bf16]
               [--task retrieval.passage] [--modes seq[,ubatch]]

The jina-embeddings-v3 side of `make bench BENCH_LLAMA=1`: llama.cpp's
`jina-bert-v3` beside embedserve on the bench's own (random, full-size) v3
checkpoint, without a task and with a task's LoRA adapter, in one run.

1. llama.cpp: the build llama_v2.py makes (node-llama-cpp's git bundle, built
   once into ~/.cache/embedserve/llama.cpp-<version>/).
2. The checkpoint is converted by tests/bench/v3_to_gguf.py with the bundle's
   gguf-py into F32, F16, BF16 and Q8_0 GGUFs, and the task adapters into
   LoRA GGUFs (kept in that cache, redone when the checkpoint is newer).
3. Fidelity: a few texts embedded by embedserve (f32, over HTTP; without a
   task and with --task) and by llama-embedding (--pooling mean
   --embd-normalize 2; with the task: --lora <task adapter> and the task's
   instruction put before each text, as embedserve does); the cosine of each
   pair and the token counts are printed, and the script stops when the
   counts differ or a F32 cosine is below 0.999.
4. Speed, the bench's batch shape: 32 inputs of 128 tokens (<s>, words of the
   sentencepiece vocabulary that are pieces of their own, </s>; with the task
   the instruction takes the place of some words, so the count stays 128,
   checked on both sides), N threads, medians of --runs:
   - llama.cpp per format, without and with --lora: timed from its log as
     llama_v2.py does (forward passes and pooling after llama.cpp's warm-up,
     no loading or tokenising); mode "seq" gives each sequence its own
     128-token ubatch (attention per sequence, as embedserve computes it),
     "ubatch" puts all 32 in one 4096-token ubatch (llama.cpp's default);
     peak RSS of the process from GNU time.
   - embedserve per precision the engine accepts on this CPU: one server
     (--threads N), one warm-up request, then each request of 32 inputs timed
     from send to answer (so tokenising and JSON are in its figure, not in
     llama.cpp's); peak RSS of the server process (VmHWM) after its runs.
   - one 2048-token document (no task) on both sides.
Prints human lines, then one JSON line per engine row for tests/bench/summary.py
(key "llama_v3"; see table() for the fields). Only 127.0.0.1 is contacted."""
import argparse, json, os, re, statistics, sys, time, urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import llama_v2  # noqa: E402
import server  # noqa: E402

FORMATS = {"f32": "F32", "f16": "F16", "bf16": "BF16", "q8_0": "Q8_0"}


def convert(root, model, fmt):
    """(model GGUF, LoRA prefix): converted once, redone when the checkpoint is newer."""
    base = os.path.join(root, os.path.basename(os.path.normpath(model)))
    out, lora_prefix = "%s-%s.gguf" % (base, fmt), base + "-lora-"
    st = os.path.join(model, "model.safetensors")
    stale = lambda f: not os.path.isfile(f) or os.path.getmtime(f) < os.path.getmtime(st)  # noqa: E731
    if stale(out) or (fmt == "f32" and stale(lora_prefix + "retrieval.passage.gguf")):
        cmd = [sys.executable, os.path.join(HERE, "v3_to_gguf.py"), "--gguf-py", os.path.join(root, "src", "gguf-py"),
               "--model", model, "--out", out + ".tmp", "--outtype", fmt]
        if fmt == "f32":
            cmd += ["--lora-prefix", lora_prefix, "--fold-token-types"]
        llama_v2.run(cmd)
        os.replace(out + ".tmp", out)
    return out, lora_prefix


def whole_words(model):
    """Lower-case words whose '\u2581word' is a piece of its own (one token each)."""
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=os.path.join(model, "sentencepiece.bpe.model"))
    words = [sp.id_to_piece(i)[1:] for i in range(sp.vocab_size())]
    words = [w for w in words if re.fullmatch(r"[a-z]{2,}", w) and len(sp.encode(w)) == 1]
    return sp, words


def fit_text(sp, words, start, prefix, n_body):
    """prefix + a run of words that tokenises to exactly n_body tokens."""
    k = max(1, n_body - len(sp.encode(prefix)) if prefix else n_body)
    for _ in range(8):
        text = prefix + " ".join(words[(start + j) % len(words)] for j in range(k))
        n = len(sp.encode(text))
        if n == n_body:
            return text
        k += n_body - n
    sys.exit("llama_v3: cannot build a text of %d tokens" % n_body)


class Server:
    """One embedserve process at a precision; None from start() if refused."""

    @staticmethod
    def start(binary, model, dtype, threads):
        port = llama_v2.free_port()
        try:
            srv, _ = server.start(binary, model, port, dtype=dtype, threads=threads, name="llama_v3")
        except SystemExit as e:
            print("embedserve %s: not started (%s)" % (dtype, e))
            return None
        s = Server()
        s.srv, s.port = srv, port
        return s

    def embed(self, texts, task=None):
        """(embeddings, prompt tokens, seconds from send to answer)."""
        body = {"input": texts}
        if task:
            body["task"] = task
        req = urllib.request.Request("http://127.0.0.1:%d/v1/embeddings" % self.port, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        t0 = time.perf_counter()
        out = json.load(urllib.request.urlopen(req, timeout=1800))
        dt = time.perf_counter() - t0
        return ([d["embedding"] for d in sorted(out["data"], key=lambda d: d["index"])],
                out["usage"]["prompt_tokens"], dt)

    def peak_rss_gib(self):
        for line in open("/proc/%d/status" % self.srv.pid):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1048576.0
        return 0.0

    def stop(self):
        server.stop(self.srv)


def table(rows):
    """Prints the table of this script's JSON lines, given all JSON lines of a
    bench log (summary.py): rows {"llama_v3": "llama.cpp"|"embedserve",
    "format", "n_threads", "runs", "batch_tok_s", "batch_task_tok_s",
    "doc2048_tok_s", "peak_rss_gib"; llama.cpp adds "cosine_min",
    "cosine_task_min", "llama_version" and, with --modes ubatch,
    "ubatch_tok_s"/"ubatch_task_tok_s"}, or {"llama_v3_failed": 1}."""
    if any("llama_v3_failed" in r for r in rows):
        print("llama.cpp v3 (BENCH_LLAMA=1): FAILED, see tests/bench/llama_v3.py's message above")
    rows = [r for r in rows if "llama_v3" in r]
    if not rows:
        return
    print("jina-embeddings-v3 (random weights) beside llama.cpp jina-bert-v3, %d threads, median of %d, tok/s:"
          % (rows[0]["n_threads"], rows[0]["runs"]))
    fmt = "%-22s %9s %9s %9s %8s %9s %9s"
    print(fmt % ("", "32x128", "+task", "doc 2048", "RSS GiB", "cos", "cos task"))
    for r in rows:
        f = lambda k, p="%.1f": (p % r[k]) if r.get(k) is not None else "-"  # noqa: E731
        print(fmt % ("%s %s" % (r["llama_v3"], r["format"]), f("batch_tok_s"), f("batch_task_tok_s"),
                     f("doc2048_tok_s"), f("peak_rss_gib", "%.2f"), f("cosine_min", "%.5f"),
                     f("cosine_task_min", "%.5f")))
        if r.get("ubatch_tok_s"):
            print(fmt % ("  one 4096-tok ubatch", f("ubatch_tok_s"), f("ubatch_task_tok_s"), "", "", "", ""))
    ours = {r["format"]: r for r in rows if r["llama_v3"] == "embedserve"}
    q = lambda a, b: ("%.2f" % (a / b)) if a and b else "-"  # noqa: E731
    for d, e in ours.items():
        for r in rows:
            if r["llama_v3"] == "llama.cpp":
                print("  embedserve %s / llama.cpp %s: batch %s, with task %s, doc 2048 %s"
                      % (d, r["format"], q(e["batch_tok_s"], r["batch_tok_s"]),
                         q(e["batch_task_tok_s"], r["batch_task_tok_s"]), q(e["doc2048_tok_s"], r["doc2048_tok_s"])))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--binary", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--formats", default="f16,bf16,f32,q8_0")
    ap.add_argument("--dtypes", default="f32,int8,bf16")
    ap.add_argument("--task", default="retrieval.passage")
    ap.add_argument("--modes", default="seq")
    args = ap.parse_args()
    hp = json.load(open(os.path.join(args.model, "config.json")))
    if args.task not in (hp.get("lora_adaptations") or []):
        sys.exit("llama_v3: %s has no task %r" % (args.model, args.task))
    prefix = (hp.get("task_instructions") or {}).get(args.task, "")
    formats = args.formats.split(",")
    if "f32" not in formats:
        formats.insert(0, "f32")  # the fidelity check needs it
    root = llama_v2.cache_dir()
    exe = llama_v2.fetch_and_build(root)
    ggufs, lora = {}, None
    for fmt in ["f32"] + [f for f in formats if f != "f32"]:
        ggufs[fmt], lp = convert(root, args.model, fmt)
        lora = lora or lp + args.task + ".gguf"
    sp, words = whole_words(args.model)
    if len(words) < 100:
        sys.exit("llama_v3: too few whole-word pieces in sentencepiece.bpe.model (%d)" % len(words))

    # fidelity, without and with the task, on natural text and word runs
    texts = ["The quick brown fox jumps over the lazy dog.",
             "Caf\u00e9 na\u00efve r\u00e9sum\u00e9, co-operate; e-mail: x@y.z (2024)!",
             " ".join(words[0:40]), " ".join(words[50:200]), "hello"]
    srv = Server.start(args.binary, args.model, "f32", args.threads)
    if srv is None:
        sys.exit("llama_v3: embedserve f32 did not start")
    try:
        ours, ntok_ours, _ = srv.embed(texts)
        ours_t, ntok_ours_t, _ = srv.embed(texts, args.task)
    finally:
        srv.stop()
    fid = {}
    for fmt in formats:
        theirs, _, ntok, _ = llama_v2.llama_embed(exe, ggufs[fmt], texts, args.threads, 4096,
                                                  ("--embd-output-format", "json"))
        theirs_t, _, ntok_t, _ = llama_v2.llama_embed(exe, ggufs[fmt], [prefix + t for t in texts], args.threads,
                                                      4096, ("--embd-output-format", "json", "--lora", lora))
        cos = [llama_v2.cosine(a, b) for a, b in zip(ours, theirs)]
        cos_t = [llama_v2.cosine(a, b) for a, b in zip(ours_t, theirs_t)]
        print("fidelity %s: cosine embedserve f32 vs llama.cpp %s: %s; with %s (LoRA): %s; tokens embedserve "
              "%d/%d, llama.cpp %d/%d" % (FORMATS[fmt], FORMATS[fmt], " ".join("%.6f" % c for c in cos), args.task,
                                           " ".join("%.6f" % c for c in cos_t), ntok_ours, ntok_ours_t, ntok, ntok_t))
        if (ntok, ntok_t) != (ntok_ours, ntok_ours_t):
            sys.exit("llama_v3: llama.cpp tokenises the texts differently from embedserve (%d/%d tokens vs %d/%d)"
                     % (ntok, ntok_t, ntok_ours, ntok_ours_t))
        if fmt == "f32" and min(cos + cos_t) < 0.999:
            sys.exit("llama_v3: llama.cpp disagrees with embedserve (min cosine %.5f): conversion wrong?"
                     % min(cos + cos_t))
        fid[fmt] = (min(cos), min(cos_t))

    # speed: 32 x 128 tokens, the task's instruction inside the 126
    batch = [fit_text(sp, words, i * 126, "", 126) for i in range(32)]
    # llama.cpp gets the instruction in the text (batch_t), embedserve adds it
    # itself for the task (bodies)
    batch_t = [fit_text(sp, words, i * 126, prefix, 126) for i in range(32)]
    bodies = [t[len(prefix):] for t in batch_t]
    doc = fit_text(sp, words, 7, "", 2046)
    med = statistics.median

    def ours(d):
        """embedserve's row at precision d, or None when the engine refuses it here."""
        srv = Server.start(args.binary, args.model, d, args.threads)
        if srv is None:
            return None
        try:
            srv.embed(batch[:4])  # warm-up: pages the weights in
            res = {}
            for key, inp, task in (("batch", batch, None), ("batch_task", bodies, args.task), ("doc2048", [doc], None)):
                ts = []
                for _ in range(args.runs):
                    _, n, dt = srv.embed(inp, task)
                    if n != (2048 if key == "doc2048" else 128 * len(inp)):
                        sys.exit("llama_v3: embedserve counted %d tokens for %s" % (n, key))
                    ts.append(n / dt)
                res[key] = med(ts)
                print("embedserve %s, %d threads, %s: %.1f tok/s (runs %s)"
                      % (d, args.threads, key, res[key], " ".join("%.1f" % t for t in ts)), flush=True)
            rss = srv.peak_rss_gib()
        finally:
            srv.stop()
        return {"llama_v3": "embedserve", "format": d, "n_threads": args.threads, "runs": args.runs,
                "batch_tok_s": res["batch"], "batch_task_tok_s": res["batch_task"],
                "doc2048_tok_s": res["doc2048"], "peak_rss_gib": rss}

    def theirs(fmt):
        """llama.cpp's row for GGUF format fmt."""
        modes = {"seq": (128, ("-np", "32")), "ubatch": (4096, ()), "doc": (2048, ())}
        row = {"llama_v3": "llama.cpp", "format": FORMATS[fmt], "n_threads": args.threads, "runs": args.runs,
               "llama_version": llama_v2.NLC_VERSION, "cosine_min": fid[fmt][0], "cosine_task_min": fid[fmt][1]}
        rss_all = []
        jobs = [(m, "", batch, ()) for m in args.modes.split(",")] + \
               [(m, "_task", batch_t, ("--lora", lora)) for m in args.modes.split(",")] + [("doc", "", [doc], ())]
        for mode, sfx, inp, extra in jobs:
            ctx, mx = modes[mode]
            ts = []
            for _ in range(args.runs):
                _, t, n, r = llama_v2.llama_embed(exe, ggufs[fmt], inp, args.threads, ctx, mx + extra)
                if n != (2048 if mode == "doc" else 128 * len(inp)):
                    sys.exit("llama_v3: llama.cpp counted %d tokens (%s%s)" % (n, mode, sfx))
                ts.append(t)
                rss_all.append(r)
            key = {"seq": "batch", "ubatch": "ubatch", "doc": "doc2048"}[mode] + sfx + "_tok_s"
            row[key] = med(ts)
            print("llama.cpp %s, %d threads, %s%s: %.1f tok/s (runs %s)"
                  % (FORMATS[fmt], args.threads, key[:-6], " --lora" if extra else "", row[key],
                     " ".join("%.1f" % t for t in ts)), flush=True)
        row["peak_rss_gib"] = max(rss_all)
        return row

    # the two sides alternate, so that a change in the machine's load falls
    # on both; each row's JSON line is printed as soon as it is done
    dtypes, out = args.dtypes.split(","), []
    for k in range(max(len(dtypes), len(formats))):
        for fn, lst in ((ours, dtypes), (theirs, formats)):
            if k < len(lst):
                row = fn(lst[k])
                if row:
                    print(json.dumps(row), flush=True)
                    out.append(row)
    table(out)


if __name__ == "__main__":
    main()
