#!/bin/sh
# stage_docker.sh -- builds docker/Dockerfile and runs the image, without a
# Docker daemon or registry: Debian's podman, as root, with its own settings
# and a private image store in a temporary directory.
#
#   make docker-test        (BUILD=build TESTMODEL=build/testmodel sh tests/stage_docker.sh)
#
# 1. The base: debian:bookworm-slim made with debootstrap (minbase) from the
#    apt mirror this machine uses, trimmed as the official slim image is, and
#    cached as $BUILD/docker/debian-bookworm-slim.tar (reruns import it in
#    seconds; delete it to rebuild). DEBIAN_MIRROR overrides the mirror.
# 2. podman build --format docker (Docker's format keeps HEALTHCHECK) with
#    --pull=never: nothing comes from a registry.
# 3. Runs the image as its own non-root user, read-only and without
#    capabilities (as compose and Kubernetes run it), on the generated test
#    model mounted read-only: /ready, one embedding against the host binary,
#    the image's HEALTHCHECK (also with `IMAGE --port N` and a specific
#    EMBEDSERVE_HOST, IPv4 and IPv6), and `podman stop` (exit 0 within the
#    shutdown timeout, the drain in the log).
# 4. Removes every container and image and the store; only the base tarball
#    stays. Prints the build time, the image size and "N passed, N failed".
# Containers use the host's network (no bridge or firewall setup needed), so
# every port is a free one picked at run time.
set -u
BUILD=${BUILD:-build}
TESTMODEL=${TESTMODEL:-build/testmodel}
PYTHON=${PYTHON:-/usr/bin/python3}
pass=0
fail=0
check() { # check DESCRIPTION COMMAND...
    d=$1; shift; if "$@"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $d"; fi
}
t0=$(date +%s)
finish() {
    echo "docker: stage took $(($(date +%s) - t0)) s"
    echo "docker: $pass passed, $fail failed"
    [ "$fail" -eq 0 ]
    exit
}

# ---- prerequisites ---------------------------------------------------------
missing=""
for c in podman runc debootstrap curl; do command -v $c >/dev/null 2>&1 || missing="$missing $c"; done
check "podman, runc, debootstrap and curl are installed (scripts/install-deps --test):$missing" \
    [ -z "$missing" ]
check "running as root (podman builds and runs images as root here)" [ "$(id -u)" -eq 0 ]
check "the host binary and the test model exist (make docker-test builds them)" \
    [ -x "$BUILD/embedserve" -a -f "$TESTMODEL/model.safetensors" ]
[ "$fail" -eq 0 ] || finish

mkdir -p "$BUILD/docker"
BASE_TAR=$BUILD/docker/debian-bookworm-slim.tar
TESTMODEL=$(cd "$TESTMODEL" && pwd)
tag=localhost/embedserve-test:$$
work=$(mktemp -d /tmp/embedserve-podman.XXXXXX)
names=""

# podman's settings for this run: runc and cgroupfs (no systemd here), limits
# no higher than this shell's hard limits (runc cannot raise them), and an
# image store and state directories of its own under $work (so teardown
# cannot touch anyone else's containers, images or podman state).
conf=$BUILD/docker/containers.conf
nofile=$(awk '/^Max open files/ {print $5}' /proc/self/limits)
[ "$nofile" = unlimited ] && nofile=1048576
nproc=$(awk '/^Max processes/ {print $4}' /proc/self/limits)
{ [ "$nproc" = unlimited ] || [ "$nproc" -gt 4096 ]; } && nproc=4096
cat >"$conf" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "$work/tmp"
EOF
storage_conf() { # storage_conf [MOUNT_PROGRAM]
    {
        printf '[storage]\ndriver = "overlay"\ngraphroot = "%s/storage"\nrunroot = "%s/run"\n' \
            "$work" "$work"
        [ -z "${1:-}" ] || printf '[storage.options.overlay]\nmount_program = "%s"\n' "$1"
    } >"$BUILD/docker/storage.conf"
}
storage_conf
CONTAINERS_CONF=$(pwd)/$conf
CONTAINERS_STORAGE_CONF=$(pwd)/$BUILD/docker/storage.conf
export CONTAINERS_CONF CONTAINERS_STORAGE_CONF
# The kernel's overlayfs as root; fuse-overlayfs where that is not allowed.
if ! podman info >/dev/null 2>&1; then
    rm -rf "$work/storage" "$work/run"
    storage_conf "$(command -v fuse-overlayfs)"
fi

teardown() {
    for n in $names; do podman rm -f -t 0 "$n" >/dev/null 2>&1; done
    podman rmi -af >/dev/null 2>&1
    grep -q " $work/" /proc/mounts && grep " $work/" /proc/mounts | cut -d' ' -f2 | xargs -r umount -l
    rm -rf "$work"
}
trap 'teardown' EXIT
trap 'exit 1' INT TERM

