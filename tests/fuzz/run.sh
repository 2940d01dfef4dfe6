#!/bin/sh
# run.sh TARGET... -- `make fuzz`'s driver: runs build/fuzz/fuzz_TARGET for
# FUZZ_SECONDS (default 60) each, one after another (one core each), on a
# working copy of the seed corpus (build/fuzz/corpus/TARGET; new inputs
# stay out of the repo). Crashers are written to tests/fuzz/regression/TARGET/
# where `make test` replays them. Prints executions per target; exits
# non-zero if any target found a crash.
set -u
secs=${FUZZ_SECONDS:-60}
extra=${FUZZ_ARGS:-}
status=0
for t in "$@"; do
    bin=build/fuzz/fuzz_$t
    work=build/fuzz/corpus/$t
    reg=tests/fuzz/regression/$t
    mkdir -p "$work" "$reg"
    [ -d tests/fuzz/corpus/$t ] && cp -n tests/fuzz/corpus/$t/* "$work"/ 2>/dev/null
    dict=""
    [ -f tests/fuzz/$t.dict ] && dict="-dict=tests/fuzz/$t.dict"
    log=build/fuzz/fuzz_$t.log
    echo "== fuzz $t for ${secs}s (log: $log)"
    # -timeout: an input that takes 10 s is a bug (a hang), kept as a crasher.
    "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 -artifact_prefix="$reg/" $dict $extra "$work" >"$log" 2>&1
    rc=$?
    execs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}')
    echo "fuzz $t: ${execs:-?} executions, exit $rc, corpus $(ls "$work" | wc -l) inputs"
    if [ "$rc" -ne 0 ]; then
        status=1
        grep -E 'ERROR|SUMMARY|invariant|Test unit written' "$log" | head -n 20
    fi
done
exit $status
