#!/bin/bash
# gguf.sh — issue 16's comparison (docs/GGUF_BENCH.md): adaquant's GGUF of
# stories260K against llama.cpp's own llama-quantize, with and without an
# importance matrix, at equal file bytes, scored by llama.cpp itself
# (llama-perplexity --kl-divergence on 256-token chunks of our evaluation
# half); then the same sizes on our side through `adaquant eval`.
#
# llama.cpp is built from the source node-llama-cpp@3.21.1 bundles
# (llama/gitRelease.bundle, with the package's llama/patches applied), CMake
# Release, -DGGML_NATIVE=OFF, only the four tools used; the build is cached in
# OUT_DIR/llama.cpp (keyed by the bundle's commit) and never enters the repo.
# Every tool runs on 1 thread; adaquant on AQ_GGUF_NP ranks (default 2).
#
# usage: bench/gguf.sh BUILD_DIR [SHARED_DIR] [OUT_DIR]
#   BUILD_DIR   adaquant's build directory (holds adaquant)
#   SHARED_DIR  the test assets (default: ../shared beside the repo)
#   OUT_DIR     work and cache directory (default $AQ_BENCH_DIR, else /tmp/aq_gguf_bench)
# environment:
#   AQ_GGUF_FORMATS  llama.cpp types compared (default "Q4_0 Q4_1 Q5_0 Q8_0")
#   AQ_GGUF_OPTIONS  adaquant --options (default: none given, adaquant's menu)
#   AQ_GGUF_ARGS     more adaquant quantize arguments (e.g. "--keep down_proj=w8a16")
#   AQ_GGUF_NP       adaquant's MPI ranks (default 2)
#   AQ_GGUF_SKIP     "ours" = llama.cpp's side only
set -u
SRC=$(cd "$(dirname "$0")/.." && pwd)
B=$(cd "${1:?usage: gguf.sh BUILD_DIR [SHARED_DIR] [OUT_DIR]}" && pwd) || exit 1
S=$(cd "${2:-$SRC/../shared}" && pwd) || exit 1
D=${3:-${AQ_BENCH_DIR:-/tmp/aq_gguf_bench}}
FORMATS=${AQ_GGUF_FORMATS:-"Q4_0 Q4_1 Q5_0 Q8_0"}
NP=${AQ_GGUF_NP:-2}
MODEL=$S/models/stories260K/stories260K.bin
TOK=$S/models/stories260K/tok512.bin
TEXT=$S/data/tinystories/validation.txt
CTX=256   # llama.cpp's chunk (and adaquant's calibration window) length
CHUNKS=64 # imatrix chunks = adaquant's default --calib-windows: the same calibration tokens
MPI=(mpirun --allow-run-as-root --oversubscribe --mca pml ob1 --mca btl self,vader)
export AQ_PROGRESS=none OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
mkdir -p "$D" && D=$(cd "$D" && pwd) || exit 1
R=$D/results.tsv # tool variant format bytes seconds ppl kld kernel
LL=$D/llama.cpp
LB=$LL/build/bin
die() { echo "gguf.sh: $*" >&2; exit 1; }

