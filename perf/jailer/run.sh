#!/usr/bin/env bash
# Jailer start-up cost (perf/jailer/jailer_startup.cpp): wall and CPU time from spawning to
# ember's API socket accepting, with and without ember-jailer, at parallelism 1, 5 and 10.
# Runs natively as root (the jailer needs it; ember needs no KVM before InstanceStart).
#   usage: perf/jailer/run.sh [RUNS] [--unstripped]
#   RUNS per setting and mode (default 100). Both modes run a stripped copy of build/ember, as
#   deployed (the jailer copies the binary into each chroot, and a RelWithDebInfo ember is
#   ~25 MB with its debug info); --unstripped uses build/ember as built.
set -euo pipefail
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
runs=100 strip=1
for a in "$@"; do
  case $a in
    --unstripped) strip=0 ;;
    [1-9]*) runs=$a ;;
    *) echo "usage: $0 [RUNS] [--unstripped]" >&2; exit 2 ;;
  esac
done
[[ $(id -u) == 0 ]] || { echo "$0: the jailer needs root" >&2; exit 1; }
ninja -C "$src/build" ember ember-jailer perf/jailer/jailer_startup >&2
ember=$src/build/ember
if ((strip)); then
  ember=$src/build/perf-jailer/ember
  mkdir -p "${ember%/*}"
  strip -o "$ember" "$src/build/ember"
fi
echo "ember binary: $ember ($(stat -c %s "$ember") bytes), $runs runs per setting and mode, commit $(git -C "$src" rev-parse --short HEAD)"
"$src/build/perf/jailer/jailer_startup" "$ember" "$src/build/ember-jailer" "$runs" 1 5 10
