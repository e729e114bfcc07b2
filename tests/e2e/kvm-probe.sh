#!/usr/bin/env bash
# Exits 0 when this host's /dev/kvm can boot the project's guest to userspace.
# Otherwise prints one line saying why and exits 1. A /dev/kvm that exists is not
# enough: nested KVM on some hosts fails inside the guest kernel (seen here:
# emulation failures on XRSTOR and INT3, with QEMU as well as ember).
# usage: kvm-probe.sh EMBER_BINARY GUEST_DIR
set -uo pipefail
ember=$1 guest=$2
[[ -e /dev/kvm ]] || { echo "no /dev/kvm"; exit 1; }
[[ -r /dev/kvm && -w /dev/kvm ]] || { echo "/dev/kvm is not accessible to $(id -un)"; exit 1; }
# -k: SIGKILL if ember hangs past its SIGTERM handling (e.g. in a sanitizer's exit path).
out=$(timeout -k 10 30 "$ember" --kernel "$guest/vmlinux" --initrd "$guest/initramfs.cpio.gz" \
  --cmdline "console=ttyS0 reboot=k panic=1 quiet" </dev/null 2>&1)
rc=$?
if [[ $rc -eq 0 ]] && grep -q EMBER_GUEST_USERSPACE <<<"$out"; then exit 0; fi
why=$(grep -m1 '^ember:' <<<"$out")
echo "/dev/kvm cannot boot a guest here (${why:-exit status $rc})"
exit 1
