#!/usr/bin/python3
"""Independent float64 NumPy reference for jina-embeddings-v3 (written from the model description, docs/model.md).

Usage:
  /usr/bin/python3 tests/reference.py --model DIR --cases tests/data/engine_cases.json --out OUT.json

DIR holds config.json, model.safetensors (BF16/F16/F32) and sentencepiece.bpe.model.
Needs only Debian's python3-numpy and python3-sentencepiece.

Cases file: JSON list of
  {"name": str, "inputs": [item, ...], "task": str|null, "dimensions": int|null,
   "normalized": bool, "late_chunking": bool, "truncate": bool, "max_tokens": int}
an item is a string or {"repeat": str, "times": N} meaning " ".join([str]*N).
Missing optional fields default to: task null, dimensions null, normalized true,
late_chunking false, truncate false, max_tokens 8192.

Output: {"model": DIR, "cases": [{"name", "error": null|"too_long"|"empty_input",
  "error_detail": null|{...}, "sequences": [[ids]...], "embeddings": [[floats]...]}]}
Error cases have empty "sequences" and "embeddings".
"""

import argparse
import json
import math
import os
import struct
import sys

import numpy as np

BOS, PAD, EOS, UNK = 0, 1, 2, 3


def die(msg):
    print("reference.py: error: " + msg, file=sys.stderr)
    sys.exit(1)


# --------------------------------------------------------------------------- safetensors

class SafeTensors:
    """Minimal safetensors reader (own parser). Tensors are memory-mapped and converted
    to float64 on demand."""

    def __init__(self, path):
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) != 8:
                die("%s: truncated header length" % path)
            (hlen,) = struct.unpack("<Q", raw)
            header = json.loads(f.read(hlen).decode("utf-8"))
        self.base = 8 + hlen
        self.mm = np.memmap(path, dtype=np.uint8, mode="r")
        header.pop("__metadata__", None)
        self.header = header

    def __contains__(self, name):
        return name in self.header

    def shape(self, name):
        return tuple(self.header[name]["shape"])

    def raw(self, name):
        h = self.header[name]
        b, e = h["data_offsets"]
        dt = {"BF16": "<u2", "F16": "<f2", "F32": "<f4", "F64": "<f8"}.get(h["dtype"])
        if dt is None:
            die("tensor %s: unsupported dtype %s" % (name, h["dtype"]))
        buf = self.mm[self.base + b:self.base + e]
        arr = buf.view(dt)
        n = int(np.prod(h["shape"])) if h["shape"] else 1
        if arr.size != n:
            die("tensor %s: size mismatch" % name)
        return arr.reshape(h["shape"]), h["dtype"]

    @staticmethod
    def to_f64(arr, dtype):
        if dtype == "BF16":
            return (arr.astype(np.uint32) << np.uint32(16)).view(np.float32).astype(np.float64)
        return np.asarray(arr, dtype=np.float64)

    def get(self, name):
        arr, dt = self.raw(name)
        return self.to_f64(arr, dt)

    def rows(self, name, idx):
        """Rows idx (first axis, or second axis for a leading adapter axis handled by caller)."""
        arr, dt = self.raw(name)
        return self.to_f64(arr[idx], dt)


# --------------------------------------------------------------------------- model

