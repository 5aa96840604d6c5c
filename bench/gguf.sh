#!/bin/bash
# gguf.sh — issue 16's comparison (docs/GGUF_BENCH.md): adaquant's GGUF of
# stories260K against llama.cpp's own llama-quantize, with and without an
# importance matrix, at equal file bytes, scored by llama.cpp itself
# (llama-perplexity --kl-divergence on 256-token chunks of our evaluation
# half); then the same sizes on our side through `adaquant eval`.
#
# llama.cpp's tools are built from the source node-llama-cpp@3.21.1 bundles
# (llama/gitRelease.bundle, with the package's llama/patches applied): see
# llama_build for the two modes; the build is cached in OUT_DIR/llama.cpp
# (keyed by the bundle's commit and the mode) and never enters the repo.
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
#   AQ_GGUF_CHUNKS   score only the first N chunks (a quick check of the script;
#                    the figures need all 764, the default)
#   AQ_GGUF_LLAMA_BUILD  tools (default) or full (see llama_build)
#   AQ_NPM_DIR       an npm prefix already holding node-llama-cpp@3.21.1 (default OUT_DIR/npm)
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
PPLX=()   # llama-perplexity's --chunks for a quick check
if [ -n "${AQ_GGUF_CHUNKS:-}" ]; then
    [ "$AQ_GGUF_CHUNKS" -gt 0 ] 2> /dev/null || { echo "AQ_GGUF_CHUNKS must be a positive count" >&2; exit 2; }
    PPLX=(--chunks "$AQ_GGUF_CHUNKS")
fi
# imatrix chunks = adaquant's default --calib-windows x --calib-len: as many
# calibration tokens, from the same documents (llama.cpp cuts one stream of
# them; adaquant's windows put BOS before each document)
CHUNKS=64
MPI=(mpirun --allow-run-as-root --oversubscribe --mca pml ob1 --mca btl self,vader)
export AQ_PROGRESS=none OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
mkdir -p "$D" && D=$(cd "$D" && pwd) || exit 1
R=$D/results.tsv # tool variant format bytes seconds ppl kld kernel
LL=$D/llama.cpp
LB=$LL/bin
die() { echo "gguf.sh: $*" >&2; exit 1; }

