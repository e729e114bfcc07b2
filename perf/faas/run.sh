#!/usr/bin/env bash
# The FaaS suite: invocation latency through the example runtime (perf/faas/faas_bench.cpp):
# cold (a new registration), restored and warm invocations of a `cat` handler at concurrency
# 1, 2, 5 and 10, end to end as a client sees them. Directly on a /dev/kvm that boots guests,
# otherwise inside the emulated host. Writes results.md, results.json and latency.png (p50 and
# p99 against concurrency) into the output folder. --jailed runs every VM under ember-jailer.
#   usage: perf/faas/run.sh [--out DIR] [--jailed] [faas_bench flags, e.g. --samples 20 --concurrency 1,10]
set -euo pipefail
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
. "$src/perf/suite.sh"
out=$src/build/faas-perf
if [[ ${1:-} == --out ]]; then out=$2; shift 2; fi
jail=()
if [[ ${1:-} == --jailed ]]; then jail=(--jailer "$src/build/ember-jailer"); shift; fi
"$src/tools/setup.sh"
guest=$("$src/guest/build.sh")
image=$("$src/examples/faas/build-image.sh")
mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -f "$out/latency.dat" "$out/latency.png"

measure "faas perf" "$out" "$src/build/perf/faas/faas_bench" --faas "$src/build/examples/faas/ember-faas" \
  --ember "$src/build/ember" --image "$image" "${jail[@]}" "$@"
if command -v gnuplot >/dev/null && [[ -s $out/latency.dat ]]; then
  gnuplot <<GP
set terminal pngcairo size 1000,560
set output '$out/latency.png'
set title "FaaS invocation latency against concurrency (end to end), $(date -u +%F)"
set xlabel 'invocations at once (C)'
set ylabel 'milliseconds (log scale)'
set logscale y
set key outside right top
set grid
set xtics (1, 2, 5, 10)
# One colour per kind: p50 solid, p99 dashed.
plot for [i=2:5] '$out/latency.dat' using 1:i with linespoints lw 2 lc ((i - 2) / 2 + 1) dt 1 + i % 2 \\
  title columnheader(i)
GP
  echo "chart in $out/latency.png" >&2
fi
cat "$out/results.md"
