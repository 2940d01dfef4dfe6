#!/bin/sh
# stage_cli.sh -- `embedserve embed`, the offline CLI: no task, a task,
# JSONL input, late chunking, and refusals of bad options.
set -u
BUILD=${BUILD:-build}
TESTMODEL=${TESTMODEL:-build/testmodel}
bin=$BUILD/embedserve
pass=0
fail=0
check() { # check DESCRIPTION COMMAND...
    d=$1; shift; if "$@"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $d"; fi
}
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
printf 'hello world\nПривет мир\n\n这是一个测试\n' >"$t/in.txt"
"$bin" embed --model "$TESTMODEL" --input "$t/in.txt" --output "$t/none.jsonl" --threads 1 2>"$t/err"
check "no task runs" [ $? -eq 0 ]
check "one line per input, blank line included" [ "$(wc -l <"$t/none.jsonl")" -eq 4 ]
check "indices in order" [ "$(sed -n 's/^{"index": \([0-9]*\),.*/\1/p' "$t/none.jsonl" | tr '\n' ' ')" = "0 1 2 3 " ]
"$bin" embed --model "$TESTMODEL" --input "$t/in.txt" --task retrieval.query --dimensions 8 >"$t/q.jsonl"
check "task + dimensions run" [ $? -eq 0 ]
check "8 values per row" [ "$(head -n 1 "$t/q.jsonl" | sed 's/.*\[//; s/\].*//' | tr ',' '\n' | wc -l)" -eq 8 ]
check "a task changes the vector" [ "$(head -n 1 "$t/q.jsonl")" != "$(head -n 1 "$t/none.jsonl")" ]
"$bin" embed --model "$TESTMODEL" --input "$t/in.txt" --task query --dimensions 8 >"$t/qa.jsonl"
check "task alias runs as on the server" [ $? -eq 0 ]
check "alias 'query' equals retrieval.query" cmp -s "$t/qa.jsonl" "$t/q.jsonl"
printf '{"text": "hello world"}\n' | "$bin" embed --model "$TESTMODEL" >"$t/j.jsonl"
check "JSONL text equals the plain line" [ "$(head -n 1 "$t/j.jsonl")" = "$(head -n 1 "$t/none.jsonl")" ]
printf 'first chunk\nsecond chunk\n\nother document\n' | "$bin" embed --model "$TESTMODEL" --late-chunking >"$t/l.jsonl"
check "late chunking: one row per chunk" [ "$(wc -l <"$t/l.jsonl")" -eq 3 ]
"$bin" embed --model "$TESTMODEL" --task nope </dev/null >/dev/null 2>"$t/err"
check "unknown task refused (exit 2)" [ $? -eq 2 ]
check "unknown task named" grep -q "unknown --task" "$t/err"
check "unknown task lists the valid names" grep -q "retrieval.passage" "$t/err"
"$bin" embed --model "$TESTMODEL" --dimensions 0 </dev/null >/dev/null 2>&1
check "bad --dimensions refused" [ $? -eq 2 ]
"$bin" embed --model /nonexistent </dev/null >/dev/null 2>"$t/err"
check "missing model: exit 1 with the path" sh -c "grep -q /nonexistent '$t/err'"
# Parity with the server: --dtype, EMBEDSERVE_MODEL / EMBEDSERVE_DTYPE, --version.
"$bin" embed --model "$TESTMODEL" --input "$t/in.txt" --dtype f32 >"$t/f32.jsonl"
check "--dtype f32 runs" [ $? -eq 0 ]
# The exact mode's vector kernels (AVX2+FMA, AVX-512F; NEON on aarch64) run
# the same fused chains: every SIMD level this CPU runs gives the plain
# run's bytes, with and without a task (on an AVX2-only CPU: one level).
for lv in $("$BUILD/test_all" --cpu-levels); do
    [ "$lv" = generic ] && continue
    for task in "" retrieval.query; do
        "$bin" embed --model "$TESTMODEL" --input "$t/in.txt" --dtype f32 --cpu-features "$lv" \
            ${task:+--task "$task"} >"$t/lv.jsonl" 2>/dev/null
        if [ -z "$task" ]; then
            check "f32 at level $lv: the same bytes as the machine's own level" \
                cmp -s "$t/lv.jsonl" "$t/f32.jsonl"
        else
            [ -f "$t/task_ref.jsonl" ] || cp "$t/lv.jsonl" "$t/task_ref.jsonl"
            check "f32 with a task at level $lv: the same bytes as at the first SIMD level" \
                cmp -s "$t/lv.jsonl" "$t/task_ref.jsonl"
        fi
    done
done
# The word table read from the weights file per token (the default) or
# copied into memory: the same bytes, in each precision this CPU runs.
for dt in f32 bf16 int8; do
    "$bin" embed --model "$TESTMODEL" --input "$t/in.txt" --dtype $dt --task passage \
        >"$t/file.jsonl" 2>/dev/null || continue
    "$bin" embed --model "$TESTMODEL" --input "$t/in.txt" --dtype $dt --task passage \
        --embeddings-in-memory >"$t/mem.jsonl"
    check "$dt: --embeddings-in-memory gives the bytes of the table read from the file" \
        cmp -s "$t/file.jsonl" "$t/mem.jsonl"
