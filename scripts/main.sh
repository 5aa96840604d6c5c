#!/usr/bin/env bash
# main.sh — install dependencies, build, and run the main job on stories260K.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cmake -S . -B build >/dev/null
cmake --build build -j"$(nproc)"
shared=${AQ_SHARED_DIR:-../shared}
./build/adaquant inspect "$shared/models/stories260K/stories260K.bin"
