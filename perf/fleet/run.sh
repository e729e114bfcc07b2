#!/usr/bin/env bash
# The fleet suite: N microVMs started at once (perf/fleet/fleet_bench.cpp), by ember cold
# boot, ember restore (PUT /snapshot/load, File backend) and QEMU microvm cold boot, each VM
# timed to its guest's first vsock echo; N = 1, 10, 50 by default, interleaved, 3 rounds.
# Directly on a /dev/kvm that boots guests, otherwise inside the emulated host. Writes
# results.md, results.json and latency.png (p50 and p99 against N) into the output folder.
# Without a usable QEMU (qemu-system-x86_64 on PATH, /dev/vhost-vsock) it fails saying why:
# pass --no-qemu to measure ember alone.
#   usage: perf/fleet/run.sh [--out DIR] [fleet_bench flags, e.g. --sizes 1,10 --rounds 5 --no-qemu]
# The density run instead: perf/fleet/run.sh --density 1000 [--batch 10] (density.md, .json,
# density.png: host memory per clone and the idle clones' CPU against the clones alive); give the
# emulated host more memory with EMBER_MEASURE_MEM (MiB).
# The default run takes about an hour in the emulated host: EMBER_MEASURE_TIMEOUT=5400 is set
# unless given.
set -euo pipefail
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
. "$src/perf/suite.sh"
out=$src/build/fleet-perf
export EMBER_MEASURE_TIMEOUT=${EMBER_MEASURE_TIMEOUT:-5400}
if [[ ${1:-} == --out ]]; then out=$2; shift 2; fi
"$src/tools/setup.sh"
guest=$("$src/guest/build.sh")
mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -f "$out"/latency.{dat,png} "$out"/density.{dat,png,md,json}
tool=$src/build/perf/fleet/fleet_bench

measure "fleet perf" "$out" "$tool" --ember "$src/build/ember" --guest "$guest" "$@"
if command -v gnuplot >/dev/null && [[ -s $out/latency.dat ]]; then
  columns=$(awk 'NR == 2 {print NF}' "$out/latency.dat")
  gnuplot <<GP
set terminal pngcairo size 1000,560
set output '$out/latency.png'
set title "Time to the first vsock echo with N microVMs started at once, $(date -u +%F)"
set xlabel 'VMs started at once (N)'
set ylabel 'milliseconds per VM (log scale)'
set logscale xy
set key outside right top
set grid
# One colour per variant: p50 solid, p99 dashed.
plot for [i=2:$columns] '$out/latency.dat' using 1:i with linespoints lw 2 lc ((i - 2) / 2 + 1) dt 1 + i % 2 \\
  title columnheader(i)
GP
  echo "chart in $out/latency.png" >&2
fi
if command -v gnuplot >/dev/null && [[ -s $out/density.dat ]]; then
  gnuplot <<GP
set terminal pngcairo size 1000,560
set output '$out/density.png'
set title "Idle restored clones kept alive at once, $(date -u +%F)"
set xlabel 'clones alive'
set ylabel 'host MiB per clone'
set y2label 'CPU of the idle clones (cores)'
set ytics nomirror
set y2tics
set yrange [0:*]
set y2range [0:*]
set key outside right top
set grid
plot '$out/density.dat' using 1:2 with linespoints lw 2 title columnheader(2), \
     '' using 1:3 axes x1y2 with linespoints lw 2 title columnheader(3)
GP
  echo "chart in $out/density.png" >&2
fi
if [[ -s $out/density.md ]]; then cat "$out/density.md"; else cat "$out/results.md"; fi