# ---- 1. the base image -----------------------------------------------------
if [ ! -s "$BASE_TAR" ]; then
    mirror=${DEBIAN_MIRROR:-$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
        sed -n 's/^URIs: *//p' | tr ' ' '\n' | grep -v security | grep . | head -n 1)}
    [ -n "$mirror" ] || mirror=$(sed -n 's/^deb \(\[[^]]*\] \)\{0,1\}\([^ ]*\) bookworm .*/\2/p' \
        /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -n 1)
    security=$(cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null |
        grep -o 'https\{0,1\}://[^ ]*security[^ ]*' | head -n 1)
    echo "docker: making debian:bookworm-slim with debootstrap from ${mirror:-?} (cached after)"
    root=$work/rootfs
    tb=$(date +%s)
    debootstrap --variant=minbase bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1
    rc=$?
    check "debootstrap bookworm from $mirror" [ $rc -eq 0 ]
    [ $rc -eq 0 ] || { tail -n 20 "$work/debootstrap.log"; finish; }
    # What the official slim image does: no docs, man pages or locales, now
    # or in later installs; apt's lists and downloads dropped.
    cat >"$root/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
EOF
    {
        echo "deb $mirror bookworm main"
        echo "deb $mirror bookworm-updates main"
        [ -z "$security" ] || echo "deb $security bookworm-security main"
    } >"$root/etc/apt/sources.list"
    find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* \
        "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/tmp/*
    tar --numeric-owner -C "$root" -cf "$BASE_TAR.tmp" . && mv "$BASE_TAR.tmp" "$BASE_TAR"
    rm -rf "$root"
    echo "docker: base made in $(($(date +%s) - tb)) s, $(du -m "$BASE_TAR" | cut -f1) MB"
fi
check "the base tarball exists ($BASE_TAR)" [ -s "$BASE_TAR" ]
podman import -q "$BASE_TAR" docker.io/library/debian:bookworm-slim >/dev/null
check "imported as debian:bookworm-slim" podman image exists docker.io/library/debian:bookworm-slim

# ---- 2. the image ----------------------------------------------------------
tb=$(date +%s)
podman build --pull=never --format docker --network host -f docker/Dockerfile -t "$tag" . \
    >"$work/build.log" 2>&1
rc=$?
build_s=$(($(date +%s) - tb))
check "podman build --format docker -f docker/Dockerfile (${build_s} s)" [ $rc -eq 0 ]
[ $rc -eq 0 ] || { tail -n 40 "$work/build.log"; finish; }
size=$(podman image inspect --format '{{.Size}}' "$tag")
echo "docker: image built in $build_s s; size $((size / 1000000)) MB"
user=$(podman image inspect --format '{{.Config.User}}' "$tag")
u=${user%%:*}
check "the image runs as a non-root uid ('$user')" [ -n "$u" -a "$u" != 0 -a "$u" != root ]
hc=$(podman image inspect --format '{{json .Config.Healthcheck}}' "$tag")
check "the image keeps its HEALTHCHECK ($hc)" [ "$(printf '%s' "$hc" | grep -c 'embedserve-healthcheck')" -eq 1 ]

