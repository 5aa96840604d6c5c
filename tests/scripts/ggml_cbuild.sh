#!/bin/sh
# ggml_cbuild.sh NPM_DIR TEST_BINARY — runs TEST_BINARY against ggml's own C
# quantizers: installs node-llama-cpp@3.21.1 into NPM_DIR once (its scripts
# are not run: only the llama.cpp source bundle inside it is used), checks
# out ggml's sources from that bundle into a temporary directory, compiles
# ggml-quants.c into a shared library there as llama.cpp's release build does
# (-DNDEBUG; without -march, hence without FMA, like ggml's base library) and
# passes its path to TEST_BINARY. With assertions on, ggml aborts on rows
# whose fp16 scales overflow (nearest_int's range assert); the release build
# that llama-quantize is gives the bytes we reproduce. Nothing
# of ggml is kept. Exits 77 (ctest: skipped) with a message when npm, git,
# a C compiler or the registry is unavailable.
set -u
npm_dir=$1
test_bin=$2
bundle=$npm_dir/node_modules/node-llama-cpp/llama/gitRelease.bundle
for tool in git cc; do
  command -v $tool >/dev/null 2>&1 || { echo "skip: $tool not installed"; exit 77; }
done
if [ ! -f "$bundle" ]; then
  command -v npm >/dev/null 2>&1 || { echo "skip: npm not installed (needed for node-llama-cpp)"; exit 77; }
  mkdir -p "$npm_dir"
  if ! timeout 600 npm install --prefix "$npm_dir" --ignore-scripts --no-audit --no-fund \
       --fetch-retries=1 --fetch-timeout=60000 node-llama-cpp@3.21.1 >"$npm_dir/npm-install.log" 2>&1 \
     || [ ! -f "$bundle" ]; then
    echo "skip: could not install node-llama-cpp@3.21.1 (see $npm_dir/npm-install.log):"
    tail -5 "$npm_dir/npm-install.log"
    exit 77
  fi
fi
tmp=$(mktemp -d /tmp/aqtest-ggmlc-XXXXXX) || exit 1
trap 'rm -rf "$tmp"' EXIT
git clone -q --no-checkout "$bundle" "$tmp/src" 2>"$tmp/git.log" &&
  git -C "$tmp/src" checkout -q HEAD -- ggml/include ggml/src/ggml-quants.c ggml/src/ggml-quants.h \
    ggml/src/ggml-common.h ggml/src/ggml-impl.h ggml/src/ggml-cpu/ggml-cpu-impl.h 2>>"$tmp/git.log" || {
  echo "could not check out ggml's sources from $bundle:"; cat "$tmp/git.log"; exit 1; }
# ggml-quants.c calls a few ggml.c functions on paths this test never takes.
cat >"$tmp/stubs.c" <<'STUBS'
#include <stdlib.h>
#include <stddef.h>
void ggml_abort(const char *file, int line, const char *fmt, ...) { (void)file; (void)line; (void)fmt; abort(); }
size_t ggml_row_size(int type, long n) { (void)type; (void)n; abort(); }
size_t ggml_type_size(int type) { (void)type; abort(); }
const char *ggml_type_name(int type) { (void)type; return "?"; }
STUBS
g=$tmp/src/ggml
if ! cc -O2 -DNDEBUG -fPIC -shared -w -I"$g/include" -I"$g/src" -o "$tmp/libggmlq.so" \
     "$g/src/ggml-quants.c" "$tmp/stubs.c" -lm 2>"$tmp/cc.log"; then
  echo "could not compile ggml-quants.c:"; head -20 "$tmp/cc.log"; exit 1
fi
"$test_bin" "$tmp/libggmlq.so"
