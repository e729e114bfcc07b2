#!/usr/bin/env bash
# The snapshot suite: restore latency and clone density (perf/snapshot/snapshot_bench.cpp).
# Boots the project's guest once to snapshot it, then N times each, interleaved, in one run:
# cold boot, and restores (File and Uffd memory backends, by the launcher and over the API),
# and the same guest under QEMU microvm, cold boot and `-incoming` from a migration file, each
# timed to the guest's first vsock echo; then clones restored at once for memory. Directly
# on a /dev/kvm that boots guests, otherwise inside the emulated host. Writes results.md,
# results.json, ready-cdf.png (CDF of the time to the first echo) and restore-vs-cold.png
# (the medians as bars) into the output folder. Without a usable QEMU (qemu-system-x86_64 on
# PATH, /dev/vhost-vsock) it fails saying why: pass --no-qemu to measure ember alone.
#   usage: perf/snapshot/run.sh [--out DIR] [snapshot_bench flags, e.g. --runs 5 --clones 10,100 --no-qemu]
set -euo pipefail
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
. "$src/perf/suite.sh"
out=$src/build/snapshot-perf
if [[ ${1:-} == --out ]]; then out=$2; shift 2; fi
"$src/tools/setup.sh"
guest=$("$src/guest/build.sh")
mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -f "$out"/cdf-*.dat "$out"/medians.dat
tool=$src/build/perf/snapshot/snapshot_bench
args=(--ember "$src/build/ember" --uffd-handler "$src/build/examples/uffd/ember-uffd-handler" --guest "$guest" "$@")

measure "snapshot perf" "$out" "$tool" "${args[@]}"
cdf_chart "$out/ready-cdf.png" "Time to the guest's first vsock echo, $(date -u +%F)" "milliseconds (log scale)" \
  "set logscale x" "$out"/cdf-*.dat
bar_chart "$out/restore-vs-cold.png" "Median time to the guest's first vsock echo, $(date -u +%F)" \
  "milliseconds (log scale)" "set logscale y; set yrange [10:*]" "$out/medians.dat"
cat "$out/results.md"
