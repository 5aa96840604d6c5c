#!/bin/bash
# gguf_kquant8.sh — issue 16's K-quant check on the 8-block synthetic Llama
# (dim 1024, hidden 2816, 16 heads / 4 KV heads; tests/scripts/synth_model.py):
# `adaquant export --type Q2_K..Q6_K` of it, each file loaded and evaluated on
# 64 tokens by llama.cpp (node-llama-cpp@3.21.1's CPU build), its log-probs
# compared with the float64 NumPy forward of the same K-quant weights
# (tests/scripts/ggml_ref.py + hf_ref.py). The 1-block version of the same
# check is the ctest export_gguf_kquants; this one takes minutes (NumPy float64
# over 92M weights per type), so it is a benchmark, not a ctest.
# usage: bench/gguf_kquant8.sh BUILD_DIR [SHARED_DIR] [SCRATCH_DIR]
set -u
B=$(realpath "${1:?usage: gguf_kquant8.sh BUILD_DIR [SHARED_DIR] [SCRATCH_DIR]}")
S=$(realpath "${2:-$(dirname "$0")/../../shared}")
T=${3:-$(mktemp -d /tmp/aq_gguf_kquant8.XXXXXX)}
SRC=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$T"
echo "BLIS kernel: $("$B/adaquant" --version 2>&1 | sed -n 's/.*kernel \([A-Za-z0-9_]*\).*/\1/p' | head -n 1); load: $(uptime)"
t0=$SECONDS
AQ_CLI=$B/adaquant AQ_SOURCE_DIR=$SRC AQ_SHARED_DIR=$S \
  /usr/bin/python3 "$SRC/tests/test_export_gguf.py" "$T" "$B/npm-llamacpp" --kquants-8block
rc=$?
echo "gguf_kquant8: exit $rc in $((SECONDS - t0)) s (work files in $T)"
exit $rc
