#!/bin/bash
# cnn_bench.sh — `adaquant quantize MODEL.onnx` against the issue-17 targets:
# top-1 and wall time (with the report's per-phase wall seconds and rank 0's
# CPU seconds, which say more on a shared machine) at P = 1 and 2 for
#   fashion-resnet w4a4, first and last layers w8a8 (target >= 90.9 in <= 10 s at P = 2)
#   fashion-resnet w4a4, every layer                (target >= 90.5)
#   MNIST CNN w2a8                                  (target >= 99.2)
#   MNIST CNN mixed w8a8/w4a8/w3a8/w2a8 at 3.0 average weight bits (target >= 99.45)
# fashion-resnet: 512 calibration images (calib_indices.txt of the train set),
# the 10k test set; MNIST: calibration 0-255, evaluation 5000-9999 (raw pixels).
# Then the MIP allocation over W/A menus at several average weight bits (3.0
# and 4.0 among them) on both models, at the largest P: the tasks run once
# (one --work directory, --resume for the other budgets), and
# bench/cnn_pareto.py plots top-1 against the layers' bytes with its Pareto
# front (SCRATCH_DIR/pareto-*.svg) and prints the table. CNN_BENCH_PARTS
# (default "targets pareto") selects; CNN_PARETO_FASHION_BITS and
# CNN_PARETO_FASHION_OPTIONS (default 3.0 3.5 4.0 / w8a8,w4a4,w2a8) set the
# fashion sweep (each option is 10 AdaQuant tasks of ~10-30 s of CPU).
# usage: bench/cnn_bench.sh ADAQUANT [SHARED_DIR] [SCRATCH_DIR] [P...]
set -u
AQ=${1:?usage: cnn_bench.sh ADAQUANT [SHARED_DIR] [SCRATCH_DIR] [P...]}
S=${2:-$(dirname "$0")/../../shared}
T=${3:-$(mktemp -d /tmp/aq_cnn_bench.XXXXXX)}
shift $(( $# < 3 ? $# : 3 ))
RANKS=${*:-1 2}
FM=$S/models/fashion-resnet
DS=/usr/share/datasets/fashion-mnist
MN=$S/models/mnist-cnn/model.onnx
MD=$S/data/mnist
MPI=(mpirun --allow-run-as-root --oversubscribe --mca pml ob1 --mca btl self,vader)
export AQ_PROGRESS=none OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mkdir -p "$T"
# the BLIS kernel the runs use (what `eval` reports), named in every table
KERNEL=$("$AQ" eval "$MN" --eval-images "$MD/t10k-images-idx3-ubyte.gz" --eval-range 0:1 --normalize none 2>&1 >/dev/null |
         grep -o 'kernel [a-z0-9]*' | head -1)
echo "scratch: $T   (load: $(cut -d' ' -f1-3 /proc/loadavg); BLIS ${KERNEL:-kernel unknown})"
FASHION=(--calib-images "$DS/train-images-idx3-ubyte.gz" --calib-indices "$FM/calib_indices.txt"
         --eval-images "$DS/t10k-images-idx3-ubyte.gz" --eval-labels "$DS/t10k-labels-idx1-ubyte.gz"
         --normalize 0.2860,0.3530)
# The zoo MNIST CNN's logits are of size 1e4: at the default temperature 1 the
# bias tuning's softmax is one-hot (w2a8: 99.14 at T = 1, 99.30 at T = 1000).
MNIST=(--calib-images "$MD/t10k-images-idx3-ubyte.gz" --calib-count 256 --eval-images "$MD/t10k-images-idx3-ubyte.gz"
       --eval-labels "$MD/t10k-labels-idx1-ubyte.gz" --eval-range 5000:10000 --normalize none --bias-temperature 1000)

q() { # q NAME NP MODEL [quantize options...]
    local name=$1 np=$2 model=$3; shift 3
    rm -rf "$T/$name-p$np" "$T/$name-p$np.work"
    local t0=$(date +%s.%N)
    "${MPI[@]}" -np "$np" "$AQ" quantize "$model" "$@" --out "$T/$name-p$np" > "$T/$name-p$np.log" 2>&1 ||
        { echo "$name P=$np: FAILED (see $T/$name-p$np.log)"; tail -3 "$T/$name-p$np.log"; return 1; }
    local t1=$(date +%s.%N)
    python3 - "$T/$name-p$np/report.json" "$name" "$np" "$(awk "BEGIN{print $t1 - $t0}")" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); e = r["run"]["evaluation"]; t = r["run"]["timing"]
ph = " ".join(f"{k} {v:.1f}" for k, v in t.items() if v >= 0.05)
cpu = r["run"].get("timing_cpu")
if cpu:
    ph += " | rank 0 CPU s: " + " ".join(f"{k} {v:.1f}" for k, v in cpu.items())
print(f"{sys.argv[2]:<22} P={sys.argv[3]}  {float(sys.argv[4]):6.1f} s  top-1 {100 * e['top1_quantized']:.2f} "
      f"(FP {100 * e['top1_fp']:.2f}, agreement {100 * e['agreement']:.2f})  "
      f"{r['allocation']['avg_bits']:.3f} bits  | {ph}")
PY
}

PARTS=${CNN_BENCH_PARTS:-targets pareto}
for np in $RANKS; do
    [[ " $PARTS " == *" targets "* ]] || break
    q fashion-w4a4-ends "$np" "$FM/model.onnx" "${FASHION[@]}" --options w4a4,w8a8 \
        --keep '^/conv1/=w8a8' --keep '^/fc/=w8a8' --keep '^/layer=w4a4'
    q fashion-w4a4-all "$np" "$FM/model.onnx" "${FASHION[@]}" --options w4a4
    q mnist-w2a8 "$np" "$MN" "${MNIST[@]}" --options w2a8
    q mnist-mixed-3.0 "$np" "$MN" "${MNIST[@]}" --options w8a8,w4a8,w3a8,w2a8 --target-bits 3.0
done

# pareto NAME MODEL MENU "BITS..." [quantize options...]: one OUTDIR per budget, shared tasks
pareto() {
    local name=$1 model=$2 menu=$3 bits=$4 np=${RANKS##* } reports=(); shift 4
    local work=$T/pareto-$name.work res=()
    rm -rf "$work"
    for b in $bits; do
        local out=$T/pareto-$name-$b
        rm -rf "$out"
        "${MPI[@]}" -np "$np" "$AQ" quantize "$model" "$@" --options "$menu" --target-bits "$b" --work "$work" \
            ${res[@]+"${res[@]}"} --out "$out" > "$out.log" 2>&1 || { echo "pareto $name $b: FAILED"; tail -3 "$out.log"; continue; }
        res=(--resume)
        reports+=("$out/report.json")
    done
    [ ${#reports[@]} -gt 0 ] && python3 "$(dirname "$0")/cnn_pareto.py" "$T/pareto-$name.svg" \
        "$name, options $menu (P = $np, BLIS ${KERNEL:-kernel unknown})" "${reports[@]}"
}
if [[ " $PARTS " == *" pareto "* ]]; then
    pareto mnist "$MN" w8a8,w4a8,w4a4,w3a8,w2a8 "2.5 3.0 3.5 4.0 5.0 6.0 8.0" "${MNIST[@]}"
    pareto fashion "$FM/model.onnx" "${CNN_PARETO_FASHION_OPTIONS:-w8a8,w4a4,w2a8}" \
        "${CNN_PARETO_FASHION_BITS:-3.0 3.5 4.0}" "${FASHION[@]}"
fi
