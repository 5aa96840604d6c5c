#!/bin/bash
# scale.sh — per-rank peak RSS of the pipeline on synthetic Llama-shaped BF16
# models (issue 13 targets, docs/MEMORY.md): dim 1024 / hidden 2816, 16 heads
# / 4 KV heads, vocab 512 (the stories260K tokenizer: the embedding then stays
# small, so what is measured is how memory grows with depth).
#   1. 4 vs 16 blocks at P = 2: capture, then one calibrate shard (1 of 8,
#      cost-balanced, so it holds every kind of layer), each rank's peak RSS
#      from /usr/bin/time; target: 16 blocks < 1.10 x 4 blocks in calibration.
#   2. the 8-block model end to end at P = 2 (quantize, tuning and
#      evaluation included): report.json's predicted and measured peaks per
#      rank; target <= 1 GiB per rank.
# Measured (2026-12-07, 2-core machine at load ~15, skx kernel, default
# auto loss: KL at 4 blocks, block-fisher at 16), per-rank peak RSS in MiB:
#   capture    4 blocks 633 / 861, 16 blocks 1150 / 1378 (eager model: +60 %)
#   calibrate  4 blocks 567 / 165, 16 blocks 567 / 567  (lazy model: +0 %)
# and with the streaming capture on the lazy model (same day, skx, LOSS=block-fisher):
#   capture    4 blocks 493 / 328, 16 blocks 493 / 329  (+0 %)
# usage: bench/scale.sh ADAQUANT [SHARED_DIR] [SCRATCH_DIR]   (needs python3 + numpy; LOSS=kl|block-fisher|...)
set -u
AQ=${1:?usage: scale.sh ADAQUANT [SHARED_DIR] [SCRATCH_DIR]}
S=${2:-$(dirname "$0")/../../shared}
T=${3:-$(mktemp -d /tmp/aq_scale.XXXXXX)}
SYNTH=$(dirname "$0")/../tests/scripts/synth_model.py
TOK=$S/models/stories260K/tok512.bin
TEXT=$S/data/tinystories/validation.txt
MPI=(mpirun --allow-run-as-root --oversubscribe --mca pml ob1 --mca btl self,vader)
export AQ_PROGRESS=none OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# the same allocation loss at every depth (--loss auto switches to
# block-fisher above 50 M block parameters, i.e. between 4 and 16 blocks here)
CAL=(--calib-windows 8 --calib-len 128 --options w4a16 --iters 20 --init rtn --kl-windows 2
     --loss "${LOSS:-block-fisher}")
mkdir -p "$T"
echo "scratch: $T"

model() { # model LAYERS
    [ -d "$T/m$1" ] || /usr/bin/python3 "$SYNTH" llama "$T/m$1" --dtype bf16 --shards 2 --dim 1024 --hidden 2816 \
        --heads 16 --kv-heads 4 --vocab 512 --layers "$1" --max-pos 2048 --seed 1 || exit 1
}

peaks() { # peaks LOG: the "maxrss KB" lines of each rank, in MiB
    grep -o 'maxrss [0-9]*' "$1" | awk '{printf "%.0f ", $2 / 1024}'
}

depth() { # depth LAYERS
    local L=$1 w=$T/w$1
    model "$L"
    rm -rf "$w"
    "${MPI[@]}" -np 2 /usr/bin/time -f 'maxrss %M' "$AQ" capture "$T/m$L" --tokenizer "$TOK" --text "$TEXT" \
        --work "$w" "${CAL[@]}" > "$T/cap$L.log" 2>&1 || { echo "capture L=$L failed"; tail -5 "$T/cap$L.log"; return; }
    "${MPI[@]}" -np 2 /usr/bin/time -f 'maxrss %M' "$AQ" calibrate --work "$w" --shard 0 --shards 8 \
        > "$T/cal$L.log" 2>&1 || { echo "calibrate L=$L failed"; tail -5 "$T/cal$L.log"; return; }
    echo "L=$L  capture peak RSS per rank (MiB): $(peaks "$T/cap$L.log")  calibrate: $(peaks "$T/cal$L.log")"
}

depth 4
depth 16

model 8
rm -rf "$T/q8" "$T/wq8"
"${MPI[@]}" -np 2 "$AQ" quantize "$T/m8" --tokenizer "$TOK" --text "$TEXT" --out "$T/q8" --work "$T/wq8" "${CAL[@]}" \
    --target-bits 4 --tune-steps 4 --tune-docs 8 --tune-len 128 --eval-docs 8 --eval-len 128 > "$T/q8.log" 2>&1 \
    || { echo "quantize 8 blocks failed"; tail -5 "$T/q8.log"; exit 1; }
grep -A3 '^phases\|^memory' "$T/q8.log"
