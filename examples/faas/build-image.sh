#!/usr/bin/env bash
# Builds the default function image: the project's guest kernel (guest/build.sh) and its
# initramfs with a second cpio archive appended (the kernel unpacks both, the later one wins)
# holding the static agent as /bin/ember-faas-agent and agent/init as /init; and the same tree
# as an ext4 root drive (rootfs.ext4, 64 MiB sparse, for functions registered with "rootfs").
# Cached under ${EMBER_CACHE_DIR:-$HOME/.cache/ember}/faas/<hash>/ (vmlinux, initramfs.cpio.gz,
# rootfs.ext4); prints that folder as the only line on stdout.   dir=$(examples/faas/build-image.sh)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
guest=$("$here/../../guest/build.sh")
kdir=$(sed -n 's/^kernel_dir=//p' "$guest/build-info.txt")
hash=$( { echo "$guest"; sha256sum "$here/build-image.sh" "$here"/agent/*; } | sha256sum | cut -c1-16)
root=${EMBER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ember}/faas
out=$root/$hash
if [[ -s $out/initramfs.cpio.gz && -s $out/vmlinux && -s $out/rootfs.ext4 ]]; then echo "$out"; exit 0; fi
mkdir -p "$root"
tmp=$(mktemp -d "$root/.build-$hash.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
gcc -static -O2 -Wall -Wextra -o "$tmp/agent" "$here/agent/agent.c" >&2
cp "$here/agent/init" "$tmp/init"
touch -d @0 "$tmp/agent" "$tmp/init"
printf '%s\n' "file /bin/ember-faas-agent $tmp/agent 0755 0 0" "file /init $tmp/init 0755 0 0" >"$tmp/list"
mkdir "$tmp/out"
{ cat "$guest/initramfs.cpio.gz"; "$kdir/gen_init_cpio" -t 0 "$tmp/list" | gzip -n -9; } >"$tmp/out/initramfs.cpio.gz"
# The root drive: the guest's tree (cpio cannot make device nodes without root: the agent's
# init mounts devtmpfs), the agent and its init over it.
mkdir "$tmp/tree"
(cd "$tmp/tree" && zcat "$guest/initramfs.cpio.gz" | cpio -idm --quiet 2>/dev/null; test -x bin/busybox) ||
  { echo "build-image.sh: cannot unpack $guest/initramfs.cpio.gz" >&2; exit 1; }
mkdir -p "$tmp/tree/bin" "$tmp/tree/proc" "$tmp/tree/sys" "$tmp/tree/dev" "$tmp/tree/tmp" "$tmp/tree/run"
cp "$tmp/agent" "$tmp/tree/bin/ember-faas-agent"
cp "$tmp/init" "$tmp/tree/init"
mke2fs -q -F -t ext4 -E root_owner=0:0 -d "$tmp/tree" "$tmp/out/rootfs.ext4" 64M >&2
ln "$guest/vmlinux" "$tmp/out/vmlinux" 2>/dev/null || cp "$guest/vmlinux" "$tmp/out/vmlinux"
rm -rf "$out"
mv -T "$tmp/out" "$out"
echo "$out"
