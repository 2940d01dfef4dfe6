#!/usr/bin/python3
"""obs_check.py -- observability of a running server (tests/stage_obs.sh).

Starts build/embedserve on the generated model with --log-format json on a
free loopback port, polls /ready from the start, sends probes, embeddings,
hostile bytes in the path and X-Request-Id, then checks:
  - /metrics passes `promtool check metrics` (text format) and Python
    prometheus_client's strict OpenMetrics parser (OpenMetrics format);
  - every metric and label docker/grafana/embedserve.json queries is in
    /metrics, its queries parse (promtool check rules), and the compose
    profile's Prometheus config passes promtool and scrapes the replicas;
  - request durations are split by route; build_info and process_* exist
    and are plausible; no two families share a sample name;
  - after SIGTERM, every stderr line is one JSON object; access lines carry
    the request's fields and the hostile bytes round-trip exactly;
  - /ready never answered 200 before the warm-up line, and --warmup=false
    skips the warm-up.
Prints "obs: N passed, M failed"."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

BUILD = os.environ.get("BUILD", "build")
MODEL = os.environ.get("TESTMODEL", "build/testmodel")
BIN = os.path.join(BUILD, "embedserve")
passed = failed = 0


def check(desc, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print("FAIL: %s %s" % (desc, detail))


def start(args, errpath):
    err = open(errpath, "wb")
    p = subprocess.Popen([BIN, "--model", MODEL, "--host", "127.0.0.1", "--port", "0",
                          "--threads", "1"] + args, stdout=subprocess.DEVNULL, stderr=err)
    port, end = None, time.time() + 30
    while port is None and time.time() < end and p.poll() is None:
        m = re.search(rb"listening on 127\.0\.0\.1 port (\d+)", open(errpath, "rb").read())
        if m:
            port = int(m.group(1))
        else:
            time.sleep(0.005)
    return p, port


def get(port, path, headers=None, timeout=10):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def post(port, path, body):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, r.read()


def raw(port, data):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        out = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    return out


def ready_polls(port):
    """Polls /ready until 200; returns the statuses seen (with wall times)."""
    seen, end = [], time.time() + 60
    while time.time() < end:
        st, _, _ = get(port, "/ready")
        seen.append((time.time(), st))
        if st == 200:
            break
    return seen


def stop(p):
    p.send_signal(signal.SIGTERM)
    try:
        return p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        return -1


def samples(text):
    """{(name, frozenset(labels)): value} of a text exposition."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$', line)
        if not m:
            out[("UNPARSED", line)] = 0
            continue
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        out[(m.group(1), labels)] = float(m.group(4))
    return out


# Made by Prometheus itself, not by the server.
PROM_SYNTHETIC = {"up"}
# Labels Prometheus adds to every scraped series.
PROM_TARGET_LABELS = {"job", "instance"}


