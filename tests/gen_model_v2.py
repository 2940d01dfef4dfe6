#!/usr/bin/python3
"""Generate a random jina-embeddings-v2-shaped (JinaBERT) test model.

Usage:
  /usr/bin/python3 tests/gen_model_v2.py --out DIR [--variant en|code] [--seed N]
         [--dtype bf16|f16|f32] [--hidden H --heads N --layers L --ffn F --vocab V]
         [--base] [--mlm-prefix] [--tokenizer-json FILE]

Writes into DIR:
  config.json        the keys and value types of the published v2 configs (model_type
                     "bert", architectures ["JinaBertForMaskedLM"], position_embedding_type
                     "alibi", feed_forward_type "geglu", max_position_embeddings 8192,
                     type_vocab_size 2, layer_norm_eps 1e-12)
  model.safetensors  every tensor of the Hugging Face checkpoint layout, random values:
    --variant en   (-small-en, -base-en/de/es/zh): attention.self.{query,key,value},
                   attention.output.{dense,LayerNorm}, mlp.gated_layers [2F][H] (no bias),
                   mlp.wo, mlp.layernorm
    --variant code (-base-code, "qk post-norm"): also attention.self.layer_norm_{q,k} [H],
                   layer_norm_1, mlp.up_gated_layer [2F][H] (no bias), mlp.down_layer,
                   layer_norm_2
  tokenizer.json     only with --tokenizer-json FILE (copied; this script makes no
                     tokenizer: the engine tests feed token ids)

Default dims are tiny (hidden 96, 6 heads, 2 layers, FFN 160, vocab 1000): 6 heads is not a
power of two, so the ALiBi slopes take the interleaved extra heads. --base gives the
-base-* dims (768 / 12 heads / 12 layers / 3072, vocab 61056 for code, 30528 for en).
--mlm-prefix stores every name under "bert." (a checkpoint saved from the masked-LM
wrapper). Deterministic: the same arguments give byte-identical files.
Only needs Debian's python3-numpy; shares the safetensors writer with gen_model.py.
"""

import argparse
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_model import DTYPES, write_safetensors  # noqa: E402

AUTO_MAP = {
    "en": {
        "AutoConfig": "jinaai/jina-bert-implementation--configuration_bert.JinaBertConfig",
        "AutoModel": "jinaai/jina-bert-implementation--modeling_bert.JinaBertModel",
        "AutoModelForMaskedLM": "jinaai/jina-bert-implementation--modeling_bert.JinaBertForMaskedLM",
    },
    "code": {
        "AutoConfig": "jinaai/jina-bert-v2-qk-post-norm--configuration_bert.JinaBertConfig",
        "AutoModel": "jinaai/jina-bert-v2-qk-post-norm--modeling_bert.JinaBertModel",
        "AutoModelForMaskedLM": "jinaai/jina-bert-v2-qk-post-norm--modeling_bert.JinaBertForMaskedLM",
    },
}
NAME = {"en": "jinaai/jina-embeddings-v2-base-en", "code": "jinaai/jina-embeddings-v2-base-code"}


def die(msg):
    print("gen_model_v2.py: error: " + msg, file=sys.stderr)
    sys.exit(1)


def make_config(variant, d):
    return {
        "_name_or_path": NAME[variant],
        "architectures": ["JinaBertForMaskedLM"],
        "attention_probs_dropout_prob": 0.0,
        "attn_implementation": None,
        "auto_map": AUTO_MAP[variant],
        "classifier_dropout": None,
        "emb_pooler": "mean",
        "feed_forward_type": "geglu",
        "gradient_checkpointing": False,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": d["hidden"],
        "initializer_range": 0.02,
        "intermediate_size": d["ffn"],
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": 8192,
        "model_max_length": 8192,
        "model_type": "bert",
        "num_attention_heads": d["heads"],
        "num_hidden_layers": d["layers"],
        "pad_token_id": 0,
        "position_embedding_type": "alibi",
        "torch_dtype": "float32",
        "transformers_version": "4.34.0",
        "type_vocab_size": 2,
        "use_cache": True,
        "vocab_size": d["vocab"],
    }


