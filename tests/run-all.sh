#!/usr/bin/env bash
# README command 2 (and what .ci/run calls): install what is needed, build, and run
# every test through CTest: unit tests, fuzz targets, then the end-to-end suite, which
# boots real guests (directly, or inside the emulated host when /dev/kvm cannot). Then
# the unit and end-to-end tests again against ember built with AddressSanitizer and
# UndefinedBehaviorSanitizer (build-sanitize/): any sanitizer report fails the run.
#   usage: tests/run-all.sh [ctest args...]   (passed to both ctest runs)
set -euo pipefail
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
EMBER_REQUIRE_FUZZ=ON "$src/tools/setup.sh"   # every test, fuzz targets included, must run
"$src/guest/build.sh" >/dev/null   # built once, cached outside the tree
(cd "$src/build" && ctest --output-on-failure "$@")

echo "run-all: the unit and end-to-end tests against the sanitized build (build-sanitize/)"
cmake -S "$src" -B "$src/build-sanitize" -G Ninja -DEMBER_SANITIZE=ON >/dev/null
cmake --build "$src/build-sanitize" --target ember ember_unit_tests jailer_root_tests ember_e2e_tests >&2
cd "$src/build-sanitize"
ctest --output-on-failure -L 'unit|e2e' "$@"