def check_dashboard(text):
    """docker/grafana/embedserve.json against a live /metrics: every metric
    its queries name is exposed, with every label they filter or group on;
    every query parses as PromQL (promtool check rules); the Prometheus
    config of the compose profile is valid and scrapes the replicas."""
    import yaml
    dash = json.load(open("docker/grafana/embedserve.json"))
    exprs = []
    for p in dash["panels"]:
        for t in p.get("targets", []):
            exprs.append(t["expr"])
    for v in dash.get("templating", {}).get("list", []):
        q = v.get("query")
        exprs.append(q["query"] if isinstance(q, dict) else q)
    check("the dashboard has queries", len(exprs) >= 20, str(len(exprs)))
    labels = {}  # sample name -> label names seen
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? ", line)
        if m:
            labels.setdefault(m.group(1), set()).update(re.findall(r'(\w+)="', m.group(3) or ""))
    words = {"sum", "by", "rate", "histogram_quantile", "count", "max", "label_values", "without",
             "le", "route", "status", "instance", "job", "on", "ignoring", "and", "or", "unless"}
    missing, badlab, used = [], [], set()
    for e in exprs:
        plain = re.sub(r'"(?:[^"\\]|\\.)*"', '""', e)  # no identifiers inside strings
        for name in set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", plain)):
            if name in words or name.startswith("__") or not ("_" in name or name in PROM_SYNTHETIC):
                continue
            if name in PROM_SYNTHETIC:
                continue
            used.add(name)
            if name not in labels:
                missing.append(name)
        # label matchers and grouping labels must exist on the metrics of the query
        names = [n for n in re.findall(r"\b([a-z_:][a-z0-9_:]*)\{", e) if n not in PROM_SYNTHETIC]
        for n in names:
            m = re.search(re.escape(n) + r"\{([^}]*)\}", e)
            for lab in re.findall(r"(\w+)\s*[!=]~?", m.group(1)):
                if lab not in PROM_TARGET_LABELS and lab not in labels.get(n, set()):
                    badlab.append((n, lab))
        for grp in re.findall(r"\bby \(([^)]*)\)", e):
            for lab in [x.strip() for x in grp.split(",")]:
                if lab in PROM_TARGET_LABELS:
                    continue
                if not any(lab in labels.get(n, set()) for n in names):
                    badlab.append((names, lab))
    print("dashboard: %d queries name %d metrics" % (len(exprs), len(used)))
    check("every metric the dashboard queries is in /metrics", used and not missing, str(missing))
    check("every label the dashboard filters or groups on is on its metric", not badlab,
          str(badlab[:5]))
    fams = {"embedserve_requests_total", "embedserve_request_duration_seconds_bucket",
            "embedserve_queue_depth", "embedserve_batch_sequences_sum",
            "process_resident_memory_bytes", "embedserve_dropped_requests_total"}
    check("the dashboard covers throughput, latency by route, queue, batches, memory, drops",
          fams <= used, str(sorted(fams - used)))
    t = tempfile.mkdtemp()
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": "dashboard:q%d" % i,
         "expr": e.replace("$__rate_interval", "1m").replace("$instance", ".*")}
        for i, e in enumerate(exprs) if not e.startswith("label_values(")]}]}
    rpath = os.path.join(t, "rules.yml")
    with open(rpath, "w") as f:
        yaml.safe_dump(rules, f)
    pt = subprocess.run(["promtool", "check", "rules", rpath], capture_output=True)
    check("every dashboard query parses as PromQL (promtool check rules)", pt.returncode == 0,
          (pt.stdout + pt.stderr).decode()[-800:])
    pc = subprocess.run(["promtool", "check", "config", "docker/prometheus/prometheus.yml"],
                        capture_output=True)
    check("promtool check config docker/prometheus/prometheus.yml", pc.returncode == 0,
          (pc.stdout + pc.stderr).decode()[-800:])
    prom = yaml.safe_load(open("docker/prometheus/prometheus.yml"))
    compose = yaml.safe_load(open("docker/compose.yaml"))
    svcs = compose["services"]
    server = [n for n, v in svcs.items()
              if str(v.get("image", "")).startswith("embedserve:") and "entrypoint" not in v]
    port = server and svcs[server[0]].get("environment", {}).get("EMBEDSERVE_PORT")
    sd = [c for j in prom["scrape_configs"] for c in j.get("dns_sd_configs", [])]
    check("Prometheus finds every replica by the server service's DNS name and port",
          server and sd and sd[0]["names"] == [server[0]] and str(sd[0]["port"]) == str(port)
          and sd[0].get("type") == "A", str((server, sd, port)))
    mon = {n: v for n, v in svcs.items() if "monitoring" in v.get("profiles", [])}
    mounts = {(m["source"], m["target"]) for v in mon.values() for m in v.get("volumes", [])
              if isinstance(m, dict) and m.get("type") == "bind"}
    check("the monitoring profile runs Prometheus and Grafana with these files",
          {"prometheus", "grafana"} <= set(mon) and
          ("./prometheus/prometheus.yml", "/etc/prometheus/prometheus.yml") in mounts and
          ("./grafana/embedserve.json", "/var/lib/grafana/dashboards/embedserve.json") in mounts
          and all(os.path.exists(os.path.join("docker", src)) for src, _ in mounts),
          str(mounts))
    ds = yaml.safe_load(open("docker/grafana/provisioning/datasources/prometheus.yaml"))
    uids = {d["uid"] for d in ds["datasources"]}
    refs = {t["datasource"]["uid"] for p in dash["panels"] for t in p.get("targets", [])}
    check("every dashboard query uses the provisioned data source", refs and refs <= uids,
          str((refs, uids)))


