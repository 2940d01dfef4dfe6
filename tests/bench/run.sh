#!/bin/sh
# run.sh MODEL_DIR [V2_MODEL_DIR] -- `make bench`: the engine at each kernel
# level this CPU can run (build/bench --levels: the machine's own and every
# forced level below it) in each precision the engine has a kernel for at that
# level, then HTTP end to end, the first request after /ready with and without
# warm-up, small-query latency behind a 2048-input request (http_fairness.py),
# the engine on a jina-embeddings-v2-base-shaped model when V2_MODEL_DIR is
# given (f32, and bf16 where the CPU has it), with BENCH_LLAMA=1 llama.cpp's
# jina-bert-v2 on the same weights (tests/bench/llama_v2.py: fetches and builds
# llama.cpp once into the cache) and its jina-bert-v3 beside embedserve on
# MODEL_DIR, with and without a task LoRA (tests/bench/llama_v3.py), then one
# table per level and one JSON line (tests/bench/summary.py).
#
# The machine's own (top) level gets the full set (medians of $BENCH_RUNS,
# default 5); each lower level the reduced one unless BENCH_FULL=1
# (build/bench --reduced --runs $BENCH_LOWER_RUNS, default 3: no 8192-token
# shapes, no mixed-task batch, a shape's runs stop once they have taken 30 s).
# BENCH_QUICK=1 skips the 8192-token shapes and the 1-thread run at the top
# level too. BENCH_LEVELS="avx2 generic" limits the levels run.
#
# Every result is a JSON line (a line starting with "{") appended to one log
# that summary.py reads; a producer is run through `produce NAME CMD...`,
# which turns its failure into {"failed":"NAME"} so the summary reports it
# and the rest of the run goes on, and logs the step's wall time.
set -eu
model=$1
v2=${2:-}
BUILD=${BUILD:-build}
PYTHON=${PYTHON:-/usr/bin/python3}
out=$(mktemp)
trap 'rm -f "$out"' EXIT

produce() {
    name=$1
    shift
    t0=$(date +%s)
    { "$@" || echo "{\"failed\":\"$name\"}"; } | tee -a "$out"
    echo "{\"bench\":\"step_seconds\",\"step\":\"$name\",\"seconds\":$(($(date +%s) - t0))}" >>"$out"
}

q=""
[ "${BENCH_QUICK:-0}" = 1 ] && q=--quick
# "LEVEL DTYPE KERNEL" lines, lowest level first: what the engine's kernel
# table accepts on this CPU, so new kernels show up without a change here
levels=$("$BUILD/bench" --levels)
top=$(echo "$levels" | tail -n 1 | cut -d' ' -f1)
echo "kernel levels on this CPU (level, precision, kernel):"
echo "$levels" | sed 's/^/  /'
for lv in $(echo "$levels" | cut -d' ' -f1 | uniq | tac); do
    case " ${BENCH_LEVELS:-$lv} " in *" $lv "*) ;; *) continue ;; esac
    if [ "$lv" = "$top" ] || [ "${BENCH_FULL:-0}" = 1 ]; then
        set -- --threads 2 --runs "${BENCH_RUNS:-5}" $q
        [ "$lv" = "$top" ] && [ -z "$q" ] &&
            produce "bench $lv f32 1 thread" "$BUILD/bench" --model "$model" --dtype f32 \
                --cpu-features "$lv" --threads 1 --runs 3 --batch-only
    else
        set -- --threads 2 --reduced --runs "${BENCH_LOWER_RUNS:-3}"
    fi
    for d in $(echo "$levels" | awk -v l="$lv" '$1 == l { print $2 }'); do
        produce "bench $lv $d" "$BUILD/bench" --model "$model" --dtype "$d" --cpu-features "$lv" "$@"
    done
done
# HTTP at the machine's own level, in the precisions it has of bf16 and f32
for d in bf16 f32; do
    echo "$levels" | grep -q "^$top $d " || continue
    produce "http $d" "$PYTHON" tests/bench/http_bench.py --model "$model" --binary "$BUILD/embedserve" --dtype "$d"
done
produce first_request "$PYTHON" tests/bench/first_request.py --model "$model" --binary "$BUILD/embedserve"
produce fairness "$PYTHON" tests/bench/http_fairness.py --model "$model" --binary "$BUILD/embedserve" \
    --dtype f32 --big "${BENCH_FAIR_BIG:-2048}"
if [ -n "$v2" ]; then
    for d in f32 bf16; do
        echo "$levels" | grep -q "^$top $d " || continue
        produce "v2-base $d" "$BUILD/bench" --model "$v2" --dtype "$d" --threads 2 --quick --label v2-base
    done
    if [ "${BENCH_LLAMA:-0}" = 1 ]; then
        produce llama_v2 "$PYTHON" tests/bench/llama_v2.py --model "$v2" --binary "$BUILD/embedserve" \
            --threads 2 --runs 3
    fi
fi
if [ "${BENCH_LLAMA:-0}" = 1 ]; then
    # llama.cpp's jina-bert-v3 beside embedserve on MODEL_DIR, with and
    # without a task adapter (tests/bench/llama_v3.py, same llama.cpp build)
    produce llama_v3 "$PYTHON" tests/bench/llama_v3.py --model "$model" --binary "$BUILD/embedserve" \
        --threads 2 --runs 3
fi
"$PYTHON" tests/bench/summary.py "$out"
