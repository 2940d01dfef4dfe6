#!/usr/bin/python3
"""deploy_lint.py -- fails when the deployment files drift from the code.

  deploy_lint.py [--root DIR] [--binary PATH]

No Docker engine or cluster exists in CI, so what cannot run is checked
statically against the code it must agree with:
  config/config.c     the settings table: EMBEDSERVE_* names and defaults
                      (port, body limit, HTTP timeout, shutdown timeout)
  config/config.h     CFG_VERSION, the image tag
  server/http.c       the routes table: what probes and health checks may call
  server/main.c       the 5 s answer-flush wait after a drain
  docker/apt-*.txt    the one package list
against docker/Dockerfile, docker/healthcheck, .dockerignore,
docker/compose.yaml, docker/nginx.conf.template, docker/k8s/*.yaml and the
README's image names, thread-count and compose-override passages.
(tests/stage_docker.sh builds and runs the image itself.) Prints `ok   NAME` or
`FAIL NAME: why` per check; exits 1 if any failed. Needs python3-yaml.
"""
import argparse
import glob
import json
import os
import re
import shlex
import subprocess
import sys

import yaml

MODEL_DIR = "/models/jina-embeddings-v3"
# Measured (docs/deployment.md, "Kubernetes"): VmHWM of one replica serving a
# full-size checkpoint with --threads 2 through a 16,384-token pass in bf16
# (its highest precision), in bytes. The memory request must cover it.
MEASURED_PEAK_BYTES = 1123912 * 1024
# In debian:bookworm-slim already (apt itself needs them).
BASE_PACKAGES = {"libc6", "libstdc++6", "libgcc-s1"}

results = []


def check(name, ok, why=""):
    results.append((name, bool(ok)))
    print(("ok   %s" % name) if ok else ("FAIL %s: %s" % (name, why)))
    return bool(ok)


def read(root, path):
    with open(os.path.join(root, path), encoding="utf-8") as f:
        return f.read()


# ---- the code's side -----------------------------------------------------------

def parse_settings(src):
    """config.c's opts[] rows -> {name: default}."""
    body = src.split("static const struct opt opts[] = {", 1)[1].split("\n};", 1)[0]
    rows = re.findall(r'\{"([a-z0-9-]+)",\s*T_\w+,\s*F\(\w+\),\s*[^,]+,\s*[^,]+,\s*"([^"]*)"', body)
    return dict(rows)


def env_name(opt):
    return "EMBEDSERVE_" + opt.upper().replace("-", "_")


def parse_routes(src):
    """http.c's routes[] rows -> {path: method} (prefix routes end with /)."""
    body = src.split("static const struct route routes[] = {", 1)[1].split("\n};", 1)[0]
    return dict(re.findall(r'\{"(/[^"]*)",\s*(?:true|false),\s*"([A-Z]+)"', body))


def parse_bytes(s):
    """'64M', '64m', '1g', '1048576' -> bytes."""
    m = re.fullmatch(r"(\d+)\s*([kKmMgG]?)(?:i?[bB])?", s.strip())
    if not m:
        return None
    return int(m.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[m.group(2).lower()]


def parse_k8s_quantity(q):
    """'2Gi', '3G', '512Mi', '2', '100m' -> number (bytes or cores)."""
    q = str(q)
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40,
             "K": 10**3, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "m": 1e-3}
    m = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", q)
    if not m or (m.group(2) and m.group(2) not in units):
        return None
    return float(m.group(1)) * units.get(m.group(2), 1)


def parse_seconds(s):
    """compose durations ('45s', '1m30s') or an int -> seconds."""
    if isinstance(s, (int, float)):
        return float(s)
    total, found = 0.0, False
    for n, u in re.findall(r"([0-9.]+)(h|m|s|ms|us)", str(s)):
        total += float(n) * {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6}[u]
        found = True
    return total if found else None


# ---- Dockerfile ------------------------------------------------------------------

def dockerfile_instructions(src):
    """[(stage index, INSTRUCTION, args)] with continuations joined, comments dropped."""
    lines, cur = [], ""
    for raw in src.splitlines():
        s = raw.strip()
        if not cur and (not s or s.startswith("#")):
            continue
        if cur and s.startswith("#"):
            continue
        if s.endswith("\\"):
            cur += s[:-1] + " "
            continue
        lines.append(cur + s)
        cur = ""
    out, stage = [], -1
    for line in lines:
        ins, _, args = line.partition(" ")
        ins = ins.upper()
        if ins == "FROM":
            stage += 1
        out.append((stage, ins, args.strip()))
    return out


