#!/usr/bin/env bash
# README command 2 (and what .ci/run calls): install what is needed, build, and run
# every test through CTest: unit tests, then the end-to-end suite, which boots real
# guests (directly, or inside the emulated host when /dev/kvm cannot).
set -euo pipefail
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$src/tools/setup.sh"
"$src/guest/build.sh" >/dev/null   # built once, cached outside the tree
cd "$src/build"
ctest --output-on-failure "$@"
