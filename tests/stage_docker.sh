#!/bin/sh
# stage_docker.sh -- builds docker/Dockerfile and runs the image, without a
# Docker daemon or registry: Debian's podman, as root, with its own settings
# and a private image store in a temporary directory.
#
#   make docker-test        (BUILD=build TESTMODEL=build/testmodel sh tests/stage_docker.sh)
#   make docker-test-multiarch   (the same with DOCKER_ARM64=1, so step 4 too)
#
# 1. The base: debian:bookworm-slim made with debootstrap (minbase) from the
#    apt mirror this machine uses, trimmed as the official slim image is, and
#    cached as $BUILD/docker/debian-bookworm-slim.tar (reruns import it in
#    seconds; delete it to rebuild). DEBIAN_MIRROR overrides the mirror.
#    With DOCKER_ARM64=1 also the arm64 one (debootstrap's second stage runs
#    under qemu-aarch64-static through binfmt_misc), cached as
#    debian-bookworm-slim-arm64.tar. Each is imported with its architecture
#    into one local manifest list named debian:bookworm-slim, as Docker Hub
#    serves it, so each FROM takes the instance of its own platform.
# 2. podman build --format docker (Docker's format keeps HEALTHCHECK) with
#    --pull=never: nothing comes from a registry.
# 3. Runs the image as its own non-root user, read-only and without
#    capabilities (as compose and Kubernetes run it), on the generated test
#    model mounted read-only: /ready, one embedding against the host binary,
#    the image's HEALTHCHECK (also with `IMAGE --port N` and a specific
#    EMBEDSERVE_HOST, IPv4 and IPv6), and `podman stop` (exit 0 within the
#    shutdown timeout, the drain in the log).
# 4. (DOCKER_ARM64=1) podman build --platform linux/arm64: the build stage
#    cross-compiles on amd64, only the runtime stage's apt-get runs under
#    qemu. The arm64 image runs under qemu: its architecture, the binary's
#    ELF machine, `uname -m`, /ready, the kernels the server picked, one f32
#    embedding against the host binary's, its HEALTHCHECK and `podman stop`.
#    Then a manifest list of the two images must name linux/amd64 and
#    linux/arm64, each the image built. Prints this part's own time.
# 5. Removes every container and image and the store; only the base tarballs
#    stay. Prints the build time, the image size and "N passed, N failed".
# Containers use the host's network (no bridge or firewall setup needed), so
# every port is a free one picked at run time.
set -u
BUILD=${BUILD:-build}
TESTMODEL=${TESTMODEL:-build/testmodel}
PYTHON=${PYTHON:-/usr/bin/python3}
ARM64=${DOCKER_ARM64:-0}
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
host_arch=$(dpkg --print-architecture)
arches=$host_arch
if [ "$ARM64" = 1 ]; then
    arches="$host_arch arm64"
    check "DOCKER_ARM64=1 on an amd64 host (the Dockerfile cross-builds amd64 to arm64 only)" \
        [ "$host_arch" = amd64 ]
    check "qemu-aarch64-static is installed (qemu-user-static, docker/apt-test.txt)" \
        [ -x /usr/bin/qemu-aarch64-static -a -f /usr/lib/binfmt.d/qemu-aarch64.conf ]
fi
[ "$fail" -eq 0 ] || finish

mkdir -p "$BUILD/docker"
base_tar() { # base_tar ARCH: where the base of ARCH is cached
    if [ "$1" = "$host_arch" ]; then echo "$BUILD/docker/debian-bookworm-slim.tar"
    else echo "$BUILD/docker/debian-bookworm-slim-$1.tar"; fi
}
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
    # binfmt_misc as it was: the registration goes if this stage made it.
    [ -z "${registered:-}" ] || echo -1 >/proc/sys/fs/binfmt_misc/qemu-aarch64
    registered=""
}
trap 'teardown' EXIT
trap 'exit 1' INT TERM

