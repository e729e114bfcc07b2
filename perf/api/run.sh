#!/usr/bin/env bash
# API start-up cost and idle memory (perf/api/api_startup.cpp); runs natively, no KVM.
# Twice: as users run ember (the API thread under its seccomp filter) and with
# --no-seccomp, so the filter's cost is the difference in one run.
#   usage: perf/api/run.sh [RUNS]
set -euo pipefail
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
ninja -C "$src/build" ember perf/api/api_startup >&2
echo "== ember --api-sock (seccomp filters on, the default)"
"$src/build/perf/api/api_startup" "$src/build/ember" "${1:-30}"
echo "== ember --api-sock --no-seccomp"
"$src/build/perf/api/api_startup" "$src/build/ember" "${1:-30}" --no-seccomp
