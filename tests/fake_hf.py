"""fake_hf.py -- a loopback stand-in for Hugging Face's resolve endpoint, for
testing scripts/download-model without a network.

Serves ROOT/<repo>/<file> at /<repo>/resolve/main/<file>. HEAD answers like
the real site: LFS files (*.safetensors, *.model) with X-Linked-Size and
X-Linked-Etag (sha256), others with Content-Length and ETag (git blob sha1).
With --lie, the advertised checksum of model.safetensors is wrong.
GET honours Range: bytes=N- (curl -C -). Prints its port, then serves.
"""
import hashlib, http.server, os, sys

root, lie = sys.argv[1], "--lie" in sys.argv


class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def path_of(self):
        parts = self.path.split("/resolve/main/")
        if len(parts) != 2:
            return None
        p = os.path.join(root, parts[0].strip("/"), parts[1])
        return p if os.path.isfile(p) else None

    def do_HEAD(self):
        p = self.path_of()
        if not p:
            self.send_response(404)
            self.end_headers()
            return
        data = open(p, "rb").read()
        self.send_response(302 if p.endswith((".safetensors", ".model")) else 200)
        if p.endswith((".safetensors", ".model")):
            sha = hashlib.sha256(data).hexdigest()
            if lie and p.endswith(".safetensors"):
                sha = "0" * 64
            self.send_header("X-Linked-Size", str(len(data)))
            self.send_header("X-Linked-Etag", '"%s"' % sha)
            self.send_header("Location", self.path)
            self.send_header("Content-Length", "0")
        else:
            blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
            self.send_header("ETag", '"%s"' % blob)
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()

    def do_GET(self):
        p = self.path_of()
        if not p:
            self.send_response(404)
            self.end_headers()
            return
        data = open(p, "rb").read()
        start = 0
        rng = self.headers.get("Range", "")
        if rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, len(data) - 1, len(data)))
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])


srv = http.server.HTTPServer(("127.0.0.1", 0), H)
print(srv.server_address[1], flush=True)
srv.serve_forever()
