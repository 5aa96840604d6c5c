#!/usr/bin/env bash
# test_submit_args.sh — slurm/submit.sh and the sbatch templates without a
# Slurm: `sbatch` and `srun` are replaced by stubs that record their arguments
# and environment, and the test compares them with the commands that must be
# issued (written out here by hand): routing of the --capture/--calibrate/
# --solve argument groups with quoting intact, the dependency chain, `%`
# throttling, --resubmit reusing the recorded settings, argument errors, and
# the shard count logic of adaquant-array.sbatch (SLURM_ARRAY_TASK_COUNT,
# AQ_SHARDS, WORK/shards.json). Needs only bash.
# shellcheck disable=SC2016 # check() evaluates its single-quoted argument later
set -u
SRC=${AQ_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
SUBMIT=$SRC/slurm/submit.sh
d=$(mktemp -d /tmp/aqtest-submit-XXXXXX)
trap 'rm -rf "$d"' EXIT
fail=0
check() { if ! eval "$1"; then echo "FAIL: $1"; fail=1; fi; }

# Stubs: each call writes its arguments one per line to $d/calls/<n>, plus the
# variables the templates read; sbatch prints job id 500+n.
mkdir -p "$d/bin" "$d/calls"
cat >"$d/bin/sbatch" <<'STUB'
#!/bin/bash
n=$(ls "$STUB_CALLS" | wc -l)
{ printf '%s\n' "$@"; echo "ENV ADAQUANT=${ADAQUANT-} AQ_SHARDS=${AQ_SHARDS-} AQ_WORK=${AQ_WORK-unset}"; } >"$STUB_CALLS/$n"
if [ "$n" = "${STUB_FAIL_AT:-x}" ]; then echo "sbatch: error: stub failure" >&2; exit 1; fi
echo "$((500 + n));cluster"
STUB
cat >"$d/bin/scancel" <<'STUB'
#!/bin/bash
echo "$*" >>"$STUB_CALLS.scancel"
STUB
cat >"$d/bin/srun" <<'STUB'
#!/bin/bash
printf '%s\n' "$@"
STUB
chmod +x "$d/bin/sbatch" "$d/bin/srun" "$d/bin/scancel"
export PATH=$d/bin:$PATH STUB_CALLS=$d/calls
# expect N LINES...: call N's argument lines (without the ENV line) equal LINES
expect() {
  local n=$1
  shift
  if ! diff <(printf '%s\n' "$@") <(grep -v '^ENV ' "$d/calls/$n") >"$d/diff"; then
    echo "FAIL: sbatch call $n differs (< expected, > actual):"; cat "$d/diff"; fail=1
  fi
}
T=$SRC/slurm
W=$d/work

# 1. A first submission: three chained jobs.
mkdir -p "$d/run" && cd "$d/run" || exit 1
touch adaquant
out=$("$SUBMIT" --work work --shards 4 --throttle 2 --capture-ntasks 2 --adaquant ./adaquant \
      --sbatch-opt=--partition=p --sbatch-opt --account=a \
      --capture m.bin --tokenizer "t t.bin" --calib-text c.txt --iters 5 \
      --solve --out o --target-bits 4 --keep 'a b=w8a16' 2>&1); rc=$?
W=$d/run/work
check '[ $rc -eq 0 ]'
check '[ "$(ls "$d/calls" | wc -l)" = 3 ]'
check 'grep -qx "AQ_JOBS capture=500 array=501 solve=502" <<<"$out"'
common=(--parsable --export=ALL --chdir="$d/run" --partition=p --account=a)
expect 0 "${common[@]}" --output="$W/slurm/capture-%j.out" --ntasks=2 "$T/adaquant-capture.sbatch" \
  m.bin --tokenizer "t t.bin" --calib-text c.txt --iters 5 --work "$W"
expect 1 "${common[@]}" --dependency=afterok:500 --kill-on-invalid-dep=yes --array=0-3%2 \
  --output="$W/slurm/array-%A_%a.out" "$T/adaquant-array.sbatch" --work "$W"
expect 2 "${common[@]}" --dependency=afterok:501 --kill-on-invalid-dep=yes --output="$W/slurm/solve-%j.out" \
  "$T/adaquant-solve.sbatch" --work "$W" --out o --target-bits 4 --keep 'a b=w8a16'
check 'grep -qx "ENV ADAQUANT=$d/run/adaquant AQ_SHARDS=4 AQ_WORK=unset" "$d/calls/2"'
check '[ -f "$W/slurm/submit.args" ]'

# 2. --resubmit from another directory: only the array (no dependency) and a
#    solve with the recorded arguments, throttle, options and directory.
rm -f "$d/calls"/*
cd "$d" || exit 1
out=$(AQ_WORK=/elsewhere "$SUBMIT" --resubmit 1,3 --work "$W" 2>&1); rc=$?
check '[ $rc -eq 0 ]'
check 'grep -qx "AQ_JOBS array=500 solve=501" <<<"$out"'
expect 0 "${common[@]}" --array=1,3%2 --output="$W/slurm/array-%A_%a.out" "$T/adaquant-array.sbatch" --work "$W"
expect 1 "${common[@]}" --dependency=afterok:500 --kill-on-invalid-dep=yes --output="$W/slurm/solve-%j.out" \
  "$T/adaquant-solve.sbatch" --work "$W" --out o --target-bits 4 --keep 'a b=w8a16'
check 'grep -qx "ENV ADAQUANT=$d/run/adaquant AQ_SHARDS=4 AQ_WORK=unset" "$d/calls/0"'
# explicit --solve replaces the recorded one; --shards must agree with the list
rm -f "$d/calls"/*
"$SUBMIT" --resubmit 0-1 --shards 2 --work "$W" --solve --out o2 >/dev/null 2>&1
check 'grep -qx -- "--array=0-1%2" "$d/calls/0"'
check 'grep -qx "ENV ADAQUANT=$d/run/adaquant AQ_SHARDS=2 AQ_WORK=unset" "$d/calls/0"'
check 'grep -qx -- "--out" "$d/calls/1" && grep -qx o2 "$d/calls/1" && ! grep -qx -- "--target-bits" "$d/calls/1"'

# 3. Errors: exit 2, a message, no sbatch call.
rm -f "$d/calls"/*
err() { # err PATTERN ARGS...: submit.sh fails with status 2 and a message matching PATTERN
  local pat=$1 msg rc
  shift
  msg=$("$SUBMIT" "$@" 2>&1); rc=$?
  if [ $rc -ne 2 ] || ! grep -q -- "$pat" <<<"$msg"; then
    echo "FAIL: submit.sh $* -> rc $rc, '$msg' (expected 2 and /$pat/)"; fail=1
  fi
}
err "--work DIR is required" --capture m --solve --out o
err "nothing to capture" --work "$d/x" --solve --out o
err "no solve options" --work "$d/x" --capture m
err "shard 4 is outside 0..3" --resubmit 2,4 --shards 4 --work "$d/x" --solve --out o
err "shard count is unknown" --resubmit 2 --work "$d/x" --solve --out o
err "no solve options given and none recorded" --resubmit 2 --shards 4 --work "$d/x"
err "expected a list of shard numbers" --resubmit 2-x --shards 4 --work "$d/x" --solve --out o
err "exclude each other" --resubmit 2 --work "$W" --capture m
err "--throttle '0'" --throttle 0 --work "$d/x" --capture m --solve --out o
err "unknown option '--shard'" --shard 3 --work "$d/x" --capture m --solve --out o
check '[ -z "$(ls "$d/calls")" ]'
# sbatch failing for the solve job: exit 1, and the capture and array jobs
# already submitted are cancelled
out=$(STUB_FAIL_AT=2 "$SUBMIT" --work "$d/y" --capture m --solve --out o 2>&1); rc=$?
check '[ $rc -eq 1 ] && grep -q "sbatch failed for the solve job" <<<"$out"'
check '[ "$(cat "$d/calls.scancel")" = "500 501" ]'
check '! grep -q AQ_JOBS <<<"$out"'
rm -f "$d/calls"/*
check '"$SUBMIT" --help | grep -q "AQ_JOBS capture=ID array=ID solve=ID"'

# 4. adaquant-array.sbatch: which --shard/--shards reach `adaquant calibrate`.
unset AQ_WORK AQ_SHARDS
arr() { env -u AQ_SHARDS -u AQ_WORK ADAQUANT=/opt/aq "$@" bash "$T/adaquant-array.sbatch" --work "$d/wa" 2>&1; }
mkdir -p "$d/wa"
line() { tr '\n' ' ' <<<"$1" | sed 's/ *$//'; }
o=$(arr SLURM_ARRAY_TASK_ID=2 SLURM_ARRAY_TASK_MIN=0 SLURM_ARRAY_TASK_MAX=3 SLURM_ARRAY_TASK_COUNT=4)
check '[ "$(line "$(grep -v ^adaquant-array <<<"$o")")" = "--mpi=pmix /opt/aq calibrate --shard 2 --shards 4 --work $d/wa" ]'
# a resubmitted subset: the count of this array (1) is not the shard count
o=$(arr SLURM_ARRAY_TASK_ID=2 SLURM_ARRAY_TASK_MIN=2 SLURM_ARRAY_TASK_MAX=2 SLURM_ARRAY_TASK_COUNT=1); rc=$?
check '[ $rc -eq 2 ] && grep -q "set AQ_SHARDS" <<<"$o"'
# ... unless the last calibrate recorded the shard count in WORK/shards.json
# (an array 0..N-1 is always trusted: its shards cover every task)
printf '{"shards": 4}\n' >"$d/wa/shards.json"
o=$(arr SLURM_ARRAY_TASK_ID=2 SLURM_ARRAY_TASK_MIN=2 SLURM_ARRAY_TASK_MAX=2 SLURM_ARRAY_TASK_COUNT=1)
check 'grep -q -- "--shard 2 --shards 4 " <<<"$(line "$o") "'
o=$(arr AQ_SHARDS=6 SLURM_ARRAY_TASK_ID=5 SLURM_ARRAY_TASK_MIN=0 SLURM_ARRAY_TASK_MAX=7 SLURM_ARRAY_TASK_COUNT=8)
check 'grep -q -- "--shard 5 --shards 6 " <<<"$(line "$o") "'
o=$(arr AQ_SRUN_MPI=pmix_v4 SLURM_ARRAY_TASK_ID=0 SLURM_ARRAY_TASK_MIN=0 SLURM_ARRAY_TASK_MAX=0 SLURM_ARRAY_TASK_COUNT=1)
check 'grep -q -- "^--mpi=pmix_v4 /opt/aq calibrate --shard 0 --shards 1 " <<<"$(line "$(grep -v ^adaquant-array <<<"$o")") "'
o=$(arr); rc=$?
check '[ $rc -ne 0 ] && grep -q "not an array task" <<<"$o"'

# 5. The other templates: environment parameters first, then the arguments.
o=$(env ADAQUANT=/opt/aq AQ_MODEL="m m" AQ_TOKENIZER=t AQ_CALIB_TEXT=c AQ_WORK=w bash "$T/adaquant-capture.sbatch" --iters 3 | grep -v ^adaquant-)
check '[ "$o" = "$(printf "%s\n" --mpi=pmix /opt/aq capture "m m" --tokenizer t --calib-text c --work w --iters 3)" ]'
o=$(env ADAQUANT=/opt/aq AQ_WORK=w AQ_OUT=o AQ_BUDGET="--target-bits 3.5 --keep x=w8a16" bash "$T/adaquant-solve.sbatch" --force | grep -v ^adaquant-)
check '[ "$o" = "$(printf "%s\n" --mpi=pmix /opt/aq solve --work w --out o --target-bits 3.5 --keep x=w8a16 --force)" ]'
o=$(env -u AQ_MODEL -u AQ_WORK -u AQ_OUT -u AQ_BUDGET -u AQ_TOKENIZER -u AQ_CALIB_TEXT bash "$T/adaquant-mpi.sbatch" m --out o | grep -v ^adaquant-)
check '[ "$o" = "$(printf "%s\n" --mpi=pmix adaquant quantize m --out o)" ]'
for f in "$T"/*.sbatch; do
  check 'grep -q "^set -euo pipefail" "$f"'
  check 'grep -q "^##SBATCH --partition" "$f" && grep -q "^##SBATCH --account" "$f"'
done

[ $fail = 0 ] && echo PASS
exit $fail
