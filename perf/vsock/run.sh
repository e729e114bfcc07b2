#!/usr/bin/env bash
# vsock throughput both ways, ember against QEMU (vhost-vsock) with the same guest in
# one run, inside the emulated host unless this host's /dev/kvm boots guests. Writes
# the tables to OUT/results.md and every round to OUT/results.json (default build/vsock-perf).
#   usage: perf/vsock/run.sh [--out DIR] [vsock_bench flags, e.g. --bytes 16777216 --rounds 3]
set -euo pipefail
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=$src/build/vsock-perf
if [[ ${1:-} == --out ]]; then out=$2; shift 2; fi
guest=$("$src/guest/build.sh")
mkdir -p "$out"
out=$(cd "$out" && pwd)
tool=$src/build/perf/vsock/vsock_bench
args=(--ember "$src/build/ember" --guest "$guest" "$@")

if why=$("$src/tests/e2e/kvm-probe.sh" "$src/build/ember" "$guest"); then
  "$tool" "${args[@]}" --json "$out/results.json" > "$out/results.md"
else
  echo "vsock perf: $why: measuring inside the emulated host (compare ratios, not absolute figures)" >&2
  "$src/tests/e2e/emulated-host/run.sh" --artifacts "$out" -- \
    sh -c 'exec "$0" "$@" --json "$EMBER_ARTIFACTS_DIR/results.json" > "$EMBER_ARTIFACTS_DIR/results.md"' "$tool" "${args[@]}"
fi
# The bench writes its tables only when it ran: an emulated host that failed leaves none.
[[ -s $out/results.md ]] || { echo "vsock perf: no results in $out" >&2; exit 1; }
cat "$out/results.md"