def lint_dockerfile(root, cfg):
    src = read(root, "docker/Dockerfile")
    ins = dockerfile_instructions(src)
    args = {}
    for st, i, a in ins:
        if i == "ARG" and st < 0 and "=" in a:
            k, v = a.split("=", 1)
            args[k] = v
    check("Dockerfile has no '# syntax=' directive (BuildKit would fetch its frontend "
          "from Docker Hub: offline builds fail)",
          not re.search(r"^\s*#\s*syntax\s*=", src, re.M | re.I))
    # FROM [--platform=...] IMAGE [AS NAME]: the image, flags left out.
    froms = [[w for w in re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), ""), a).split()
              if not w.startswith("--")][0]
             for st, i, a in ins if i == "FROM"]
    check("Dockerfile: multi-stage, every stage on Debian bookworm",
          len(froms) >= 2 and all(f.startswith("debian:bookworm") for f in froms), froms)
    plats = [re.search(r"--platform=(\S+)", a) for st, i, a in ins if i == "FROM"]
    plats = [m.group(1) if m else "" for m in plats]
    check("Dockerfile: the build stage runs on $BUILDPLATFORM (another target is cross-compiled, "
          "not compiled under emulation), the runtime stage on $TARGETPLATFORM",
          len(plats) >= 2 and set(plats[:-1]) == {"$BUILDPLATFORM"}
          and plats[-1] == "$TARGETPLATFORM", plats)
    last = max(st for st, _, _ in ins)
    runs = [(st, a) for st, i, a in ins if i == "RUN"]
    build_runs = " ".join(a for st, a in runs if st < last)
    run_runs = " ".join(a for st, a in runs if st == last)
    installer = read(root, "scripts/install-deps")
    check("scripts/install-deps reads docker/apt-build.txt", "docker/apt-build.txt" in installer)
    check("Dockerfile build stage installs docker/apt-build.txt (via scripts/install-deps)",
          "scripts/install-deps" in build_runs or "apt-build.txt" in build_runs, build_runs)
    check("Dockerfile runtime stage installs docker/apt-run.txt and nothing else",
          "apt-run.txt" in run_runs and "apt-build.txt" not in run_runs
          and "install-deps" not in run_runs, run_runs)
    # No package named in the Dockerfile itself: apt-get install takes only
    # flags and $(cat ...apt-*.txt).
    own = []
    for _, a in runs:
        for cmd in re.split(r"&&|;|\|\|", a):
            m = re.search(r"apt-get\s+(?:-\S+\s+)*install\b(.*)", cmd)
            if not m:
                continue
            rest = re.sub(r"\$\(cat [^)]*apt-(build|run|test)\.txt\)", "", m.group(1))
            own += [w for w in rest.split() if not w.startswith("-")]
    check("Dockerfile names no packages of its own (only docker/apt-*.txt)", not own, own)
    check("Dockerfile: make builds the binary", "make" in build_runs)
    build_copies = [a for st, i, a in ins if i == "COPY" and st < last]
    listed = [w for a in build_copies for w in a.split() if re.search(r"\.(c|cc|h)$", w)]
    check("Dockerfile build stage copies the whole tree for make, naming no source file",
          any(a.split() == [".", "."] for a in build_copies) and not listed,
          (build_copies, listed))
    ign = []
    if os.path.exists(os.path.join(root, ".dockerignore")):
        ign = [l.strip().strip("/") for l in read(root, ".dockerignore").splitlines()
               if l.strip() and not l.strip().startswith("#")]
    check(".dockerignore keeps the host's build/ out of the image's context", "build" in ign, ign)

    expose = [a for _, i, a in ins if i == "EXPOSE"]
    check("Dockerfile EXPOSE is the server's default port %s" % cfg["port"],
          expose and all(p.split("/")[0] == cfg["port"] for e in expose for p in e.split()),
          expose)
    env = {}
    for st, i, a in ins:
        if i == "ENV" and st == last:
            for tok in shlex.split(a):
                if "=" in tok:
                    k, v = tok.split("=", 1)
                    env[k] = v
    check_env("Dockerfile ENV", env, cfg)
    check("Dockerfile ENV EMBEDSERVE_MODEL is %s" % MODEL_DIR,
          env.get("EMBEDSERVE_MODEL") == MODEL_DIR, env.get("EMBEDSERVE_MODEL"))

    users = [a for st, i, a in ins if i == "USER" and st == last]
    uid = users[-1].split(":")[0] if users else ""
    check("Dockerfile runs as a numeric non-root USER", uid.isdigit() and int(uid) != 0, users)

    # HEALTHCHECK: docker/healthcheck, which finds the address the server
    # listens on, so `IMAGE --port N` or a specific EMBEDSERVE_HOST stay healthy.
    copies = [a for st, i, a in ins if i == "COPY" and st == last]
    hc = [a for st, i, a in ins if i == "HEALTHCHECK" and st == last]
    hc_s = hc[-1] if hc else ""
    try:
        hc_v = json.loads(hc_s.split("CMD", 1)[1]) if "CMD" in hc_s else None
    except ValueError:
        hc_v = None
    hc_src = [c.split()[0] for c in copies
              if isinstance(hc_v, list) and hc_v and c.split()[-1] == hc_v[0]]
    check("Dockerfile HEALTHCHECK runs docker/healthcheck (exec form, copied into the image)",
          hc_src == ["docker/healthcheck"], (hc_s, copies))
    check("Dockerfile HEALTHCHECK assumes no address or port (IMAGE --port N, EMBEDSERVE_HOST)",
          hc_s and not re.search(r"https?://|EMBEDSERVE_(PORT|HOST)|127\.0\.0\.1|localhost",
                                 hc_s), hc_s)
    script = ""
    if os.path.exists(os.path.join(root, "docker/healthcheck")):
        script = "\n".join(l for l in read(root, "docker/healthcheck").splitlines()
                           if not l.lstrip().startswith("#"))
    m = re.search(r"path=\$\{1:-(/[\w/]*)\}", script)
    check("docker/healthcheck asks GET /health, a route of server/http.c",
          m and m.group(1) == "/health" and cfg["routes"].get("/health") == "GET",
          m.group(1) if m else script[:80])
    check("docker/healthcheck takes the address from the server's listening socket, "
          "not from settings",
          "/net/tcp" in script and not re.search(r"EMBEDSERVE_(PORT|HOST)|--port", script))
    check("Dockerfile STOPSIGNAL SIGTERM",
          [a for _, i, a in ins if i == "STOPSIGNAL"] == ["SIGTERM"])
    ep = [a for st, i, a in ins if i == "ENTRYPOINT" and st == last]
    try:
        ep_v = json.loads(ep[-1]) if ep else None
    except ValueError:
        ep_v = None
    bin_dst = [c.split()[-1] for c in copies if "build/embedserve" in c]
    check("Dockerfile ENTRYPOINT is exec form, the server binary itself (signals reach it)",
          isinstance(ep_v, list) and bin_dst and ep_v[0] == bin_dst[0], (ep, bin_dst))
    dl = [c.split()[-1] for c in copies if c.split()[0] == "scripts/download-model"]
    check("Dockerfile puts scripts/download-model in the image", bool(dl), copies)
    return {"uid": uid, "download_model": dl[0] if dl else None,
            "entrypoint": ep_v[0] if ep_v else None}