# ---- 1. the base images ----------------------------------------------------
# binfmt_arm64: the kernel runs arm64 programs with qemu-aarch64-static,
# Debian's registration, whose flag F opens the interpreter now, so that it
# also works in chroots and containers that do not have it. Teardown removes
# the registration if this made it (binfmt_misc stays mounted).
binfmt_arm64() {
    b=/proc/sys/fs/binfmt_misc
    [ -e $b/register ] || mount -t binfmt_misc binfmt_misc $b || return 1
    if [ ! -e $b/qemu-aarch64 ]; then
        cat /usr/lib/binfmt.d/qemu-aarch64.conf >$b/register || return 1
        registered=1
    fi
    grep -qx enabled $b/qemu-aarch64 && grep -q '^flags:.*F' $b/qemu-aarch64
}
# make_base ARCH TARBALL: debian:bookworm-slim for ARCH into TARBALL.
make_base() {
    mirror=${DEBIAN_MIRROR:-$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
        sed -n 's/^URIs: *//p' | tr ' ' '\n' | grep -v security | grep . | head -n 1)}
    [ -n "$mirror" ] || mirror=$(sed -n 's/^deb \(\[[^]]*\] \)\{0,1\}\([^ ]*\) bookworm .*/\2/p' \
        /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -n 1)
    security=$(cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null |
        grep -o 'https\{0,1\}://[^ ]*security[^ ]*' | head -n 1)
    echo "docker: making debian:bookworm-slim for $1 with debootstrap from ${mirror:-?} (cached after)"
    root=$work/rootfs-$1
    tb=$(date +%s)
    debootstrap --arch="$1" --variant=minbase bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1
    rc=$?
    check "debootstrap --arch=$1 bookworm from $mirror" [ $rc -eq 0 ]
    [ $rc -eq 0 ] || { tail -n 20 "$work/debootstrap.log"; return 1; }
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
    tar --numeric-owner -C "$root" -cf "$2.tmp" . && mv "$2.tmp" "$2"
    rm -rf "$root"
    echo "docker: $1 base made in $(($(date +%s) - tb)) s, $(du -m "$2" | cut -f1) MB"
}
podman manifest create docker.io/library/debian:bookworm-slim >/dev/null
for a in $arches; do
    ta=$(date +%s)
    if [ "$a" != "$host_arch" ]; then
        check "binfmt_misc runs $a programs with qemu-aarch64-static (flag F)" binfmt_arm64
        [ "$fail" -eq 0 ] || finish
    fi
    tar_a=$(base_tar "$a")
    [ -s "$tar_a" ] || make_base "$a" "$tar_a" || finish
    check "the $a base tarball exists ($tar_a)" [ -s "$tar_a" ]
    podman import -q --arch "$a" "$tar_a" "localhost/debian:bookworm-slim-$a" >/dev/null
    podman manifest add docker.io/library/debian:bookworm-slim \
        "containers-storage:localhost/debian:bookworm-slim-$a" >/dev/null
    [ "$a" = "$host_arch" ] || arm_base_s=$(($(date +%s) - ta))
done
list_arches() { # list_arches LIST: the architectures of a manifest list, in order
    podman manifest inspect "$1" 2>/dev/null |
        sed -n 's/^ *"architecture": "\([^"]*\)".*/\1/p' | tr '\n' ' '
}
check "imported as debian:bookworm-slim, a manifest list of: $arches" \
    [ "$(list_arches docker.io/library/debian:bookworm-slim)" = "$arches " ]

