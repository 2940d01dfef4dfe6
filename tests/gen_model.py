#!/usr/bin/python3
"""Generate a random jina-embeddings-v3-shaped test model.

Usage:
  /usr/bin/python3 tests/gen_model.py --out DIR [--seed N] [--full]
         [--dtype bf16|f16|f32] [--corpus tests/data/corpus.txt] [--vocab-size N]

Writes into DIR:
  sentencepiece.bpe.model  unigram spm model trained (spm_train) on the corpus
  config.json              same keys / value types as the real jina-embeddings-v3 config
  model.safetensors        every tensor of the real checkpoint (HF names, shapes,
                           LoRA adapters with the embedding A/B role swap), random values

Default dims are tiny (hidden 80, 5 heads of 16, 3 layers, FFN 208); --full gives the
real dims (1024 / 16 / 24 / 4096, vocab 250002) with the same small tokenizer.
Only needs Debian's python3-numpy and the spm_train binary. Deterministic: the same
arguments (seed, dims, dtype, corpus bytes) give byte-identical files.
"""

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

import numpy as np

LORA_ADAPTATIONS = ["retrieval.query", "retrieval.passage", "separation",
                    "classification", "text-matching"]
TASK_INSTRUCTIONS = {
    "retrieval.query": "Represent the query for retrieving evidence documents: ",
    "retrieval.passage": "Represent the document for retrieval: ",
    "separation": "",
    "classification": "",
    "text-matching": "",
}
AUTO_MAP = {
    "AutoConfig": "jinaai/xlm-roberta-flash-implementation--configuration_xlm_roberta.XLMRobertaFlashConfig",
    "AutoModel": "jinaai/xlm-roberta-flash-implementation--modeling_lora.XLMRobertaLoRA",
    "AutoModelForMaskedLM": "jinaai/xlm-roberta-flash-implementation--modeling_xlm_roberta.XLMRobertaForMaskedLM",
    "AutoModelForPreTraining": "jinaai/xlm-roberta-flash-implementation--modeling_xlm_roberta.XLMRobertaForPreTraining",
}
N_ADAPTERS = len(LORA_ADAPTATIONS)
RANK = 4
LORA_ALPHA = 1
SCALING = LORA_ALPHA / RANK
# 0.25*B@A is about LORA_REL of the base weight's Frobenius norm (see lora_stds()).
LORA_REL = 0.45
CHUNK = 1 << 22  # elements generated / converted / written at a time

DTYPES = {"bf16": ("BF16", 2), "f16": ("F16", 2), "f32": ("F32", 4)}


def die(msg):
    print("gen_model.py: error: " + msg, file=sys.stderr)
    sys.exit(1)


# --------------------------------------------------------------------------- tokenizer