def check_env(where, env, cfg):
    known = cfg["env"]
    bad = sorted(k for k in env if k.startswith("EMBEDSERVE_") and k not in known)
    check("%s: every EMBEDSERVE_* variable exists in config/config.c" % where, not bad, bad)
    if "EMBEDSERVE_PORT" in env:
        check("%s: EMBEDSERVE_PORT is the default %s" % (where, cfg["port"]),
              str(env["EMBEDSERVE_PORT"]) == cfg["port"], env["EMBEDSERVE_PORT"])


def lint_apt(root, binary):
    run_pkgs = read(root, "docker/apt-run.txt").split()
    check("docker/apt-run.txt has no -dev package", not [p for p in run_pkgs if p.endswith("-dev")],
          run_pkgs)
    check("docker/apt-run.txt has curl (HEALTHCHECK, download-model)", "curl" in run_pkgs)
    if not binary or not os.path.exists(binary):
        check("the built binary exists for the library check", False, binary)
        return
    try:
        dyn = subprocess.run(["readelf", "-d", binary], capture_output=True, text=True,
                             check=True).stdout
        ldc = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        check("readelf/ldconfig available for the library check", False, e)
        return
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dyn)
    missing = []
    for so in needed:
        m = re.search(r"^\s*%s \(libc6,x86-64[^)]*\) => (\S+)" % re.escape(so), ldc, re.M) or \
            re.search(r"^\s*%s \([^)]*\) => (\S+)" % re.escape(so), ldc, re.M)
        path = os.path.realpath(m.group(1)) if m else None
        pkg = None
        if path:
            for cand in (path, m.group(1)):
                r = subprocess.run(["dpkg", "-S", cand], capture_output=True, text=True)
                if r.returncode == 0:
                    pkg = r.stdout.split(":")[0]
                    break
        if pkg not in set(run_pkgs) | BASE_PACKAGES:
            missing.append("%s (%s)" % (so, pkg or path))
    check("every shared library the binary needs comes from docker/apt-run.txt (%s)"
          % ", ".join(needed), not missing, missing)