# ---- 2. the image ----------------------------------------------------------
# build_image TAG [ARGS...]: podman build of docker/Dockerfile as TAG, with
# ARGS; says its time ($build_s) and size; the stage ends if it fails.
build_image() {
    t=$1
    shift
    tb=$(date +%s)
    podman build --pull=never --format docker --network host "$@" -f docker/Dockerfile -t "$t" . \
        >"$work/build.log" 2>&1
    rc=$?
    build_s=$(($(date +%s) - tb))
    check "podman build --format docker $* -f docker/Dockerfile (${build_s} s)" [ $rc -eq 0 ]
    [ $rc -eq 0 ] || { tail -n 40 "$work/build.log"; finish; }
    size=$(podman image inspect --format '{{.Size}}' "$t")
    echo "docker: image $t built in $build_s s; size $((size / 1000000)) MB"
}
build_image "$tag"
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
# wait_ready NAME URL [SECONDS]: /ready answers 200 within SECONDS (60)
# while NAME runs.
wait_ready() {
    i=0
    while [ $i -lt $((${3:-60} * 2)) ]; do
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

# embed_vs_host URL [ARGS...]: one text through POST URL/v1/embeddings (into
# $work/ctr.json) and through the host binary run with ARGS; $work/cmp.out
# says how they compare. Fails unless the length is the model's width, the
# norm 1 and every element within 1e-5 of the host's.
embed_vs_host() {
    text="The container answers like the host binary."
    u=$1
    shift
    printf '%s\n' "$text" | "$BUILD/embedserve" embed --model "$TESTMODEL" "$@" \
        >"$work/host.jsonl" 2>"$work/host.err"
    rm -f "$work/ctr.json"
    curl -sf --max-time 120 -H 'Content-Type: application/json' \
        -d "{\"input\": [\"$text\"]}" "$u/v1/embeddings" >"$work/ctr.json"
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
}
embed_vs_host "$url"
rc=$?
echo "docker: embedding: $(cat "$work/cmp.out")"
check "container A: POST /v1/embeddings answers 200" [ -s "$work/ctr.json" ]
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

# ---- 4. arm64: cross-built, run under qemu, one manifest list --------------
if [ "$ARM64" = 1 ]; then
    t4=$(date +%s)
    atag=$tag-arm64
    # podman 4.3 sets BUILDPLATFORM inside the stages but not where FROM
    # --platform=$BUILDPLATFORM is expanded: say it (buildx needs nothing).
    build_image "$atag" --platform linux/arm64 --build-arg BUILDPLATFORM="linux/$host_arch"
    abuild_s=$build_s
    plat=$(podman image inspect --format '{{.Os}}/{{.Architecture}}' "$atag")
    check "arm64: the image's platform is linux/arm64 ($plat)" [ "$plat" = linux/arm64 ]
    # The binary itself, read on the host: ELF e_machine 183 is EM_AARCH64.
    names="$names es-arm-copy"
    podman create --name es-arm-copy "$atag" >/dev/null 2>&1 &&
        podman cp es-arm-copy:/usr/local/bin/embedserve "$work/embedserve-arm64" 2>/dev/null
    em=$(od -An -tu2 -j18 -N2 "$work/embedserve-arm64" 2>/dev/null | tr -d ' ')
    check "arm64: /usr/local/bin/embedserve is an aarch64 ELF (e_machine $em, 183 expected)" \
        [ "$em" = 183 ]
    um=$(podman run --rm --network host --entrypoint uname "$atag" -m 2>"$work/uname.err")
    check "arm64: a container of the image runs, under qemu: uname -m is aarch64 ('$um')" \
        [ "$um" = aarch64 ]

    # The server under qemu: OpenBLAS with one thread (threaded, it spins at
    # startup under emulation); f32 kernels on both sides, so that the
    # NEON and the host's x86 kernels are held to the 1e-5 of the amd64
    # check (auto would pick bf16 on qemu's `max` CPU, rounded differently).
    pd=$(free_port)
    start es-arm -e EMBEDSERVE_PORT="$pd" -e EMBEDSERVE_DTYPE=f32 -e OPENBLAS_NUM_THREADS=1 \
        -e EMBEDSERVE_SHUTDOWN_TIMEOUT=30 "$atag"
    urld=http://127.0.0.1:$pd
    check "arm64: /ready within 300 s under qemu" wait_ready es-arm "$urld" 300
    level=$(podman logs es-arm 2>&1 | sed -n 's/.*load_model: kernels: .*(CPU level \([a-z0-9]*\):.*/\1/p')
    check "arm64: the server picked aarch64 kernels (CPU level '$level')" \
        sh -c "echo ' neon dotprod i8mm bf16 ' | grep -q ' $level '"
    embed_vs_host "$urld" --dtype f32
    rc=$?
    echo "docker: arm64 embedding: $(cat "$work/cmp.out")"
    check "arm64: POST /v1/embeddings answers 200" [ -s "$work/ctr.json" ]
    check "arm64: the f32 embedding equals the host binary's ($(cat "$work/cmp.out"))" [ $rc -eq 0 ]
    check "arm64: the HEALTHCHECK command passes" podman healthcheck run es-arm
    ts=$(date +%s)
    podman stop -t 40 es-arm >/dev/null 2>"$work/stop.err"
    stop_s=$(($(date +%s) - ts))
    code=$(podman inspect --format '{{.State.ExitCode}}' es-arm)
    check "arm64: podman stop took ${stop_s} s (< 30 s), exit status $code" \
        [ "$code" = 0 -a "$stop_s" -lt 30 ]
    [ "$fail" -eq 0 ] || podman logs es-arm 2>&1 | tail -n 20

    # One name for both images, as a registry would serve it.
    mlist=localhost/embedserve-test:$$-multiarch
    podman manifest create "$mlist" >/dev/null &&
        podman manifest add "$mlist" "containers-storage:$tag" >/dev/null &&
        podman manifest add "$mlist" "containers-storage:$atag" >/dev/null
    check "manifest list $mlist lists linux/amd64 and linux/arm64 ($(list_arches "$mlist"))" \
        [ "$(podman manifest inspect "$mlist" 2>/dev/null | tr -d ' \n' |
            grep -o '"architecture":"[a-z0-9]*","os":"linux"' | tr '\n' ' ')" = \
            '"architecture":"amd64","os":"linux" "architecture":"arm64","os":"linux" ' ]
    digests=$(podman manifest inspect "$mlist" 2>/dev/null | sed -n 's/^ *"digest": "\(.*\)".*/\1/p' |
        tr '\n' ' ')
    images="$(podman image inspect --format '{{.Digest}}' "$tag") $(podman image inspect --format '{{.Digest}}' "$atag") "
    check "manifest list: its entries are the two images built ($digests)" [ "$digests" = "$images" ]
    echo "docker: arm64 part took $((arm_base_s + $(date +%s) - t4)) s" \
        "(base ${arm_base_s} s, build ${abuild_s} s, run and checks $(($(date +%s) - t4 - abuild_s)) s)"
fi

# ---- 5. teardown -----------------------------------------------------------
for n in $names; do podman rm -f -t 0 "$n" >/dev/null 2>&1; done
check "no container is left" [ -z "$(podman ps -aq)" ]
podman rmi -af >/dev/null 2>&1
check "no image is left, build stages included (the bases stay in $BUILD/docker)" \
    [ -z "$(podman images -aq)" ]
made_binfmt=${registered:-}
teardown
trap - EXIT
check "the image store is gone, nothing mounted" \
    sh -c "[ ! -e '$work' ] && ! grep -q ' $work/' /proc/mounts"
[ -z "$made_binfmt" ] || check "the qemu-aarch64 binfmt_misc registration this stage made is gone" \
    [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]
finish
