#!/usr/bin/env bash
# The boot-latency suite: boots the project's guest (bzImage and vmlinux) N times with
# ember and N times with QEMU microvm, interleaved, in one run - directly on a /dev/kvm
# that boots guests, otherwise inside the emulated host - and writes results.md (table),
# results.json, and boot-cdf.png (CDF of time to userspace) into the output folder.
#   usage: perf/boot-latency/run.sh [--out DIR] [boot_latency flags, e.g. --runs 10 --ember-flag --no-prefault]
# --ember-also LABEL=PATH measures another ember binary in the same run, beside build/ember;
# --ember-also 'LABEL=PATH FLAG...' one with other flags (e.g. 'no-acpi=build/ember --no-acpi').
set -euo pipefail
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
. "$src/perf/suite.sh"
out=$src/build/boot-latency
if [[ ${1:-} == --out ]]; then out=$2; shift 2; fi
"$src/tools/setup.sh"
guest=$("$src/guest/build.sh")
mkdir -p "$out"
out=$(cd "$out" && pwd)
tool=$src/build/perf/boot-latency/boot_latency
args=(--ember "$src/build/ember" --guest "$guest" "$@")

measure boot-latency "$out" "$tool" "${args[@]}"
cdf_chart "$out/boot-cdf.png" "Time to guest userspace (spawn to init line), $(date -u +%F)" milliseconds "" \
  "$out"/cdf-*.dat
cat "$out/results.md"
