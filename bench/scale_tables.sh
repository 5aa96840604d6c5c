#!/bin/bash
# scale_tables.sh — the scale tables of docs/PLAN.md (issue 14 item 4):
# `adaquant plan` on the public configs of tests/configs (Llama-2-7B,
# Llama-2-70B, Llama-3.1-405B) at P = 8 ... 1024, one rank per 256 GB node,
# default settings, cooperative tasks on sub-grids of Q = 8 ranks with the
# threshold Q / P (a run setting: the rule "cost > F x total / Q" is then
# "cost > total / P") and --max-rank-memory = 256 GB (a task that fits no
# rank alone goes cooperative too); plus the CBC solve time on a synthetic
# 12-option loss table of each task list, under a size budget and under
# size + BOPs (50 % of all-w8a8).
# usage: bench/scale_tables.sh ADAQUANT [RATES.json]   (measures the rates
# into RATES.json first when the file is absent; prints markdown)
set -eu
AQ=${1:?usage: scale_tables.sh ADAQUANT [RATES.json]}
RATES=${2:-/tmp/aq_scale_rates.json}
D=$(dirname "$0")/../tests/configs
Q=${Q:-8}
MENU12=w8a16,w6a16,w4a16,w3a16,w2a16,w8a8,w6a8,w4a8,w3a8,w2a8,w4a4,w8a4
[ -f "$RATES" ] || "$AQ" plan "$D/llama2_7b.json" --rates "$RATES" --calibrate > /dev/null
echo "rates: $RATES (BLIS kernel $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["kernel"])' "$RATES"))"
for m in llama2_7b llama2_70b llama3.1_405b; do
    echo
    echo "### $m (--coop-ranks $Q)"
    echo
    echo "| P | makespan | lower bound | efficiency | calibrate | calibrate / bound | cooperative phase | peak memory / rank | fits 256 GB | cooperative tasks (longest, on $Q ranks) |"
    echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"
    for P in 8 16 32 64 128 256 512 1024; do
        F=$(python3 -c "print($Q / $P)")
        "$AQ" plan "$D/$m.json" --rates "$RATES" -P $P --mem-per-rank 256G --coop-ranks $Q --coop-threshold "$F" \
            --json 2>/dev/null | python3 -c '
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
coop = ["%s (%s)" % (k["name"], t(k["coop_seconds"])) for k in p["classes"] if k.get("coop_seconds")]
print("| %d | %s | %s | %.0f%% | %s | %.3f | %s | %s | %s | %s |" % (P, t(p["makespan"]), t(p["lower_bound"]),
      100 * p["efficiency"], t(c["seconds"]), c["seconds"] / c["lower_bound"], t(p.get("coop_phase_seconds", 0)),
      b(p["peak_mem_bytes"]), "yes" if p["fits"] else "no",
      "%d tasks: %s" % (p.get("coop_tasks", 0), "; ".join(coop)) if coop else "none"))
'
    done
    echo
    for bops in "" "--bops 0.5"; do
        s=$(date +%s.%N)
        "$AQ" plan "$D/$m.json" --rates "$RATES" --options $MENU12 --target-bits 4 --solve $bops 2>/dev/null | tail -1
        echo "(wall $(python3 -c "import time; print('%.1f' % (time.time() - $s))") s, load $(cut -d' ' -f1 /proc/loadavg))"
    done
done
