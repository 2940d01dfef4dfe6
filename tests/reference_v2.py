#!/usr/bin/python3
"""Independent float64 NumPy reference for jina-embeddings-v2 (JinaBERT), written from
the published model's math (docs/model.md, "jina-embeddings-v2"), fed token ids.

Usage:
  /usr/bin/python3 tests/reference_v2.py --model DIR --cases tests/data/engine_v2_cases.json --out OUT.json

DIR holds config.json and model.safetensors (BF16/F16/F32) in the Hugging Face layout of
either v2 variant (names optionally under "bert."). No tokenizer is used: each case lists
sequence lengths and a seed, and the token ids are drawn here (uniform over the vocabulary)
and written to the output, so the C test feeds exactly these ids.

Cases file: JSON list of {"name": str, "seed": int, "lengths": [n, ...],
  "spans": null | [[[start, end], ...] | null, ...]} (spans per sequence: half-open token
ranges pooled separately, as late chunking does; null: the whole sequence).
Output: {"model": DIR, "cases": [{"name", "sequences": [[ids]...],
  "spans": [[[a, b]...]...], "embeddings": [[floats]...]}]}: one L2-normalised mean per
span, sequences in order, spans in order.
"""

import argparse
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference import SafeTensors, gelu, layer_norm  # noqa: E402


def die(msg):
    print("reference_v2.py: error: " + msg, file=sys.stderr)
    sys.exit(1)


def alibi_slopes(n):
    """Per-head ALiBi slopes as the ALiBi paper's reference code and JinaBERT build them:
    a geometric sequence starting at 2^(-8/n) for a power of two; otherwise the sequence for
    the closest lower power of two, then every other slope of the sequence for twice that."""
    def pow2(k):
        start = 2.0 ** (-(2.0 ** -(math.log2(k) - 3)))
        return [start * start ** i for i in range(k)]
    if math.log2(n).is_integer():
        return pow2(n)
    closest = 2 ** math.floor(math.log2(n))
    return pow2(closest) + pow2(2 * closest)[0::2][:n - closest]


class ModelV2:
    def __init__(self, model_dir):
        with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
            cfg = json.load(f)
        if cfg.get("position_embedding_type", "alibi") != "alibi":
            die("position_embedding_type must be alibi")
        if cfg.get("feed_forward_type", "geglu") != "geglu":
            die("feed_forward_type must be geglu")
        if cfg.get("hidden_act", "gelu") != "gelu":
            die("hidden_act must be gelu")
        self.H = int(cfg["hidden_size"])
        self.nh = int(cfg["num_attention_heads"])
        self.d = self.H // self.nh
        self.L = int(cfg["num_hidden_layers"])
        self.F = int(cfg["intermediate_size"])
        self.V = int(cfg["vocab_size"])
        self.eps = float(cfg.get("layer_norm_eps", 1e-12))
        self.st = SafeTensors(os.path.join(model_dir, "model.safetensors"))
        self.pre = "" if "embeddings.word_embeddings.weight" in self.st else "bert."
        # the qk-post-norm (code) layout is the one with up_gated_layer
        self.code = (self.pre + "encoder.layer.0.mlp.up_gated_layer.weight") in self.st
        self.slopes = np.array(alibi_slopes(self.nh), dtype=np.float64)

    def w(self, name):
        return self.st.get(self.pre + name)

    def norm(self, x, name):
        return layer_norm(x, self.w(name + ".weight"), self.w(name + ".bias"), self.eps)

    def lin(self, x, name, bias=True):
        y = x @ self.w(name + ".weight").T
        return y + self.w(name + ".bias") if bias else y

    def forward(self, ids):
        n, H, nh, d, F = len(ids), self.H, self.nh, self.d, self.F
        x = self.st.rows(self.pre + "embeddings.word_embeddings.weight", np.asarray(ids))
        x = x + self.w("embeddings.token_type_embeddings.weight")[0][None, :]  # type 0
        x = self.norm(x, "embeddings.LayerNorm")
        pos = np.arange(n)
        dist = np.abs(pos[:, None] - pos[None, :]).astype(np.float64)  # |i - j|
        for l in range(self.L):
            p = "encoder.layer.%d." % l
            q = self.lin(x, p + "attention.self.query")
            k = self.lin(x, p + "attention.self.key")
            v = self.lin(x, p + "attention.self.value")
            if self.code:  # qk post-norm over the full width, before the head split
                q = self.norm(q, p + "attention.self.layer_norm_q")
                k = self.norm(k, p + "attention.self.layer_norm_k")
            ctx = np.empty((n, H))
            for h in range(nh):
                sl = slice(h * d, (h + 1) * d)
                s = q[:, sl] @ k[:, sl].T / math.sqrt(d) - self.slopes[h] * dist
                s = np.exp(s - s.max(axis=1, keepdims=True))
                s /= s.sum(axis=1, keepdims=True)
                ctx[:, sl] = s @ v[:, sl]
            a = self.norm(self.lin(ctx, p + "attention.output.dense") + x,
                          p + "attention.output.LayerNorm")
            if self.code:
                a = self.norm(a + x, p + "layer_norm_1")  # the layer input, added again
                u = self.lin(a, p + "mlp.up_gated_layer", bias=False)
                g = u[:, :F] * gelu(u[:, F:])  # up * gelu(gate): the second half is the gate
                x = self.norm(self.lin(g, p + "mlp.down_layer") + a, p + "layer_norm_2")
            else:
                u = self.lin(a, p + "mlp.gated_layers", bias=False)
                g = gelu(u[:, :F]) * u[:, F:]  # gelu(gated) * non-gated: the first half is the gate
                x = self.norm(self.lin(g, p + "mlp.wo") + a, p + "mlp.layernorm")
        return x


def normalize(v):
    return v / max(float(np.sqrt(np.dot(v, v))), 1e-12)


def run_case(model, case):
    rng = np.random.default_rng(int(case["seed"]))
    spans_in = case.get("spans") or [None] * len(case["lengths"])
    res = {"name": case["name"], "sequences": [], "spans": [], "embeddings": []}
    for n, sp in zip(case["lengths"], spans_in):
        ids = [int(i) for i in rng.integers(0, model.V, size=int(n))]
        h = model.forward(ids)
        sp = sp or [[0, len(ids)]]
        res["sequences"].append(ids)
        res["spans"].append(sp)
        for a, b in sp:
            if not 0 <= a < b <= len(ids):
                die("case %s: bad span %r" % (case["name"], [a, b]))
            res["embeddings"].append([float(v) for v in normalize(h[a:b].mean(axis=0))])
    return res


def main():
    ap = argparse.ArgumentParser(description="float64 reference embeddings for v2 test cases")
    ap.add_argument("--model", required=True)
    ap.add_argument("--cases", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    model = ModelV2(args.model)
    with open(args.cases, encoding="utf-8") as f:
        cases = json.load(f)
    out = [run_case(model, c) for c in cases]
    for c in out:
        for e in c["embeddings"]:
            if not np.all(np.isfinite(e)):
                die("case %s: non-finite embedding" % c["name"])
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump({"model": args.model, "variant": "code" if model.code else "en", "cases": out}, f)
        f.write("\n")
    print("reference_v2.py: %s (%s, %d heads): %d cases -> %s"
          % (args.model, "code" if model.code else "en", model.nh, len(out), args.out))


if __name__ == "__main__":
    main()
