#!/usr/bin/env bash
# deps.sh — install what adaquant needs on Debian 12 (as root). `deps.sh test`
# adds what the test suite needs (clang for fuzzing, numpy for independent
# reference checks, Slurm + munge for the job-array test, Fashion-MNIST for the
# idx reader and CNN tests). libonnx-dev only provides onnx.proto, from which
# protoc-c generates the ONNX reader at build time.
set -euo pipefail
pkgs=(build-essential cmake pkg-config
      openmpi-bin libopenmpi-dev libscalapack-openmpi-dev libblis-dev liblapack-dev
      coinor-libcbc-dev zlib1g-dev libjansson-dev libpcre2-dev libutf8proc-dev
      libonnx-dev protobuf-c-compiler libprotobuf-c-dev)
if [ "${1:-}" = test ]; then
  pkgs+=(clang libclang-rt-dev python3 python3-numpy slurm-wlm munge dataset-fashion-mnist)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