# llama_build: npm package -> bundle clone -> patches -> the four tools.
llama_build() {
    local npm=${AQ_NPM_DIR:-$D/npm} head
    local pkg=$npm/node_modules/node-llama-cpp/llama
    if [ ! -f "$pkg/gitRelease.bundle" ]; then
        mkdir -p "$npm"
        echo "installing node-llama-cpp@3.21.1 into $npm (its scripts not run: only the bundled source is used)"
        npm install -E --prefix "$npm" --ignore-scripts --no-audit --no-fund node-llama-cpp@3.21.1 \
            > "$D/npm.log" 2>&1 || die "npm install failed (see $D/npm.log)"
    fi
    head=$(git bundle list-heads "$pkg/gitRelease.bundle" | awk '{ print $1; exit }')
    echo "llama.cpp: node-llama-cpp@3.21.1's bundle, release $(sed -n 's/.*"tag": *"\([^"]*\)".*/\1/p' \
        "$pkg/llama.cpp.info.json"), commit $head, patches: $(cd "$pkg/patches" 2>/dev/null && ls | tr '\n' ' ')"
    if [ -x "$LB/llama-perplexity" ] && [ "$(cat "$LL/stamp" 2>/dev/null)" = "$head" ]; then return 0; fi
    rm -rf "$LL" && mkdir -p "$LL"
    git clone -q "$pkg/gitRelease.bundle" "$LL/src" 2> "$LL/git.log" || die "git clone of the bundle failed"
    for p in "$pkg"/patches/*.diff; do
        [ -f "$p" ] && { git -C "$LL/src" apply "$p" || die "patch $p does not apply"; }
    done
    echo "building llama.cpp (Release, GGML_NATIVE=OFF, -j2; log $LL/build.log)"
    { cmake -S "$LL/src" -B "$LL/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DLLAMA_CURL=OFF \
        -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF &&
      cmake --build "$LL/build" -j2 --target llama-quantize llama-imatrix llama-perplexity \
        llama-convert-llama2c-to-ggml; } > "$LL/build.log" 2>&1 || die "llama.cpp build failed (see $LL/build.log)"
    echo "$head" > "$LL/stamp"
}

# timed LOG CMD...: runs CMD with its output in LOG, prints its wall seconds
timed() {
    local log=$1 t0 t1
    shift
    t0=$(date +%s.%N)
    "$@" > "$log" 2>&1 || { echo "FAILED: $* (see $log)" >&2; tail -5 "$log" >&2; return 1; }
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }'
}

# kld GGUF NAME: llama.cpp's perplexity and mean KL against the F32 base logits
kld() {
    local log=$D/ppl_$2.log
    "$LB/llama-perplexity" -m "$1" --kl-divergence-base "$D/base.kld" --kl-divergence -t 1 -c $CTX \
        > "$log" 2>&1 || { echo "FAILED: llama-perplexity on $1 (see $log)" >&2; return 1; }
    printf "%s\t%s" "$(sed -n 's/^Mean PPL(Q) *: *\([0-9.]*\).*/\1/p' "$log")" \
        "$(sed -n 's/^Mean *KLD: *\([0-9.]*\).*/\1/p' "$log")"
}

llama_side() {
    local f t v imx=() q
    python3 "$SRC/bench/gguf_data.py" "$TEXT" "$D/calib.txt" "$D/eval.txt" > /dev/null || die "gguf_data.py failed"
    [ -f "$D/f32.gguf" ] || "$LB/llama-convert-llama2c-to-ggml" --copy-vocab-from-model "$TOK" \
        --llama2c-model "$MODEL" --llama2c-output-model "$D/f32.gguf" > "$D/convert.log" 2>&1 ||
        die "llama-convert-llama2c-to-ggml failed (see $D/convert.log)"
    t=$(timed "$D/ppl_base.log" "$LB/llama-perplexity" -m "$D/f32.gguf" -f "$D/eval.txt" -t 1 -c $CTX \
        --kl-divergence-base "$D/base.kld") || exit 1
    printf "llama.cpp\tF32\tF32\t%s\t%s\t%s\t0\t-\n" "$(stat -c %s "$D/f32.gguf")" "$t" \
        "$(sed -n 's/^Final estimate: PPL = \([0-9.]*\).*/\1/p' "$D/ppl_base.log")" >> "$R"
    t=$(timed "$D/imatrix.log" "$LB/llama-imatrix" -m "$D/f32.gguf" -f "$D/calib.txt" -t 1 -c $CTX \
        --chunks $CHUNKS -o "$D/imatrix.gguf") || exit 1
    echo "llama-imatrix: $CHUNKS chunks of $CTX tokens in $t s"
    printf "llama.cpp\timatrix\t-\t-\t%s\t-\t-\t-\n" "$t" >> "$R"
    for f in $FORMATS; do
        for v in plain imatrix; do
            q=$D/llama_${f}_$v.gguf
            [ $v = imatrix ] && imx=(--imatrix "$D/imatrix.gguf") || imx=()
            t=$(timed "$D/quantize_${f}_$v.log" "$LB/llama-quantize" "${imx[@]}" "$D/f32.gguf" "$q" "$f" 1) || exit 1
            printf "llama.cpp\t%s\t%s\t%s\t%s\t%s\t-\n" "$v" "$f" "$(stat -c %s "$q")" "$t" \
                "$(kld "$q" "${f}_$v")" >> "$R"
        done
    done
}

# our_gguf: the FP model through our own exporter must be llama.cpp's F32
# model (KL ~ 0 on the same tokens): the check that both sides run one model.
our_fp_check() {
    "$B/adaquant" export "$MODEL" --tokenizer "$TOK" --format gguf --out "$D/ours_f32.gguf" \
        > "$D/export_f32.log" 2>&1 || die "adaquant export of the FP model failed (see $D/export_f32.log)"
    printf "adaquant\tF32\tF32\t%s\t-\t%s\t-\n" "$(stat -c %s "$D/ours_f32.gguf")" "$(kld "$D/ours_f32.gguf" ours_f32)" >> "$R"
}

# our_side FORMAT: adaquant at the bytes of llama.cpp's smaller FORMAT file;
# one work directory for all sizes: the statistics and per-(layer, option)
# results are computed once and reused (--resume), the budget only changes the
# allocation, tuning and writing (the times after the first run show that)
our_side() {
    local f=$1 bytes out t got kern opts=()
    bytes=$(awk -F'\t' -v f="$f" '$1 == "llama.cpp" && $3 == f { if (m == "" || $4 < m) m = $4 } END { print m }' "$R")
    [ -n "$bytes" ] || die "no llama.cpp $f file measured"
    out=$D/ours_$f
    [ -n "${AQ_GGUF_OPTIONS:-}" ] && opts=(--options "$AQ_GGUF_OPTIONS")
    # shellcheck disable=SC2086 # AQ_GGUF_ARGS is a word list on purpose
    t=$(timed "$D/quantize_ours_$f.log" "${MPI[@]}" -np "$NP" "$B/adaquant" quantize "$MODEL" --tokenizer "$TOK" \
        --text "$TEXT" --work "$D/work" --resume --out "$out" --force --out-format gguf --target-size "$bytes" "${opts[@]}" \
        ${AQ_GGUF_ARGS:-}) || return 1
    got=$(stat -c %s "$out/model.gguf")
    kern=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["run"]["blas"]["kernel"])' \
        "$out/report.json" 2>/dev/null || echo "?")
    awk -v g="$got" -v b="$bytes" -v f="$f" 'BEGIN { if (g > b * 1.005)
        printf "WARNING: our %s-size GGUF is %d bytes, %.1f%% over the target %d (allowed 0.5%%)\n", f, g, 100 * (g / b - 1), b }'
    printf "adaquant\tgguf\t%s\t%s\t%s\t%s\t%s\n" "$f" "$got" "$t" "$(kld "$out/model.gguf" "ours_$f")" "$kern" >> "$R"
}