def tensor_plan(variant, d, prefix):
    """List of (name, shape, mean, std), HF names."""
    H, F, V, L = d["hidden"], d["ffn"], d["vocab"], d["layers"]
    plan = []

    def linear(name, out_f, in_f, gain, bias=True):
        plan.append((prefix + name + ".weight", (out_f, in_f), 0.0, gain / (in_f ** 0.5)))
        if bias:
            plan.append((prefix + name + ".bias", (out_f,), 0.0, 0.05))

    def layernorm(name):
        plan.append((prefix + name + ".weight", (H,), 1.0, 0.1))
        plan.append((prefix + name + ".bias", (H,), 0.0, 0.05))

    plan.append((prefix + "embeddings.word_embeddings.weight", (V, H), 0.0, 1.0))
    plan.append((prefix + "embeddings.token_type_embeddings.weight", (2, H), 0.0, 0.5))
    layernorm("embeddings.LayerNorm")
    for l in range(L):
        p = "encoder.layer.%d." % l
        # gain > 1 on Q and K: peaked attention, so the ALiBi bias and the head
        # order visibly matter
        linear(p + "attention.self.query", H, H, 2.0)
        linear(p + "attention.self.key", H, H, 2.0)
        linear(p + "attention.self.value", H, H, 1.0)
        linear(p + "attention.output.dense", H, H, 0.8)
        layernorm(p + "attention.output.LayerNorm")
        if variant == "en":
            linear(p + "mlp.gated_layers", 2 * F, H, 1.0, bias=False)
            linear(p + "mlp.wo", H, F, 0.8)
            layernorm(p + "mlp.layernorm")
        else:
            layernorm(p + "attention.self.layer_norm_q")
            layernorm(p + "attention.self.layer_norm_k")
            layernorm(p + "layer_norm_1")
            linear(p + "mlp.up_gated_layer", 2 * F, H, 1.0, bias=False)
            linear(p + "mlp.down_layer", H, F, 0.8)
            layernorm(p + "layer_norm_2")
    linear("pooler.dense", H, H, 1.0)
    if prefix:  # the masked-LM head of a ...ForMaskedLM save (unused by the engine)
        plan.append(("cls.predictions.transform.dense.weight", (H, H), 0.0, 0.05))
        plan.append(("cls.predictions.bias", (V,), 0.0, 0.05))
    return plan


def main():
    ap = argparse.ArgumentParser(description="Generate a random jina-embeddings-v2-shaped test model.")
    ap.add_argument("--out", required=True, help="output directory (created if missing)")
    ap.add_argument("--variant", choices=["en", "code"], default="en")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="f16")
    ap.add_argument("--hidden", type=int, default=96)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--ffn", type=int, default=160)
    ap.add_argument("--vocab", type=int, default=1000)
    ap.add_argument("--base", action="store_true", help="the -base-* dimensions")
    ap.add_argument("--mlm-prefix", action="store_true", help='names under "bert." (masked-LM save)')
    ap.add_argument("--tokenizer-json", default=None, help="copied into DIR as tokenizer.json")
    args = ap.parse_args()
    if args.seed < 0:
        die("--seed must be >= 0")
    d = {"hidden": args.hidden, "heads": args.heads, "layers": args.layers, "ffn": args.ffn,
         "vocab": args.vocab}
    if args.base:
        d = {"hidden": 768, "heads": 12, "layers": 12, "ffn": 3072,
             "vocab": 61056 if args.variant == "code" else 30528}
    if d["heads"] < 1 or d["hidden"] % d["heads"]:
        die("--hidden must split into --heads heads")
    try:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "config.json"), "w", encoding="utf-8") as f:
            json.dump(make_config(args.variant, d), f, indent=2)
            f.write("\n")
        n_t, n_p, n_bytes = write_safetensors(
            os.path.join(args.out, "model.safetensors"),
            tensor_plan(args.variant, d, "bert." if args.mlm_prefix else ""), args.dtype, args.seed)
        if args.tokenizer_json:
            shutil.copyfile(args.tokenizer_json, os.path.join(args.out, "tokenizer.json"))
    except OSError as e:
        die("writing %s: %s" % (args.out, e))
    print("gen_model_v2.py: wrote %s: v2 %s (hidden %d, heads %d, layers %d, ffn %d, vocab %d), "
          "%d tensors, %d params, %s, %d bytes, seed %d"
          % (args.out, args.variant, d["hidden"], d["heads"], d["layers"], d["ffn"], d["vocab"],
             n_t, n_p, DTYPES[args.dtype][0], n_bytes, args.seed))


if __name__ == "__main__":
    main()
