#!/usr/bin/env bash
# ember's own CPU for a snapshot restore (perf/snapshot/restore_cpu_bench.cpp): from the
# restore's request to the first KVM_RUN, 1 vCPU / 128 MiB unless told otherwise, over the API
# and by the launcher. Runs on this machine's /dev/kvm even where it cannot boot the guest
# (kvm_pvm): ember's part of a restore does not depend on what the guest was doing. Without a
# /dev/kvm at all it runs inside the emulated host (figures tens of times a native one's).
# Writes results.md and results.json into the output folder.
#   usage: perf/snapshot/restore-cpu.sh [--out DIR] [restore_cpu_bench flags, e.g. --runs 50 --vcpus 2]
set -euo pipefail
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
. "$src/perf/suite.sh"
out=$src/build/snapshot-perf/restore-cpu
if [[ ${1:-} == --out ]]; then out=$2; shift 2; fi
"$src/tools/setup.sh"
guest=$("$src/guest/build.sh")
mkdir -p "$out"
out=$(cd "$out" && pwd)
tool=$src/build/perf/snapshot/restore_cpu_bench
args=(--ember "$src/build/ember" --guest "$guest" "$@")
if [[ -r /dev/kvm && -w /dev/kvm ]]; then
  echo "restore cpu: on this host's /dev/kvm" >&2
  "$tool" "${args[@]}" --out "$out"
else
  measure "restore cpu" "$out" "$tool" "${args[@]}"
fi