class Model:
    def __init__(self, model_dir):
        with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
            cfg = json.load(f)
        self.cfg = cfg
        self.H = int(cfg["hidden_size"])
        self.nh = int(cfg["num_attention_heads"])
        self.d = self.H // self.nh
        self.L = int(cfg["num_hidden_layers"])
        self.eps = float(cfg["layer_norm_eps"])
        self.scaling = float(cfg["lora_alpha"]) / float(cfg["lora_rank"])
        self.base = float(cfg["rotary_emb_base"])
        self.rot_dim = int(cfg.get("rotary_emb_dim") or self.d)
        self.tasks = list(cfg["lora_adaptations"])
        self.instr = dict(cfg.get("task_instructions") or {})
        if cfg.get("hidden_act") != "gelu":
            die("unsupported hidden_act %r" % cfg.get("hidden_act"))
        if cfg.get("position_embedding_type") != "rotary":
            die("unsupported position_embedding_type")
        self.st = SafeTensors(os.path.join(model_dir, "model.safetensors"))
        self._layers = {}
        import sentencepiece as spm
        self.sp = spm.SentencePieceProcessor(model_file=os.path.join(model_dir, "sentencepiece.bpe.model"))
        self._rope_cache = None

    # ---- tokenizer (XLM-R id layout)
    def enc(self, s):
        ids = self.sp.encode(s)
        return [UNK if i == 0 else i + 1 for i in ids]

    def task_index(self, task):
        if task is None:
            return None
        if task not in self.tasks:
            die("unknown task %r" % task)
        return self.tasks.index(task)

    def prefix(self, task):
        return "" if task is None else self.instr.get(task, "")

    # ---- weights
    def linear_w(self, prefix, t):
        W = self.st.get(prefix + ".parametrizations.weight.original")
        if t is not None:
            A = self.st.get(prefix + ".parametrizations.weight.0.lora_A")[t]  # [r, in]
            B = self.st.get(prefix + ".parametrizations.weight.0.lora_B")[t]  # [out, r]
            W = W + self.scaling * (B @ A)
        return W, self.st.get(prefix + ".bias")

    def layer(self, l, t):
        key = (l, t)
        if key not in self._layers:
            p = "roberta.encoder.layers.%d." % l
            w = {}
            w["qkv"] = self.linear_w(p + "mixer.Wqkv", t)
            w["out"] = self.linear_w(p + "mixer.out_proj", t)
            w["fc1"] = self.linear_w(p + "mlp.fc1", t)
            w["fc2"] = self.linear_w(p + "mlp.fc2", t)
            for n in ("norm1", "norm2"):
                w[n] = (self.st.get(p + n + ".weight"), self.st.get(p + n + ".bias"))
            self._layers[key] = w
        return self._layers[key]

    def embed(self, ids, t):
        ids = np.asarray(ids, dtype=np.int64)
        pw = "roberta.embeddings.word_embeddings.parametrizations.weight."
        pt = "roberta.embeddings.token_type_embeddings.parametrizations.weight."
        x = self.st.rows(pw + "original", ids)                       # [n, H]
        tt = self.st.rows(pt + "original", np.array([0]))[0]         # [H]
        if t is not None:
            # embedding LoRA: A [V, r] (per task), B [r, H]; E_t = E + s * A @ B
            A_raw, dt = self.st.raw(pw + "0.lora_A")
            A = self.st.to_f64(A_raw[t][ids], dt)                     # [n, r]
            B = self.st.get(pw + "0.lora_B")[t]                       # [r, H]
            x = x + self.scaling * (A @ B)
            At = self.st.get(pt + "0.lora_A")[t][0]                   # [r]
            Bt = self.st.get(pt + "0.lora_B")[t]                      # [r, H]
            tt = tt + self.scaling * (At @ Bt)
        x = x + tt[None, :]
        return layer_norm(x, self.st.get("roberta.emb_ln.weight"), self.st.get("roberta.emb_ln.bias"), self.eps)

    # ---- RoPE (angles rounded exactly as the fp32 torch reference)
    def rope(self, n):
        if self._rope_cache is None or self._rope_cache[0] < n:
            rd = self.rot_dim
            expo = np.arange(0, rd, 2, dtype=np.float32) / np.float32(rd)        # fp32
            powv = (np.float64(np.float32(self.base)) ** expo.astype(np.float64)).astype(np.float32)
            inv_freq = (np.float32(1.0) / powv).astype(np.float32)             # fp32
            pos = np.arange(n, dtype=np.float32)
            theta = np.outer(pos, inv_freq).astype(np.float32)                 # fp32 product
            th = theta.astype(np.float64)
            self._rope_cache = (n, np.cos(th), np.sin(th))
        _, c, s = self._rope_cache
        return c[:n], s[:n]

    def apply_rope(self, x, cos, sin):
        # x [n, nh, d]; NeoX half rotation over the first rot_dim dims
        half = self.rot_dim // 2
        x1 = x[:, :, :half]
        x2 = x[:, :, half:self.rot_dim]
        c = cos[:, None, :]
        s = sin[:, None, :]
        out = x.copy()
        out[:, :, :half] = x1 * c - x2 * s
        out[:, :, half:self.rot_dim] = x2 * c + x1 * s
        return out

    def forward(self, ids, t):
        n = len(ids)
        H, nh, d = self.H, self.nh, self.d
        x = self.embed(ids, t)
        cos, sin = self.rope(n)
        scale = 1.0 / math.sqrt(d)
        for l in range(self.L):
            w = self.layer(l, t)
            Wqkv, bqkv = w["qkv"]
            qkv = x @ Wqkv.T + bqkv                      # [n, 3H]
            q = qkv[:, :H].reshape(n, nh, d)
            k = qkv[:, H:2 * H].reshape(n, nh, d)
            v = qkv[:, 2 * H:].reshape(n, nh, d)
            q = self.apply_rope(q, cos, sin)
            k = self.apply_rope(k, cos, sin)
            ctx = np.empty((n, nh, d))
            for h in range(nh):
                sc = q[:, h, :] @ (k[:, h, :] * scale).T   # [n, n]
                sc -= sc.max(axis=1, keepdims=True)
                np.exp(sc, out=sc)
                sc /= sc.sum(axis=1, keepdims=True)
                ctx[:, h, :] = sc @ v[:, h, :]
            Wo, bo = w["out"]
            a = ctx.reshape(n, H) @ Wo.T + bo
            x = layer_norm(x + a, w["norm1"][0], w["norm1"][1], self.eps)
            W1, b1 = w["fc1"]
            W2, b2 = w["fc2"]
            m = gelu(x @ W1.T + b1) @ W2.T + b2
            x = layer_norm(x + m, w["norm2"][0], w["norm2"][1], self.eps)
        return x


