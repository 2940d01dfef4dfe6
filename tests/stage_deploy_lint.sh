#!/bin/sh
# stage_deploy_lint.sh -- the deployment files (Dockerfile, compose, nginx
# template, Kubernetes manifests) agree with the code: tests/deploy_lint.py
# on the tree, then on copies with one drift planted each, which it must
# catch. No Docker engine or cluster is needed.
set -u
PYTHON=${PYTHON:-/usr/bin/python3}
BUILD=${BUILD:-build}
pass=0
fail=0
check() { # check DESCRIPTION COMMAND...
    d=$1; shift; if "$@"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $d"; fi
}
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT

if ! "$PYTHON" -c 'import yaml' 2>/dev/null; then
    check "python3-yaml is installed (scripts/install-deps --test installs it)" false
    echo "deploy: $pass passed, $fail failed"
    exit 1
fi

# 1. The tree itself: every check of the linter counts here.
"$PYTHON" tests/deploy_lint.py --binary "$BUILD/embedserve" >"$t/out" 2>&1
rc=$?
cat "$t/out"
pass=$((pass + $(grep -c '^ok ' "$t/out")))
fail=$((fail + $(grep -c '^FAIL ' "$t/out")))
check "deploy_lint.py exits 0 on the tree" [ $rc -eq 0 ]

# 2. Planted drifts: each must make the linter fail, naming the right check.
copy() { # a fresh copy of what the linter reads, in $t/tree
    rm -rf "$t/tree"
    mkdir -p "$t/tree/server" "$t/tree/scripts"
    cp -r docker config "$t/tree/"
    cp server/http.c server/main.c "$t/tree/server/"
    cp scripts/install-deps "$t/tree/scripts/"
    cp .dockerignore "$t/tree/"
    for f in README*.md; do [ -f "$f" ] && cp "$f" "$t/tree/"; done
}
drift() { # drift DESCRIPTION FILE SED-EXPR EXPECTED-FAIL-TEXT
    copy
    sed -i "$3" "$t/tree/$2"
    if cmp -s "$2" "$t/tree/$2"; then
        check "$1: the edit applied" false
        return
    fi
    "$PYTHON" tests/deploy_lint.py --root "$t/tree" --binary "$BUILD/embedserve" >"$t/dout" 2>&1
    rc=$?
    caught=no
    [ $rc -ne 0 ] && grep -q "^FAIL .*$4" "$t/dout" && caught=yes
    check "$1: caught" [ $caught = yes ]
    [ $caught = yes ] || { echo "--- exit $rc, failures:"; grep FAIL "$t/dout"; }
}
drift "k8s image tag" docker/k8s/deployment.yaml 's/embedserve:0\.1\.0/embedserve:0.2.0/' \
    "every container uses image"
drift "server version bumped, images not" config/config.h 's/CFG_VERSION "[^"]*"/CFG_VERSION "9.9.9"/' \
    "uses image"
drift "unknown variable in compose" docker/compose.yaml \
    's/EMBEDSERVE_THREADS:/EMBEDSERVE_THREAD:/' "every EMBEDSERVE_\* variable exists"
drift "setting renamed in config.c" config/config.c \
    's/{"shutdown-timeout", T_INT/{"drain-timeout", T_INT/' "every EMBEDSERVE_\* variable exists"
drift "server default port changed" config/config.c \
    's/"port", T_INT, F(port), 0, 65535, "8080"/"port", T_INT, F(port), 0, 65535, "9090"/' \
    "default port 9090"
drift "readiness probe on a missing route" docker/k8s/deployment.yaml \
    's|path: /ready|path: /healthz|' "readinessProbe: GET /healthz"
drift "route removed from the server" server/http.c \
    's|{"/live", false, "GET"|{"/alive", false, "GET"|' "livenessProbe: GET /live"
drift "model path in compose" docker/compose.yaml \
    's|EMBEDSERVE_MODEL: /models/jina-embeddings-v3|EMBEDSERVE_MODEL: /models/jina|' \
    "EMBEDSERVE_MODEL is"
