#!/bin/sh
# stage_lb.sh -- two embedserve replicas behind a real nginx (Debian's
# package), configured by docker/nginx.conf.template, the file compose uses.
#   1. a few hundred requests through nginx: every answer right (and equal to
#      the same request sent to a replica directly), every X-Request-Id
#      reaching a replica intact, both replicas serving;
#   2. one replica killed (SIGKILL) mid-run: clients see no failures, since
#      nginx retries the requests that were in flight on the next replica;
#   3. SIGTERM to a replica with requests in flight: they all complete, the
#      process exits 0, and clients of nginx meanwhile see no failures.
# All traffic goes to 127.0.0.1; every wait is bounded.
set -u
PYTHON=${PYTHON:-/usr/bin/python3}
BUILD=${BUILD:-build}
TESTMODEL=${TESTMODEL:-build/testmodel}
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
pass=0
fail=0
check() { # check DESCRIPTION COMMAND...
    d=$1; shift; if "$@"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $d"; fi
}
t=$(mktemp -d)
r1="" r2="" ngx="" bg=""
kill_tree() { # kill_tree PID: SIGKILL PID and its children (nginx workers, unshare's child)
    kids=$(cat /proc/"$1"/task/*/children 2>/dev/null)
    kill -9 "$1" $kids 2>/dev/null
}
cleanup() {
    if [ -n "$ngx" ]; then # fast shutdown: the master stops its workers, then exits
        workers=$(cat /proc/"$ngx"/task/*/children 2>/dev/null)
        kill -TERM "$ngx" 2>/dev/null
        i=0
        while [ $i -lt 50 ] && [ -n "$(cat /proc/"$ngx"/task/*/children 2>/dev/null)" ]; do
            sleep 0.1
            i=$((i + 1))
        done
        [ $i -lt 50 ] || kill -9 "$ngx" $workers 2>/dev/null
    fi
    for p in $r1 $r2 $bg; do kill_tree "$p"; done
    rm -rf "$t"
}
trap cleanup EXIT
finish() {
    echo "lb: $pass passed, $fail failed"
    [ "$fail" -eq 0 ]
    exit
}
show_logs() { # on failure: the tails that explain it
    for f in r1.log r2.log r2b.log error.log access.log; do
        [ -f "$t/$f" ] && { echo "--- $f"; tail -n 15 "$t/$f"; }
    done
}

if [ ! -x "$NGINX" ]; then
    check "nginx is installed (scripts/install-deps --test installs it)" false
    finish
fi
check "embedserve is built" [ -x "$BUILD/embedserve" ]
check "the test model exists" [ -f "$TESTMODEL/model.safetensors" ]
[ "$fail" -eq 0 ] || finish

# Replicas take any free port (--port 0) and say which in their log, so no
# other process can take it between choosing and binding; nginx gets one
# picked here.
plb=$("$PYTHON" -c '
import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
dim=$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["hidden_size"])' \
    "$TESTMODEL/config.json")

replica() { # replica LOG: starts one in this shell (so `wait` works); pid in $last
    "$BUILD/embedserve" --model "$TESTMODEL" --host 127.0.0.1 --port 0 --threads 1 \
        --trusted-proxies 127.0.0.1 \
        --shutdown-timeout 120 >"$1" 2>&1 &
    last=$!
}
port_of() { # port_of LOG: the port a replica logged it listens on (waits up to 10 s)
    i=0
    while [ $i -lt 100 ]; do
        p=$(sed -n 's/.* listening on 127\.0\.0\.1 port \([0-9][0-9]*\)$/\1/p' "$1" | head -n 1)
        [ -n "$p" ] && { echo "$p"; return 0; }
        sleep 0.1
        i=$((i + 1))
    done
    echo 0
}
render() { # render "HOST:PORT ...": the template for these replicas, into $t/lb.conf
    # LB_PORT substituted, the LB_UPSTREAM line repeated once per replica.
    awk -v ups="$1" -v port="$plb" '
        index($0, "${LB_UPSTREAM}") { n = split(ups, a, " ")
            for (i = 1; i <= n; i++) { l = $0; sub(/\$\{LB_UPSTREAM\}/, a[i], l); print l }
            next }
        { gsub(/\$\{LB_PORT\}/, port); print }' docker/nginx.conf.template >"$t/lb.conf"
}
wait_ready() { # wait_ready URL: up to 30 s for a 200
    i=0
    while [ $i -lt 150 ]; do
        curl -sf -o /dev/null --max-time 2 "$1" && return 0
        sleep 0.2
        i=$((i + 1))
    done
    return 1
}
served() { # served LOG PREFIX: how many embeddings requests with ids PREFIX-* got 200
    grep -c "id=$2-[0-9]* POST /v1/embeddings status=200" "$1"
}
wait_rc() { # wait_rc PID SECONDS: waits for PID, SIGKILLs it after SECONDS; status in $rc
    (sleep "$2"; kill -9 "$1") >/dev/null 2>&1 &
    wd=$!
    wait "$1"
    rc=$?
    kill "$wd" 2>/dev/null
}

