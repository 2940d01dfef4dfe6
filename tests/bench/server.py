"""server.py -- the bench scripts' shared server start-up: launch
build/embedserve on a loopback port and wait for /ready. Only 127.0.0.1 is
contacted; the wait is bounded."""
import subprocess
import sys
import time
import urllib.request


def start(binary, model, port, dtype="auto", threads=2, name="bench", timeout=120, extra=()):
    """Starts the server and waits until /ready answers 200.

    Returns (process, seconds from launch to ready). Exits the script with a
    message if the server dies or is not ready within `timeout` seconds
    (the process is terminated first)."""
    url = "http://127.0.0.1:%d" % port
    t0 = time.time()
    srv = subprocess.Popen([binary, "--model", model, "--host", "127.0.0.1", "--port", str(port),
                            "--dtype", dtype, "--threads", str(threads), "--log-level", "warn"]
                           + list(extra),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while time.time() - t0 < timeout:
        if srv.poll() is not None:
            sys.exit("%s: the server exited with %d (port %d busy?)" % (name, srv.returncode, port))
        try:
            if urllib.request.urlopen(url + "/ready", timeout=2).status == 200:
                return srv, time.time() - t0
        except Exception:
            time.sleep(0.05)
    stop(srv)
    sys.exit("%s: server not ready in %d s" % (name, timeout))


def stop(srv, timeout=120):
    """SIGTERM and wait (the server drains)."""
    srv.terminate()
    srv.wait(timeout=timeout)
