#!/usr/bin/env bash
# Checks the emulated host itself: exit status, output, environment and quoting, artifacts, the
# "emulated host died" path (timeout), and an L2 guest booted with KVM inside L1. Prints wall times.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
run=$here/run.sh
failures=0

check() {   # description condition...
    local what=$1; shift
    if "$@"; then echo "selftest: ok: $what"; else echo "selftest: FAILED: $what"; failures=$((failures + 1)); fi
}

contains() { [[ $1 == *"$2"* ]]; }

timed() {   # runs "$@", sets out, rc and secs
    local start=$EPOCHREALTIME
    out=$("$@" 2>"$err_file")
    rc=$?
    secs=$(awk -v s="$start" -v e="$EPOCHREALTIME" 'BEGIN { printf "%.1f", e - s }')
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
err_file=$work/stderr

timed "$here/prepare.sh"
check "prepare.sh prints the cache folder (${secs} s)" test "$rc" = 0 -a -f "$out/vmlinuz"
cache=$out

timed env EMBER_SELFTEST=$'x \'y\'\nz' GTEST_COLOR=no OTHER=1 "$run" --artifacts "$work/artifacts" -- \
    sh -c 'ls -l /dev/kvm; echo hello; printf "<%s>" "$@"; echo;
           echo "$EMBER_SELFTEST|$GTEST_COLOR|${OTHER-unset}|$EMBER_EMULATED_HOST|$PWD";
           touch "$TMPDIR/t" && echo > "$EMBER_ARTIFACTS_DIR/result.json" && exit 3' \
    sh 'a b' "it's" '' '$(x)'
check "the command's status comes back (${secs} s)" test "$rc" = 3
check "the command's output comes back" contains "$out" $'\nhello\n'
check "/dev/kvm exists in L1" contains "$out" ' /dev/kvm'$'\n'
check "arguments keep their quoting" contains "$out" "<a b><it's><><\$(x)>"
check "environment and working directory" contains "$out" $'x \'y\'\nz|no|unset|1|'"$(pwd -P)"
check "artifacts are copied out" test -f "$work/artifacts/result.json"

timed "$run" --timeout 20 -- sleep 600
check "a timeout exits 125 (${secs} s)" test "$rc" = 125
check "a timeout says so" grep -q '^emulated host died: timeout after 20 s$' "$err_file"

timed "$run" -- "$here/l2-smoke.sh" "$cache/vmlinuz"
check "an L2 guest boots with KVM inside L1 (run.sh ${secs} s)" test "$rc" = 0
grep '^l2-smoke:\|^L2 ' <<<"$out"

[[ $failures == 0 ]] && echo "selftest: all passed" || echo "selftest: $failures failed"
[[ $failures == 0 ]]
