#!/bin/bash
# fake_adaquant.sh — DEVELOPMENT ONLY stand-in for the adaquant stage commands
# (capture / calibrate / solve / quantize) with the same options and work
# directory roles, used to build the Slurm side before the real ones existed.
# Not used by any registered test.
set -euo pipefail
cmd=$1; shift
rank=${PMIX_RANK:-${OMPI_COMM_WORLD_RANK:-${SLURM_PROCID:-0}}}
work= out= shard= shards= model= rest=()
while [ $# -gt 0 ]; do
  case $1 in
    --work) work=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --shard) shard=$2; shift 2 ;;
    --shards) shards=$2; shift 2 ;;
    --*) rest+=("$1" "$2"); shift 2 ;;
    *) model=$1; shift ;;
  esac
done
NT=10
capture() { mkdir -p "$work/results"; printf "%s\n" "$model" >"$work/settings.json"; sleep 0.5; }
task() { mkdir -p "$work/results"; { cat "$work/settings.json"; echo "task $1"; } >"$work/results/t$1.tmp.$$"; mv "$work/results/t$1.tmp.$$" "$work/results/t$1"; }
write_out() {
  local miss=() shs=() s k n
  for k in $(seq 0 $((NT - 1))); do [ -f "$work/results/t$k" ] || miss+=("$k"); done
  if [ ${#miss[@]} -gt 0 ]; then
    n=$(sed -n 's/.*"shards": *\([0-9]*\).*/\1/p' "$work/shards.json" 2>/dev/null || true)
    for k in "${miss[@]}"; do s=$((k % n)); [[ " ${shs[*]-} " == *" $s "* ]] || shs+=("$s"); done
    list=$(IFS=,; echo "${shs[*]}")
    echo "adaquant solve: error: ${#miss[@]} of $NT tasks have no valid result in $work/results; missing shards $list of $n; resubmit exactly those with: ${AQ_SUBMIT:-slurm/submit.sh} --resubmit $list --shards $n --work $work" >&2
    exit 1
  fi
  mkdir -p "$out.tmp"; cat "$work"/results/t* >"$out.tmp/model.safetensors"; printf '%s\n' "${rest[@]}" >"$out.tmp/quantization.json"
  date >"$out.tmp/report.md"; mv "$out.tmp" "$out"
}
[ "$rank" = 0 ] || exit 0
case $cmd in
  capture) capture ;;
  calibrate)
    for k in $(seq 0 $((NT - 1))); do
      if [ $((k % shards)) = "$shard" ] && [ ! -f "$work/results/t$k" ]; then task "$k"; fi
    done
    echo "{\"shards\": $shards}" >"$work/shards.json" ;;
  solve) write_out ;;
  quantize) capture; for k in $(seq 0 $((NT - 1))); do task "$k"; done; write_out ;;
  *) echo "fake: unknown $cmd" >&2; exit 2 ;;
esac