# ---- nginx template ------------------------------------------------------------------

def lint_nginx(root, cfg):
    src = read(root, "docker/nginx.conf.template")
    code = "\n".join(l.split("#", 1)[0] for l in src.splitlines())

    def directive(name):
        return re.findall(r"(?:^|[\s;{])%s\s+([^;]+);" % re.escape(name), code)

    ph = sorted(set(re.findall(r"\$\{(\w+)\}", code)))
    check("nginx template placeholders are exactly LB_PORT and LB_UPSTREAM", ph == ["LB_PORT",
          "LB_UPSTREAM"], ph)
    body = directive("client_max_body_size")
    check("nginx client_max_body_size = --max-body-bytes default %s" % cfg["max-body-bytes"],
          len(body) == 1 and parse_bytes(body[0]) == parse_bytes(cfg["max-body-bytes"]), body)
    ht = float(cfg["http-timeout"])
    for d in ("client_body_timeout", "client_header_timeout", "send_timeout",
              "proxy_send_timeout"):
        v = directive(d)
        check("nginx %s = --http-timeout default %ss" % (d, cfg["http-timeout"]),
              len(v) == 1 and parse_seconds(v[0]) == ht, v)
    up = re.search(r"upstream\s+\w+\s*\{(.*?)\n\s*\}", code, re.S)
    up_s = up.group(1) if up else ""
    ka = re.findall(r"keepalive_timeout\s+([^;]+);", up_s)
    check("nginx drops idle upstream connections before the server's --http-timeout",
          len(ka) == 1 and parse_seconds(ka[0]) < ht, ka)
    check("nginx upstream uses least_conn", re.search(r"\bleast_conn\s*;", up_s))
    srv = re.findall(r"\bserver\s+([^;]+);", up_s)
    check("nginx passive health checks: max_fails and fail_timeout on the server line",
          srv and all("max_fails=" in s and "fail_timeout=" in s for s in srv), srv)
    nu = " ".join(directive("proxy_next_upstream")).split()
    check("nginx proxy_next_upstream covers error timeout http_502 http_503 (POST too)",
          {"error", "timeout", "http_502", "http_503", "non_idempotent"} <= set(nu), nu)
    # The retry window: past it nginx answers the error instead of sending
    # the request to the next replica, so a request that ran into
    # proxy_read_timeout (minutes of work) is not run again elsewhere.
    if "timeout" in nu:
        nut = [parse_seconds(v if re.search(r"[a-z]$", v) else v + "s")
               for v in directive("proxy_next_upstream_timeout")]
        rt = [parse_seconds(v) for v in directive("proxy_read_timeout")]
        check("nginx retries only within proxy_next_upstream_timeout (0 < it <= %ss "
              "--http-timeout, < proxy_read_timeout): a timed-out request is not re-run"
              % cfg["http-timeout"],
              len(nut) == 1 and len(rt) == 1 and nut[0] and 0 < nut[0] <= ht
              and rt[0] and nut[0] < rt[0], (nut, rt))
    # /metrics has no authentication: the location nginx picks for it must
    # not proxy it (nginx: "=" exact match, else the longest prefix; a "^~"
    # prefix stops the regex search).
    locs = re.findall(r"location\s+(=|\^~|~\*?)?\s*(\S+)\s*"
                      r"\{((?:[^{}'\"]|'[^']*'|\"[^\"]*\")*)\}", code)
    pick = [l for l in locs if l[0] == "=" and l[1] == "/metrics"]
    if not pick:
        pre = sorted((l for l in locs if l[0] in ("", "^~") and "/metrics".startswith(l[1])),
                     key=lambda l: -len(l[1]))
        rx = [l for l in locs if l[0] in ("~", "~*")
              and re.search(l[1], "/metrics", re.I if l[0] == "~*" else 0)]
        pick = pre[:1] if pre and (pre[0][0] == "^~" or not rx) else rx[:1]
    body = pick[0][2] if pick else ""
    check("nginx does not publish the unauthenticated /metrics on the load balancer",
          pick and "proxy_pass" not in body
          and re.search(r"\b(return\s+(403|404)|deny\s+all)\b", body),
          pick[0][:2] if pick else "no location matches /metrics")
    check("nginx passes X-Request-Id to the replicas",
          any(v.split()[0].lower() == "x-request-id" for v in directive("proxy_set_header")))
    return src


