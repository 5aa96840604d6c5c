#!/bin/bash
# pipe_bench.sh — end-to-end benchmark of `adaquant quantize` on stories260K:
# wall time for P = 1 and P = 2 with the per-phase breakdown, and the quality
# (full-split perplexity) of uniform w4a16, uniform w4a8, mixed at 4.0 and at
# 3.0 average weight bits, against the targets of issue #6, and the mixed
# 4.0-bit model without global tuning (docs/TUNE.md).
# usage: bench/pipe_bench.sh ADAQUANT [SHARED_DIR] [SCRATCH_DIR]
set -u
AQ=${1:?usage: pipe_bench.sh ADAQUANT [SHARED_DIR] [SCRATCH_DIR]}
S=${2:-$(dirname "$0")/../../shared}
T=${3:-$(mktemp -d /tmp/aq_pipe_bench.XXXXXX)}
MODEL=$S/models/stories260K/stories260K.bin
TOK=$S/models/stories260K/tok512.bin
TEXT=$S/data/tinystories/validation.txt
MPI=(mpirun --allow-run-as-root --oversubscribe --mca pml ob1 --mca btl self,vader)
export AQ_PROGRESS=none OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mkdir -p "$T"
echo "scratch: $T"

q() { # q NAME NP [extra quantize options...]
    local name=$1 np=$2; shift 2
    rm -rf "$T/$name"
    local t0=$(date +%s.%N)
    "${MPI[@]}" -np "$np" "$AQ" quantize "$MODEL" --tokenizer "$TOK" --calib-text "$TEXT" --out "$T/$name" "$@" \
        > "$T/$name.log" 2>&1 || { echo "$name: FAILED (see $T/$name.log)"; tail -5 "$T/$name.log"; return 1; }
    local t1=$(date +%s.%N)
    printf '%-10s P=%d  %6.1f s  | %s | %s\n' "$name" "$np" "$(awk "BEGIN{print $t1 - $t0}")" \
        "$(grep -o 'quantized [0-9][0-9.]*' "$T/$name.log" | head -1)" "$(grep '^phases' "$T/$name.log")"
}

echo "== speed: default settings (64 windows x 256 tokens, w8a16,w6a16,w4a16,w3a16, --target-bits 4.0)"
q p1 1 --work "$T/w_p1"
q p2 2 --work "$T/w_p2"
cmp -s "$T/p1/model.safetensors" "$T/p2/model.safetensors" && echo "P=1 and P=2 outputs identical" \
    || echo "P=1 and P=2 outputs DIFFER"
echo "== quality (FP32 perplexity 6.099; targets: w4a16 <= 6.45, w4a8 <= 6.55, mixed 4.0 <= 6.30, mixed 3.0 <= 8.0)"
echo "mixed 4.0: see p2 above"
W=(--work "$T/w_p2" --resume)
q notune4 2 "${W[@]}" --no-tune
q u_w4a16 2 "${W[@]}" --options w4a16 --target-bits 4
q u_w4a8 2 "${W[@]}" --options w4a8 --target-bits 4
q mixed3 2 "${W[@]}" --options w8a16,w6a16,w4a16,w3a16,w2a16 --target-bits 3
q seq4 2 "${W[@]}" --mode sequential
echo "(mixed 4.0 parallel = p2; notune4 = p2's allocation without global tuning; seq4 = the same allocation"
echo " recalibrated with --mode sequential)"
