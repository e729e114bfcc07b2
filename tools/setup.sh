#!/usr/bin/env bash
# Installs the Debian packages ember needs (only those missing) and builds ember
# into build/ with CMake and Ninja. Used by the two README commands.
set -euo pipefail
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Every package the build, the guest build, the emulated host, the tests and the perf
# suites use, for a minimal Debian 12 root (debootstrap --variant=minbase): none is assumed.
packages=(
  # build and test ember
  build-essential cmake ninja-build pkg-config linux-libc-dev
  liburing-dev libseccomp-dev libtomlplusplus-dev libgtest-dev libbenchmark-dev nlohmann-json3-dev libhttp-parser-dev
  # the fuzz targets (libFuzzer with AddressSanitizer/UBSan): clang and its sanitizer runtimes
  clang libclang-rt-14-dev
  # build the guest kernel and initramfs (guest/build.sh)
  linux-source-6.1 busybox-static cpio bc flex bison libelf-dev libssl-dev xz-utils
  # the emulated host for machines without a usable /dev/kvm (it downloads the L1 kernel
  # package with apt-get, which needs the CA bundle for https mirrors), and the QEMU comparison
  qemu-system-x86 kmod ca-certificates
  # host tools the end-to-end tests and perf suites run: curl (API tests), ip (taps), mke2fs and
  # debugfs (disk images), perl (the emulated host's init), gzip/zcat, sha256sum, timeout
  curl iproute2 e2fsprogs perl gzip coreutils util-linux
  # iasl, which decodes ember's ACPI tables in the unit tests (an independent check of the AML)
  acpica-tools
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

# EMBER_REQUIRE_FUZZ=ON (the test command) makes a fuzz target that cannot be built a test failure.
cmake -S "$src" -B "$src/build" -G Ninja -DEMBER_REQUIRE_FUZZ="${EMBER_REQUIRE_FUZZ:-OFF}" >/dev/null
cmake --build "$src/build" >&2
