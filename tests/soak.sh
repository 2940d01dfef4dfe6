#!/bin/sh
# soak.sh -- `make soak`: build/embedserve on the generated model under
# saturating mixed load (tests/loadgen.c, 20 keep-alive connections against
# --max-queue 16, so some 429s are by design) on 127.0.0.1 for SOAK_SECONDS
# (default 600) after a warm-up. Passes when:
#   - no answer is an error other than the designed 429s, and no connection breaks;
#   - p99 latency of the 200s <= SOAK_P99_MS (default 2000 ms: the queue limit bounds the wait);
#   - RSS after the run is within 5% of RSS after the warm-up;
#   - the server's open fds are back to their idle baseline;
#   - the server still answers and exits 0 on SIGTERM.
# Prints the figures and "soak: N passed, N failed" last.
set -u
BUILD=${BUILD:-build}
TESTMODEL=${TESTMODEL:-build/testmodel}
secs=${SOAK_SECONDS:-600}
warm=${SOAK_WARMUP:-$(( secs / 10 < 5 ? 5 : (secs / 10 > 60 ? 60 : secs / 10) ))}
conns=${SOAK_CONNS:-20}
p99_max=${SOAK_P99_MS:-2000}
log=$BUILD/soak_server.log
port=$("${PYTHON:-python3}" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   $*"; }
bad() { failed=$((failed + 1)); echo "FAIL $*"; }

"$BUILD/embedserve" --model "$TESTMODEL" --host 127.0.0.1 --port "$port" --dtype f32 \
    --max-queue 16 --max-batch-tokens 2048 --log-level warn >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null' EXIT
up=0
for _ in $(seq 1 600); do
    if curl -sf -o /dev/null "http://127.0.0.1:$port/ready"; then up=1; break; fi
    kill -0 $pid 2>/dev/null || break
    sleep 0.1
done
[ "$up" -eq 1 ] || { bad "server did not start (see $log)"; echo "soak: $passed passed, $failed failed"; exit 1; }
rss() { awk '/^VmRSS/ {print $2}' /proc/$pid/status; }
fds() { ls /proc/$pid/fd | wc -l; }
fd0=$(fds)
echo "idle: rss ${rss0:-$(rss)} kB, $fd0 fds; warm-up ${warm}s"
"$BUILD/loadgen" --port "$port" --seconds "$warm" --conns "$conns" >/dev/null
sleep 1
rss_warm=$(rss)
echo "after warm-up: rss $rss_warm kB; soak ${secs}s with $conns connections"
res=$("$BUILD/loadgen" --port "$port" --seconds "$secs" --conns "$conns")
echo "$res"
sleep 1
rss_after=$(rss)
fd_after=$(fds)
for _ in $(seq 1 50); do [ "$fd_after" -le "$fd0" ] && break; sleep 0.1; fd_after=$(fds); done
get() { echo "$res" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
echo "rss: warm $rss_warm kB -> after $rss_after kB; fds: idle $fd0 -> after $fd_after"

[ "$(get errors)" = 0 ] && [ "$(get requests)" -gt 0 ] && ok "no errors besides 429 ($(get requests) requests, $(get r429) x 429)" ||
    bad "errors: $(get errors) of $(get requests) requests"
[ "$(get ok)" -gt 0 ] && ok "$(get ok) answered 200" || bad "nothing answered 200"
awk -v p="$(get p99_ms)" -v m="$p99_max" 'BEGIN {exit !(p <= m)}' && ok "p99 $(get p99_ms) ms <= $p99_max ms" ||
    bad "p99 $(get p99_ms) ms > $p99_max ms"
awk -v a="$rss_after" -v w="$rss_warm" 'BEGIN {exit !(a <= w * 1.05)}' &&
    ok "rss after within 5% of warm ($rss_warm -> $rss_after kB)" || bad "rss grew: $rss_warm -> $rss_after kB"
[ "$fd_after" -le "$fd0" ] && ok "fds back to baseline ($fd0 -> $fd_after)" || bad "fds: $fd0 -> $fd_after"
curl -sf -o /dev/null -H 'Content-Type: application/json' -d '{"input":"after the soak"}' \
    "http://127.0.0.1:$port/v1/embeddings" && ok "still answers" || bad "no answer after the soak"
kill -TERM $pid
wait $pid
rc=$?
trap - EXIT
[ "$rc" -eq 0 ] && ok "exit 0 on SIGTERM" || bad "exit $rc on SIGTERM (see $log)"
echo "soak: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
