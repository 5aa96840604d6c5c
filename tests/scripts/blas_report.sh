#!/usr/bin/env bash
# blas_report.sh — the quantize report names the BLAS kernel in use and who
# chose it: report.json run.blas and the BLAS row of report.md agree with
# `adaquant --version` (auto / BLIS's own choice), and a BLIS_ARCH_TYPE set by
# the user is reported as such. A tiny quantize of stories260K (~2 s).
set -u
CLI=${AQ_CLI:?AQ_CLI not set}
S=${AQ_SHARED_DIR:-../shared}
M=$S/models/stories260K
for f in "$M/stories260K.bin" "$M/tok512.bin" "$S/data/tinystories/validation.txt"; do
  [ -r "$f" ] || { echo "SKIP: test asset $f is absent (set AQ_SHARED_DIR to the shared/ folder)"; exit 77; }
done
d=$(mktemp -d /tmp/aqtest-blasrep-XXXXXX)
trap 'rm -rf "$d"' EXIT
fail=0
check() { if ! eval "$1"; then echo "FAIL: $1"; fail=1; fi; }
field() { /usr/bin/python3 -c 'import json,sys; b=json.load(open(sys.argv[1]))["run"]["blas"]; print(b["library"], b["version"], b["kernel"], b["selection"])' "$1"; }
quantize() { # OUT [BLIS_ARCH_TYPE=N]: BLIS_ARCH_TYPE cleared unless given
  env -u BLIS_ARCH_TYPE ${2:+"$2"} "$CLI" quantize "$M/stories260K.bin" --tokenizer "$M/tok512.bin" --calib-text "$S/data/tinystories/validation.txt" \
    --out "$1" --calib-windows 2 --calib-len 64 --iters 1 --starts 1 --polish 0 --options w8a16 --target-bits 8 \
    --kl-windows 0 --eval-docs 2 --no-tune >"$d/log" 2>&1
}

line=$(env -u BLIS_ARCH_TYPE "$CLI" --version | sed -n 2p)
kernel=$(echo "$line" | sed -E 's/^BLIS [^,]*, kernel ([a-z0-9]+) .*/\1/')
version=$(echo "$line" | sed -E 's/^BLIS ([^,]*),.*/\1/')
sel=blis
echo "$line" | grep -q "auto-selected" && sel=auto
quantize "$d/auto"; rc=$?
check '[ $rc -eq 0 ]'
check '[ "$(field "$d/auto/report.json")" = "BLIS $version $kernel $sel" ]'
check 'grep -qxF "| BLAS | $line |" "$d/auto/report.md"'

if [ "$version" = 0.9.0 ]; then # generic is id 25 of BLIS 0.9.0's arch_t enum
  quantize "$d/forced" BLIS_ARCH_TYPE=25; rc=$?
  check '[ $rc -eq 0 ]'
  check '[ "$(field "$d/forced/report.json")" = "BLIS 0.9.0 generic user" ]'
  check 'grep -qxF "| BLAS | BLIS 0.9.0, kernel generic (forced by BLIS_ARCH_TYPE=25) |" "$d/forced/report.md"'
fi
[ $fail -eq 0 ] || { cat "$d/log"; exit 1; }
echo "all checks passed"