# ---- compose ----------------------------------------------------------------------------

def lint_compose(root, cfg, image):
    doc = yaml.safe_load(read(root, "docker/compose.yaml"))
    check("compose.yaml parses", isinstance(doc, dict) and "services" in doc)
    svcs = doc.get("services", {})
    ours = {n: s for n, s in svcs.items() if str(s.get("image", "")).startswith("embedserve:")}
    images = sorted({s["image"] for s in ours.values()})
    check("compose: every embedserve service uses image %s" % image, images == [image], images)
    servers = {n: s for n, s in ours.items() if "entrypoint" not in s}
    loaders = {n: s for n, s in ours.items() if "entrypoint" in s}
    check("compose: one server service and one model-download service",
          len(servers) == 1 and len(loaders) == 1, sorted(ours))
    if len(servers) != 1:
        return
    (sname, srv), = servers.items()
    built = sorted(n for n, s in ours.items() if s.get("build"))
    check("compose builds the image once (one service with build:, the others never pull it)",
          len(built) == 1 and all(s.get("pull_policy") == "never"
                                  for n, s in ours.items() if n not in built),
          {n: (bool(s.get("build")), s.get("pull_policy")) for n, s in ours.items()})
    for n, s in ours.items():
        b = s.get("build")
        if b:
            ctx = os.path.normpath(os.path.join(root, "docker", b.get("context", ".")))
            df = os.path.join(ctx, b.get("dockerfile", "Dockerfile"))
            check("compose %s: build uses docker/Dockerfile from the repository root" % n,
                  os.path.samefile(ctx, root) and os.path.exists(df)
                  and os.path.samefile(df, os.path.join(root, "docker/Dockerfile")), b)
    env = srv.get("environment", {})
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    for n, s in svcs.items():
        e = s.get("environment", {})
        if isinstance(e, list):
            e = dict(x.split("=", 1) for x in e)
        check_env("compose %s" % n, e, cfg)
    check("compose: EMBEDSERVE_MODEL is %s" % MODEL_DIR, env.get("EMBEDSERVE_MODEL") == MODEL_DIR,
          env.get("EMBEDSERVE_MODEL"))
    vols = [v for v in srv.get("volumes", []) if isinstance(v, dict)]
    mvol = [v for v in vols if MODEL_DIR.startswith(v.get("target", "").rstrip("/") + "/")]
    check("compose: the server mounts the model volume read-only",
          len(mvol) == 1 and mvol[0].get("read_only") is True, vols)
    (lname, ld), = loaders.items()
    lvols = [v for v in ld.get("volumes", []) if isinstance(v, dict)]
    ep = ld.get("entrypoint")
    check("compose %s: runs download-model into %s on the same volume" % (lname, MODEL_DIR),
          isinstance(ep, list) and ep[0].endswith("download-model") and ep[1:] == [MODEL_DIR]
          and mvol and any(v.get("source") == mvol[0].get("source") and not v.get("read_only")
                           and v.get("target") == mvol[0].get("target") for v in lvols),
          (ep, lvols))
    dep = srv.get("depends_on", {})
    check("compose: the server waits for the model download",
          isinstance(dep, dict) and dep.get(lname, {}).get("condition")
          == "service_completed_successfully", dep)
    grace = parse_seconds(srv.get("stop_grace_period", "10s"))
    need = float(env.get("EMBEDSERVE_SHUTDOWN_TIMEOUT", cfg["shutdown-timeout"])) + cfg["flush_wait"]
    check("compose: stop_grace_period %ss >= shutdown timeout + answer flush (%ss)"
          % (grace, need), grace is not None and grace >= need)
    cpus = srv.get("deploy", {}).get("resources", {}).get("limits", {}).get("cpus")
    check("compose: EMBEDSERVE_THREADS matches the CPU limit",
          cpus is not None and str(env.get("EMBEDSERVE_THREADS")) == str(int(float(cpus))),
          (env.get("EMBEDSERVE_THREADS"), cpus))
    lbs = [(n, s) for n, s in svcs.items() if str(s.get("image", "")).startswith("nginx:")]
    check("compose: an nginx load balancer service", len(lbs) == 1, sorted(svcs))
    if not lbs:
        return
    lname, lb = lbs[0]
    tmpl = [v for v in lb.get("volumes", []) if isinstance(v, dict)
            and v.get("target", "").startswith("/etc/nginx/templates/")
            and v.get("target", "").endswith(".template")]
    check("compose: nginx renders docker/nginx.conf.template (the file the LB test uses)",
          len(tmpl) == 1 and os.path.samefile(os.path.join(root, "docker", tmpl[0]["source"]),
                                              os.path.join(root, "docker/nginx.conf.template")),
          lb.get("volumes"))
    le = lb.get("environment", {})
    check("compose: nginx upstream is %s:%s" % (sname, cfg["port"]),
          le.get("LB_UPSTREAM") == "%s:%s" % (sname, cfg["port"]), le.get("LB_UPSTREAM"))
    ports = [str(p) for p in lb.get("ports", [])]
    check("compose: nginx publishes its LB_PORT",
          any(p.rsplit(":", 1)[-1] == str(le.get("LB_PORT")) for p in ports), ports)
    check("compose: envsubst only touches LB_* (nginx's $variables stay)",
          str(le.get("NGINX_ENVSUBST_FILTER", "")).startswith("^LB_"))
    check("compose: nginx starts after the replicas are healthy",
          lb.get("depends_on", {}).get(sname, {}).get("condition") == "service_healthy")