# safetensors side: our OUTDIRs and llama.cpp's files (dequantized to a
# llama2.c .bin by gguf_l2c.py) through `adaquant eval` on the same split
eval_side() {
    local f v j q
    for f in $FORMATS; do
        if [ -f "$D/ours_$f/model.safetensors" ]; then
            j=$("$B/adaquant" eval "$MODEL" --tokenizer "$TOK" --text "$TEXT" --quantized "$D/ours_$f" --json) &&
                python3 -c 'import json, sys; j = json.loads(sys.argv[1]); print("adaquant-eval\tsafetensors\t%s\t%s\t-\t%.4f\t%.6f\t-" % (sys.argv[2], sys.argv[3], j["ppl_q"], j["kl_mean"]))' \
                    "$j" "$f" "$(du -cb "$D/ours_$f"/model.safetensors "$D/ours_$f"/config.json | tail -1 | cut -f1)" >> "$R"
        fi
        for v in plain imatrix; do
            q=$D/llama_${f}_$v.gguf
            [ -f "$q" ] || continue
            python3 "$SRC/bench/gguf_l2c.py" "$q" "$D/deq_${f}_$v.bin" > /dev/null || die "gguf_l2c.py $q failed"
            j=$("$B/adaquant" eval "$D/deq_${f}_$v.bin" --tokenizer "$TOK" --text "$TEXT" --json) &&
                python3 -c 'import json, sys; j = json.loads(sys.argv[1]); print("adaquant-eval\t%s\t%s\t%s\t-\t%.4f\t-\t-" % (sys.argv[2], sys.argv[3], sys.argv[4], j["ppl_fp"]))' \
                    "$j" "$v" "$f" "$(stat -c %s "$q")" >> "$R"
        done
    done
}

command -v cmake > /dev/null && command -v git > /dev/null || die "cmake and git are needed"
[ -x "$B/adaquant" ] || die "$B/adaquant not built"
llama_build
: > "$R"
llama_side
if [ "${AQ_GGUF_SKIP:-}" != ours ]; then
    our_fp_check
    for f in $FORMATS; do our_side "$f"; done
    eval_side
fi
uptime
python3 "$SRC/bench/gguf_table.py" "$R"