done
EMBEDSERVE_DTYPE=f32 EMBEDSERVE_MODEL="$TESTMODEL" "$bin" embed --input "$t/in.txt" >"$t/env.jsonl"
check "EMBEDSERVE_MODEL and EMBEDSERVE_DTYPE stand in for the flags" cmp -s "$t/env.jsonl" "$t/f32.jsonl"
EMBEDSERVE_MODEL=/nonexistent-env "$bin" embed --model "$TESTMODEL" --input "$t/in.txt" >"$t/flag.jsonl" 2>/dev/null
check "--model wins over EMBEDSERVE_MODEL" [ $? -eq 0 ]
"$bin" embed --model "$TESTMODEL" --dtype f16 </dev/null >/dev/null 2>"$t/err"
check "unknown --dtype refused (exit 2)" [ $? -eq 2 ]
check "unknown --dtype lists the valid ones" grep -q "auto, f32, bf16 or int8" "$t/err"
(unset EMBEDSERVE_MODEL; "$bin" embed </dev/null >/dev/null 2>"$t/err")
check "no --model and no EMBEDSERVE_MODEL: exit 2" [ $? -eq 2 ]
v=$("$bin" embed --version)
check "embed --version" sh -c "echo '$v' | grep -Eq '^embedserve [0-9]+\.[0-9]+\.[0-9]+ \(commit [^ ]+\)$'"
check "server --version is the same" [ "$("$bin" --version)" = "$v" ]
# JSONL ids of any JSON type are copied verbatim (digits a double would lose, nesting, escapes).
cat >"$t/ids.jsonl" <<'JSONL'
{"id": 12345678901234567890123, "text": "hello world"}
{"text": "second", "id": {"a": [1, "b,]}"], "c": null}}
{"id":"q\"uo\\te","text":"third"}
{"text": "no id"}
{"id": 1.50e3, "text": "fourth"}
JSONL
"$bin" embed --model "$TESTMODEL" --input "$t/ids.jsonl" --dimensions 4 >"$t/ids.out"
check "JSONL with ids runs" [ $? -eq 0 ]
check "big-number id verbatim" grep -qF '{"index": 0, "id": 12345678901234567890123, "embedding": [' "$t/ids.out"
check "object id verbatim" grep -qF '{"index": 1, "id": {"a": [1, "b,]}"], "c": null}, "embedding": [' "$t/ids.out"
check "escaped string id verbatim" grep -qF '{"index": 2, "id": "q\"uo\\te", "embedding": [' "$t/ids.out"
check "a line without id gets none" grep -qF '{"index": 3, "embedding": [' "$t/ids.out"
check "number id keeps its spelling" grep -qF '{"index": 4, "id": 1.50e3, "embedding": [' "$t/ids.out"
check "output with ids is valid JSONL" "${PYTHON:-/usr/bin/python3}" -c "
import json,sys
rows=[json.loads(l) for l in open('$t/ids.out')]
sys.exit(0 if [r.get('id') for r in rows]==[12345678901234567890123,{'a':[1,'b,]}'],'c':None},'q\"uo\\\\te',None,1500.0] else 1)"
sed 's/"id": *\("[^"]*\(\\"[^"]*\)*"\|{.*}\|[0-9.e]*\), *//; s/, *"id": *{.*}}/}/' "$t/ids.jsonl" >"$t/noids.jsonl"
"$bin" embed --model "$TESTMODEL" --input "$t/noids.jsonl" --dimensions 4 >"$t/noids.out" 2>/dev/null
check "the same texts without ids" [ "$(grep -c '"id"' "$t/noids.jsonl")" -eq 0 ]
check "the id does not change the vectors" [ "$(sed 's/.*"embedding"//' "$t/ids.out")" = "$(sed 's/.*"embedding"//' "$t/noids.out")" ]
# Progress: periodic lines when stderr is not a terminal; a bar with an ETA on one.
i=0; while [ $i -lt 1200 ]; do echo "line $i"; i=$((i + 1)); done >"$t/many.txt"
"$bin" embed --model "$TESTMODEL" --input "$t/many.txt" --dimensions 2 >/dev/null 2>"$t/prog"
check "progress lines on a non-terminal stderr" [ "$(grep -c '^embed: [0-9]*/1200 texts' "$t/prog")" -ge 4 ]
check "progress lines end at 100% with an ETA" sh -c "tail -n 1 '$t/prog' | grep -q '^embed: 1200/1200 texts (100%), .* ETA 0s$'"
check "progress counts increase" sh -c "sed -n 's/^embed: \([0-9]*\)\/1200.*/\1/p' '$t/prog' | sort -c -n -u"
if command -v script >/dev/null 2>&1; then
    script -qec "'$bin' embed --model '$TESTMODEL' --input '$t/many.txt' --dimensions 2 --output '$t/tty.jsonl'" \
        /dev/null >"$t/tty" 2>&1
    check "terminal: a bar with an ETA" grep -q 'texts .* tok/s  ETA ' "$t/tty"
    check "terminal: no periodic lines" [ "$(grep -c '^embed: ' "$t/tty")" -eq 0 ]
fi
echo "cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
