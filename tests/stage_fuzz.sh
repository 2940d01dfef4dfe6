#!/bin/sh
# stage_fuzz.sh -- replays the fuzzers' regression inputs (crashers once
# found by `make fuzz`, tests/fuzz/regression/<target>/) and the seed
# corpora through each fuzz target's entry point, built without libFuzzer
# ($BUILD/fuzz_replay_<target>; in a sanitizer build, with the sanitizers).
# Each input replayed without a crash or failed invariant is one pass.
set -u
BUILD=${BUILD:-build}
passed=0
failed=0
for t in api tokenize model; do
    bin=$BUILD/fuzz_replay_$t
    if out=$("$bin" "tests/fuzz/regression/$t" "tests/fuzz/corpus/$t" 2>&1); then
        n=$(echo "$out" | sed -n 's/^replay: \([0-9]*\) passed.*/\1/p')
        passed=$((passed + ${n:-0}))
        echo "fuzz replay $t: ${n:-0} inputs ok"
    else
        failed=$((failed + 1))
        echo "$out" | tail -n 30
        echo "fuzz replay $t: FAILED"
    fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