# llama_build: the tools from the bundle's source. Default ("tools"): only
# the four tools' own sources are compiled, against the package's prebuilt
# CPU libraries of the same release (@node-llama-cpp/linux-x64: libllama,
# libllama-common, libggml*, with ggml's CPU variants chosen at run time),
# about a minute; AQ_GGUF_LLAMA_BUILD=full builds the whole source with CMake
# (Release, -DGGML_NATIVE=OFF, -j2), an hour or more on a loaded 2-core machine.
llama_build() {
    local npm=${AQ_NPM_DIR:-$D/npm} head mode=${AQ_GGUF_LLAMA_BUILD:-tools}
    local pkg=$npm/node_modules/node-llama-cpp/llama
    local bins=$npm/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64
    if [ ! -f "$pkg/gitRelease.bundle" ] || { [ "$mode" = tools ] && [ ! -f "$bins/libllama-common.so" ]; }; then
        mkdir -p "$npm"
        echo "installing node-llama-cpp@3.21.1 into $npm (its scripts not run)"
        npm install -E --prefix "$npm" --ignore-scripts --no-audit --no-fund node-llama-cpp@3.21.1 \
            @node-llama-cpp/linux-x64@3.21.1 > "$D/npm.log" 2>&1 || die "npm install failed (see $D/npm.log)"
    fi
    head=$(git bundle list-heads "$pkg/gitRelease.bundle" | awk '{ print $1; exit }')
    echo "llama.cpp: node-llama-cpp@3.21.1's bundle, release $(sed -n 's/.*"tag": *"\([^"]*\)".*/\1/p' \
        "$pkg/llama.cpp.info.json"), commit $head, patches: $(cd "$pkg/patches" 2>/dev/null && ls | tr '\n' ' ')build: $mode"
    if [ -x "$LB/llama-perplexity" ] && [ "$(cat "$LL/stamp" 2>/dev/null)" = "$head $mode 2" ]; then return 0; fi
    rm -rf "$LL" && mkdir -p "$LL"
    git clone -q "$pkg/gitRelease.bundle" "$LL/src" 2> "$LL/git.log" || die "git clone of the bundle failed"
    for p in "$pkg"/patches/*.diff; do
        [ -f "$p" ] && { git -C "$LL/src" apply "$p" || die "patch $p does not apply"; }
    done
    if [ "$mode" = full ]; then
        echo "building llama.cpp (Release, GGML_NATIVE=OFF, -j2; log $LL/build.log)"
        { cmake -S "$LL/src" -B "$LL/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DLLAMA_CURL=OFF \
            -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF &&
          cmake --build "$LL/build" -j2 --target llama-quantize llama-imatrix llama-perplexity \
            llama-convert-llama2c-to-ggml && rm -rf "$LB" && ln -s build/bin "$LB"; } > "$LL/build.log" 2>&1 || die "llama.cpp build failed (see $LL/build.log)"
    else
        echo "compiling llama.cpp's tools against the package's prebuilt libraries (log $LL/build.log)"
        mkdir -p "$LB" && cp "$bins"/*.so "$LB"/ || die "no prebuilt libraries in $bins"
        local c=(g++ -O2 -std=c++17 -I"$LL/src/include" -I"$LL/src/ggml/include" -I"$LL/src/common" -I"$LL/src/vendor")
        local l=(-L"$LB" -l:libllama-common.so -l:libllama.v0.4.0.so -l:libggml.v0.4.0.so -l:libggml-base.so
            '-Wl,-rpath,$ORIGIN' -pthread)
        local t=$LL/src/tools
        # llama-perplexity's main is ours (bench/gguf_pplmain.cpp: it flushes the log before exiting);
        # the converter calls ggml_set_f32_nd, a CPU-backend function: linked to the baseline x86-64 variant
        { "${c[@]}" -o "$LB/llama-quantize" "$t/quantize/main.cpp" "$t/quantize/quantize.cpp" "${l[@]}" &&
          "${c[@]}" -o "$LB/llama-imatrix" "$t/imatrix/imatrix.cpp" "${l[@]}" &&
          "${c[@]}" -o "$LB/llama-perplexity" "$SRC/bench/gguf_pplmain.cpp" "$t/perplexity/perplexity.cpp" "${l[@]}" &&
          "${c[@]}" -o "$LB/llama-convert-llama2c-to-ggml" \
            "$LL/src/examples/convert-llama2c-to-ggml/convert-llama2c-to-ggml.cpp" "${l[@]}" -l:libggml-cpu-x64.so
        } > "$LL/build.log" 2>&1 || die "compiling the tools failed (see $LL/build.log)"
    fi
    echo "$head $mode 2" > "$LL/stamp" # 2: the build recipe's version
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

# kld GGUF NAME: llama.cpp's perplexity and mean KL against the F32 base
# logits, into $D/kld_NAME.txt ("PPL<TAB>KL"); run in the background, at most
# AQ_GGUF_JOBS (default 2) at once, collected by kld_get after a wait
kld() {
    local log=$D/ppl_$2.log
    while [ "$(jobs -rp | wc -l)" -ge "${AQ_GGUF_JOBS:-2}" ]; do wait -n; done
    rm -f "$D/kld_$2.txt"
    { "$LB/llama-perplexity" -m "$1" --kl-divergence-base "$D/base.kld" --kl-divergence -t 1 -c $CTX \
        "${PPLX[@]}" > "$log" 2>&1 || echo "FAILED: llama-perplexity on $1 (see $log)" >&2
      kld_parse "$log" > "$D/kld_$2.txt"; } &
}
# kld_parse LOG: "PPL<TAB>KL" from the summary, else (the summary lost at exit by
# a stock llama-perplexity, see gguf_pplmain.cpp) from the last per-chunk line,
# whose columns are the same running means (PPL, ln ratio, KL), 4-5 decimals
kld_parse() {
    local p k
    p=$(sed -n 's/^Mean PPL(Q) *: *\([0-9.]*\).*/\1/p' "$1")
    k=$(sed -n 's/^Mean *KLD: *\(-\{0,1\}[0-9.]*\).*/\1/p' "$1")
    if [ -z "$k" ]; then
        read -r p k < <(awk '/^ *[0-9]+ +[0-9.]+ +± / { p = $2; k = $8 } END { print p, k }' "$1")
        echo "note: $1 has no summary; running means of its last chunk line used" >&2
    fi
    printf "%s\t%s" "${p:--}" "${k:--}"
}
kld_get() { cat "$D/kld_$1.txt" 2>/dev/null || printf -- "-\t-"; }

llama_side() {
    local f t v imx=() q
    /usr/bin/python3 "$SRC/bench/gguf_data.py" "$TEXT" "$D/calib.txt" "$D/eval.txt" > /dev/null || die "gguf_data.py failed"
    [ -f "$D/f32.gguf" ] || "$LB/llama-convert-llama2c-to-ggml" --copy-vocab-from-model "$TOK" \
        --llama2c-model "$MODEL" --llama2c-output-model "$D/f32.gguf" > "$D/convert.log" 2>&1 ||
        die "llama-convert-llama2c-to-ggml failed (see $D/convert.log)"
    t=$(timed "$D/ppl_base.log" "$LB/llama-perplexity" -m "$D/f32.gguf" -f "$D/eval.txt" -t 1 -c $CTX \
        "${PPLX[@]}" --kl-divergence-base "$D/base.kld") || exit 1
    printf "llama.cpp\tF32\tF32\t%s\t%s\t%s\t0\t-\n" "$(stat -c %s "$D/f32.gguf")" "$t" \
        "$(sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p' "$D/ppl_base.log" |
            grep . || grep -o '\[[0-9]*\][0-9.]*' "$D/ppl_base.log" | tail -1 | sed 's/.*\]//')" >> "$R"
    t=$(timed "$D/imatrix.log" "$LB/llama-imatrix" -m "$D/f32.gguf" -f "$D/calib.txt" -t 1 -c $CTX \
        --chunks $CHUNKS -o "$D/imatrix.gguf") || exit 1
    echo "llama-imatrix: $CHUNKS chunks of $CTX tokens in $t s"
    printf "llama.cpp\timatrix\t-\t-\t%s\t-\t-\t-\n" "$t" >> "$R"
    for f in $FORMATS; do
        for v in plain imatrix; do
            q=$D/llama_${f}_$v.gguf
            [ $v = imatrix ] && imx=(--imatrix "$D/imatrix.gguf") || imx=()
            t=$(timed "$D/quantize_${f}_$v.log" "$LB/llama-quantize" "${imx[@]}" "$D/f32.gguf" "$q" "$f" 1) || exit 1
            echo "$t" > "$D/seconds_${f}_$v.txt"
            kld "$q" "${f}_$v"
        done
    done
    wait
    for f in $FORMATS; do
        for v in plain imatrix; do
            printf "llama.cpp\t%s\t%s\t%s\t%s\t%s\t-\n" "$v" "$f" "$(stat -c %s "$D/llama_${f}_$v.gguf")" \
                "$(cat "$D/seconds_${f}_$v.txt")" "$(kld_get "${f}_$v")" >> "$R"
        done
    done
}

# our_gguf: the FP model through our own exporter must be llama.cpp's F32
# model (KL ~ 0 on the same tokens): the check that both sides run one model.
our_fp_check() {
    "$B/adaquant" export "$MODEL" --tokenizer "$TOK" --format gguf --out "$D/ours_f32.gguf" \
        > "$D/export_f32.log" 2>&1 || die "adaquant export of the FP model failed (see $D/export_f32.log)"
    kld "$D/ours_f32.gguf" ours_f32 && wait
    printf "adaquant\tF32\tF32\t%s\t-\t%s\t-\n" "$(stat -c %s "$D/ours_f32.gguf")" "$(kld_get ours_f32)" >> "$R"
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
    kern=$(/usr/bin/python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["run"]["blas"]["kernel"])' \
        "$out/report.json" 2>/dev/null || echo "?")
    awk -v g="$got" -v b="$bytes" -v f="$f" 'BEGIN { if (g > b * 1.005)
        printf "WARNING: our %s-size GGUF is %d bytes, %.1f%% over the target %d (allowed 0.5%%)\n", f, g, 100 * (g / b - 1), b }'
    echo "$f $got $t $kern" > "$D/ours_$f.txt"
    kld "$out/model.gguf" "ours_$f"
}

