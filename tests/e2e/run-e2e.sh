#!/usr/bin/env bash
# Runs the end-to-end tests (the ember_e2e_tests binary): directly when this host's
# /dev/kvm boots guests, otherwise inside the emulated host (tests/e2e/emulated-host),
# which boots once and runs them all. Nothing is skipped for lack of KVM.
#   usage: run-e2e.sh BUILD_DIR [gtest flags...]
#   EMBER_E2E_MODE=auto|direct|emulated   force a mode (default auto)
set -euo pipefail
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=$(cd "${1:?usage: run-e2e.sh BUILD_DIR [gtest flags]}" && pwd)
shift

guest=$("$src/guest/build.sh")
ln -sfn "$guest" "$build/guest"   # configs/*.toml name the guest as ../build/guest/...
# The stock guest (Debian's kernel, unmodified) is built with the emulated host's kernel.
stock_guest=$("$src/tests/e2e/emulated-host/prepare.sh")/stock-guest
export EMBER_BIN=$build/ember EMBER_GUEST_DIR=$guest EMBER_SOURCE_DIR=$src EMBER_STOCK_GUEST_DIR=$stock_guest
export EMBER_UFFD_HANDLER_BIN=$build/examples/uffd/ember-uffd-handler  # the snapshot tests' page-fault handler
export EMBER_REBASE_SNAP_BIN=$build/ember-rebase-snap  # applies a Diff snapshot's memory onto its base
# The FaaS tests' daemon and function image (the guest kernel + an initramfs with the agent).
export EMBER_FAAS_BIN=$build/examples/faas/ember-faas EMBER_FAAS_IMAGE_DIR=$("$src/examples/faas/build-image.sh")
tests=$build/tests/e2e/ember_e2e_tests

mode=${EMBER_E2E_MODE:-auto}
if [[ $mode == auto ]]; then
  if why=$("$src/tests/e2e/kvm-probe.sh" "$EMBER_BIN" "$guest"); then mode=direct; else mode=emulated; fi
fi
if [[ $mode == direct ]]; then
  echo "e2e: running on this host's /dev/kvm"
  "$tests" "$@" 2>&1 | tee "$build/e2e.log"
  exit "${PIPESTATUS[0]}"
fi
echo "e2e: ${why:-emulated mode requested}: running the end-to-end tests inside the emulated host (QEMU TCG, nested SVM)"
# The emulated host is 50-100x slower than hardware: a boot that takes well under a second
# there takes 5-20 s here, and more while other emulated hosts share the cores.
export EMBER_E2E_TIME_SCALE=${EMBER_E2E_TIME_SCALE:-5}
# The emulated host can die or freeze by itself (nested-kvm.md; a freeze is detected within
# minutes). That is told apart from a failing test (exit 125 with "emulated host died: ...").
# The next attempt then runs only the tests that have not passed yet (the one the freeze
# interrupted runs again from its start), up to 5 attempts. A test failure is not retried, with
# one exception: a guest that triple-faults under nested SVM in TCG (a flaw of the emulation,
# seen with QEMU's own guests too: emulated-host/README.md). When every failed test's output
# shows "guest triple fault", those tests run once more, and must pass then.
passed=()   # gtest names that passed in an earlier attempt
retried_triple_faults=no
filter_args() {   # "$@" with the passed tests added to (or as) the negative --gtest_filter
  local user='*' a out=()
  for a in "$@"; do
    if [[ $a == --gtest_filter=* ]]; then user=${a#--gtest_filter=}; else out+=("$a"); fi
  done
  if ((${#passed[@]})); then
    local skip; skip=$(IFS=:; echo "${passed[*]}")
    if [[ $user == *-* ]]; then user="$user:$skip"; else user="$user-$skip"; fi
  fi
  printf '%s\0' "${out[@]}" "--gtest_filter=$user"
}
# Prints the tests that failed in gtest output file $1, one per line, when each one's output
# shows a guest triple fault; prints "-" when any failure shows something else.
failed_by_triple_fault() {
  awk '
    /^\[ RUN      \] / { name = $4; body = "" }
    { body = body "\n" $0 }
    /^\[  FAILED  \] .* \([0-9]+ ms\)$/ {
      n = $4; sub(/,$/, "", n); if (n != name) next
      if (index(body, "guest triple fault") == 0) other = 1; else list = list name "\n"
    }
    END { if (other) print "-"; else printf "%s", list }' "$1"
}
: > "$build/e2e.log"
for attempt in 1 2 3 4 5; do
  rc=0
  mapfile -d '' args < <(filter_args "$@")
  # ctest shows output only at the end: follow progress in BUILD_DIR/e2e.log meanwhile.
  "$src/tests/e2e/emulated-host/run.sh" --timeout "${EMBER_E2E_HOST_TIMEOUT:-1800}" -- "$tests" "${args[@]}" \
    2>&1 | tee "$build/e2e-attempt.log" | tee -a "$build/e2e.log" || rc=${PIPESTATUS[0]}
  [[ $rc -ne 0 && $attempt -lt 5 ]] || exit $rc
  if [[ $rc -ne 125 ]]; then
    [[ $retried_triple_faults == no ]] || exit $rc
    mapfile -t failed < <(failed_by_triple_fault "$build/e2e-attempt.log")
    [[ ${#failed[@]} -gt 0 && ${failed[0]} != - ]] || exit $rc
    retried_triple_faults=yes
  fi
  mapfile -t -O "${#passed[@]}" passed < <(sed -n 's/^\[       OK \] \([^ ]*\) (.*/\1/p' "$build/e2e-attempt.log")
  if [[ $rc -eq 125 ]]; then
    echo "e2e: the emulated host died (not a test failure); attempt $((attempt + 1)) of 5 runs the tests" \
      "that have not passed yet (${#passed[@]} have)"
  else
    echo "e2e: ${failed[*]} failed with a guest triple fault in the emulated host (a flaw of its nested" \
      "SVM, see tests/e2e/emulated-host/README.md); running the tests that have not passed once more"
  fi
done
