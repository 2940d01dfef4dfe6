"""summary.py LOG -- folds the JSON lines of one `make bench` run into one table
per kernel level (2-thread figures, efficiency against that level's own GEMM
rate) and one JSON line.

LOG is run.sh's log: every line starting with "{" is one JSON object (any
other line is ignored). Each object goes to the first entry of KINDS whose
test accepts it; an object no entry accepts is kept in the JSON line's
"unclassified" list and named in the output, never dropped silently. A new
producer adds one entry to KINDS (a test and the JSON key its rows go under)
and, if it has figures to print, one function to REPORTS. Peers (llama.cpp)
appear only when measured in the same run."""
import json, sys

import llama_v3

DTYPES = ("f32", "bf16", "int8")


def is_engine(r):
    return "dtype" in r and "level" in r and "label" not in r and "llama_cpp" not in r


# (JSON key, test): the first test that accepts a row takes it
KINDS = [
    ("failed", lambda r: "failed" in r or "llama_cpp_failed" in r),
    ("engine_rows", lambda r: is_engine(r)),
    ("other_models", lambda r: "label" in r),
    ("llama_cpp", lambda r: "llama_cpp" in r),
    ("llama_v3", lambda r: "llama_v3" in r or "llama_v3_failed" in r),
    ("http", lambda r: "http_dtype" in r),
    ("first_request", lambda r: "first_req_warm_s" in r),
    ("fairness", lambda r: r.get("bench") == "fairness"),
    ("step_seconds", lambda r: r.get("bench") == "step_seconds"),
]
# any other row that names itself {"bench": NAME, ...} goes under NAME

rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
by = {k: [] for k, _ in KINDS}
by["unclassified"] = []
for r in rows:
    k = next((k for k, test in KINDS if test(r)), None)
    k = k or (r["bench"] if isinstance(r.get("bench"), str) else "unclassified")
    by.setdefault(k, []).append(r)

# levels in the order run.sh measured them (the machine's own first)
levels = {}
for r in by["engine_rows"]:
    lv = levels.setdefault(r["level"], {"engine": {}, "engine_1thread": []})
    if r["threads"] == 1:
        lv["engine_1thread"].append(r)
    else:
        lv["engine"][r["dtype"]] = r
top = next(iter(levels), None)


def level_table(name, lv):
    eng = lv["engine"]
    ds = [d for d in DTYPES if d in eng]
    kernels = " / ".join(eng[d]["kernel"] for d in ds)
    reduced = any(eng[d].get("reduced") for d in ds)
    print()
    print("level %s: %s (%s)" % (name, kernels, "reduced set" if reduced else
                                 "full set" if any(eng[d].get("doc8192_s") for d in ds) else "quick set"))
    fmt = "%-34s" + " %12s" * len(ds)
    print(fmt % tuple(["2 threads"] + ds))

    def line(label, value, f="%.1f"):
        cells = []
        for d in ds:
            v = value(eng[d])
            cells.append(f % v if v is not None else "-")
        if any(c != "-" for c in cells):
            print(fmt % tuple([label] + cells))

    def key(k):  # bench writes 0 for a shape it did not time
        return lambda e: e.get(k) or None

    line("gemm 4096x1024x4096 GFLOP/s", key("gemm_gflops"))
    line("batch 32x128 tok/s", key("batch_tok_s"))
    line("  efficiency vs own gemm", key("batch_eff"), "%.2f")
    line("  with a task adapter tok/s", key("batch_task_tok_s"))
    # paired (alternating passes) where bench measured it that way
    line("  adapter cost %", lambda e: 100 * e["batch_task_cost"] if "batch_task_cost" in e
         else 100 * (e["batch_tok_s"] / e["batch_task_tok_s"] - 1) if e.get("batch_task_tok_s") else None)
    line("  mixed tasks tok/s", key("batch_mixed_tok_s"))
    line("query 1x16 p50 ms", key("query_p50_ms"))
    line("query 1x16 p90 ms", key("query_p90_ms"))
    line("document 2048 tok/s", key("doc2048_tok_s"))
    line("document 8192 s", key("doc8192_s"), "%.2f")
    line("  efficiency (attention counted)", key("doc8192_eff"), "%.2f")
    line("late chunking 64x128 s", key("late64x128_s"), "%.2f")
    line("load s", key("load_s"), "%.2f")
    line("peak RSS GiB (engine)", key("peak_rss_gib"), "%.2f")
    for r in lv["engine_1thread"]:
        print("%s 1 thread: batch 32x128 %.1f tok/s" % (r["dtype"], r["batch_tok_s"]))


