#!/usr/bin/env bash
# test.sh — what CI runs (.ci/run): install the dependencies, then
#  1. build (RelWithDebInfo, warnings are errors) and run the whole suite with
#     ctest, on the BLIS kernel that is picked automatically;
#  2. the unit and MPI tests again with each forced BLIS kernel family of
#     AQ_KERNELS (results differ in the last bits between kernels, and every
#     test must hold for each of them), less four control-flow pipeline modes;
#  3. a Release build (-O3, the usual user build) with warnings as errors, and
#     its unit tests;
#  4. the unit and MPI tests under AddressSanitizer + UBSan;
#  5. the fuzzers (clang), for a bounded time each (5 s).
# The builds of 3-5 run in the background at nice 19 during 1-2 (see below).
# A skipped test fails the run (e.g. when ../shared is missing, the model tests
# skip): set AQ_ALLOW_SKIP=1 to accept skips. AQ_SHARED_DIR names the test
# assets folder (default ../shared beside this clone).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh test
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
jobs=$(nproc)
src=$PWD
shared=$(realpath -m "${AQ_SHARED_DIR:-$src/../shared}")
allow_skip=${AQ_ALLOW_SKIP:-0}
t_start=$SECONDS
step() { printf '\n=== %s  [%d s]\n' "$*" $((SECONDS - t_start)); }
skip_help="Put the test assets at ../shared beside this clone (or set AQ_SHARED_DIR=DIR), or set AQ_ALLOW_SKIP=1 to accept skipped tests."

if [ "$allow_skip" != 1 ] && [ ! -d "$shared" ]; then
  echo "test.sh: the test assets folder $shared does not exist, so every test that needs a model or text would be skipped." >&2
  echo "test.sh: $skip_help" >&2
  exit 1
fi

# check_skips PASS JUNIT: a test that was skipped (exit 77), or that passed but
# skipped a part of its checks (prints "SKIP part"), fails the run unless
# AQ_ALLOW_SKIP=1. Reads ctest's JUnit file, which keeps each test's output.
check_skips() {
  /usr/bin/python3 - "$1" "$2" "$allow_skip" "$skip_help" <<'PY'
import re, sys, xml.etree.ElementTree as ET
name, junit, allow, help_ = sys.argv[1:]
found = []
for tc in ET.parse(junit).getroot().iter("testcase"):
    out = tc.findtext("system-out") or ""
    why = [l.strip() for l in out.splitlines() if re.match(r"\s*skip( part)?:", l, re.I)]
    if tc.find("skipped") is not None or tc.get("status") == "notrun":
        found.append((tc.get("name"), "skipped", why[0] if why else "(no reason printed)"))
    elif why:
        found.append((tc.get("name"), "partly skipped", why[0]))
if found:
    word = "allowed (AQ_ALLOW_SKIP=1)" if allow == "1" else "not allowed"
    print(f"test.sh: in the {name} pass, {len(found)} test(s) skipped some or all of their checks; "
          f"skips are {word}:", file=sys.stderr)
    for t, kind, why in found:
        print(f"  {t}: {kind}: {why}", file=sys.stderr)
    if allow != "1":
        print("test.sh: " + help_, file=sys.stderr)
        sys.exit(1)
PY
}

