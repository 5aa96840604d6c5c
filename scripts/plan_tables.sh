#!/bin/bash
# plan_tables.sh — the scale tables of docs/PLAN.md: `adaquant plan` on the
# public configs of tests/configs at P = 8 ... 1024, 256 GB per rank (one
# rank per 256 GB node), default settings, plus the CBC solve time on a
# synthetic 12-option table of each task list.
# usage: scripts/plan_tables.sh ADAQUANT RATES.json
set -eu
AQ=${1:?usage: plan_tables.sh ADAQUANT RATES.json}
RATES=${2:?usage: plan_tables.sh ADAQUANT RATES.json}
D=$(dirname "$0")/../tests/configs
MENU12=w8a16,w6a16,w4a16,w3a16,w2a16,w8a8,w6a8,w4a8,w3a8,w2a8,w4a4,w8a4
for m in llama2_7b llama2_70b llama3.1_405b; do
    echo "### $m"
    echo
    echo "| P | makespan | lower bound | efficiency | capture | calibrate | calibrate bound (work/P, longest task) | calibrate / bound | tune | eval | peak memory / rank | fits 256 GB | cooperative tasks |"
    echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"
    for P in 8 16 32 64 128 256 512 1024; do
        "$AQ" plan "$D/$m.json" --rates "$RATES" -P $P --mem-per-rank 256G --json 2>/dev/null | python3 -c '
import json, sys
p = json.load(sys.stdin)
def t(s):
    if s < 120: return "%.1f s" % s
    if s < 7200: return "%.1f min" % (s / 60)
    if s < 172800: return "%.1f h" % (s / 3600)
    return "%.1f d" % (s / 86400)
def b(x):
    for u in ["B", "KiB", "MiB", "GiB", "TiB"]:
        if x < 1024: return "%.1f %s" % (x, u)
        x /= 1024
    return "%.1f PiB" % x
P = p["ranks"]; c = p["phases"]["calibrate"]
coop = [k["name"] for k in p["classes"] if k["cooperative_time"] or k["cooperative_mem"]]
why = []
for k in p["classes"]:
    r = []
    if k["cooperative_time"]: r.append("> total/P")
    if k["cooperative_mem"]: r.append("> memory")
    if r: why.append("%s (%s)" % (k["name"], ", ".join(r)))
ph = p["phases"]
print("| %d | %s | %s | %.0f%% | %s | %s | %s, %s | %.3f | %s | %s | %s | %s | %s |" % (P, t(p["makespan"]),
      t(p["lower_bound"]), 100 * p["efficiency"], t(ph["capture"]["seconds"]), t(c["seconds"]),
      t(p["task_total_seconds"] / P), t(p["task_longest_seconds"]), c["seconds"] / c["lower_bound"],
      t(ph["tune"]["seconds"]), t(ph["eval"]["seconds"]),
      b(p["peak_mem_bytes"]), "yes" if p["fits"] else "no", "; ".join(why) if why else "none"))
'
    done
    echo
    "$AQ" plan "$D/$m.json" --rates "$RATES" --options $MENU12 --target-bits 4 --solve 2>/dev/null | tail -1
    "$AQ" plan "$D/$m.json" --rates "$RATES" --options $MENU12 --target-bits 4 --solve --bops 0.5 2>/dev/null | tail -1
    echo
done