# ---- Kubernetes ----------------------------------------------------------------------------

def resolve_port(port, container):
    for p in container.get("ports", []):
        if port == p.get("name") or str(port) == str(p.get("containerPort")):
            return str(p.get("containerPort"))
    return None


def lint_k8s(root, cfg, image, docker):
    files = sorted(glob.glob(os.path.join(root, "docker/k8s/*.yaml")))
    objs = {}
    for f in files:
        try:
            docs = [d for d in yaml.safe_load_all(read(root, os.path.relpath(f, root))) if d]
            ok = True
        except yaml.YAMLError as e:
            docs, ok = [], False
            check("%s parses" % os.path.relpath(f, root), False, e)
        if ok:
            check("%s parses" % os.path.relpath(f, root), docs)
        for d in docs:
            objs.setdefault(d.get("kind"), []).append((os.path.basename(f), d))
    kust = objs.get("Kustomization", [])
    if kust:
        listed = sorted(kust[0][1].get("resources", []))
        others = sorted(os.path.basename(f) for f in files
                        if os.path.basename(f) != kust[0][0])
        check("k8s kustomization lists every manifest", listed == others, (listed, others))
    for kind in ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"):
        check("k8s has one %s" % kind, len(objs.get(kind, [])) == 1, sorted(objs))
    if len(objs.get("Deployment", [])) != 1:
        return
    dep = objs["Deployment"][0][1]
    pod = dep["spec"]["template"]["spec"]
    labels = dep["spec"]["template"]["metadata"].get("labels", {})
    sel = dep["spec"]["selector"].get("matchLabels", {})
    check("k8s Deployment selector matches its pod labels",
          sel and all(labels.get(k) == v for k, v in sel.items()))
    conts, inits = pod.get("containers", []), pod.get("initContainers", [])
    imgs = sorted({c.get("image") for c in conts + inits})
    check("k8s: every container uses image %s (as compose)" % image, imgs == [image], imgs)
    srv = [c for c in conts if c.get("image") == image]
    check("k8s: one server container", len(srv) == 1)
    if not srv:
        return
    c = srv[0]
    env = {e["name"]: e.get("value") for e in c.get("env", [])}
    check_env("k8s container %s" % c.get("name"), env, cfg)
    for ic in inits:
        check_env("k8s init container %s" % ic.get("name"),
                  {e["name"]: e.get("value") for e in ic.get("env", [])}, cfg)
    check("k8s: EMBEDSERVE_MODEL is %s" % MODEL_DIR, env.get("EMBEDSERVE_MODEL") == MODEL_DIR,
          env.get("EMBEDSERVE_MODEL"))
    cports = [str(p.get("containerPort")) for p in c.get("ports", [])]
    check("k8s containerPort is the server's default %s" % cfg["port"], cports == [cfg["port"]],
          cports)
    probes = {k: c.get(k) for k in ("startupProbe", "readinessProbe", "livenessProbe")}
    for k, p in probes.items():
        hg = (p or {}).get("httpGet", {})
        path = hg.get("path")
        check("k8s %s: GET %s is a route of server/http.c on the server port" % (k, path),
              p and cfg["routes"].get(path) == "GET" and resolve_port(hg.get("port"), c)
              == cfg["port"], p)
    check("k8s readinessProbe is /ready and livenessProbe is /live",
          (probes["readinessProbe"] or {}).get("httpGet", {}).get("path") == "/ready"
          and (probes["livenessProbe"] or {}).get("httpGet", {}).get("path") == "/live")
    mounts = [m for m in c.get("volumeMounts", [])
              if MODEL_DIR.startswith(m.get("mountPath", "").rstrip("/") + "/")]
    check("k8s: the server mounts the model volume read-only",
          len(mounts) == 1 and mounts[0].get("readOnly") is True, c.get("volumeMounts"))
    if mounts:
        vname = mounts[0]["name"]
        fill = [ic for ic in inits
                if any(m["name"] == vname and not m.get("readOnly")
                       and m.get("mountPath") == mounts[0]["mountPath"]
                       for m in ic.get("volumeMounts", []))]
        cmd = (fill[0].get("command", []) + fill[0].get("args", [])) if fill else []
        check("k8s: an init container runs the image's download-model into %s" % MODEL_DIR,
              fill and cmd[:2] == [docker["download_model"], MODEL_DIR], cmd)
        vol = [v for v in pod.get("volumes", []) if v.get("name") == vname]
        check("k8s: the model volume is an emptyDir or a PersistentVolumeClaim",
              vol and ("emptyDir" in vol[0] or "persistentVolumeClaim" in vol[0]), vol)
    pre = (((c.get("lifecycle") or {}).get("preStop") or {}).get("exec") or {}).get("command", [])
    pre_s = float(pre[1]) if len(pre) == 2 and pre[0] == "sleep" else 0.0
    grace = pod.get("terminationGracePeriodSeconds", 30)
    need = pre_s + float(env.get("EMBEDSERVE_SHUTDOWN_TIMEOUT", cfg["shutdown-timeout"])) \
        + cfg["flush_wait"]
    check("k8s terminationGracePeriodSeconds %s >= preStop %gs + shutdown timeout + flush (%gs)"
          % (grace, pre_s, need), grace >= need)
    psc = pod.get("securityContext", {})
    check("k8s pod runs as non-root uid %s, the Dockerfile's USER" % docker["uid"],
          psc.get("runAsNonRoot") is True and str(psc.get("runAsUser")) == docker["uid"], psc)
    for x in conts + inits:
        sc = x.get("securityContext", {})
        check("k8s %s: readOnlyRootFilesystem, no privilege escalation" % x.get("name"),
              sc.get("readOnlyRootFilesystem") is True
              and sc.get("allowPrivilegeEscalation") is False, sc)
    res = c.get("resources", {})
    req_m = parse_k8s_quantity(res.get("requests", {}).get("memory", "0"))
    lim_m = parse_k8s_quantity(res.get("limits", {}).get("memory", "0"))
    check("k8s memory request covers the measured peak RSS (%d MiB)"
          % (MEASURED_PEAK_BYTES >> 20), req_m and req_m >= MEASURED_PEAK_BYTES, res)
    check("k8s memory limit >= request", lim_m and req_m and lim_m >= req_m, res)
    cpu = parse_k8s_quantity(res.get("requests", {}).get("cpu", "0"))
    check("k8s EMBEDSERVE_THREADS matches the CPU request",
          cpu and str(env.get("EMBEDSERVE_THREADS")) == str(int(cpu)),
          (env.get("EMBEDSERVE_THREADS"), cpu))
    if objs.get("Service"):
        svc = objs["Service"][0][1]
        ssel = svc["spec"].get("selector", {})
        check("k8s Service selects the Deployment's pods",
              ssel and all(labels.get(k) == v for k, v in ssel.items()), ssel)
        tps = [resolve_port(p.get("targetPort", p.get("port")), c) for p in svc["spec"]["ports"]]
        check("k8s Service targets the server port", tps == [cfg["port"]], tps)
    if objs.get("HorizontalPodAutoscaler"):
        hpa = objs["HorizontalPodAutoscaler"][0][1]["spec"]
        ref = hpa.get("scaleTargetRef", {})
        check("k8s HPA scales the Deployment", ref.get("kind") == "Deployment"
              and ref.get("name") == dep["metadata"]["name"], ref)
        check("k8s HPA keeps at least 2 replicas", hpa.get("minReplicas", 1) >= 2)
    if objs.get("PodDisruptionBudget"):
        pdb = objs["PodDisruptionBudget"][0][1]["spec"]
        psel = pdb.get("selector", {}).get("matchLabels", {})
        check("k8s PDB selects the Deployment's pods",
              psel and all(labels.get(k) == v for k, v in psel.items()), psel)


