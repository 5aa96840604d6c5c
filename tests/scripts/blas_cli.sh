#!/usr/bin/env bash
# blas_cli.sh — `adaquant --version` names the BLAS kernel and who chose it;
# a BLIS_ARCH_TYPE set by the user wins; under mpirun the auto-selection is
# logged once (rank 0), not once per rank. Every case sets or clears
# BLIS_ARCH_TYPE itself, so the test holds in the forced-kernel passes too.
set -u
CLI=${AQ_CLI:?AQ_CLI not set}
MPIRUN=${AQ_MPIRUN:?AQ_MPIRUN not set}
d=$(mktemp -d /tmp/aqtest-blas-XXXXXX)
trap 'rm -rf "$d"' EXIT
fail=0
check() { if ! eval "$1"; then echo "FAIL: $1"; fail=1; fi; }

out=$(env -u BLIS_ARCH_TYPE "$CLI" --version 2>"$d/err"); rc=$?
echo "$out"
check '[ $rc -eq 0 ]'
check '[ ! -s "$d/err" ]'
line=$(echo "$out" | sed -n 2p)
check 'echo "$line" | grep -Eq "^BLIS [0-9][0-9.]*, kernel [a-z0-9]+ \((auto-selected: BLIS alone would run [a-z0-9]+|BLIS.s own choice)\)$"'
# From /proc/cpuinfo, not from the code under test: with AVX2 and FMA the kernel is never generic.
if [ "$(uname -m)" = x86_64 ] && grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo; then
  check '! echo "$line" | grep -q "kernel generic"'
fi
# The user's choice wins, even the slow one: generic is id 25 of BLIS 0.9.0's arch_t enum.
if echo "$line" | grep -q "^BLIS 0\.9\.0,"; then
  out=$(BLIS_ARCH_TYPE=25 "$CLI" --version)
  check 'echo "$out" | grep -qx "BLIS 0.9.0, kernel generic (forced by BLIS_ARCH_TYPE=25)"'
fi

# Logged once under mpirun -np 2: one line when auto-selected, none otherwise.
want=0
echo "$line" | grep -q "auto-selected" && want=1
cat >"$d/t.csv" <<'CSV'
layer,option,params,w_bits,a_bits,macs,loss
a,w2a16,100,2,16,100,0.5
a,w4a16,100,4,16,100,0.1
CSV
env -u BLIS_ARCH_TYPE "$MPIRUN" --allow-run-as-root --oversubscribe --mca pml ob1 --mca btl self,vader -np 2 \
  "$CLI" allocate --table "$d/t.csv" --target-bits 4 >"$d/out" 2>"$d/err"; rc=$?
check '[ $rc -eq 0 ]'
n=$(grep -c "does not recognise this CPU" "$d/err")
check '[ "$n" -eq "$want" ]'
[ $fail -eq 0 ] || { cat "$d/err"; exit 1; }
echo "all checks passed"