free_port() {
    "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# start NAME ENV/ARGS...: a detached container of the image, hardened as in
# docker/compose.yaml, the test model at the image's EMBEDSERVE_MODEL.
start() {
    n=$1
    shift
    names="$names $n"
    podman run -d --name "$n" --network host --read-only --cap-drop ALL \
        --security-opt no-new-privileges \
        -v "$TESTMODEL:/models/jina-embeddings-v3:ro" "$@" >/dev/null 2>"$work/$n.err" ||
        cat "$work/$n.err"
}
# wait_ready NAME URL: /ready answers 200 within 60 s while NAME runs.
wait_ready() {
    i=0
    while [ $i -lt 120 ]; do
        curl -sf -o /dev/null --max-time 2 "$2/ready" && return 0
        [ "$(podman inspect --format '{{.State.Running}}' "$1" 2>/dev/null)" = true ] || break
        sleep 0.5
        i=$((i + 1))
    done
    podman logs "$1" 2>&1 | tail -n 20
    return 1
}

# ---- 3a. defaults: embedding, health, stop ---------------------------------
pa=$(free_port)
start es-a -e EMBEDSERVE_PORT="$pa" -e EMBEDSERVE_SHUTDOWN_TIMEOUT=30 "$tag"
url=http://127.0.0.1:$pa
check "container A: /ready within 60 s" wait_ready es-a "$url"
uid=$(podman exec es-a sh -c 'awk "/^Uid:/ {print \$2}" /proc/1/status')
check "container A: the server (PID 1) runs as uid $uid, not root" [ -n "$uid" -a "$uid" != 0 ]
check "container A: the root filesystem is read-only" \
    [ "$(podman exec es-a sh -c 'touch /x 2>/dev/null && echo rw || echo ro')" = ro ]

text="The container answers like the host binary."
printf '%s\n' "$text" | "$BUILD/embedserve" embed --model "$TESTMODEL" >"$work/host.jsonl" 2>"$work/host.err"
curl -sf --max-time 30 -H 'Content-Type: application/json' \
    -d "{\"input\": [\"$text\"]}" "$url/v1/embeddings" >"$work/ctr.json"
check "container A: POST /v1/embeddings answers 200" [ -s "$work/ctr.json" ]
"$PYTHON" - "$work/host.jsonl" "$work/ctr.json" "$TESTMODEL/config.json" >"$work/cmp.out" 2>&1 <<'EOF'
import json, math, sys
host = json.loads(open(sys.argv[1]).readline())["embedding"]
ctr = json.load(open(sys.argv[2]))["data"][0]["embedding"]
dim = json.load(open(sys.argv[3]))["hidden_size"]
norm = math.sqrt(sum(x * x for x in ctr))
diff = max(abs(a - b) for a, b in zip(host, ctr)) if len(host) == len(ctr) else float("inf")
print("dim %d (model %d), norm %.7f, max |container - host| %.3g" % (len(ctr), dim, norm, diff))
sys.exit(0 if len(ctr) == dim == len(host) and abs(norm - 1) < 1e-5 and diff <= 1e-5 else 1)
EOF
rc=$?
echo "docker: embedding: $(cat "$work/cmp.out")"
check "container A: the embedding equals the host binary's ($(cat "$work/cmp.out"))" [ $rc -eq 0 ]

check "container A: the HEALTHCHECK command passes" podman healthcheck run es-a
check "container A: the health check fails on a route that does not exist" \
    sh -c '! podman exec es-a /usr/local/bin/embedserve-healthcheck /no-such-route 2>/dev/null'
check "the health check fails where no server runs" sh -c "! podman run --rm --network host \
    --entrypoint /usr/local/bin/embedserve-healthcheck $tag >/dev/null 2>&1"

# ---- 3b. IMAGE --port N, a specific EMBEDSERVE_HOST (IPv4, IPv6) -----------
# The image's EMBEDSERVE_PORT (8080) stays set: the argument must win, and the
# health check must follow the server, not the variable.
# B also runs under a CPU quota of 1 CPU (cgroup v1 cpu.cfs_quota_us or v2
# cpu.max, whichever this host has): the default --threads 0 must follow it.
pb=$(free_port)
start es-b --cpus 1 -e EMBEDSERVE_HOST=127.0.0.1 "$tag" --port "$pb"
check "container B (IMAGE --port $pb, EMBEDSERVE_HOST=127.0.0.1): /ready" \
    wait_ready es-b "http://127.0.0.1:$pb"
check "container B: the HEALTHCHECK command passes" podman healthcheck run es-b
# the startup line "model 1 of 1: DIR (...) loaded in ..., N engine threads, ..."
threads_of() { podman logs "$1" 2>&1 | sed -n 's/.*model 1 of [0-9]*: .*, \([0-9]*\) engine threads.*/\1/p'; }
ta=$(threads_of es-a) tb=$(threads_of es-b)
echo "docker: engine threads: $ta without a CPU limit, $tb with --cpus 1 ($(nproc) CPUs here)"
check "container B: --cpus 1 gives 1 engine thread ($tb; $ta without the quota)" [ "$tb" = 1 ]
[ "$(nproc)" -lt 2 ] || check "container A: no quota, one thread per CPU ($ta)" [ "$ta" = "$(nproc)" ]
if [ -f /proc/net/if_inet6 ] && grep -q ' lo$' /proc/net/if_inet6; then
    pc=$(free_port)
    start es-c -e EMBEDSERVE_HOST=::1 -e EMBEDSERVE_PORT="$pc" "$tag"
    check "container C (EMBEDSERVE_HOST=::1, port $pc): /ready" wait_ready es-c "http://[::1]:$pc"
    check "container C: the HEALTHCHECK command passes" podman healthcheck run es-c
fi

# ---- 3c. podman stop: SIGTERM, drain, exit 0 -------------------------------
ts=$(date +%s)
# (Without systemd podman logs that it cannot remove a health-check timer.)
podman stop -t 40 es-a >/dev/null 2>"$work/stop.err"
stop_s=$(($(date +%s) - ts))
echo "docker: podman stop took $stop_s s"
code=$(podman inspect --format '{{.State.ExitCode}}' es-a)
check "container A: podman stop took ${stop_s} s (< the 30 s shutdown timeout), exit status $code" \
    [ "$code" = 0 -a "$stop_s" -lt 30 ]
podman logs es-a >"$work/a.log" 2>&1
check "container A: the log shows the drain" grep -q 'SIGTERM received: draining' "$work/a.log"
check "container A: the log shows a clean stop" grep -q 'stopped' "$work/a.log"
[ "$fail" -eq 0 ] || tail -n 20 "$work/a.log"

# ---- 4. teardown -----------------------------------------------------------
for n in $names; do podman rm -f -t 0 "$n" >/dev/null 2>&1; done
check "no container is left" [ -z "$(podman ps -aq)" ]
podman rmi -af >/dev/null 2>&1
check "no image is left, build stages included (the base stays as $BASE_TAR)" \
    [ -z "$(podman images -aq)" ]
teardown
trap - EXIT
check "the image store is gone, nothing mounted" \
    sh -c "[ ! -e '$work' ] && ! grep -q ' $work/' /proc/mounts"
finish
