#!/bin/sh
# inspect_malformed.sh GEN — `adaquant inspect` on every file of the malformed
# safetensors corpus (written by GEN = gen_malformed): broken files must exit 1
# with the expected phrase and the file name on stderr (and nothing crashing,
# which also holds under ASan builds); valid files must exit 0.
set -u
gen=$1
cli=${AQ_CLI:?AQ_CLI must point at the adaquant binary}
dir=$(mktemp -d /tmp/aqtest-inspect-XXXXXX)
trap 'rm -rf "$dir"' EXIT
"$gen" "$dir" || { echo "FAIL: $gen could not write the corpus"; exit 1; }
fails=0 n=0
tab=$(printf '\t')
while IFS="$tab" read -r file expect; do
    n=$((n + 1))
    "$cli" inspect "$dir/$file" >"$dir/out" 2>"$dir/err"
    rc=$?
    if [ "$expect" = OK ]; then
        if [ $rc -ne 0 ] || ! grep -q '^parameters: ' "$dir/out"; then
            echo "FAIL: $file: valid file, exit $rc: $(cat "$dir/err")"; fails=$((fails + 1))
        fi
    elif [ $rc -ne 1 ]; then
        echo "FAIL: $file: exit $rc (want 1); stderr: $(cat "$dir/err")"; fails=$((fails + 1))
    elif ! grep -qF -- "$expect" "$dir/err" || ! grep -qF -- "$dir/$file" "$dir/err"; then
        echo "FAIL: $file: stderr lacks '$expect' or the path: $(cat "$dir/err")"; fails=$((fails + 1))
    elif [ -s "$dir/out" ]; then
        echo "FAIL: $file: printed to stdout on error"; fails=$((fails + 1))
    else
        echo "ok: $file: $(cat "$dir/err")"
    fi
done <"$dir/MANIFEST"
[ $n -ge 25 ] || { echo "FAIL: only $n cases in the manifest"; exit 1; }
# usage errors exit 2
"$cli" inspect >/dev/null 2>&1; [ $? -eq 2 ] || { echo "FAIL: no argument must exit 2"; fails=$((fails + 1)); }
"$cli" inspect --bogus x >/dev/null 2>&1; [ $? -eq 2 ] || { echo "FAIL: bad option must exit 2"; fails=$((fails + 1)); }
"$cli" inspect "$dir/nonexistent" 2>"$dir/err"; [ $? -eq 1 ] && grep -q nonexistent "$dir/err" ||
    { echo "FAIL: missing file"; fails=$((fails + 1)); }
echo "$n cases, $fails failures"
[ $fails -eq 0 ]
