#!/usr/bin/env bash
# API start-up cost and idle memory (perf/api/api_startup.cpp); runs natively, no KVM.
#   usage: perf/api/run.sh [RUNS]
set -euo pipefail
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
ninja -C "$src/build" ember perf/api/api_startup >&2
"$src/build/perf/api/api_startup" "$src/build/ember" "${1:-30}"
