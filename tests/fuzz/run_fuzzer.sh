#!/bin/sh
# run_fuzzer.sh FUZZER SECONDS [SEED_DIR] [SEED_GENERATOR]
# Runs a libFuzzer binary for a bounded time on a fresh corpus made of the
# checked-in seeds (SEED_DIR, if it exists) plus whatever SEED_GENERATOR
# writes into a directory given as its only argument. Crash inputs are kept
# next to the binary (artifact prefix); exit status is the fuzzer's.
set -eu
fuzzer=$1 secs=$2 seeds=${3:-} gen=${4:-}
corpus=$(mktemp -d /tmp/aqfuzz-XXXXXX)
trap 'rm -rf "$corpus"' EXIT
if [ -n "$seeds" ] && [ -d "$seeds" ]; then cp -r "$seeds"/. "$corpus"/; fi
if [ -n "$gen" ]; then "$gen" "$corpus"; fi
echo "corpus: $(ls "$corpus" | wc -l) seeds; running $(basename "$fuzzer") for ${secs}s"
exec "$fuzzer" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$(dirname "$fuzzer")/$(basename "$fuzzer")-" "$corpus"