def lint_readmes(root, image):
    thread_claim = re.compile(r"every core of the host|all (the )?host('s)? cores|\|\s*all cores\s*\|",
                              re.I)
    for name in ["docker/Dockerfile"] + [os.path.basename(f) for f in
                                         sorted(glob.glob(os.path.join(root, "README*.md")))]:
        text = read(root, name)
        m = thread_claim.search(text)
        check("%s does not say threads = all host cores (they are the CPUs the process may "
              "use: affinity, cgroup quota)" % name, not m, m.group(0) if m else "")
    for f in sorted(glob.glob(os.path.join(root, "README*.md"))):
        text = read(root, os.path.basename(f))
        tags = sorted(set(re.findall(r"\bembedserve:\d+\.\d+\.\d+\b", text)))
        if tags:
            check("%s names image %s only" % (os.path.basename(f), image), tags == [image], tags)
        # `-f docker/compose.yaml` turns off the automatic loading of
        # compose.override.yaml: a README that suggests an override file must
        # show it passed with its own -f.
        if "compose.override.yaml" in text:
            check("%s passes the compose override file with -f (-f docker/compose.yaml "
                  "turns its automatic loading off)" % os.path.basename(f),
                  re.search(r"docker compose\b[^\n]*-f \S*compose\.yaml[^\n]*"
                            r"-f \S*compose\.override\.yaml", text))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", default=".")
    p.add_argument("--binary", default=os.path.join(os.environ.get("BUILD", "build"),
                                                     "embedserve"))
    a = p.parse_args()
    root = os.path.abspath(a.root)
    settings = parse_settings(read(root, "config/config.c"))
    check("config/config.c settings table parsed", {"model", "port", "max-body-bytes",
          "http-timeout", "shutdown-timeout"} <= set(settings), sorted(settings))
    routes = parse_routes(read(root, "server/http.c"))
    check("server/http.c routes table parsed", "/health" in routes, routes)
    ver = re.search(r'#define CFG_VERSION "([^"]+)"', read(root, "config/config.h"))
    check("config/config.h CFG_VERSION found", ver)
    flush = re.search(r"http_wait_idle\([^,]+,\s*([0-9.]+)\)", read(root, "server/main.c"))
    check("server/main.c's answer-flush wait found", flush)
    cfg = dict(settings)
    cfg["env"] = {env_name(k) for k in settings}
    cfg["routes"] = routes
    cfg["flush_wait"] = float(flush.group(1)) if flush else 5.0
    image = "embedserve:%s" % (ver.group(1) if ver else "?")

    docker = lint_dockerfile(root, cfg)
    lint_apt(root, a.binary)
    lint_nginx(root, cfg)
    lint_compose(root, cfg, image)
    lint_k8s(root, cfg, image, docker)
    lint_readmes(root, image)
    n_fail = sum(1 for _, ok in results if not ok)
    print("deploy_lint: %d checks, %d failed" % (len(results), n_fail))
    return 1 if n_fail else 0


if __name__ == "__main__":
    sys.exit(main())
