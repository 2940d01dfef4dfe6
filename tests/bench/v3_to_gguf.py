"""v3_to_gguf.py --gguf-py DIR --model DIR --out FILE [--outtype f32|f16|bf16|q8_0]
                [--lora-prefix PREFIX]

Converts a jina-embeddings-v3 checkpoint (model.safetensors, config.json,
sentencepiece.bpe.model) into a GGUF file for llama.cpp's `jina-bert-v3`
architecture, and (with --lora-prefix) each task adapter into a LoRA GGUF
PREFIX<task>.gguf, for the llama.cpp side of `make bench` (BENCH_LLAMA=1).
llama.cpp's convert_hf_to_gguf.py needs torch, transformers and protobuf; this
does the steps of its XLMRobertaModel / BertModel classes with numpy, the
sentencepiece module and llama.cpp's own gguf-py (DIR, from the llama.cpp
source being benchmarked, so names and keys follow that version):

- tensors: "roberta." prefix dropped, ".parametrizations.X.original" read as
  X, pooler dropped, names mapped by gguf-py's TensorNameMap for
  JINA_BERT_V3; the position table (none in v3: rotary) would lose its first
  pad_token_id + 1 rows.
- the stacked task adapters (lora_A [tasks, r, in], lora_B [tasks, out, r])
  are split per task into "<tensor>.lora_a"/".lora_b" F32 tensors, the token
  embedding's lora_b transposed and the token types' a/b swapped as the
  converter does; each file carries adapter.lora.alpha (lora_alpha),
  adapter.lora.task_name and adapter.lora.prompt_prefix (task_instructions).
  llama.cpp scales by alpha / rank, as the model does.
- 1-D tensors, norms and token_types stay f32; the other weights f32, f16,
  bf16 (the checkpoint's own values when it is bf16) or q8_0 (gguf-py's
  numpy quantiser, what llama-quantize's Q8_0 computes).
- hyperparameters as TextModel/BertModel write them (blocks, context
  max_position_embeddings - pad_token_id - 1, width, ffn, heads, rope base
  rotary_emb_base, layer_norm_eps, file type, non-causal) and pooling mean
  (the v3 repository's sentence-transformers pooling).
- vocabulary as _xlmroberta_set_vocab: the sentencepiece pieces, scores and
  kinds, realigned to the fairseq ids (<s> <pad> </s> <unk>, then piece i at
  id i + 1), padded to config vocab_size with "[PADi]" UNUSED tokens of
  score -10000 (never chosen: the unigram search prefers any real piece, and
  the unknown score comes from the NORMAL pieces only), tokenizer model "t5"
  (llama.cpp's unigram) with the model's precompiled_charsmap,
  add_dummy_prefix and remove_extra_whitespaces (read from the model file's
  normalizer_spec), and the special ids bos 0, pad 1, eos/sep 2, unk 3, with
  <s> and </s> added around every input as XLM-R's post-processor does.
"""
import argparse, json, os, sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from v2_to_gguf import read_safetensors  # noqa: E402


def _varint(b, i):
    v = s = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << s
        s += 7
        if c < 0x80:
            return v, i


def _fields(b):
    """(field number, wire type, value) of one protobuf message, in order."""
    i, out = 0, []
    while i < len(b):
        key, i = _varint(b, i)
        f, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(b, i)
        elif wt == 1:
            v, i = b[i:i + 8], i + 8
        elif wt == 2:
            n, i = _varint(b, i)
            v, i = b[i:i + n], i + n
        elif wt == 5:
            v, i = b[i:i + 4], i + 4
        else:
            sys.exit("v3_to_gguf: unexpected protobuf wire type %d in the sentencepiece model" % wt)
        out.append((f, wt, v))
    return out


def sp_normalizer(path):
    """(model_type, precompiled_charsmap, add_dummy_prefix, remove_extra_whitespaces)
    from the ModelProto's trainer_spec (2) and normalizer_spec (3)."""
    model_type, charsmap, dummy, strip = 1, b"", True, True
    for f, _, v in _fields(open(path, "rb").read()):
        if f == 2:
            for g, _, w in _fields(v):
                if g == 3:
                    model_type = w
        elif f == 3:
            for g, _, w in _fields(v):
                if g == 2:
                    charsmap = bytes(w)
                elif g == 3:
                    dummy = bool(w)
                elif g == 4:
                    strip = bool(w)
    return model_type, charsmap, dummy, strip


