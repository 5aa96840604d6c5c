#!/usr/bin/env bash
# test.sh — install dependencies, build (warnings are errors), run the whole
# test suite with ctest, then the unit tests again under AddressSanitizer+UBSan,
# then the fuzzers for a bounded time.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh test
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
jobs=$(nproc)

cmake -S . -B build -DAQ_WERROR=ON >/dev/null
cmake --build build -j"$jobs"
(cd build && ctest --output-on-failure -j"$jobs" -LE fuzz)

cmake -S . -B build-asan -DAQ_SANITIZE=ON -DAQ_WERROR=ON >/dev/null
cmake --build build-asan -j"$jobs"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j"$jobs" -L unit)

if command -v clang >/dev/null; then
  CC=clang cmake -S . -B build-fuzz -DAQ_FUZZ=ON -DAQ_WERROR=ON >/dev/null
  cmake --build build-fuzz -j"$jobs"
  (cd build-fuzz && ctest --output-on-failure -L fuzz)
fi
