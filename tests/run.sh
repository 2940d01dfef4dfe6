#!/bin/sh
# run.sh -- `make test`'s driver: runs every test stage, sums their
# "N passed, N failed" lines and prints the total as the very last line.
# Exits non-zero if any stage failed or printed no count.
set -u
BUILD=${BUILD:-build}
TESTMODEL=${TESTMODEL:-build/testmodel}
export BUILD TESTMODEL
passed=0
failed=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

stage() {  # stage NAME CMD...: run CMD, add its counts
    name=$1
    shift
    echo "== $name"
    "$@" >"$log" 2>&1
    rc=$?
    cat "$log"
    line=$(grep -E '^([A-Za-z]+: )?[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
    if [ -z "$line" ]; then
        echo "stage $name printed no result (exit $rc)"
        failed=$((failed + 1))
        return
    fi
    p=$(echo "$line" | sed -E 's/^([A-Za-z]+: )?([0-9]+) passed.*/\2/')
    f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    passed=$((passed + p))
    failed=$((failed + f))
}

# SKIP_STAGES: stage names not to run in this build (the Makefile sets it
# for sanitizer builds); each is reported as skipped.
stage "C suites" "$BUILD/test_all"
# The kernel and engine suites again at every lower CPU level this machine
# can run (--cpu-features), e.g. generic and avx2 on an AVX-512 machine.
for level in $("$BUILD/test_all" --cpu-levels | sed '$d'); do
    stage "C suites at CPU level $level" env EMBEDSERVE_TEST_CPU_FEATURES="$level" \
        "$BUILD/test_all" gemm engine
done
for extra in tests/stage_*.sh; do
    [ -f "$extra" ] || continue
    name=$(basename "$extra" .sh)
    case " ${SKIP_STAGES:-} " in
    *" $name "*) echo "== $name: skipped in this build (SKIP_STAGES)" ;;
    *) stage "$name" sh "$extra" ;;
    esac
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
