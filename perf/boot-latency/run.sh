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
out=$src/build/boot-latency
if [[ ${1:-} == --out ]]; then out=$2; shift 2; fi
"$src/tools/setup.sh"
guest=$("$src/guest/build.sh")
mkdir -p "$out"
out=$(cd "$out" && pwd)
tool=$src/build/perf/boot-latency/boot_latency
args=(--ember "$src/build/ember" --guest "$guest" "$@")

if why=$("$src/tests/e2e/kvm-probe.sh" "$src/build/ember" "$guest"); then
  echo "boot-latency: on this host's /dev/kvm" >&2
  "$tool" "${args[@]}" --out "$out"
else
  echo "boot-latency: $why: measuring inside the emulated host (compare ratios, not absolute times)" >&2
  # The emulated host can freeze by itself (exit 125, "emulated host died"): measure again,
  # up to 3 attempts. A failing boot is not retried.
  for attempt in 1 2 3; do
    rc=0
    "$src/tests/e2e/emulated-host/run.sh" --artifacts "$out" -- \
      sh -c 'exec "$0" "$@" --out "$EMBER_ARTIFACTS_DIR"' "$tool" "${args[@]}" || rc=$?
    [[ $rc -eq 125 && $attempt -lt 3 ]] || break
    echo "boot-latency: the emulated host died (not a failed boot); measuring again" >&2
  done
  ((rc == 0)) || exit $rc
fi

if command -v gnuplot >/dev/null; then
  plots=()
  for f in "$out"/cdf-*.dat; do
    name=${f##*/cdf-}; name=${name%.dat}
    plots+=("'$f' using 1:2 with steps lw 2 title '${name/_//}'")
  done
  gnuplot <<GP
set terminal pngcairo size 900,560
set output '$out/boot-cdf.png'
set title 'Time to guest userspace (spawn to init line), $(date -u +%F)'
set xlabel 'milliseconds'
set ylabel 'fraction of boots'
set key bottom right
set yrange [0:1.05]
set grid
plot $(IFS=,; echo "${plots[*]}")
GP
  echo "boot-latency: chart in $out/boot-cdf.png" >&2
fi
cat "$out/results.md"