def write_vocab(w, gguf, model_dir, vocab_size, type_vocab_size):
    import sentencepiece as spm

    path = os.path.join(model_dir, "sentencepiece.bpe.model")
    model_type, charsmap, dummy, strip = sp_normalizer(path)
    if model_type != 1:
        sys.exit("v3_to_gguf: %s is not a unigram sentencepiece model" % path)
    sp = spm.SentencePieceProcessor(model_file=path)
    n = max(vocab_size, sp.vocab_size())
    T = gguf.TokenType
    tokens = [("[PAD%d]" % i).encode() for i in range(n)]
    scores = [-10000.0] * n
    types = [T.UNUSED] * n
    for i in range(sp.vocab_size()):
        tokens[i] = sp.id_to_piece(i).encode("utf-8")
        scores[i] = sp.get_score(i)
        types[i] = (T.UNKNOWN if sp.is_unknown(i) else T.CONTROL if sp.is_control(i)
                    else T.UNUSED if sp.is_unused(i) else T.BYTE if sp.is_byte(i) else T.NORMAL)
    # fairseq realignment, as the converter does it
    tokens = [b"<s>", b"<pad>", b"</s>", b"<unk>"] + tokens[3:-1]
    scores = [0.0] * 4 + scores[3:-1]
    types = [T.CONTROL, T.CONTROL, T.CONTROL, T.UNKNOWN] + types[3:-1]
    w.add_tokenizer_model("t5")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_add_space_prefix(dummy)
    w.add_token_type_count(type_vocab_size)
    w.add_remove_extra_whitespaces(strip)
    if charsmap:
        w.add_precompiled_charsmap(charsmap)
    # what gguf-py's SpecialVocab reads from the v3 repository's tokenizer
    # files (its post-processor wraps every input in <s> ... </s>)
    w.add_bos_token_id(0)
    w.add_pad_token_id(1)
    w.add_eos_token_id(2)
    w.add_sep_token_id(2)
    w.add_unk_token_id(3)
    w.add_add_bos_token(True)
    w.add_add_eos_token(True)
    return len(tokens)