def train_spm(corpus, out_dir, vocab_size, seed):
    spm_train = shutil.which("spm_train")
    if spm_train is None:
        die("spm_train not found on PATH (Debian package sentencepiece)")
    if not os.path.isfile(corpus):
        die("corpus not found: %s" % corpus)
    # Train in a scratch dir with fixed relative names: the trainer spec (input path,
    # model prefix) is stored inside the .model file, so this keeps it byte-identical
    # whatever path the corpus was given as.
    with tempfile.TemporaryDirectory(prefix="gen_model_spm_") as tmp:
        shutil.copyfile(corpus, os.path.join(tmp, "corpus.txt"))
        cmd = [spm_train,
               "--input=corpus.txt",
               "--model_prefix=sentencepiece.bpe",
               "--model_type=unigram",
               "--vocab_size=%d" % vocab_size,
               "--hard_vocab_limit=false",
               "--character_coverage=0.9995",
               "--input_sentence_size=0",
               "--shuffle_input_sentence=false",
               "--num_threads=1",
               "--random_seed=%d" % (seed & 0xFFFFFFFF),
               "--unk_id=0", "--bos_id=1", "--eos_id=2", "--pad_id=-1",
               "--minloglevel=2"]
        r = subprocess.run(cmd, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if r.returncode != 0:
            die("spm_train failed (rc %d):\n%s%s" % (r.returncode, r.stdout.decode(errors="replace"),
                                                    r.stderr.decode(errors="replace")))
        model = os.path.join(tmp, "sentencepiece.bpe.model")
        vocab = os.path.join(tmp, "sentencepiece.bpe.vocab")
        if not os.path.isfile(model) or not os.path.isfile(vocab):
            die("spm_train produced no model")
        with open(vocab, encoding="utf-8") as f:
            n_pieces = sum(1 for line in f if line.strip("\n"))
        shutil.copyfile(model, os.path.join(out_dir, "sentencepiece.bpe.model"))
    return n_pieces


# --------------------------------------------------------------------------- config

def make_config(dims, vocab_size, name="jinaai/jina-embeddings-v3"):
    cfg = {
        "_name_or_path": name,
        "architectures": ["XLMRobertaModel"],
        "attention_probs_dropout_prob": 0.1,
        "auto_map": AUTO_MAP,
        "bos_token_id": 0,
        "classifier_dropout": None,
        "emb_pooler": None,
        "eos_token_id": 2,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": dims["hidden"],
        "initializer_range": 0.02,
        "intermediate_size": dims["ffn"],
        "layer_norm_eps": 1e-05,
        "load_trained_adapters": True,
        "lora_adaptations": list(LORA_ADAPTATIONS),
        "lora_alpha": LORA_ALPHA,
        "lora_dropout_p": 0.0,
        "lora_main_params_trainable": False,
        "lora_rank": RANK,
        "matryoshka_dimensions": list(dims["matryoshka"]),
        "max_position_embeddings": 8194,
        "num_attention_heads": dims["heads"],
        "num_hidden_layers": dims["layers"],
        "output_past": True,
        "pad_token_id": 1,
        "position_embedding_type": "rotary",
        "rotary_emb_base": 20000.0,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.44.2",
        "truncate_dim": None,
        "type_vocab_size": 1,
        "use_cache": True,
        "use_flash_attn": True,
        "vocab_size": vocab_size,
        "task_instructions": dict(TASK_INSTRUCTIONS),
    }
    return cfg


# --------------------------------------------------------------------------- tensors

def lora_stds(fan_in, base_std):
    """Stds for a linear LoRA pair A [r, fan_in], B [fan_out, r] such that
    ||scaling * B@A||_F ~= LORA_REL * ||W||_F where W ~ N(0, base_std^2) [fan_out, fan_in].
    E||B@A||_F^2 = fan_out*fan_in*r*a^2*b^2, E||W||_F^2 = fan_out*fan_in*base_std^2."""
    a = 1.0 / np.sqrt(fan_in)
    b = LORA_REL * base_std * np.sqrt(fan_in) / (SCALING * np.sqrt(RANK))
    return a, b


def tensor_plan(dims):
    """List of (name, shape, mean, std)."""
    H, I, V, L = dims["hidden"], dims["ffn"], dims["vocab"], dims["layers"]
    T = N_ADAPTERS
    plan = []

    def linear(prefix, out_f, in_f, gain):
        std = gain / np.sqrt(in_f)
        a, b = lora_stds(in_f, std)
        p = prefix + ".parametrizations.weight."
        plan.append((p + "original", (out_f, in_f), 0.0, std))
        plan.append((p + "0.lora_A", (T, RANK, in_f), 0.0, a))
        plan.append((p + "0.lora_B", (T, out_f, RANK), 0.0, b))
        plan.append((prefix + ".bias", (out_f,), 0.0, 0.05))

    def embedding(prefix, num, dim, std):
        # Embedding: roles swapped. A [num, r], B [r, dim]; delta = scaling * A @ B.
        # ||row delta|| ~ scaling*sqrt(r)*a*b*sqrt(dim) vs base row norm std*sqrt(dim).
        a = 1.0
        b = LORA_REL * std / (SCALING * np.sqrt(RANK) * a)
        p = prefix + ".parametrizations.weight."
        plan.append((p + "original", (num, dim), 0.0, std))
        plan.append((p + "0.lora_A", (T, num, RANK), 0.0, a))
        plan.append((p + "0.lora_B", (T, RANK, dim), 0.0, b))

    def layernorm(prefix):
        plan.append((prefix + ".weight", (H,), 1.0, 0.1))
        plan.append((prefix + ".bias", (H,), 0.0, 0.05))

    embedding("roberta.embeddings.word_embeddings", V, H, 1.0)
    embedding("roberta.embeddings.token_type_embeddings", 1, H, 0.5)
    layernorm("roberta.emb_ln")
    for l in range(L):
        p = "roberta.encoder.layers.%d." % l
        linear(p + "mixer.Wqkv", 3 * H, H, 1.0)
        linear(p + "mixer.out_proj", H, H, 0.8)
        layernorm(p + "norm1")
        linear(p + "mlp.fc1", I, H, 1.0)
        linear(p + "mlp.fc2", H, I, 0.8)
        layernorm(p + "norm2")
    linear("roberta.pooler.dense", H, H, 1.0)
    return plan


def to_bytes(x, dtype):
    if dtype == "bf16":
        u = x.view(np.uint32)
        # round to nearest even (values are finite, no overflow in uint32)
        u = (u + (np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1)))) >> np.uint32(16)
        return u.astype("<u2").tobytes()
    if dtype == "f16":
        return x.astype("<f2").tobytes()
    return x.astype("<f4").tobytes()


