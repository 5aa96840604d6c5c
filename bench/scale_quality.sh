#!/bin/bash
# scale_quality.sh — issue 13 items 3 and 4 on stories260K (docs/ALLOCATE.md
# "Sensitivity", docs/TUNE.md "Block-wise"): the final perplexity (full
# evaluation split, after tuning) of the allocation each sensitivity loss
# gives at 4.0 bits (default menu) and 3.0 bits (w2a16 added to the menu), and
# block-wise vs global tuning. The Spearman correlations over all (layer,
# option) tasks and the untuned allocations come from
#   bench_quality --work WORK --kl-windows 16 --block 16 --bits 4.0 --eval-docs 400
# on the kl run's work directory (printed at the end when BENCH_QUALITY is set).
# usage: bench/scale_quality.sh ADAQUANT [SHARED_DIR] [SCRATCH_DIR]
set -u
AQ=${1:?usage: scale_quality.sh ADAQUANT [SHARED_DIR] [SCRATCH_DIR]}
S=${2:-$(dirname "$0")/../../shared}
T=${3:-$(mktemp -d /tmp/aq_scale_quality.XXXXXX)}
MODEL=$S/models/stories260K/stories260K.bin
TOK=$S/models/stories260K/tok512.bin
TEXT=$S/data/tinystories/validation.txt
MPI=(mpirun --allow-run-as-root --oversubscribe --mca pml ob1 --mca btl self,vader)
export AQ_PROGRESS=none OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
M5=w8a16,w6a16,w4a16,w3a16,w2a16
mkdir -p "$T"
echo "scratch: $T; load: $(cut -d' ' -f1-3 /proc/loadavg)"

q() { # q NAME LOSS [extra quantize options...]: P = 2, work directory per loss
    local name=$1 loss=$2; shift 2
    rm -rf "$T/$name"
    local t0=$(date +%s.%N)
    "${MPI[@]}" -np 2 "$AQ" quantize "$MODEL" --tokenizer "$TOK" --calib-text "$TEXT" --out "$T/$name" \
        --loss "$loss" --work "$T/w_$loss" --resume "$@" > "$T/$name.log" 2>&1 \
        || { echo "$name: FAILED (see $T/$name.log)"; tail -5 "$T/$name.log"; return 1; }
    local t1=$(date +%s.%N)
    printf '%-22s %6.1f s | %s | %s\n' "$name" "$(awk "BEGIN{print $t1 - $t0}")" \
        "$(grep -o 'quantized [0-9][0-9.]*' "$T/$name.log" | head -1)" "$(grep '^phases' "$T/$name.log")"
}

grep -m1 -o 'BLIS[^)]*)' <("$AQ" --version 2>&1; true) || true
for loss in kl block-fisher block-mse; do
    q "$loss-3.0" "$loss" --options $M5 --target-bits 3.0
    q "$loss-4.0" "$loss" --target-bits 4.0
done
q kl-4.0-blocktune kl --target-bits 4.0 --tune-mode block
q block-fisher-4.0-blocktune block-fisher --target-bits 4.0 --tune-mode block
grep -h 'allocation loss\|BLAS' "$T"/kl-4.0/report.md "$T"/block-fisher-4.0/report.md
if [ -n "${BENCH_QUALITY:-}" ]; then
    "$BENCH_QUALITY" --work "$T/w_kl" --shared "$S" --kl-windows 16 --block 16 --bits 4.0 --eval-docs 400
fi
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
