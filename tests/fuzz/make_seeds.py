#!/usr/bin/env python3
"""Writes the seed corpora in tests/fuzz/corpus/<target>/ (run once; the
outputs are committed). Each seed is a file named by a short description."""
import json, os, struct, sys

here = os.path.dirname(os.path.abspath(__file__))
model = sys.argv[1] if len(sys.argv) > 1 else "build/testmodel"


def put(target, name, data):
    d = os.path.join(here, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


# ---- api: flags byte + body
bodies = {
    "string": '{"input":"hello"}',
    "list": '{"input":["a","b c",""]}',
    "objects": '{"input":[{"text":"x"},"y"],"model":"jina-embeddings-v3"}',
    "task": '{"input":"q","task":"retrieval.query","dimensions":8,"normalized":false}',
    "alias": '{"input":"q","task":"query","normalize":true,"input_type":"document"}',
    "enc_list": '{"input":"q","embedding_type":["float","base64","binary","ubinary"]}',
    "enc_fmt": '{"input":"q","encoding_format":"base64","encoding_type":null}',
    "late": '{"input":["a","b"],"late_chunking":true,"truncate":true}',
    "ids": '{"input":[[1,2,3]]}',
    "media": '{"input":[{"image":"http://x"}]}',
    "bad_model": '{"input":"a","model":"jina-clip-v2"}',
    "jina_model": '{"input":"a","model":"jina-ai/jina-embeddings-v3"}',
    "dims": '{"input":"a","dimensions":1e400}',
    "unicode": '{"input":"na\\u00efve \\ud83c\\udf63 \\ud800 caf\\u00e9"}',
    "nul": '{"input":"a\\u0000b"}',
    "dup": '{"input":5,"input":"a","task":null}',
    "multi": '{"input":"a","return_multivector":true,"user":"u","prompt_name":"query"}',
    "pieces": '{"input":"hello world","return_pieces":true}',
    "deep": '{"input":' + "[" * 40 + "]" * 40 + "}",
    "broken": '{"input":',
    "strict": '{"input":"a","bogus":{"x":[1,2,{"y":null}]}}',
}
for i, (k, v) in enumerate(bodies.items()):
    put("api", k, bytes([i % 64]) + v.encode())

# ---- tokenize: task, flags, max_tokens (le16), texts separated by 0xFF
def tk(task, flags, maxt, texts):
    return bytes([task, flags]) + struct.pack("<H", maxt) + b"\xff".join(texts)

put("tokenize", "plain", tk(5, 0, 512, [b"hello world"]))
put("tokenize", "task", tk(0, 0, 512, [b"what is a query", b""]))
put("tokenize", "late", tk(1, 1, 512, [b"chunk one.", b"chunk two!", "東京 🍣".encode()]))
put("tokenize", "truncate", tk(2, 2, 6, [b"a long text with many words to cut"]))
put("tokenize", "pieces", tk(3, 4, 100, ["naïve café ∑".encode(), b"x\x00y"]))
put("tokenize", "badutf8", tk(4, 0, 300, [b"\xc3\x28\xa0\xa1\xe2\x28\xa1\xf0\x90\x28\xbc"]))
put("tokenize", "spaces", tk(5, 3, 40, [b"   \t\n  ", b"a" * 300]))

# ---- model: mode byte (even: safetensors, odd: config.json)
def st(tensors, meta=True, pad=0):
    hdr, data = {}, b""
    for name, (dt, shape, raw) in tensors.items():
        hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if meta:
        hdr["__metadata__"] = {"format": "pt"}
    h = json.dumps(hdr).encode() + b" " * pad
    return struct.pack("<Q", len(h)) + h + data

f32 = lambda *v: struct.pack("<%df" % len(v), *v)
good = st({"a": ("F32", [2, 2], f32(1, 2, 3, 4)), "b": ("BF16", [3], b"\x80\x3f" * 3),
           "c": ("F16", [1, 2], b"\x00\x3c" * 2), "d": ("I64", [1], b"\0" * 8)})
put("model", "st_good", b"\x00" + good)
put("model", "st_truncated", b"\x00" + good[:-5])
put("model", "st_badlen", b"\x00" + struct.pack("<Q", 1 << 40) + good[8:])
put("model", "st_badjson", b"\x00" + struct.pack("<Q", 10) + b'{"a":[1,2' + b"\0" * 8)
put("model", "st_offsets", b"\x00" + st({"a": ("F32", [2], f32(1, 2, 3))}))
put("model", "st_scalar", b"\x00" + st({"s": ("F32", [], f32(7))}, meta=False, pad=3))
put("model", "st_empty", b"\x00" + st({"z": ("F32", [0, 4], b"")}))
try:
    cfg = open(os.path.join(model, "config.json"), "rb").read()
    put("model", "cfg_good", b"\x01" + cfg)
    c = json.loads(cfg)
    for k, v in [("hidden_size", 81), ("num_hidden_layers", 4), ("vocab_size", 5),
                 ("lora_adaptations", []), ("num_attention_heads", 0),
                 ("position_embedding_type", "absolute"), ("max_position_embeddings", 1)]:
        d = dict(c)
        d[k] = v
        put("model", "cfg_" + k, b"\x01" + json.dumps(d).encode())
    put("model", "cfg_broken", b"\x01" + cfg[: len(cfg) // 2])
except OSError:
    print("no %s/config.json: config seeds skipped" % model)
