"""v2_to_gguf.py --gguf-py DIR --model DIR --out FILE [--outtype f32|f16]

Converts a jina-embeddings-v2-en-shaped checkpoint (model.safetensors,
config.json, a WordPiece tokenizer.json) into a GGUF file for llama.cpp's
`jina-bert-v2` architecture, for the llama.cpp side of `make bench`
(BENCH_LLAMA=1). llama.cpp's own convert_hf_to_gguf.py needs torch and
transformers; this does the same steps as its JinaBertV2Model / BertModel
classes with numpy and llama.cpp's gguf-py (DIR, taken from the llama.cpp
source being benchmarked, so names and keys follow that version):

- tensors: "bert." prefix, gamma/beta, position_ids, pooler and MLM heads
  dropped as BertModel does; every other name mapped by gguf-py's
  TensorNameMap for JINA_BERT_V2. mlp.gated_layers is kept whole as ffn_up
  (2*ffn rows, the gate half first): llama.cpp then runs GEGLU, GELU on the
  first half times the second, which is the -en layout. The -code variant
  (up_gated_layer + up_layer) is refused: llama.cpp's converter maps it without
  swapping the halves, so llama.cpp computes a different model for it.
- 1-D tensors, norms and token_types stay f32; the rest f32 or f16.
- hyperparameters as TextModel.set_gguf_parameters writes them (block count,
  context, width, ffn, heads, layer_norm_eps, file type), causal attention
  off, pooling mean (the v2 repositories' 1_Pooling/config.json says mean).
  ALiBi needs no key: llama.cpp fixes max bias 8 for jina-bert-v2.
- vocabulary as BertModel.set_vocab: tokenizer.ggml.model "bert", WordPiece
  tokens in "phantom space" form ("##x" -> "x", other normal tokens get a
  leading U+2581, control tokens unchanged), token types (added special tokens
  CONTROL, the rest NORMAL, ids missing from the vocab "[PADi]" UNUSED up to
  config vocab_size), token_type_count from type_vocab_size, and the special
  ids through gguf-py's SpecialVocab. Without a tokenizer_config.json the
  BertTokenizer defaults ([CLS] [SEP] [PAD] [UNK] [MASK]) are used, which is
  what the v2-en repositories' tokenizer_config.json holds.
"""
import argparse, json, os, struct, sys, tempfile

import numpy as np

ST_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": None}