def hf_name(name):
    """XLMRobertaModel/BertModel.filter_tensors: the renamed tensor, or None."""
    if name.startswith("roberta."):
        name = name[8:]
    if ".parametrizations." in name:
        name = name.replace(".parametrizations.", ".")
        if name.endswith(".original"):
            name = name[:-9]
    if name in ("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias"):
        return None
    if name.startswith("pooler.") or name.startswith("cls.") or name.startswith("lm_head."):
        return None
    return name


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf-py", required=True, help="llama.cpp's gguf-py directory")
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--outtype", choices=("f32", "f16", "bf16", "q8_0"), default="f32")
    ap.add_argument("--lora-prefix", help="also write each task adapter to PREFIX<task>.gguf")
    ap.add_argument("--fold-token-types", action="store_true",
                    help="fold the token-type adapter into the token-embedding one (llama.cpp ignores it)")
    args = ap.parse_args()
    sys.path.insert(0, args.gguf_py)
    import gguf

    hp = json.load(open(os.path.join(args.model, "config.json")))
    tasks = hp.get("lora_adaptations") or []
    if not tasks:
        sys.exit("v3_to_gguf: config.json has no lora_adaptations: not a jina-embeddings-v3 checkpoint")
    tensors = read_safetensors(os.path.join(args.model, "model.safetensors"))

    arch = gguf.MODEL_ARCH.JINA_BERT_V3
    n_layer = hp["num_hidden_layers"]
    tmap = gguf.get_tensor_name_map(arch, n_layer)
    F = gguf.LlamaFileType
    Q = gguf.GGMLQuantizationType
    ftype = {"f32": F.ALL_F32, "f16": F.MOSTLY_F16, "bf16": F.MOSTLY_BF16, "q8_0": F.MOSTLY_Q8_0}[args.outtype]
    pos_offset = hp["pad_token_id"] + 1 if hp.get("pad_token_id") is not None else 0

    w = gguf.GGUFWriter(args.out, gguf.MODEL_ARCH_NAMES[arch])
    w.add_type(gguf.GGUFType.MODEL)
    w.add_name(os.path.basename(os.path.normpath(args.model)))
    w.add_block_count(n_layer)
    w.add_context_length(hp["max_position_embeddings"] - pos_offset)
    w.add_embedding_length(hp["hidden_size"])
    w.add_feed_forward_length(hp["intermediate_size"])
    w.add_head_count(hp["num_attention_heads"])
    if hp.get("rotary_emb_base") is not None:
        w.add_rope_freq_base(hp["rotary_emb_base"])
    w.add_layer_norm_eps(hp["layer_norm_eps"])
    w.add_file_type(ftype)
    w.add_causal_attention(False)
    w.add_pooling_type(gguf.PoolingType.MEAN)
    n_vocab = write_vocab(w, gguf, args.model, hp["vocab_size"], hp.get("type_vocab_size", 1))

    alpha = float(hp.get("lora_alpha") or 1.0)
    loras = {}
    if args.lora_prefix:
        prefixes = hp.get("task_instructions") or {}
        for t in tasks:
            lw = gguf.GGUFWriter(args.lora_prefix + t + ".gguf", gguf.MODEL_ARCH_NAMES[arch])
            lw.add_type(gguf.GGUFType.ADAPTER)
            lw.add_string(gguf.Keys.Adapter.TYPE, "lora")
            lw.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
            lw.add_string(gguf.Keys.Adapter.LORA_TASK_NAME, t)
            if t in prefixes:
                lw.add_string(gguf.Keys.Adapter.LORA_PROMPT_PREFIX, prefixes[t])
            loras[t] = lw

    # llama.cpp adds the token-type row without its adapter (models/bert.cpp),
    # which would leave the term alpha / r * tA @ tB out of every token's
    # input; with --fold-token-types it is folded into the token-embedding
    # adapter as one more rank (a column of ones in lora_a), which gives the
    # model's own sum
    tt = "roberta.embeddings.token_type_embeddings.parametrizations.weight.0."
    fold = args.fold_token_types and tt + "lora_A" in tensors and hp.get("type_vocab_size", 1) == 1
    if fold:
        tt_a, tt_b = tensors[tt + "lora_A"], tensors[tt + "lora_B"]
    n_written = 0
    for raw_name, data in tensors.items():
        name = hf_name(raw_name)
        if name is None:
            continue
        if name.endswith(".0.lora_A") or name.endswith(".0.lora_B"):
            if data.shape[0] != len(tasks):
                sys.exit("v3_to_gguf: %s stacks %d adapters, config.json names %d"
                         % (raw_name, data.shape[0], len(tasks)))
            base = tmap.get_name(name[:-9], try_suffixes=(".weight", ".bias"))
            if base is None:
                sys.exit("v3_to_gguf: cannot map tensor %r" % raw_name)
            if fold and base == "token_types.weight":
                continue
            for i, lw in enumerate(loras.values()):
                new_name = base + name[-7:].lower()
                d = data[i]
                if fold and new_name == "token_embd.weight.lora_a":
                    d = np.concatenate([d, np.ones((d.shape[0], 1), np.float32)], axis=1)
                elif fold and new_name == "token_embd.weight.lora_b":
                    # rank r + 1, so llama.cpp scales by alpha / (r + 1):
                    # the r rows grow by (r + 1) / r, the new row is the
                    # token-type delta alpha / r * tA @ tB over that scale
                    r = d.shape[0]
                    ttd = tt_a[i] @ tt_b[i] / r * alpha
                    d = np.concatenate([d * (r + 1) / r, ttd * (r + 1) / alpha], axis=0)
                if new_name == "token_embd.weight.lora_b":
                    d = d.T
                elif new_name.startswith("token_types.weight."):
                    new_name = new_name[:-1] + ("a" if new_name[-1:] == "b" else "b")
                lw.add_tensor(new_name, np.ascontiguousarray(d, dtype=np.float32), raw_dtype=Q.F32)
            continue
        if name == "embeddings.position_embeddings.weight" and pos_offset:
            data = data[pos_offset:, :]
        new_name = tmap.get_name(name, try_suffixes=(".weight", ".bias"))
        if new_name is None:
            sys.exit("v3_to_gguf: cannot map tensor %r" % raw_name)
        keep_f32 = (data.ndim <= 1 or new_name.endswith("_norm.weight") or not new_name.endswith(".weight")
                    or new_name.startswith(gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.TOKEN_TYPES]))
        data = np.ascontiguousarray(data)
        if keep_f32 or args.outtype == "f32":
            w.add_tensor(new_name, data)
        elif args.outtype == "f16":
            w.add_tensor(new_name, data.astype(np.float16))
        else:
            qt = Q.BF16 if args.outtype == "bf16" else Q.Q8_0
            w.add_tensor(new_name, gguf.quants.quantize(data, qt), raw_dtype=qt)
        n_written += 1

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    for lw in loras.values():
        lw.write_header_to_file()
        lw.write_kv_data_to_file()
        lw.write_tensors_to_file()
        lw.close()
    print("v3_to_gguf: wrote %s: %d tensors, %s, vocab %d%s" % (
        args.out, n_written, args.outtype, n_vocab,
        "; LoRA %s<task>.gguf for %s" % (args.lora_prefix, ", ".join(loras)) if loras else ""))


if __name__ == "__main__":
    main()
