#!/bin/sh
# stage_model_faults.sh -- broken model directories must stop build/embedserve
# at startup with one clear line naming the problem and a non-zero exit,
# never a crash, a hang or a half-started server. The engine-level checks
# are in tests/test_safetensors.c; these are the same faults seen from the
# process: truncated, bad header, header not JSON, wrong shape, wrong dtype,
# missing tensor, empty file, missing/broken config.json and tokenizer, and
# a config.json naming an unknown architecture or a position scheme the
# architecture does not use; a FIFO or /dev/urandom in place of any of the
# three files (a FIFO would block the open, /dev/urandom grow memory), an
# oversized config.json or tokenizer file, a max_position_embeddings too
# small for a task's instruction, and an oversized instruction.
set -u
BUILD=${BUILD:-build}
TESTMODEL=${TESTMODEL:-build/testmodel}
PYTHON=${PYTHON:-python3}
work=$(mktemp -d "${TMPDIR:-/tmp}/model_faults.XXXXXX")
trap 'rm -rf "$work"' EXIT
passed=0
failed=0

# make CASE: a copy of the test model in $work/CASE with one fault applied
"$PYTHON" - "$TESTMODEL" "$work" <<'PY' || { echo "0 passed, 1 failed"; exit 1; }
import json, os, shutil, struct, sys
src, work = sys.argv[1], sys.argv[2]
raw = open(os.path.join(src, "model.safetensors"), "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
hdr, data = json.loads(raw[8:8 + n]), raw[8 + n:]

def case(name, st=None, config=None, tok=None, drop=()):
    d = os.path.join(work, name)
    os.makedirs(d)
    for f in ("config.json", "model.safetensors", "sentencepiece.bpe.model"):
        if f not in drop:
            shutil.copy(os.path.join(src, f), d)
    if st is not None:
        open(os.path.join(d, "model.safetensors"), "wb").write(st)
    if config is not None:
        open(os.path.join(d, "config.json"), "wb").write(config)
    if tok is not None:
        open(os.path.join(d, "sentencepiece.bpe.model"), "wb").write(tok)

def pack(h, body=data):
    j = json.dumps(h).encode()
    return struct.pack("<Q", len(j)) + j + body

names = [k for k in hdr if k != "__metadata__"]
mat = next(k for k in names if len(hdr[k]["shape"]) == 2 and hdr[k]["shape"][0] != hdr[k]["shape"][1])
case("truncated", st=raw[: len(raw) // 2])
case("truncated_header", st=raw[: 8 + n // 2])
case("bad_header_length", st=struct.pack("<Q", 1 << 40) + raw[8:])
case("header_not_json", st=struct.pack("<Q", n) + b"{" * n + data)
case("empty_file", st=b"")
h = json.loads(json.dumps(hdr)); h[mat]["shape"] = h[mat]["shape"][::-1]
case("wrong_shape", st=pack(h))
h = json.loads(json.dumps(hdr)); h[names[0]]["dtype"] = "I16"
case("wrong_dtype", st=pack(h))
h = json.loads(json.dumps(hdr)); victim = names[len(names) // 2]; del h[victim]
case("missing_tensor", st=pack(h))
cfg = json.load(open(os.path.join(src, "config.json")))
c = dict(cfg); c["hidden_size"] = cfg["hidden_size"] + 16
case("config_wrong_hidden_size", config=json.dumps(c).encode())
case("config_not_json", config=b'{"hidden_size": 80,')
c = dict(cfg); c["architectures"] = ["BertModel"]; c["model_type"] = "bert"
case("config_unknown_architecture", config=json.dumps(c).encode())
c = dict(cfg); c["position_embedding_type"] = "alibi"
case("config_alibi", config=json.dumps(c).encode())
case("no_config", drop=("config.json",))
case("no_weights", drop=("model.safetensors",))
case("no_tokenizer", drop=("sentencepiece.bpe.model",))
case("tokenizer_garbage", tok=b"\x00\x01not a sentencepiece model" * 10)

def special(name, fname, kind):  # a FIFO or /dev/urandom in place of a file
    case(name)
    f = os.path.join(work, name, fname)
    os.remove(f)
    if kind == "fifo":
        os.mkfifo(f)
    else:
        os.symlink("/dev/urandom", f)
special("weights_fifo", "model.safetensors", "fifo")
special("weights_urandom", "model.safetensors", "urandom")
special("config_fifo", "config.json", "fifo")
special("config_urandom", "config.json", "urandom")
special("tokenizer_fifo", "sentencepiece.bpe.model", "fifo")
special("tokenizer_urandom", "sentencepiece.bpe.model", "urandom")
case("config_huge", config=json.dumps(cfg).encode() + b" " * (2 << 20))
case("tokenizer_huge")
with open(os.path.join(work, "tokenizer_huge", "sentencepiece.bpe.model"), "r+b") as f:
    f.truncate((64 << 20) + 1)  # sparse: costs no disk
c = dict(cfg); c["max_position_embeddings"] = 8
case("config_max_position_below_prefix", config=json.dumps(c).encode())
c = dict(cfg); c["task_instructions"] = dict(cfg["task_instructions"])
c["task_instructions"]["retrieval.query"] = "Represent " * 500
case("config_instruction_oversized", config=json.dumps(c).encode())
open(os.path.join(work, "expect.txt"), "w").write(
    "truncated safetensors\ntruncated_header safetensors\nbad_header_length safetensors\n"
    "header_not_json JSON\nempty_file safetensors\nwrong_shape %s\nwrong_dtype %s\n"
    "missing_tensor %s\nconfig_wrong_hidden_size model\nconfig_not_json config.json\n"
    "config_unknown_architecture unknown.model.architecture.*known:.jina-embeddings-v3\n"
    "config_alibi position_embedding_type..alibi..is.not.supported\n"
    "no_config config.json\nno_weights model.safetensors\nno_tokenizer sentencepiece\n"
    "tokenizer_garbage sentencepiece\n"
    "weights_fifo model.safetensors:.not.a.regular.file\n"
    "weights_urandom model.safetensors:.not.a.regular.file\n"
    "config_fifo config.json:.not.a.regular.file\n"
    "config_urandom config.json:.not.a.regular.file\n"
    "tokenizer_fifo sentencepiece.bpe.model:.sentencepiece.model.is.not.a.regular.file\n"
    "tokenizer_urandom sentencepiece.bpe.model:.sentencepiece.model.is.not.a.regular.file\n"
    "config_huge config.json:.larger.than.1.MiB\n"
    "tokenizer_huge sentencepiece.model.larger.than.64.MiB\n"
    "config_max_position_below_prefix instruction.of.task.'retrieval.query'.takes\n"
    "config_instruction_oversized task_instructions.*retrieval.query.*at.most.4096\n"
    % (mat, names[0], victim))
PY

while read -r name want; do
    out=$(timeout 120 "$BUILD/embedserve" --model "$work/$name" --host 127.0.0.1 --port 0 \
          --dtype f32 --log-level error 2>&1 </dev/null)
    rc=$?
    line=$(echo "$out" | grep -m1 '^embedserve:')
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$rc" -lt 128 ] && [ -n "$line" ] &&
        echo "$line" | grep -q -- "$want" && ! echo "$out" | grep -q 'Sanitizer'; then
        passed=$((passed + 1))
        echo "ok   $name (exit $rc): $line"
    else
        failed=$((failed + 1))
        echo "FAIL $name: exit $rc, want a non-zero exit and a line naming '$want'; got:"
        echo "$out" | tail -n 15
    fi
done <"$work/expect.txt"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
