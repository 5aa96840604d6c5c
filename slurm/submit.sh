#!/bin/bash
# submit.sh — submit the job-array pipeline: capture -> array of N calibrate
# shards -> solve, chained with --dependency=afterok, or resubmit only some
# shards of an existing run plus a new solve. See --help and docs/SLURM.md.
#
# What it records: WORK/slurm/submit.args holds the solve and calibrate
# arguments, the binary, the shard count, the throttle and the extra sbatch
# options of the first submission, so that `submit.sh --resubmit LIST --work
# WORK` (the command `adaquant solve` prints for missing shards) needs nothing
# else. Job logs go to WORK/slurm/ unless --log-dir says otherwise.
set -euo pipefail

me=$(readlink -f "$0")
here=$(dirname "$me")
templates=${AQ_SLURM_DIR:-$here}

usage() {
  cat <<'USAGE'
usage: submit.sh [options] --capture MODEL --tokenizer TOK --calib-text FILE [capture options...]
                 [--calibrate calibrate options...] [--solve --out OUTDIR [budget options...]]
       submit.sh --resubmit LIST --work DIR [options] [--calibrate ...] [--solve ...]

Submits the adaquant job-array pipeline to Slurm, as three chained jobs:
  1. capture   (slurm/adaquant-capture.sbatch, an MPI job: srun --mpi=pmix)
  2. an array of N calibrate shards (slurm/adaquant-array.sbatch), afterok:capture
  3. solve     (slurm/adaquant-solve.sbatch), afterok:array -> writes OUTDIR
Dependent jobs are submitted with --kill-on-invalid-dep=yes: if a job they wait
for fails or is cancelled they are cancelled too, instead of pending forever.

Everything after --capture goes to `adaquant capture`, after --calibrate to
`adaquant calibrate`, after --solve to `adaquant solve` (until the next of
these three markers); `--work DIR` is added to each. Quoting is preserved.

options:
  --work DIR           work directory (required); must be on a filesystem that
                       every compute node sees (it is made absolute)
  --shards N           number of array tasks / shards (default 8)
  --throttle K         run at most K array tasks at a time (--array=0-(N-1)%K)
  --capture-ntasks P   MPI tasks of the capture job (default: the template's)
  --adaquant PATH      the adaquant binary as seen from the compute nodes
                       (default: $ADAQUANT, else `adaquant` on PATH)
  --sbatch-opt OPT     an extra sbatch option for every job, repeatable, e.g.
                       --sbatch-opt=--partition=compute --sbatch-opt=--account=proj
  --log-dir DIR        where job logs go (default WORK/slurm)
  --hold               submit the array held; start it with `scontrol release ID`
  --resubmit LIST      only resubmit the array tasks LIST (Slurm syntax, e.g.
                       2 or 1,5-7) of an existing run, and a new solve after
                       them; no capture. Options not given are taken from the
                       first submission (WORK/slurm/submit.args)
  --dry-run            print the sbatch commands instead of running them
  -h, --help           this text

output: one line per job, then a machine-readable line
  AQ_JOBS capture=ID array=ID solve=ID        (--resubmit: array=ID solve=ID)

examples:
  slurm/submit.sh --work /scratch/$USER/aq --shards 16 --throttle 4 \
      --sbatch-opt=--partition=compute \
      --capture models/llama --tokenizer models/llama/tokenizer.bin --calib-text calib.txt \
      --solve --out /scratch/$USER/llama-w4 --target-bits 4.0
  slurm/submit.sh --resubmit 3,7 --work /scratch/$USER/aq
USAGE
}

die() { echo "submit.sh: $*" >&2; exit 2; }

jobdir=$PWD work='' shards='' throttle='' capture_ntasks='' adaquant=${ADAQUANT:-} log_dir='' hold=0 resubmit='' dry=0
sbatch_opts=() capture_args=() calibrate_args=() solve_args=()
have_calibrate=0 have_solve=0 have_capture=0
group=
while [ $# -gt 0 ]; do
  a=$1
  case $a in
    --capture) group=capture; have_capture=1; shift; continue ;;
    --calibrate) group=calibrate; have_calibrate=1; shift; continue ;;
    --solve) group=solve; have_solve=1; shift; continue ;;
  esac
  case $group in
    capture) capture_args+=("$a"); shift; continue ;;
    calibrate) calibrate_args+=("$a"); shift; continue ;;
    solve) solve_args+=("$a"); shift; continue ;;
  esac
  # our own options: --opt VALUE or --opt=VALUE
  case $a in
    -h | --help) usage; exit 0 ;;
    --hold) hold=1; shift; continue ;;
    --dry-run) dry=1; shift; continue ;;
    --*=*) opt=${a%%=*} val=${a#*=}; shift ;;
    --*) opt=$a; [ $# -ge 2 ] || die "$a needs a value"; val=$2; shift 2 ;;
    *) die "unexpected argument '$a' (capture arguments go after --capture; see --help)" ;;
  esac
  case $opt in
    --work) work=$val ;;
    --shards) shards=$val ;;
    --throttle) throttle=$val ;;
    --capture-ntasks) capture_ntasks=$val ;;
    --adaquant) adaquant=$val ;;
    --sbatch-opt) sbatch_opts+=("$val") ;;
    --log-dir) log_dir=$val ;;
    --resubmit) resubmit=$val ;;
    *) die "unknown option '$opt' (see --help)" ;;
  esac