def read_safetensors(path):
    """name -> float32 numpy array (bf16 widened)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        base = 8 + n
    raw = np.memmap(path, dtype=np.uint8, mode="r")
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        a, b = meta["data_offsets"]
        buf = raw[base + a:base + b]
        dt = meta["dtype"]
        if dt == "BF16":
            arr = (buf.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
        elif dt in ST_DTYPES:
            arr = buf.view(ST_DTYPES[dt])
        else:
            sys.exit("v2_to_gguf: %s: unsupported dtype %s" % (name, dt))
        out[name] = np.asarray(arr, dtype=np.float32).reshape(meta["shape"])
    return out


def bert_filter(name):
    """BertModel.filter_tensors: the renamed tensor, or None when dropped."""
    if name.startswith("bert."):
        name = name[5:]
    if name.endswith(".gamma"):
        name = name[:-6] + ".weight"
    if name.endswith(".beta"):
        name = name[:-5] + ".bias"
    if name in ("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias"):
        return None
    if name.startswith("cls.predictions") or name.startswith("cls.seq_relationship"):
        return None
    return name


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf-py", required=True, help="llama.cpp's gguf-py directory")
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--outtype", choices=("f32", "f16"), default="f32")
    args = ap.parse_args()
    sys.path.insert(0, args.gguf_py)
    import gguf

    hp = json.load(open(os.path.join(args.model, "config.json")))
    tok_json = json.load(open(os.path.join(args.model, "tokenizer.json"), encoding="utf-8"))
    tcfg_path = os.path.join(args.model, "tokenizer_config.json")
    tcfg = json.load(open(tcfg_path)) if os.path.isfile(tcfg_path) else None
    if tcfg is not None and tcfg.get("tokenizer_class", "BertTokenizer") != "BertTokenizer":
        sys.exit("v2_to_gguf: only the WordPiece (BertTokenizer) v2 models are converted")
    if tok_json["model"]["type"] != "WordPiece":
        sys.exit("v2_to_gguf: tokenizer.json is not WordPiece")

    tensors = read_safetensors(os.path.join(args.model, "model.safetensors"))
    if any("up_gated_layer" in n for n in tensors):
        sys.exit("v2_to_gguf: the -code layout (up_gated_layer/up_layer) is not converted: llama.cpp "
                 "maps its GLU halves unswapped, so it is no reference for that variant")

    arch = gguf.MODEL_ARCH.JINA_BERT_V2
    n_layer = hp["num_hidden_layers"]
    tmap = gguf.get_tensor_name_map(arch, n_layer)
    ftype = gguf.LlamaFileType.ALL_F32 if args.outtype == "f32" else gguf.LlamaFileType.MOSTLY_F16

    w = gguf.GGUFWriter(args.out, gguf.MODEL_ARCH_NAMES[arch])
    w.add_name(os.path.basename(os.path.normpath(args.model)))
    # TextModel.set_gguf_parameters
    w.add_block_count(n_layer)
    w.add_context_length(hp["max_position_embeddings"])
    w.add_embedding_length(hp["hidden_size"])
    w.add_feed_forward_length(hp["intermediate_size"])
    w.add_head_count(hp["num_attention_heads"])
    w.add_layer_norm_eps(hp["layer_norm_eps"])
    w.add_file_type(ftype)
    # BertModel.set_gguf_parameters
    w.add_causal_attention(False)
    w.add_pooling_type(gguf.PoolingType.MEAN)

    # BertModel.set_vocab (get_vocab_base + phantom space)
    vocab_size = hp["vocab_size"]
    rev = {i: t for t, i in tok_json["model"]["vocab"].items()}
    added = {a["content"]: a for a in tok_json.get("added_tokens", [])}
    if max(rev) >= vocab_size:
        sys.exit("v2_to_gguf: tokenizer.json has ids >= config vocab_size %d" % vocab_size)
    tokens, toktypes = [], []
    for i in range(vocab_size):
        if i not in rev:
            tokens.append("[PAD%d]" % i)
            toktypes.append(gguf.TokenType.UNUSED)
            continue
        t = rev[i]
        if t in added:
            toktypes.append(gguf.TokenType.CONTROL if added[t].get("special") else gguf.TokenType.USER_DEFINED)
        else:
            toktypes.append(gguf.TokenType.NORMAL)
        tokens.append(t)
    w.add_token_type_count(hp.get("type_vocab_size", 1))

    def phantom(tok, toktype):
        if toktype == gguf.TokenType.CONTROL:
            return tok
        if tok.startswith("##"):
            return tok[2:]
        return "\u2581" + tok

    tokens = [phantom(t, k) for t, k in zip(tokens, toktypes)]
    w.add_tokenizer_model("bert")
    w.add_tokenizer_pre("jina-v2-en")
    w.add_token_list(tokens)
    w.add_token_types(toktypes)
    with tempfile.TemporaryDirectory() as td:
        # SpecialVocab reads the special tokens from tokenizer.json and
        # tokenizer_config.json in one directory.
        with open(os.path.join(td, "tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump(tok_json, f)
        if tcfg is None:
            tcfg = {"tokenizer_class": "BertTokenizer", "cls_token": "[CLS]", "sep_token": "[SEP]",
                    "pad_token": "[PAD]", "unk_token": "[UNK]", "mask_token": "[MASK]",
                    "do_lower_case": True}
        with open(os.path.join(td, "tokenizer_config.json"), "w") as f:
            json.dump(tcfg, f)
        gguf.SpecialVocab(td, n_vocab=len(tokens)).add_to_gguf(w)

    n_written = 0
    for hf_name, data in tensors.items():
        name = bert_filter(hf_name)
        if name is None:
            continue
        new_name = tmap.get_name(name, try_suffixes=(".weight", ".bias"))
        if new_name is None:
            sys.exit("v2_to_gguf: cannot map tensor %r" % hf_name)
        keep_f32 = (data.ndim <= 1 or new_name.endswith("_norm.weight") or not new_name.endswith(".weight")
                    or new_name.startswith(gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.TOKEN_TYPES]))
        if ftype == gguf.LlamaFileType.MOSTLY_F16 and not keep_f32:
            data = data.astype(np.float16)
        w.add_tensor(new_name, np.ascontiguousarray(data))
        n_written += 1

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print("v2_to_gguf: wrote %s: %d tensors, %s, vocab %d" % (args.out, n_written, args.outtype, vocab_size))


if __name__ == "__main__":
    main()
