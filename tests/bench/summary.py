"""summary.py LOG -- folds the JSON lines of bench and http_bench into one
table (2-thread figures; peers from issue 4 for comparison) and one JSON line."""
import json, sys

import llama_v3

rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
eng = {r["dtype"]: r for r in rows if "dtype" in r and r["threads"] == 2 and "label" not in r and "llama_cpp" not in r}
one = [r for r in rows if "dtype" in r and r["threads"] == 1 and "label" not in r and "llama_cpp" not in r]
other = [r for r in rows if "label" in r]
llama = [r for r in rows if "llama_cpp" in r]
llama_failed = any("llama_cpp_failed" in r for r in rows)
http = {r["http_dtype"]: r for r in rows if "http_dtype" in r}
fmt = "%-34s" + " %12s" * 3
print()
print(fmt % ("2 threads", "f32", "bf16", "int8"))


def line(label, key, f="%.1f"):
    print(fmt % tuple([label] + [(f % eng[d][key]) if d in eng and eng[d].get(key) else "-"
                                 for d in ("f32", "bf16", "int8")]))


line("gemm 4096x1024x4096 GFLOP/s", "gemm_gflops")
line("batch 32x128 tok/s", "batch_tok_s")
line("  efficiency vs own gemm", "batch_eff", "%.2f")
line("  with a task adapter tok/s", "batch_task_tok_s")
line("  mixed tasks tok/s", "batch_mixed_tok_s")
line("query 1x16 p50 ms", "query_p50_ms")
line("query 1x16 p90 ms", "query_p90_ms")
line("document 2048 tok/s", "doc2048_tok_s")
line("document 8192 s", "doc8192_s", "%.2f")
line("  efficiency (attention counted)", "doc8192_eff", "%.2f")
line("late chunking 64x128 s", "late64x128_s", "%.2f")
line("load s", "load_s", "%.2f")
line("peak RSS GiB (engine)", "peak_rss_gib", "%.2f")
for d, h in http.items():
    e = eng.get(d, {}).get("batch_tok_s")
    print("HTTP %-5s 8 clients x 32x128: %.1f tok/s (%.0f%% of engine alone), launch to /ready "
          "%.2f s, server peak RSS %.2f GiB, errors %d" % (d, h["http_tok_s"], 100 * h["http_tok_s"] / e if e else 0,
                                                         h["startup_ready_s"], h["server_peak_rss_gib"], h["http_errors"]))
fr = [r for r in rows if "first_req_warm_s" in r]
if fr:
    f = fr[0]
    print("first request after /ready (median of %d): %.3f s with warm-up, %.3f s without "
          "(second request %.3f s); launch to /ready %.2f s vs %.2f s"
          % (f["first_req_runs"], f["first_req_warm_s"], f["first_req_cold_s"], f["second_req_warm_s"],
             f["ready_warm_s"], f["ready_cold_s"]))
if one:
    print("f32 1 thread: batch 32x128 %.1f tok/s" % one[0]["batch_tok_s"])
for r in other:
    print("%s (%s, random weights) %s, 2 threads: batch 32x128 %.1f tok/s, query 1x16 p50 %.1f ms, "
          "document 2048 %.1f tok/s, load %.2f s, peak RSS %.2f GiB"
          % (r["label"], r["arch"], r["dtype"], r["batch_tok_s"], r["query_p50_ms"], r["doc2048_tok_s"],
             r["load_s"], r["peak_rss_gib"]))
for r in llama:
    print("llama.cpp %s (same weights, GGUF %s), %d threads, median of %d: batch 32x128 %.1f tok/s in one "
          "4096-token ubatch (peak RSS %.2f GiB), %.1f tok/s one sequence per ubatch (peak RSS %.2f GiB); "
          "cosine vs embedserve f32 >= %.5f"
          % (r["llama_cpp"], r["dtype"], r["threads"], r["runs"], r["batch_tok_s"], r["peak_rss_gib"],
             r["seq_batch_tok_s"], r["seq_peak_rss_gib"], r["cosine_min"]))
if llama_failed:
    print("llama.cpp side by side (BENCH_LLAMA=1): FAILED, see tests/bench/llama_v2.py's message above")
llama_v3.table(rows)  # llama.cpp v3 beside embedserve (BENCH_LLAMA=1)
print("peers (issue 4, same machine kind): llama.cpp BF16 306 tok/s, PyTorch bf16 403, ONNX fp32 233")
print(json.dumps({"engine": eng, "engine_1thread": one, "http": http, "other_models": other, "llama_cpp": llama,
                  "first_request": fr[0] if fr else None}))