replica "$t/r1.log"
r1=$last
replica "$t/r2.log"
r2=$last
p1=$(port_of "$t/r1.log") p2=$(port_of "$t/r2.log")
check "replica 1 becomes ready" wait_ready "http://127.0.0.1:$p1/ready"
check "replica 2 becomes ready" wait_ready "http://127.0.0.1:$p2/ready"

render "127.0.0.1:$p1 127.0.0.1:$p2"
check "the template has no placeholder left" [ -z "$(grep -F '${' "$t/lb.conf")" ]
check "one server line per replica" [ "$(grep -c "server 127.0.0.1:" "$t/lb.conf")" -eq 2 ]
# The main context around it, as the nginx image's /etc/nginx/nginx.conf does.
mkdir -p "$t/tmp"
{
    [ "$(id -u)" -eq 0 ] && echo "user root;" # else workers would drop to nobody
    cat <<EOF
worker_processes 2;
pid $t/nginx.pid;
error_log $t/error.log warn;
events { worker_connections 512; }
http {
    client_body_temp_path $t/tmp/body;
    proxy_temp_path $t/tmp/proxy;
    fastcgi_temp_path $t/tmp/fastcgi;
    uwsgi_temp_path $t/tmp/uwsgi;
    scgi_temp_path $t/tmp/scgi;
    include $t/lb.conf;
}
EOF
} >"$t/nginx.conf"
"$NGINX" -t -p "$t/" -c "$t/nginx.conf" -e "$t/error.log" >"$t/nginx-t.log" 2>&1
rc=$?
[ $rc -eq 0 ] || cat "$t/nginx-t.log"
check "nginx accepts the rendered template" [ $rc -eq 0 ]
"$NGINX" -p "$t/" -c "$t/nginx.conf" -e "$t/error.log" -g "daemon off;" >>"$t/access.log" 2>&1 &
ngx=$!
lb="http://127.0.0.1:$plb"
check "nginx answers /health" wait_ready "$lb/health"
[ "$fail" -eq 0 ] || { show_logs; finish; }

# The reference answers come from replica 2 directly.
"$PYTHON" tests/lb_client.py refs --url "http://127.0.0.1:$p2/v1/embeddings" --dim "$dim" \
    --out "$t/refs.json"
check "reference answers from a replica directly" [ $? -eq 0 ]

# ---- 1. load through nginx ---------------------------------------------------
timeout 120 "$PYTHON" tests/lb_client.py load --url "$lb/v1/embeddings" --refs "$t/refs.json" \
    --n 300 --concurrency 8 --id-prefix p1 >"$t/p1.json"
check "300 requests through nginx all answered right: $(cat "$t/p1.json")" [ $? -eq 0 ]
n1=$(served "$t/r1.log" p1) n2=$(served "$t/r2.log" p1)
echo "phase 1: $(cat "$t/p1.json")"
echo "phase 1: replica 1 served $n1, replica 2 served $n2"
check "every request reached a replica once, its X-Request-Id intact ($n1 + $n2)" \
    [ $((n1 + n2)) -eq 300 ]
check "both replicas served at least 10% ($n1, $n2)" [ $((n1 >= 30 && n2 >= 30)) -eq 1 ]
for path in /health /live /ready /v1/models; do
    check "GET $path through nginx" curl -sf -o /dev/null --max-time 5 "$lb$path"
