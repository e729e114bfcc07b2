#!/usr/bin/env bash
# README command 1: install what is needed, build ember and the guest, and boot the
# default microVM (configs/default.toml) with its console on this terminal.
# Without a /dev/kvm that boots guests, the VM runs inside the emulated host.
set -euo pipefail
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$src/tools/setup.sh"
guest=$("$src/guest/build.sh")
ln -sfn "$guest" "$src/build/guest"
cd "$src"
if why=$(tests/e2e/kvm-probe.sh build/ember "$guest"); then
  exec build/ember --config configs/default.toml "$@"
fi
echo "ember: $why; booting inside the emulated host (QEMU TCG with nested SVM, 50-100x slower)"
exec tests/e2e/emulated-host/run.sh -- build/ember --config configs/default.toml "$@"
