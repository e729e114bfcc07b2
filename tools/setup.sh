#!/usr/bin/env bash
# Installs the Debian packages ember needs (only those missing) and builds ember
# into build/ with CMake and Ninja. Used by the two README commands.
set -euo pipefail
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

packages=(
  # build and test ember
  build-essential cmake ninja-build pkg-config linux-libc-dev
  liburing-dev libseccomp-dev libtomlplusplus-dev libgtest-dev libbenchmark-dev nlohmann-json3-dev libhttp-parser-dev
  # the virtqueue fuzz target (libFuzzer; skipped when clang++ is missing)
  clang
  # build the guest kernel and initramfs (guest/build.sh)
  linux-source-6.1 busybox-static cpio bc flex bison libelf-dev libssl-dev xz-utils
  # the emulated host for machines without a usable /dev/kvm, and the QEMU comparison
  qemu-system-x86 kmod e2fsprogs
  # the boot-latency chart
  gnuplot-nox
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi

cmake -S "$src" -B "$src/build" -G Ninja >/dev/null
cmake --build "$src/build" >&2