done
# /metrics (no authentication) stays on the replicas' network: nginx answers
# 404 for it, however the path is spelt, while the replica itself serves it.
for path in /metrics //metrics /%6detrics '/metrics?x=1'; do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$lb$path")
    check "GET $path through nginx is not published (status $code)" [ "$code" = 404 ]
done
check "GET /metrics on a replica directly" curl -sf -o /dev/null --max-time 5 "http://127.0.0.1:$p1/metrics"
# Without an X-Request-Id, nginx makes one and the replica uses it.
rid=$(curl -s -D - -o /dev/null --max-time 10 -H 'Content-Type: application/json' \
    -d '{"input":["no id"]}' "$lb/v1/embeddings" | tr -d '\r' |
    sed -n 's/^[Xx]-[Rr]equest-[Ii][Dd]: *//p')
check "nginx generates an X-Request-Id ('$rid')" \
    [ "$(printf '%s' "$rid" | grep -cE '^[0-9a-f]{32}$')" -eq 1 ]
check "the replica logged nginx's id" grep -q "id=$rid " "$t/r1.log" "$t/r2.log"
# Body limits. 2 MB (over nginx's default 1 MB) reaches the server, which
# answers (400: too many tokens, quickly); 64 MiB + 1 (the server's
# --max-body-bytes default) is refused by nginx itself.
"$PYTHON" -c '
import json; print(json.dumps({"input": ["word " * 400000]}))' >"$t/big.json"
code=$(curl -s -o "$t/big.out" -w '%{http_code}' --max-time 60 -H 'Content-Type: application/json' \
    --data-binary "@$t/big.json" "$lb/v1/embeddings")
check "a 2 MB request passes nginx to a replica (status $code)" [ "$code" = 400 ]
check "... and the replica's JSON error comes back" grep -q '"detail"' "$t/big.out"
head -c $((64 * 1024 * 1024 + 1)) /dev/zero >"$t/huge.json"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 60 -H 'Content-Type: application/json' \
    --data-binary "@$t/huge.json" "$lb/v1/embeddings")
check "nginx refuses a body over 64 MiB (status $code)" [ "$code" = 413 ]
rm -f "$t/huge.json"

# ---- 2. SIGKILL one replica mid-run --------------------------------------------
timeout 120 "$PYTHON" tests/lb_client.py load --url "$lb/v1/embeddings" --refs "$t/refs.json" \
    --n 300 --concurrency 8 --id-prefix p2 --at 100 --pid "$r2" --signal SIGKILL >"$t/p2.json"
check "replica 2 killed after 100 answers: clients saw no failure: $(cat "$t/p2.json")" [ $? -eq 0 ]
wait_rc "$r2" 5
check "replica 2 died of SIGKILL (status $rc)" [ "$rc" -eq 137 ]
k2=$(served "$t/r2.log" p2) k1=$(served "$t/r1.log" p2)
echo "phase 2: $(cat "$t/p2.json")"
echo "phase 2: replica 2 served $k2 before it died, replica 1 served $k1"
check "replica 2 served some before it died ($k2)" [ "$k2" -gt 0 ]
# A replica killed just after answering may not have logged those answers
# yet: up to one per client thread (8) can be missing from the count.
check "replica 1 took over the rest ($k1 + $k2 >= 292)" [ $((k1 + k2)) -ge 292 ]
check "nginx saw replica 2 fail and moved on" grep -qE "(refused|reset|prematurely)" "$t/error.log"

# ---- 3. SIGTERM with requests in flight ----------------------------------------
# Replica 2 comes back (on a new port, as a rescheduled container would) and
# nginx reloads its configuration (SIGHUP), as after `docker compose restart lb`.
replica "$t/r2b.log"
r2=$last
p2=$(port_of "$t/r2b.log")
check "replica 2 restarts" wait_ready "http://127.0.0.1:$p2/ready"
render "127.0.0.1:$p1 127.0.0.1:$p2"
kill -HUP "$ngx"
sleep 1 # new workers start at once; the old ones finish what they hold
timeout 60 "$PYTHON" tests/lb_client.py load --url "$lb/v1/embeddings" --refs "$t/refs.json" \
    --n 40 --concurrency 4 --id-prefix p3a >"$t/p3a.json"
