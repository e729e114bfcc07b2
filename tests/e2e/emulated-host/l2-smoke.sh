#!/bin/sh
# Runs inside the emulated host (run.sh -- .../l2-smoke.sh KERNEL): boots an L2 guest with
# QEMU + KVM (microvm, KERNEL and a busybox initramfs built here) and checks it reaches userspace.
set -eu
kernel=${1:?usage: l2-smoke.sh KERNEL}
[ -n "${EMBER_EMULATED_HOST:-}" ] || { echo "l2-smoke: run me through run.sh" >&2; exit 2; }
[ -c /dev/kvm ] || { echo "l2-smoke: no /dev/kvm" >&2; exit 1; }

root=$TMPDIR/l2-initramfs
mkdir -p "$root/bin" "$root/proc"
cp /bin/busybox "$root/bin/busybox"
cat > "$root/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
echo "L2 userspace reached; uptime $(/bin/busybox cat /proc/uptime)"
/bin/busybox reboot -f
EOF
chmod 0755 "$root/init"
(cd "$root" && find . | cpio --quiet -o -H newc -R 0:0) | gzip -1 > "$TMPDIR/l2-initrd.gz"

start=$(date +%s.%N)
out=$(timeout 300 qemu-system-x86_64 -enable-kvm -M microvm,acpi=off -cpu host -m 256 -smp 1 \
    -nodefaults -no-user-config -nographic -no-reboot -serial stdio \
    -kernel "$kernel" -initrd "$TMPDIR/l2-initrd.gz" -append "quiet console=ttyS0 reboot=t" \
    </dev/null 2>&1) || echo "l2-smoke: qemu exited with status $?"
end=$(date +%s.%N)
printf '%s\n' "$out"
echo "l2-smoke: L2 boot wall time $(awk "BEGIN { printf \"%.1f\", $end - $start }") s"
case $out in
    *"L2 userspace reached"*) echo "l2-smoke: OK" ;;
    *) echo "l2-smoke: FAILED: L2 did not reach userspace" >&2; exit 1 ;;
esac