drift "model volume writable in k8s" docker/k8s/deployment.yaml \
    '/mountPath: \/models$/{n;s/readOnly: true/readOnly: false/}' "mounts the model volume read-only"
drift "package named in the Dockerfile" docker/Dockerfile \
    's|\$(cat /tmp/apt-run.txt)|$(cat /tmp/apt-run.txt) libgomp1|' "names no packages of its own"
drift "runtime list loses a library" docker/apt-run.txt '/^libcjson1$/d' "every shared library"
drift "nginx body limit" docker/nginx.conf.template \
    's/client_max_body_size 64m;/client_max_body_size 1m;/' "client_max_body_size"
drift "server body limit" config/config.c \
    's/"64M", NULL, "BYTES"/"16M", NULL, "BYTES"/' "client_max_body_size"
drift "grace period shorter than the drain" docker/k8s/deployment.yaml \
    's/terminationGracePeriodSeconds: 45/terminationGracePeriodSeconds: 30/' \
    "terminationGracePeriodSeconds"
drift "k8s manifest not in kustomization" docker/k8s/kustomization.yaml '/pdb.yaml/d' \
    "kustomization lists every manifest"
drift "YAML syntax error" docker/k8s/service.yaml 's/^spec:/spec: [/' "service.yaml parses"
drift "BuildKit syntax directive" docker/Dockerfile '1i # syntax=docker/dockerfile:1' \
    "no '# syntax=' directive"
drift "arm64 build compiled under emulation" docker/Dockerfile \
    's|^FROM --platform=\$BUILDPLATFORM |FROM |' "the build stage runs on \$BUILDPLATFORM"
drift "HEALTHCHECK back on a fixed address and EMBEDSERVE_PORT" docker/Dockerfile \
    's|CMD \["/usr/local/bin/embedserve-healthcheck"\]|CMD curl -fsS "http://127.0.0.1:${EMBEDSERVE_PORT:-8080}/health"|' \
    "HEALTHCHECK runs docker/healthcheck"
drift "health check script reads the port setting" docker/healthcheck \
    's|^path=\${1:-/health}|path=${1:-/health} port=${EMBEDSERVE_PORT:-8080}|' \
    "takes the address from the server's listening socket"
drift "health check on a route the server lacks" docker/healthcheck \
    's|^path=\${1:-/health}|path=${1:-/healthz}|' "asks GET /health"
drift "Dockerfile lists source files" docker/Dockerfile 's|^COPY \. \.$|COPY server/main.c server/|' \
    "copies the whole tree"
drift "host build/ in the image's context" .dockerignore '/^build$/d' ".dockerignore keeps"
drift "threads claim back in the Dockerfile" docker/Dockerfile \
    's|^# EMBEDSERVE_THREADS is left at 0.*|# EMBEDSERVE_THREADS: 0 = every core of the host.|' \
    "does not say threads = all host cores"
drift "compose builds the image twice" docker/compose.yaml \
    's|^    pull_policy: never|    build: {context: .., dockerfile: docker/Dockerfile}|' "builds the image once"
drift "nginx publishes /metrics" docker/nginx.conf.template '/location \^~ \/metrics {/,/}/d' \
    "does not publish the unauthenticated /metrics"
drift "nginx proxies /metrics in its own location" docker/nginx.conf.template \
    's|        return 404 .*|        proxy_pass http://embedserve;|' "does not publish the unauthenticated /metrics"
drift "nginx retries timeouts without a window" docker/nginx.conf.template \
    '/proxy_next_upstream_timeout/d' "retries only within proxy_next_upstream_timeout"
drift "nginx retry window as long as the read timeout" docker/nginx.conf.template \
    's/proxy_next_upstream_timeout [^;]*;/proxy_next_upstream_timeout 600s;/' \
    "retries only within proxy_next_upstream_timeout"
drift "README override tip without its -f" README.md \
    's| -f docker/compose.override.yaml||' "passes the compose override file with -f"

echo "deploy: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