def layer_norm(x, w, b, eps):
    mu = x.mean(axis=-1, keepdims=True)
    xc = x - mu
    var = (xc * xc).mean(axis=-1, keepdims=True)   # biased variance
    return xc / np.sqrt(var + eps) * w + b


_erf = np.frompyfunc(math.erf, 1, 1)


def gelu(x):
    e = _erf(x / math.sqrt(2.0)).astype(np.float64)
    return 0.5 * x * (1.0 + e)


def finish(v, dimensions, normalized):
    if dimensions is not None:
        v = v[:dimensions]
    if normalized:
        v = v / max(float(np.sqrt(np.dot(v, v))), 1e-12)
    return v


# --------------------------------------------------------------------------- cases

def expand(item):
    if isinstance(item, str):
        return item
    if isinstance(item, dict) and "repeat" in item:
        return " ".join([item["repeat"]] * int(item["times"]))
    die("bad input item %r" % (item,))


def run_case(model, case):
    task = case.get("task")
    t = model.task_index(task)
    dims = case.get("dimensions")
    normalized = case.get("normalized", True)
    late = case.get("late_chunking", False)
    truncate = case.get("truncate", False)
    max_tokens = int(case.get("max_tokens", 8192))
    inputs = [expand(i) for i in case["inputs"]]
    prefix = model.prefix(task)
    res = {"name": case["name"], "error": None, "error_detail": None, "sequences": [], "embeddings": []}

    if not late:
        seqs = []
        for i, s in enumerate(inputs):
            ids = [BOS] + model.enc(prefix + s) + [EOS]
            if len(ids) > max_tokens:
                if truncate:
                    ids = ids[:max_tokens - 1] + [EOS]
                else:
                    res["error"] = "too_long"
                    res["error_detail"] = {"index": i, "tokens": len(ids), "max_tokens": max_tokens}
                    return res
            seqs.append(ids)
        embs = []
        for ids in seqs:
            h = model.forward(ids, t)
            embs.append(finish(h.mean(axis=0), dims, normalized))
        res["sequences"] = seqs
        res["embeddings"] = embs
        return res

    # late chunking
    toks = [model.enc(s) for s in inputs]
    for i, tk in enumerate(toks):
        if len(tk) == 0:
            res["error"] = "empty_input"
            res["error_detail"] = {"index": i}
            return res
    pre = model.enc(prefix)
    ids = [BOS] + pre
    spans = []
    for k, tk in enumerate(toks):
        start = 0 if k == 0 else len(ids)
        ids += tk
        spans.append([start, len(ids)])
    ids.append(EOS)
    spans[-1][1] = len(ids)
    if len(ids) > max_tokens:
        res["error"] = "too_long"
        res["error_detail"] = {"tokens": len(ids), "max_tokens": max_tokens}
        return res
    h = model.forward(ids, t)
    res["sequences"] = [ids]
    res["embeddings"] = [finish(h[a:b].mean(axis=0), dims, normalized) for a, b in spans]
    res["spans"] = spans
    return res


def main():
    ap = argparse.ArgumentParser(description="float64 reference embeddings for test cases")
    ap.add_argument("--model", required=True)
    ap.add_argument("--cases", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", default=None, help="comma-separated case names to run (debug)")
    args = ap.parse_args()
    for f in ("config.json", "model.safetensors", "sentencepiece.bpe.model"):
        if not os.path.isfile(os.path.join(args.model, f)):
            die("missing %s in %s" % (f, args.model))
    with open(args.cases, encoding="utf-8") as f:
        cases = json.load(f)
    only = set(args.only.split(",")) if args.only else None
    model = Model(args.model)
    out_cases = []
    for case in cases:
        if only is not None and case["name"] not in only:
            continue
        r = run_case(model, case)
        for e in r["embeddings"]:
            if not np.all(np.isfinite(e)):
                die("case %s: non-finite embedding" % case["name"])
        r["embeddings"] = [[float(x) for x in e] for e in r["embeddings"]]
        out_cases.append(r)
    with open(args.out, "w", encoding="utf-8") as f:
        # json writes floats with repr(): shortest string that round-trips the float64 exactly
        json.dump({"model": args.model, "cases": out_cases}, f, ensure_ascii=False)
        f.write("\n")
    n_err = sum(1 for c in out_cases if c["error"])
    print("reference.py: %d cases (%d errors) -> %s" % (len(out_cases), n_err, args.out))


if __name__ == "__main__":
    main()
