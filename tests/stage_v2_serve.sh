#!/bin/sh
# stage_v2_serve.sh -- one server with a jina-embeddings-v3 model and two
# jina-embeddings-v2 models (WordPiece and byte-level BPE tokenizer.json; the
# en and the code layout): each v2 model against the float64 reference on the
# ids it served, late chunking, the task-less rules, v3 bit for bit as alone,
# concurrent requests to all three (tests/v2_serve_check.py).
set -u
BUILD=${BUILD:-build} TESTMODEL=${TESTMODEL:-build/testmodel} \
    TESTMODEL_V2=${TESTMODEL_V2:-build/testmodel-v2} \
    exec "${PYTHON:-/usr/bin/python3}" tests/v2_serve_check.py