def report_http():
    eng = levels[top]["engine"] if top else {}
    for h in by["http"]:
        d = h["http_dtype"]
        e = eng.get(d, {}).get("batch_tok_s")
        print("HTTP %-5s 8 clients x 32x128: %.1f tok/s (%.0f%% of engine alone), launch to /ready "
              "%.2f s, server peak RSS %.2f GiB, errors %d"
              % (d, h["http_tok_s"], 100 * h["http_tok_s"] / e if e else 0, h["startup_ready_s"],
                 h["server_peak_rss_gib"], h["http_errors"]))


def report_first_request():
    for f in by["first_request"][:1]:
        print("first request after /ready (median of %d): %.3f s with warm-up, %.3f s without "
              "(second request %.3f s); launch to /ready %.2f s vs %.2f s"
              % (f["first_req_runs"], f["first_req_warm_s"], f["first_req_cold_s"], f["second_req_warm_s"],
                 f["ready_warm_s"], f["ready_cold_s"]))


def report_other_models():
    for r in by["other_models"]:
        print("%s (%s, random weights) %s, level %s (%s), 2 threads: batch 32x128 %.1f tok/s, query 1x16 "
              "p50 %.1f ms, document 2048 %.1f tok/s, load %.2f s, peak RSS %.2f GiB"
              % (r["label"], r["arch"], r["dtype"], r.get("level", "?"), r.get("kernel", "?"), r["batch_tok_s"],
                 r["query_p50_ms"], r["doc2048_tok_s"], r["load_s"], r["peak_rss_gib"]))


def report_llama():
    for r in by["llama_cpp"]:
        if "seq_batch_tok_s" not in r:  # not llama_v2.py's row: shown as it came
            print("llama.cpp: %s" % json.dumps(r))
            continue
        print("llama.cpp %s (same weights, GGUF %s), %d threads, median of %d: batch 32x128 %.1f tok/s in one "
              "4096-token ubatch (peak RSS %.2f GiB), %.1f tok/s one sequence per ubatch (peak RSS %.2f GiB); "
              "cosine vs embedserve f32 >= %.5f"
              % (r["llama_cpp"], r["dtype"], r["threads"], r["runs"], r["batch_tok_s"], r["peak_rss_gib"],
                 r["seq_batch_tok_s"], r["seq_peak_rss_gib"], r["cosine_min"]))


def report_fairness():
    for r in by["fairness"]:
        print("16-token queries behind a %d-input request: p50 %.3f s, p99 %.3f s (%.2f passes of %.3f s)"
              % (r["big_inputs"], r["p50_s"], r["p99_s"], r["p99_passes"] or 0, r["pass_s"] or 0))


def report_steps():
    st = by["step_seconds"]
    if st:
        print("wall time %d s: %s" % (sum(r["seconds"] for r in st),
                                      ", ".join("%s %d s" % (r["step"], r["seconds"]) for r in st)))


def report_failed():
    for r in by["failed"]:
        name = r.get("failed", "llama_v2")
        print("%s: FAILED, see its message above" % name)
    for r in by["unclassified"]:
        print("unclassified result line (kept in the JSON): %s" % json.dumps(r)[:200])


def report_named():
    """rows of producers with no report of their own: one line each"""
    for k, rs in by.items():
        if k not in dict(KINDS) and k != "unclassified":
            for r in rs:
                print("%s: %s" % (k, json.dumps(r)))


def report_llama_v3():
    llama_v3.table(by["llama_v3"])  # llama.cpp v3 beside embedserve (BENCH_LLAMA=1)


REPORTS = [report_http, report_first_request, report_fairness, report_other_models, report_llama,
           report_llama_v3, report_named, report_steps, report_failed]

for name, lv in levels.items():
    level_table(name, lv)
print()
for report in REPORTS:
    report()
summary = {k: v for k, v in by.items() if k not in ("engine_rows", "first_request")}
summary["levels"] = {name: dict(lv, kernels={d: e["kernel"] for d, e in lv["engine"].items()})
                     for name, lv in levels.items()}
summary["top_level"] = top
# the machine's own level under the keys earlier runs used
summary["engine"] = levels[top]["engine"] if top else {}
summary["engine_1thread"] = levels[top]["engine_1thread"] if top else []
summary["http"] = {h["http_dtype"]: h for h in by["http"]}
summary["first_request"] = by["first_request"][0] if by["first_request"] else None
print(json.dumps(summary))