done

[ -n "$work" ] || die "--work DIR is required"
work=$(readlink -m "$work")
record=$work/slurm/submit.args
is_count() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }

if [ -n "$resubmit" ]; then
  [ "$have_capture" = 0 ] || die "--resubmit and --capture exclude each other (the capture is done)"
  [[ $resubmit =~ ^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$ ]] ||
    die "--resubmit '$resubmit': expected a list of shard numbers and ranges, like 2 or 1,5-7"
  # Fill what was not given from the first submission's record.
  if [ -f "$record" ]; then
    saved_shards='' saved_throttle='' saved_adaquant='' saved_log_dir='' saved_cwd=''
    saved_sbatch_opts=() saved_calibrate_args=() saved_solve_args=()
    # shellcheck source=/dev/null
    . "$record"
    : "${shards:=$saved_shards}" "${throttle:=$saved_throttle}" "${adaquant:=$saved_adaquant}"
    : "${log_dir:=$saved_log_dir}"
    # relative paths in the recorded arguments mean what they meant then
    if [ -n "$saved_cwd" ]; then jobdir=$saved_cwd; fi
    if [ ${#sbatch_opts[@]} -eq 0 ]; then sbatch_opts=(${saved_sbatch_opts[@]+"${saved_sbatch_opts[@]}"}); fi
    if [ "$have_calibrate" = 0 ]; then calibrate_args=(${saved_calibrate_args[@]+"${saved_calibrate_args[@]}"}); fi
    if [ "$have_solve" = 0 ]; then
      solve_args=(${saved_solve_args[@]+"${saved_solve_args[@]}"})
      have_solve=${#saved_solve_args[@]}
    fi
  fi
  if [ -z "$shards" ] && [ -f "$work/shards.json" ]; then
    shards=$(sed -n 's/.*"shards"[[:space:]]*:[[:space:]]*\([0-9][0-9]*\).*/\1/p' "$work/shards.json")
  fi
  [ -n "$shards" ] || die "--resubmit: the shard count is unknown (no $record, no $work/shards.json): give --shards N"
  [ "$have_solve" != 0 ] ||
    die "--resubmit: no solve options given and none recorded in $record: add --solve --out OUTDIR [budget options]"
  for r in ${resubmit//,/ }; do
    for s in ${r//-/ }; do
      [ "$s" -lt "$shards" ] || die "--resubmit: shard $s is outside 0..$((shards - 1)) (--shards $shards)"
    done
  done
else
  [ "$have_capture" = 1 ] || die "nothing to capture: give --capture MODEL --tokenizer TOK --calib-text FILE [...]"
  [ "$have_solve" = 1 ] || die "no solve options: give --solve --out OUTDIR [budget options] (see --help)"
  : "${shards:=8}"
fi
is_count "$shards" || die "--shards '$shards': expected a positive integer"
[ -z "$throttle" ] || is_count "$throttle" || die "--throttle '$throttle': expected a positive integer"
[ -z "$capture_ntasks" ] || is_count "$capture_ntasks" || die "--capture-ntasks '$capture_ntasks': expected a positive integer"

# The binary must be found on the compute nodes: make a path absolute.
: "${adaquant:=adaquant}"
case $adaquant in */*) adaquant=$(readlink -m "$adaquant") ;; esac
: "${log_dir:=$work/slurm}"
log_dir=$(readlink -m "$log_dir")
for f in adaquant-capture.sbatch adaquant-array.sbatch adaquant-solve.sbatch; do
  [ -f "$templates/$f" ] || die "template $templates/$f not found (set AQ_SLURM_DIR)"
done

# quoted_array NAME ARGS...: a bash array assignment that restores ARGS exactly
quoted_array() {
  local name=$1 a
  shift
  printf '%s=(' "$name"
  for a in "$@"; do printf ' %q' "$a"; done
  printf ' )\n'
}

# Remember the settings for --resubmit (first submission only).
save_record() {
  mkdir -p "$work/slurm"
  {
    echo "# written by slurm/submit.sh; read by submit.sh --resubmit"
    printf 'saved_shards=%q\nsaved_throttle=%q\nsaved_adaquant=%q\nsaved_log_dir=%q\nsaved_cwd=%q\n' \
      "$shards" "$throttle" "$adaquant" "$log_dir" "$jobdir"
    quoted_array saved_sbatch_opts ${sbatch_opts[@]+"${sbatch_opts[@]}"}
    quoted_array saved_calibrate_args ${calibrate_args[@]+"${calibrate_args[@]}"}
    quoted_array saved_solve_args ${solve_args[@]+"${solve_args[@]}"}
  } >"$record.tmp.$$"
  mv -f "$record.tmp.$$" "$record"
}

# The environment of every job: the binary, the shard count, where this script
# lives (for a resubmit command with the real path; `adaquant solve` prints
# `slurm/submit.sh --resubmit ...` relative to the source tree).
# The AQ_* parameters of the templates are cleared: we pass arguments instead.
submit() { # submit NAME sbatch-args... ; prints the job id
  local name=$1
  shift
  local cmd=(sbatch --parsable --export=ALL --chdir="$jobdir" ${sbatch_opts[@]+"${sbatch_opts[@]}"} "$@")
  if [ "$dry" = 1 ]; then
    printf '%q ' "${cmd[@]}" >&2
    echo >&2
    case $name in capture) echo 1001 ;; array) echo 1002 ;; *) echo 1003 ;; esac
    return
  fi
  local out
  if ! out=$(env -u AQ_MODEL -u AQ_TOKENIZER -u AQ_CALIB_TEXT -u AQ_WORK -u AQ_OUT -u AQ_BUDGET \
             ADAQUANT="$adaquant" AQ_SHARDS="$shards" AQ_SUBMIT="$me" "${cmd[@]}"); then
    echo "submit.sh: sbatch failed for the $name job" >&2
    return 1
  fi
  echo "${out%%;*}"
}
# A chain that could not be submitted completely is cancelled, so that no
# half of it runs (or pends forever) on its own.
submitted=()
abort_chain() {
  if [ ${#submitted[@]} -gt 0 ]; then
    echo "submit.sh: cancelling the jobs already submitted: ${submitted[*]}" >&2
    scancel "${submitted[@]}" || true
  fi
  exit 1
}

array_spec=${resubmit:-0-$((shards - 1))}${throttle:+%$throttle}
dep_opts=(--kill-on-invalid-dep=yes)
[ "$dry" = 1 ] || mkdir -p "$log_dir"

if [ -z "$resubmit" ]; then
  [ "$dry" = 1 ] || save_record
  cap_opts=(--output="$log_dir/capture-%j.out")
  [ -z "$capture_ntasks" ] || cap_opts+=(--ntasks="$capture_ntasks")
  capture_id=$(submit capture "${cap_opts[@]}" "$templates/adaquant-capture.sbatch" \
               "${capture_args[@]}" --work "$work") || abort_chain
  submitted+=("$capture_id")
  echo "capture job $capture_id"
  arr_dep=(--dependency=afterok:"$capture_id" "${dep_opts[@]}")
else
  arr_dep=()
fi

arr_opts=(--array="$array_spec" --output="$log_dir/array-%A_%a.out")
[ "$hold" = 0 ] || arr_opts+=(--hold)
array_id=$(submit array ${arr_dep[@]+"${arr_dep[@]}"} "${arr_opts[@]}" "$templates/adaquant-array.sbatch" \
           --work "$work" ${calibrate_args[@]+"${calibrate_args[@]}"}) || abort_chain
submitted+=("$array_id")
held=
[ "$hold" = 0 ] || held="; held: start it with scontrol release $array_id"
echo "array job $array_id (shards $array_spec of $shards$held)"

solve_id=$(submit solve --dependency=afterok:"$array_id" "${dep_opts[@]}" --output="$log_dir/solve-%j.out" \
           "$templates/adaquant-solve.sbatch" --work "$work" "${solve_args[@]}") || abort_chain
echo "solve job $solve_id"

if [ -z "$resubmit" ]; then
  echo "AQ_JOBS capture=$capture_id array=$array_id solve=$solve_id"
else
  echo "AQ_JOBS array=$array_id solve=$solve_id"
fi