def write_safetensors(path, plan, dtype, seed):
    st_dtype, esize = DTYPES[dtype]
    plan = sorted(plan, key=lambda t: t[0])  # safetensors' writer orders data by name
    header = {"__metadata__": {"format": "pt"}}
    off = 0
    for name, shape, _, _ in plan:
        n = int(np.prod(shape)) * esize
        header[name] = {"dtype": st_dtype, "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * ((-len(hjson)) % 8)
    total_params = 0
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for name, shape, mean, std in plan:
            n = int(np.prod(shape))
            total_params += n
            ss = np.random.SeedSequence([seed & 0xFFFFFFFF, zlib.crc32(name.encode("utf-8"))])
            rng = np.random.Generator(np.random.PCG64(ss))
            done = 0
            while done < n:
                k = min(CHUNK, n - done)
                x = rng.standard_normal(k, dtype=np.float32)
                x *= np.float32(std)
                if mean != 0.0:
                    x += np.float32(mean)
                f.write(to_bytes(x, dtype))
                done += k
    return len(plan), total_params, 8 + len(hjson) + off


# --------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description="Generate a random jina-embeddings-v3-shaped test model.")
    ap.add_argument("--out", required=True, help="output directory (created if missing)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--full", action="store_true", help="real dimensions (1024 hidden, 24 layers, vocab 250002)")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--corpus", default=os.path.join(here, "data", "corpus.txt"))
    ap.add_argument("--vocab-size", type=int, default=2000,
                    help="spm vocab size (soft limit); must exceed the ~1130 required characters of the corpus")
    ap.add_argument("--name", default="jinaai/jina-embeddings-v3",
                    help="config.json's _name_or_path (what a server names the model after)")
    ap.add_argument("--shape", default=None, metavar="H,HEADS,LAYERS,FFN",
                    help="another small shape: hidden size, heads, layers, intermediate size "
                         "(default 80,5,3,208; hidden/heads must be even)")
    args = ap.parse_args()
    if args.seed < 0:
        die("--seed must be >= 0")
    shape = None
    if args.shape:
        try:
            shape = [int(x) for x in args.shape.split(",")]
        except ValueError:
            shape = []
        if len(shape) != 4 or min(shape) < 1 or shape[0] % shape[1] or (shape[0] // shape[1]) % 2:
            die("--shape wants H,HEADS,LAYERS,FFN with H split into HEADS heads of an even size")
        if args.full:
            die("--shape and --full exclude each other")

    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as e:
        die("cannot create %s: %s" % (args.out, e))

    n_pieces = train_spm(args.corpus, args.out, args.vocab_size, args.seed)

    if args.full:
        dims = {"hidden": 1024, "heads": 16, "layers": 24, "ffn": 4096, "vocab": 250002,
                "matryoshka": [32, 64, 128, 256, 512, 768, 1024]}
        if n_pieces + 2 > 250002:
            die("tokenizer has too many pieces for vocab 250002")
    else:
        dims = {"hidden": 80, "heads": 5, "layers": 3, "ffn": 208, "vocab": n_pieces + 2,
                "matryoshka": [8, 16, 32, 64, 80]}
        if shape:
            h = shape[0]
            dims.update(hidden=h, heads=shape[1], layers=shape[2], ffn=shape[3],
                        matryoshka=[d for d in (8, 16, 32, 64) if d < h] + [h])

    cfg = make_config(dims, dims["vocab"], args.name)
    try:
        with open(os.path.join(args.out, "config.json"), "w", encoding="utf-8") as f:
            json.dump(cfg, f, indent=2, ensure_ascii=False)
            f.write("\n")
        n_t, n_p, n_bytes = write_safetensors(os.path.join(args.out, "model.safetensors"),
                                              tensor_plan(dims), args.dtype, args.seed)
    except OSError as e:
        die("writing %s: %s" % (args.out, e))

    print("gen_model.py: wrote %s: %s model (hidden %d, heads %d, layers %d, ffn %d, vocab %d), "
          "spm %d pieces, %d tensors, %d params, %s, %d bytes, seed %d"
          % (args.out, "full" if args.full else "small", dims["hidden"], dims["heads"], dims["layers"],
             dims["ffn"], dims["vocab"], n_pieces, n_t, n_p, DTYPES[args.dtype][0], n_bytes, args.seed))


if __name__ == "__main__":
    main()