# run_ctest PASS BUILD_DIR CTEST_ARGS...: ctest in BUILD_DIR, then check_skips.
# The passed tests' output is kept whole (not ctest's 1 kB) for check_skips.
run_ctest() {
  local pass=$1 dir=$2 rc=0
  shift 2
  local junit=$src/$dir/junit-${pass// /_}.xml
  (cd "$dir" && ctest --output-on-failure --test-output-size-passed 1000000 --output-junit "$junit" "$@") || rc=$?
  check_skips "$pass" "$junit" || rc=1
  [ $rc = 0 ] || { echo "test.sh: the $pass pass failed" >&2; exit $rc; }
}

# blis_kernel: the sub-configuration BLIS selects in this environment (an id
# whose kernels were not built, or that this CPU cannot run, aborts here).
blis_kernel() {
  /usr/bin/python3 -c 'import ctypes, ctypes.util
b = ctypes.CDLL(ctypes.util.find_library("blis")); b.bli_init()
b.bli_arch_string.restype = ctypes.c_char_p
print(b.bli_arch_string(b.bli_arch_query_id()).decode())'
}

# 1. The whole suite, automatic kernel (adaquant's own choice when BLIS_ARCH_TYPE is unset).
if [ -n "${BLIS_ARCH_TYPE+x}" ]; then
  echo "test.sh: ignoring BLIS_ARCH_TYPE=$BLIS_ARCH_TYPE from the environment: the first pass uses the automatic kernel"
  unset BLIS_ARCH_TYPE
fi
step "build (RelWithDebInfo, -Werror)"
# The npm packages the reference tests use (fixtures npm_refs, npm_llamacpp, npm_onnxruntime)
# download while the build compiles: the fixtures then find them installed.
# Their own messages and skips come from the fixtures, so failures are ignored here.
mkdir -p build
(sh tests/scripts/npm_refs.sh build/npm >/dev/null 2>&1 || true) &
npm_refs_pid=$!
(/usr/bin/python3 tests/test_export_gguf.py build/tests/export_gguf build/npm-llamacpp --install >/dev/null 2>&1 || true) &
npm_ggml_pid=$!
(sh tests/scripts/npm_onnxruntime.sh build/npm-onnxruntime >/dev/null 2>&1 || true) &
npm_ort_pid=$!
cmake -S . -B build -DAQ_WERROR=ON -DAQ_SHARED_DIR="$shared" >/dev/null
cmake --build build -j"$jobs"
wait "$npm_refs_pid" "$npm_ggml_pid" "$npm_ort_pid"
# adaquant's choice, from `adaquant --version` ("BLIS 0.9.0, kernel skx (...)")
auto=$(build/adaquant --version 2>&1 | sed -n 's/.*kernel \([A-Za-z0-9_]*\).*/\1/p' | head -n 1)
# The Release, ASan and clang builds of passes 3-5 compile in the background,
# one after the other, at the lowest CPU priority (nice 19), while passes 1-2
# run: the tests leave CPU idle while they wait (mpirun start-up and
# tear-down, the Slurm queue, killed ranks), and the builds take what is left
# without slowing the tests. Each pass then waits for its build and runs
# `cmake --build` again, which finishes what is left and shows any error.
have_clang=0
command -v clang >/dev/null && have_clang=1
bg_builds() {
  # Under the kernel's autogroup scheduling (sched_autogroup_enabled), nice
  # only ranks processes inside their session: this session (setsid, below)
  # takes the lowest weight as a whole.
  echo 19 >/proc/self/autogroup 2>/dev/null || true
  nice -n 19 cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DAQ_BENCH=OFF -DAQ_WERROR=ON -DAQ_SHARED_DIR="$shared" &&
    nice -n 19 cmake --build build-release -j"$jobs" && touch build-release/.bg-done
  nice -n 19 cmake -S . -B build-asan -DAQ_SANITIZE=ON -DAQ_BENCH=OFF -DAQ_WERROR=ON -DAQ_SHARED_DIR="$shared" &&
    nice -n 19 cmake --build build-asan -j"$jobs" && touch build-asan/.bg-done
  if [ $have_clang = 1 ]; then
    CC=clang nice -n 19 cmake -S . -B build-fuzz -DAQ_FUZZ=ON -DAQ_FUZZ_SECONDS=5 -DAQ_WERROR=ON -DAQ_SHARED_DIR="$shared" &&
      nice -n 19 cmake --build build-fuzz -j"$jobs" --target aq_fuzzers adaquant_cli && touch build-fuzz/.bg-done
  fi
  return 0
}
rm -f build-release/.bg-done build-asan/.bg-done build-fuzz/.bg-done
# In its own process group (setsid), so that a failing pass stops it too.
setsid bash -c "$(declare -f bg_builds); jobs=$jobs have_clang=$have_clang shared='$shared'; bg_builds" \
  >build/bg-builds.log 2>&1 &
bg_pid=$!
trap 'kill -- -"$bg_pid" 2>/dev/null || true' EXIT
# wait_bg DIR: the background chain has built DIR (or failed, or is done).
wait_bg() {
  while [ ! -e "$1/.bg-done" ] && kill -0 "$bg_pid" 2>/dev/null; do sleep 2; done
}

step "ctest, whole suite; BLIS kernel: ${auto:-automatic} (BLIS_ARCH_TYPE unset; BLIS alone would pick $(blis_kernel))"
run_ctest "whole suite" build -j"$jobs" -LE fuzz

# 2. The unit and MPI tests with forced kernel families, BLIS_ARCH_TYPE=id
# (BLIS 0.9.0's arch_t ids: 0 skx, 3 haswell, 6 zen3, 25 generic; a name
# would silently parse as 0). generic runs everywhere; haswell needs AVX2+FMA.
# Where the automatic pass already ran haswell (BLIS's choice on Intel AVX-512
# CPUs), skx (AVX-512F/DQ/BW/VL) takes its place if the CPU has it, so that
# three kernel families run.
cpu_has() { local f; for f in "$@"; do grep -qw "$f" /proc/cpuinfo || return 1; done; }
kernels=${AQ_KERNELS:-25 3}
if [ -z "${AQ_KERNELS:-}" ] && [ "$auto" = haswell ] && cpu_has avx512f avx512dq avx512bw avx512vl; then
  kernels="25 0"
fi
for id in $kernels; do
  if [ "$id" = 3 ] && ! cpu_has avx2 fma; then
    echo "test.sh: this CPU has no AVX2, so the haswell kernels (BLIS_ARCH_TYPE=3) cannot run here" >&2
    exit 1
  fi
  name=$(BLIS_ARCH_TYPE=$id blis_kernel)
  step "ctest -L 'unit|mpi'; BLIS kernel: $name (forced, BLIS_ARCH_TYPE=$id)"
  # the user's BLIS_ARCH_TYPE must win over adaquant's own choice of kernel
  got=$(BLIS_ARCH_TYPE=$id build/adaquant --version 2>&1 | sed -n 's/.*kernel \([A-Za-z0-9_]*\).*/\1/p' | head -n 1)
  if [ -n "$got" ] && [ "$got" != "$name" ]; then
    echo "test.sh: with BLIS_ARCH_TYPE=$id ($name) set, adaquant --version runs the $got kernel" >&2
    exit 1
  fi
  # The whole-run pipeline modes that test control flow (resume, failure,
  # stage commands, sequential mode, the batch log) run once, in pass 1: what
  # they check does not depend on float rounding, and four more quantize runs
  # per kernel would take the suite past its 15-minute budget. pipeline_ref and
  # pipeline_ranks (byte-identical output for P = 1 and 2; 4 in pass 1) run per kernel,
  # pipeline_ref making only the P = 1 output that pipeline_ranks compares with.
  # The other whole-run MPI tests run once too: coop_pipeline (the cooperative
  # path's bytes across P: test_coop checks its kernels per kernel family),
  # memory_bound (RSS against the formula) and capture_stream (capture bytes
  # across P and resume: test_model_capture checks the streamed Grams per kernel).
  AQ_PIPE_REF_OUTPUT_ONLY=1 BLIS_ARCH_TYPE=$id run_ctest "kernel $name" build -j"$jobs" -L 'unit|mpi' \
    -E '^(pipeline_(resume|failure|stages|sequential)|progress_log|coop_pipeline|memory_bound|capture_stream)$'
done

# 3. What a user builds: Release (-O3 -DNDEBUG), here with warnings as errors.
step "Release build (-O3, -Werror) and its unit tests"
wait_bg build-release
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DAQ_BENCH=OFF -DAQ_WERROR=ON -DAQ_SHARED_DIR="$shared" >/dev/null
cmake --build build-release -j"$jobs"
run_ctest "Release" build-release -j"$jobs" -L unit

# 4. AddressSanitizer + UBSan: the unit and MPI tests except those also
# labelled integration (pipeline_*, progress_log: whole `adaquant quantize`
# runs under mpirun; tests/pipeline.cmake says why). LeakSanitizer reads
# tests/lsan.supp (third-party leaks only), set by tests/CMakeLists.txt.
step "AddressSanitizer + UBSan build and ctest -L 'unit|mpi'"
wait_bg build-asan
cmake -S . -B build-asan -DAQ_SANITIZE=ON -DAQ_BENCH=OFF -DAQ_WERROR=ON -DAQ_SHARED_DIR="$shared" >/dev/null
cmake --build build-asan -j"$jobs"
ASAN_OPTIONS=detect_leaks=1 run_ctest "ASan" build-asan -j"$jobs" -L 'unit|mpi' -LE integration

# 5. Fuzzers (clang builds the libraries and the CLI too: its warnings are errors as well).
if [ $have_clang = 1 ]; then
  step "clang build and fuzzers"
  # 5 s per harness (CI time is budgeted; the seeds cover the formats' edges
  # and each harness has run much longer by
  # hand, docs/ONNX.md, docs/GGUF.md). clang compiles every library, the CLI
  # and the harnesses (its warnings are errors); the tests and benchmarks are
  # compiled by gcc with -Werror in the passes above.
  wait "$bg_pid"
  CC=clang cmake -S . -B build-fuzz -DAQ_FUZZ=ON -DAQ_FUZZ_SECONDS=5 -DAQ_WERROR=ON -DAQ_SHARED_DIR="$shared" >/dev/null
  cmake --build build-fuzz -j"$jobs" --target aq_fuzzers adaquant_cli
  run_ctest "fuzz" build-fuzz -j"$jobs" -L fuzz
fi
step "all passes passed"
