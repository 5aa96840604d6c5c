#!/bin/sh
# npm_onnxruntime.sh NPM_DIR — install onnxruntime-node (CPU, prebuilt in the
# package) into NPM_DIR for the QDQ ONNX export test (tests/onnx.cmake).
# --ignore-scripts: its install script only downloads GPU pieces we do not use.
# Done once: later runs find the package and return at once. Exits 77 (ctest:
# skipped) with a message when npm or the registry cannot be reached.
set -u
dir=$1
pkg=onnxruntime-node@1.31.1
if [ -f "$dir/node_modules/onnxruntime-node/package.json" ]; then
  echo "npm_onnxruntime: onnxruntime-node already in $dir"
  exit 0
fi
if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
  echo "skip: node/npm not installed (needed for onnxruntime-node)"
  exit 77
fi
mkdir -p "$dir"
if ! timeout 600 npm install --prefix "$dir" --ignore-scripts --no-audit --no-fund --fetch-retries=1 \
     --fetch-timeout=60000 $pkg >"$dir/npm-install.log" 2>&1; then
  echo "skip: npm registry not reachable or install failed (see $dir/npm-install.log):"
  tail -5 "$dir/npm-install.log"
  exit 77
fi
echo "npm_onnxruntime: installed $pkg into $dir"