check "nginx sends to the restarted replica again ($(served "$t/r2b.log" p3a))" \
    [ "$(served "$t/r2b.log" p3a)" -gt 0 ]
# 6 slow requests straight to replica 1; once it has admitted them all, clients
# start using nginx too (until replica 1 has exited), and 0.5 s later replica 1
# gets SIGTERM.
timeout 150 "$PYTHON" tests/lb_client.py hold --url "http://127.0.0.1:$p1/v1/embeddings" \
    --refs "$t/refs.json" --n 6 --metrics "http://127.0.0.1:$p1/metrics" --pid "$r1" \
    --flag "$t/admitted" --delay 0.5 >"$t/hold.json" &
hold=$!
i=0
while [ ! -e "$t/admitted" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
timeout 120 "$PYTHON" tests/lb_client.py load --url "$lb/v1/embeddings" --refs "$t/refs.json" \
    --n 5000 --concurrency 4 --id-prefix p3 --while-pid "$r1" >"$t/p3.json" &
bg=$!
wait "$hold"
check "requests in flight at SIGTERM all complete: $(cat "$t/hold.json")" [ $? -eq 0 ]
wait_rc "$r1" 150
r1=""
check "replica 1 drains and exits 0 within 40 s (status $rc)" [ "$rc" -eq 0 ]
check "replica 1 logged the drain" grep -q "SIGTERM received: draining" "$t/r1.log"
# Whether nginx picks the draining replica at all depends on timing (least_conn
# avoids it while it is busy), so its 503s are reported, not required.
echo "phase 3: replica 1 refused $(grep -cE "id=p3-[0-9]+ POST /v1/embeddings status=503" \
    "$t/r1.log") requests while draining (nginx retried them on replica 2)"
wait "$bg"
rc=$?
bg=""
echo "phase 3: held $(cat "$t/hold.json")"
echo "phase 3: through nginx $(cat "$t/p3.json")"
check "clients of nginx saw no failure during the drain: $(cat "$t/p3.json")" [ $rc -eq 0 ]

# ---- 4. the same as PID 1 (what the image's exec-form ENTRYPOINT gives) -----------
# PID 1 of a PID namespace gets no default signal actions; SIGTERM from outside
# (docker stop) must still drain it. Needs unshare; skipped where not allowed.
ns=""
if unshare --pid --fork --mount-proc true 2>/dev/null; then ns="unshare --pid --fork --mount-proc"
elif unshare -r --pid --fork --mount-proc true 2>/dev/null; then ns="unshare -r --pid --fork --mount-proc"
fi
if [ -n "$ns" ]; then
    $ns "$BUILD/embedserve" --model "$TESTMODEL" --host 127.0.0.1 --port 0 --threads 1 \
        >"$t/pid1.log" 2>&1 &
    r1=$!
    p1=$(port_of "$t/pid1.log")
    check "PID-1 replica becomes ready" wait_ready "http://127.0.0.1:$p1/ready"
    inner=$(cat "/proc/$r1/task/$r1/children" 2>/dev/null | cut -d' ' -f1)
    check "it runs as PID 1 of its namespace" grep -q "INFO \[1\] main: listening" "$t/pid1.log"
    timeout 150 "$PYTHON" tests/lb_client.py hold --url "http://127.0.0.1:$p1/v1/embeddings" \
        --refs "$t/refs.json" --n 4 --metrics "http://127.0.0.1:$p1/metrics" \
        --pid "${inner:-0}" >"$t/hold1.json"
    check "as PID 1, requests in flight at SIGTERM complete: $(cat "$t/hold1.json")" [ $? -eq 0 ]
    wait_rc "$r1" 150
    r1=""
    check "as PID 1, it drains and exits 0 (status $rc)" [ "$rc" -eq 0 ]
else
    echo "phase 4 skipped: unshare --pid is not allowed here"
fi

[ "$fail" -eq 0 ] || show_logs
finish
