#!/usr/bin/env bash
# solver_cli.sh — `adaquant allocate` end to end: a hand-solved table, --json,
# infeasible budgets naming the smallest feasible one, rule conflicts, a
# malformed CSV whose error names the line, a sweep writing its files.
set -u
CLI=${AQ_CLI:?AQ_CLI not set}
d=$(mktemp -d /tmp/aqtest-allocate-XXXXXX)
trap 'rm -rf "$d"' EXIT
fail=0
check() { if ! eval "$1"; then echo "FAIL: $1"; fail=1; fi; }

# Hand-solved (see test_solver_table.c): budget 4.5 bits/weight -> a w4, b w8, c w2, loss 0.45.
cat >"$d/t.csv" <<'CSV'
# three layers, three options
layer,option,params,w_bits,a_bits,macs,loss
a,w2a16,100,2,16,100,0.50
a,w4a16,100,4,16,100,0.10
a,w8a16,100,8,16,100,0.00
b,w2a16,100,2,16,100,0.40
b,w4a16,100,4,16,100,0.20
b,w8a16,100,8,16,100,0.05
c,w2a16,200,2,16,200,0.30
c,w4a16,200,4,16,200,0.25
c,w8a16,200,8,16,200,0.01
CSV
out=$("$CLI" allocate --table "$d/t.csv" --target-bits 4.5); rc=$?
check '[ $rc -eq 0 ]'
check 'echo "$out" | grep -Eq "^a +w4a16"'
check 'echo "$out" | grep -Eq "^b +w8a16"'
check 'echo "$out" | grep -Eq "^c +w2a16"'
check 'echo "$out" | grep -q "loss: 0.45"'
check 'echo "$out" | grep -q "solver: optimal"'
# JSON: valid, same answer
"$CLI" allocate --table "$d/t.csv" --target-size 0.140625 --json >"$d/o.json"
check '/usr/bin/python3 -c "import json,sys; j=json.load(open(\"$d/o.json\")); sys.exit(0 if [l[\"option\"] for l in j[\"layers\"]]==[\"w4a16\",\"w8a16\",\"w2a16\"] and j[\"size_bits\"]==1600 and j[\"status\"]==\"optimal\" else 1)"'
# (b): smallest size with loss <= 0.6 is 1200 bits
out=$("$CLI" allocate --table "$d/t.csv" --max-loss 0.6)
check 'echo "$out" | grep -q "size: 1200 bits"'
# infeasible: all w2 = 800 bits = 2 bits/weight; with a pinned to w8: 800+200+400 = 1400 = 3.5
err=$("$CLI" allocate --table "$d/t.csv" --target-bits 1.5 2>&1); rc=$?
check '[ $rc -eq 1 ]'
check 'echo "$err" | grep -q "smallest feasible is 2.0000 bits/weight"'
err=$("$CLI" allocate --table "$d/t.csv" --target-bits 3 --keep "^a$=w8a16" 2>&1)
check 'echo "$err" | grep -q "smallest feasible is 3.5000 bits/weight.*pins"'
# tie conflicting with pins names both layers
err=$("$CLI" allocate --table "$d/t.csv" --target-bits 6 --tie "^[ab]$" --keep "^a$=w8a16" --keep "^b$=w2a16" 2>&1); rc=$?
check '[ $rc -eq 1 ]'
check 'echo "$err" | grep -q "'"'"'a'"'"'" && echo "$err" | grep -q "'"'"'b'"'"'" && echo "$err" | grep -q pinned'
# malformed CSV: the error names the line
sed '6s/,100,/,1o0,/' "$d/t.csv" >"$d/bad.csv"
err=$("$CLI" allocate --table "$d/bad.csv" --target-bits 4 2>&1); rc=$?
check '[ $rc -eq 1 ]'
check 'echo "$err" | grep -q "bad.csv: line 6: .*1o0"'
printf 'layer,option,params,w_bits,a_bits,macs,loss\na,w4,10,4,16,1,0.1\na,w4,10,4,16,1,0.2\n' >"$d/dup.csv"
err=$("$CLI" allocate --table "$d/dup.csv" --target-bits 4 2>&1)
check 'echo "$err" | grep -q "duplicate.*line 2 and line 3"'
# usage errors exit 2
"$CLI" allocate --table "$d/t.csv" >/dev/null 2>&1; check '[ $? -eq 2 ]'
"$CLI" allocate --table "$d/t.csv" --target-bits 4 --max-loss 1 >/dev/null 2>&1; check '[ $? -eq 2 ]'
"$CLI" allocate --table "$d/t.csv" --target-bits 4 --keep nothing >/dev/null 2>&1; check '[ $? -eq 2 ]'
check '"$CLI" allocate --help | grep -q size_bits'
# sweep: files written, Pareto loss non-increasing, infeasible budgets recorded
out=$("$CLI" allocate --table "$d/t.csv" --sweep 1.5:8:0.5 --out-dir "$d/sw"); rc=$?
check '[ $rc -eq 0 ]'
for f in pareto.csv pareto.json pareto.svg bits_per_layer.svg allocation.csv allocation.json; do
  check '[ -s "$d/sw/$f" ]'
done
check 'grep -q "^1.5,0,0,infeasible" "$d/sw/pareto.csv"'
check '/usr/bin/python3 - "$d/sw" <<PY
import csv, json, sys, xml.dom.minidom
d = sys.argv[1]
rows = [r for r in csv.DictReader(open(d + "/pareto.csv")) if r["feasible"] == "1"]
loss = [float(r["loss"]) for r in rows]
assert all(a >= b for a, b in zip(loss, loss[1:])), loss
assert abs(float(rows[-1]["loss"]) - 0.06) < 1e-12  # 8 bits/weight: all w8
j = json.load(open(d + "/pareto.json"))
assert j["min_feasible_bits_per_weight"] == 2.0 and j["chosen"] is not None
xml.dom.minidom.parse(d + "/pareto.svg"); xml.dom.minidom.parse(d + "/bits_per_layer.svg")
PY'
exit $fail