def main():
    t = tempfile.mkdtemp()
    errpath = os.path.join(t, "err.log")
    p, port = start(["--log-format", "json"], errpath)
    check("server started and announced its port", port is not None)
    if port is None:
        print("obs: %d passed, %d failed" % (passed, failed + 1))
        return 1
    polls = ready_polls(port)
    check("/ready turned 200", polls and polls[-1][1] == 200)
    for _ in range(5):
        get(port, "/health")
    st, _ = post(port, "/v1/embeddings", b'{"input": ["hello world", "second"]}')
    check("an embedding is answered", st == 200)
    hostile_id = b"evil\\id'{}<>"  # quotes are refused by the server; backslash is not
    r = raw(port, b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Request-Id: " + hostile_id +
            b"\r\nConnection: close\r\n\r\n")
    check("a hostile X-Request-Id is answered", r.startswith(b"HTTP/1.1 "))
    hostile_path = b"/nope%0a%1b[31m%ff%22%5c"
    r = raw(port, b"GET " + hostile_path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    check("a hostile path gets 404", r.startswith(b"HTTP/1.1 404"))
    r = raw(port, b"GET /raw\x01\x7f\xc3\x28 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")

    st, hd, body = get(port, "/metrics")
    text = body.decode()
    check("/metrics text content type", hd["Content-Type"].startswith("text/plain; version=0.0.4"))
    mpath = os.path.join(t, "metrics.txt")
    open(mpath, "w").write(text)
    pt = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True)
    print("promtool check metrics (text): exit %d %s" % (pt.returncode,
          (pt.stdout + pt.stderr).decode().strip() or "(no findings)"))
    check("promtool check metrics passes", pt.returncode == 0)
    check_dashboard(text)
    s = samples(text)
    check("every sample line parses", not any(k[0] == "UNPARSED" for k in s))
    emb = s.get(("embedserve_request_duration_seconds_count",
                 frozenset({("route", "/v1/embeddings")})))
    health = s.get(("embedserve_request_duration_seconds_count",
                    frozenset({("route", "/health")})))
    check("duration histogram: /v1/embeddings counted alone", emb == 1, str(emb))
    check("duration histogram: /health has its own series", health == 5, str(health))
    top = max(float(v) for (n, lab) in s for (k, v) in lab
              if n == "embedserve_request_duration_seconds_bucket" and k == "le" and v != "+Inf")
    check("duration buckets reach hours", top >= 3600, str(top))
    bi = [lab for (n, lab) in s if n == "embedserve_build_info"]
    bid = dict(bi[0]) if bi else {}
    ver = subprocess.run([BIN, "--version"], capture_output=True).stdout.decode()
    check("build_info present", len(bi) == 1)
    check("build_info version and commit match --version",
          bid.get("version", "?") in ver and "commit %s)" % bid.get("commit", "?") in ver, ver)
    check("build_info names dtype and kernels", bid.get("dtype") and bid.get("kernels"))
    now = time.time()
    pv = {n: v for (n, lab), v in s.items() if n.startswith("process_")}
    check("process_resident_memory_bytes > 1 MB", pv.get("process_resident_memory_bytes", 0) > 1e6)
    check("process_virtual_memory_bytes >= resident",
          pv.get("process_virtual_memory_bytes", 0) >= pv.get("process_resident_memory_bytes", 1))
    check("process_cpu_seconds_total present", "process_cpu_seconds_total" in pv)
    check("process_open_fds plausible", 3 <= pv.get("process_open_fds", 0) < 1000)
    check("process_max_fds >= open fds", pv.get("process_max_fds", 0) >= pv.get("process_open_fds", 1))
    check("process_start_time_seconds is this run",
          now - 120 < pv.get("process_start_time_seconds", 0) <= now + 1,
          str(pv.get("process_start_time_seconds")))
    fams = {}
    for line in text.splitlines():
        m = re.match(r"# TYPE (\S+) (\S+)", line)
        if m:
            fams[m.group(1)] = m.group(2)
    owned = {}
    for f, ty in fams.items():
        base = f[:-6] if ty == "counter" and f.endswith("_total") else f
        sfx = {"histogram": ["_bucket", "_sum", "_count", ""], "counter": ["", "_total"]}.get(ty, [""])
        for x in sfx:
            owned.setdefault(base + x, []).append(f)
    clashes = {k: v for k, v in owned.items() if len(v) > 1}
    check("no two families own one sample name (OpenMetrics)", not clashes, str(clashes))

    st, hd, body = get(port, "/metrics", {"Accept": "application/openmetrics-text; version=1.0.0"})
    check("/metrics offers OpenMetrics", hd["Content-Type"].startswith("application/openmetrics-text"))
    check("OpenMetrics ends with # EOF", body.endswith(b"# EOF\n"))
    try:
        from prometheus_client.openmetrics.parser import text_string_to_metric_families
        names = [f.name for f in text_string_to_metric_families(body.decode())]
        check("OpenMetrics parses strictly (prometheus_client)", "embedserve_batch_tokens" in names)
        print("OpenMetrics (prometheus_client parser): %d families parsed" % len(names))
    except ImportError:
        check("python3-prometheus-client installed (docker/apt-test.txt)", False)
    except Exception as e:  # the parser's ValueError names the offending line
        check("OpenMetrics parses strictly (prometheus_client)", False, repr(e))

    rc = stop(p)
    check("clean exit on SIGTERM", rc == 0, str(rc))
    lines = open(errpath, "rb").read().split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    objs, bad = [], []
    for ln in lines:
        try:
            o = json.loads(ln.decode("utf-8"))
            objs.append(o)
            if not isinstance(o, dict) or not {"ts", "level", "msg"} <= o.keys():
                bad.append(ln)
        except (ValueError, UnicodeDecodeError):
            bad.append(ln)
    check("every log line is one JSON object with ts, level, msg", lines and not bad, repr(bad[:3]))
    acc = [o for o in objs if o.get("msg") == "access"]
    keys = {"method", "path", "status", "ms", "id", "client", "inputs", "tokens"}
    check("access lines carry their fields", acc and all(keys <= o.keys() for o in acc))
    check("access lines carry no C function name", all("func" not in o for o in acc))
    check("the hostile id round-trips", any(o["id"] == hostile_id.decode() for o in acc))
    check("the hostile path round-trips (control bytes escaped, invalid UTF-8 as U+FFFD)",
          any(o["path"] == '/nope\n\x1b[31m\ufffd"\\' for o in acc),
          repr([o["path"] for o in acc if o["path"].startswith("/nope")]))
    check("the embedding access line", any(o["path"] == "/v1/embeddings" and o["status"] == 200
                                            and o["inputs"] == 2 for o in acc))
    warm = [o for o in objs if o["msg"].startswith("warm-up:")]
    check("warm-up logged", len(warm) == 1)
    r200 = [o["ts"] for o in acc if o["path"] == "/ready" and o["status"] == 200]
    r503 = [o for o in acc if o["path"] == "/ready" and o["status"] == 503]
    check("/ready 200 only after the warm-up", warm and r200 and min(r200) >= warm[0]["ts"])
    print("ready polls before 200: %d (503s logged: %d)" % (len(polls) - 1, len(r503)))

    p, port = start(["--log-format", "json", "--warmup=false"], errpath)
    ready_polls(port)
    stop(p)
    objs = [json.loads(x) for x in open(errpath, "rb").read().decode().splitlines()]
    check("--warmup=false skips the warm-up", not any(o["msg"].startswith("warm-up:") for o in objs))

    p, port = start([], errpath)
    ready_polls(port)
    get(port, "/health")
    stop(p)
    txt = open(errpath, "rb").read().decode()
    check("text access line without a function name",
          re.search(r"INFO \[\d+\] access: id=\S+ GET /health status=200 client=127\.0\.0\.1 ", txt))
    check("text format unchanged otherwise", re.search(r"INFO \[\d+\] main: listening on ", txt))
    print("obs: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
