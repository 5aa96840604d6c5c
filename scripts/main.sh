#!/usr/bin/env bash
# main.sh — install dependencies, build, and run the main job: a mixed-precision
# quantization of stories260K under `mpirun -np 2` written as llama.cpp's GGUF
# (--out-format gguf) of at most 302,560 bytes, the size of llama.cpp's Q5_0
# GGUF of the same model (the budget counts every byte of model.gguf:
# docs/PIPELINE.md "GGUF budget"). Prints the file's size, llama.cpp's BPW,
# FP vs quantized perplexity and the output path.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cmake -S . -B build >/dev/null
cmake --build build -j"$(nproc)"

shared=${AQ_SHARED_DIR:-../shared}
model=$shared/models/stories260K
for f in "$model/stories260K.bin" "$model/tok512.bin" "$shared/data/tinystories/validation.txt"; do
  [ -r "$f" ] || { echo "main.sh: $f is missing: put the shared/ folder beside this clone" >&2; exit 1; }
done
mkdir -p out
out=out/stories260K-q5size
mpirun --oversubscribe --mca pml ob1 --mca btl self,vader -np 2 \
  ./build/adaquant quantize "$model/stories260K.bin" \
  --tokenizer "$model/tok512.bin" \
  --calib-text "$shared/data/tinystories/validation.txt" \
  --target-size 302560 --out-format gguf --out "$out" --force
echo
./build/adaquant inspect "$out" | tail -n 3
echo "model.gguf: $(stat -c %s "$out/model.gguf") bytes (budget 302560)"
echo "report: $out/report.md"
