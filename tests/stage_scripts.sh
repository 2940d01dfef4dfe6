#!/bin/sh
# stage_scripts.sh -- scripts/download-model: offline failure (fast, clear,
# nothing left under a final name), a verified download from a loopback fake
# of Hugging Face, a checksum mismatch, and resuming a partial file; the
# jina-embeddings-v2 repositories by name, and an unknown name refused.
set -u
PYTHON=${PYTHON:-/usr/bin/python3}
TESTMODEL=${TESTMODEL:-build/testmodel}
TESTMODEL_V2=${TESTMODEL_V2:-build/testmodel-v2}
pass=0
fail=0
check() { # check DESCRIPTION COMMAND...
    d=$1; shift; if "$@"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $d"; fi
}
t=$(mktemp -d)
srv=""
trap '[ -n "$srv" ] && kill $srv 2>/dev/null; rm -rf "$t"' EXIT

# 1. offline: a closed loopback port stands in for no network
start=$(date +%s)
HF_ENDPOINT=http://127.0.0.1:9 DOWNLOAD_CONNECT_TIMEOUT=3 scripts/download-model "$t/off" >"$t/log" 2>&1
rc=$?
took=$(($(date +%s) - start))
check "offline exits non-zero" [ "$rc" -ne 0 ]
check "offline fails within 15 s (took ${took}s)" [ "$took" -le 15 ]
for f in config.json model.safetensors sentencepiece.bpe.model; do
    check "offline names $f" grep -q "$f" "$t/log"
    check "offline leaves no $f" [ ! -e "$t/off/$f" ]
done
check "offline says where to copy them" grep -q "copy them into" "$t/log"

# 2. a fake endpoint serving the generated test model
mkdir -p "$t/hf/jinaai/jina-embeddings-v3" "$t/hf/FacebookAI/xlm-roberta-large"
cp "$TESTMODEL/config.json" "$TESTMODEL/model.safetensors" "$t/hf/jinaai/jina-embeddings-v3/"
cp "$TESTMODEL/sentencepiece.bpe.model" "$t/hf/FacebookAI/xlm-roberta-large/"
serve() { # serve [--lie]: starts fake_hf.py, sets $srv and $port
    rm -f "$t/port"
    "$PYTHON" tests/fake_hf.py "$t/hf" "$@" >"$t/port" 2>/dev/null &
    srv=$!
    for _ in 1 2 3 4 5 6 7 8 9 10; do [ -s "$t/port" ] && break; sleep 0.2; done
    port=$(cat "$t/port")
}
serve
HF_ENDPOINT=http://127.0.0.1:$port scripts/download-model "$t/ok" >"$t/log" 2>&1
check "download succeeds" [ $? -eq 0 ]
for f in config.json model.safetensors sentencepiece.bpe.model; do
    check "downloaded $f is identical" cmp -s "$t/ok/$f" "$TESTMODEL/$f"
done
check "no .part left" [ -z "$(ls "$t/ok" | grep '\.part$')" ]
HF_ENDPOINT=http://127.0.0.1:$port scripts/download-model "$t/ok" >"$t/log" 2>&1
check "second run keeps verified files" grep -q "^ok   $t/ok/model.safetensors" "$t/log"

# 3. resume: a partial .part is completed, not restarted
mkdir -p "$t/res"
head -c 1000 "$TESTMODEL/model.safetensors" >"$t/res/model.safetensors.part"
HF_ENDPOINT=http://127.0.0.1:$port scripts/download-model "$t/res" >"$t/log" 2>&1
check "resumed download is identical" cmp -s "$t/res/model.safetensors" "$TESTMODEL/model.safetensors"

# 3b. a v2 repository by name: its four files from jinaai/NAME into models/NAME
v2=jinaai/jina-embeddings-v2-base-code
mkdir -p "$t/hf/$v2"
cp "$TESTMODEL_V2/code/config.json" "$TESTMODEL_V2/code/model.safetensors" "$t/hf/$v2/"
printf '{"version": "1.0", "model": {"type": "BPE"}}\n' >"$t/hf/$v2/tokenizer.json"
printf '{"tokenizer_class": "RobertaTokenizer"}\n' >"$t/hf/$v2/tokenizer_config.json"
(root=$(pwd) && cd "$t" && HF_ENDPOINT=http://127.0.0.1:$port "$root/scripts/download-model" \
    --model jina-embeddings-v2-base-code >"$t/log" 2>&1)
check "v2 download succeeds" [ $? -eq 0 ]
for f in config.json model.safetensors tokenizer.json tokenizer_config.json; do
    check "v2 $f is identical" cmp -s "$t/models/jina-embeddings-v2-base-code/$f" "$t/hf/$v2/$f"
done
HF_ENDPOINT=http://127.0.0.1:$port scripts/download-model --model jina-embeddings-v2-small-en \
    "$t/v2small" >"$t/log" 2>&1
check "a v2 repository the endpoint lacks fails" [ $? -ne 0 ]
check "it names the repository and the files" \
    grep -q "jinaai/jina-embeddings-v2-small-en/resolve/main/tokenizer.json" "$t/log"
check "it says what to do with only a pytorch_model.bin" grep -q "pytorch_model.bin" "$t/log"
scripts/download-model --model jina-embeddings-v2-large-en "$t/x" >"$t/log" 2>&1
check "unknown model refused (rc 2)" [ $? -eq 2 ]
check "unknown model names the known ones" grep -q "jina-embeddings-v2-base-zh" "$t/log"
check "unknown model creates nothing" [ ! -e "$t/x" ]
kill $srv
wait $srv 2>/dev/null

# 4. checksum mismatch: nothing under the final name
serve --lie
HF_ENDPOINT=http://127.0.0.1:$port scripts/download-model "$t/bad" >"$t/log" 2>&1
check "mismatch exits non-zero" [ $? -ne 0 ]
check "mismatch is reported" grep -q "checksum mismatch" "$t/log"
check "mismatched file not kept" [ ! -e "$t/bad/model.safetensors" ]

echo "scripts: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