# our rows, after every kld has finished: the GGUF scored by llama.cpp, and the
# safetensors output scored by adaquant's own evaluation in the same run
# (report.json run.evaluation: `adaquant eval --quantized` on the same split)
our_rows() {
    local f got t kern
    for f in $FORMATS; do
        [ -f "$D/ours_$f.txt" ] || continue
        read -r _ got t kern < "$D/ours_$f.txt"
        printf "adaquant\tgguf\t%s\t%s\t%s\t%s\t%s\n" "$f" "$got" "$t" "$(kld_get "ours_$f")" "$kern" >> "$R"
        /usr/bin/python3 -c 'import json, sys; r = json.load(open(sys.argv[1]))["run"]; e = r["evaluation"]
print("adaquant-eval\tsafetensors\t%s\t%d\t-\t%.4f\t%.6f\t-" % (sys.argv[2], r["model_files_bytes_on_disk"],
      e["ppl_quantized"], e["kl_mean"]))' "$D/ours_$f/report.json" "$f" >> "$R"
    done
}

# safetensors side: llama.cpp's files (dequantized to a llama2.c .bin by
# gguf_l2c.py) through `adaquant eval` on our split (ours: our_rows)
eval_side() {
    local f v j q
    for f in $FORMATS; do
        for v in plain imatrix; do
            q=$D/llama_${f}_$v.gguf
            [ -f "$q" ] || continue
            /usr/bin/python3 "$SRC/bench/gguf_l2c.py" "$q" "$D/deq_${f}_$v.bin" \
                "$(od -An -t d4 -j 24 -N 4 "$MODEL" | tr -d ' ')" > /dev/null || die "gguf_l2c.py $q failed"
            j=$("$B/adaquant" eval "$D/deq_${f}_$v.bin" --tokenizer "$TOK" --text "$TEXT" --json) &&
                /usr/bin/python3 -c 'import json, sys; j = json.loads(sys.argv[1]); print("adaquant-eval\t%s\t%s\t%s\t-\t%.4f\t-\t-" % (sys.argv[2], sys.argv[3], sys.argv[4], j["ppl_fp"]))' \
                    "$j" "$v" "$f" "$(stat -c %s "$q")" >> "$R"
        done
    done
}

command -v git > /dev/null || die "git is needed"
[ -x "$B/adaquant" ] || die "$B/adaquant not built"
llama_build
: > "$R"
llama_side
if [ "${AQ_GGUF_SKIP:-}" != ours ]; then
    our_fp_check
    for f in $FORMATS; do our_side "$f"; done
    eval_side
    wait
    our_rows
fi
uptime
/usr/bin/python3 "$SRC/bench/gguf_table.py" "$R"
