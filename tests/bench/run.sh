#!/bin/sh
# run.sh MODEL_DIR [V2_MODEL_DIR] -- `make bench`: the engine per precision,
# then HTTP end to end, the first request after /ready with and without
# warm-up, small-query latency behind a 2048-input request (http_fairness.py),
# the engine on a jina-embeddings-v2-base-shaped model when V2_MODEL_DIR is
# given (f32, and bf16 where the CPU has it), with BENCH_LLAMA=1 llama.cpp's
# jina-bert-v2 on the same weights (tests/bench/llama_v2.py: fetches and builds
# llama.cpp once into the cache) and its jina-bert-v3 beside embedserve on
# MODEL_DIR, with and without a task LoRA (tests/bench/llama_v3.py), then one
# table and one JSON line (tests/bench/summary.py).
# BENCH_QUICK=1 skips the 8192-token shapes and the 1-thread run.
set -eu
model=$1
BUILD=${BUILD:-build}
PYTHON=${PYTHON:-/usr/bin/python3}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
q=""
[ "${BENCH_QUICK:-0}" = 1 ] && q=--quick
[ -z "$q" ] && "$BUILD/bench" --model "$model" --dtype f32 --threads 1 --runs 3 --batch-only | tee -a "$out"
for d in f32 bf16 int8; do
    "$BUILD/bench" --model "$model" --dtype "$d" --threads 2 $q | tee -a "$out"
done
for d in bf16 f32; do
    "$PYTHON" tests/bench/http_bench.py --model "$model" --binary "$BUILD/embedserve" --dtype "$d" | tee -a "$out"
done
"$PYTHON" tests/bench/first_request.py --model "$model" --binary "$BUILD/embedserve" | tee -a "$out"
"$PYTHON" tests/bench/http_fairness.py --model "$model" --binary "$BUILD/embedserve" --dtype f32 \
    --big "${BENCH_FAIR_BIG:-2048}" | tee -a "$out"
if [ -n "${2:-}" ]; then
    for d in f32 bf16; do
        "$BUILD/bench" --model "$2" --dtype "$d" --threads 2 --quick --label v2-base | tee -a "$out"
    done
    if [ "${BENCH_LLAMA:-0}" = 1 ]; then
        # a failure is reported in the summary, not allowed to drop the rest of it
        { "$PYTHON" tests/bench/llama_v2.py --model "$2" --binary "$BUILD/embedserve" --threads 2 --runs 3 \
            || echo '{"llama_cpp_failed":1}'; } | tee -a "$out"
    fi
fi
if [ "${BENCH_LLAMA:-0}" = 1 ]; then
    # llama.cpp's jina-bert-v3 beside embedserve on MODEL_DIR, with and
    # without a task adapter (tests/bench/llama_v3.py, same llama.cpp build)
    { "$PYTHON" tests/bench/llama_v3.py --model "$model" --binary "$BUILD/embedserve" --threads 2 --runs 3 \
        || echo '{"llama_v3_failed":1}'; } | tee -a "$out"
fi
"$PYTHON" tests/bench/summary.py "$out"
