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
echo "cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
