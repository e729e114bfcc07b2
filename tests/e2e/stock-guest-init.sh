#!/bin/sh
# /init of the stock guest (busybox sh): Debian's own kernel, unmodified, booted by ember with this
# initramfs (built by emulated-host/prepare.sh; booted by stock_kernel_test.cpp). It loads the
# modules in /lib/modules/load-order (dependencies first, as modprobe would, with the
# `<module>.<param>=` words of the command line as their parameters), says what it found, mounts the
# root device and runs the test script there. Conventions of guest/init, and:
#   EMBER_GUEST_USERSPACE cpus=N mem_mib=M      first line, as guest/init prints it
#   EMBER_STOCK_GUEST modules=LOADED/TOTAL virtio=ID,... blk=DEV|none net=IFACE|none vsock=yes|no
#   EMBER_STOCK_GUEST_ROOT=DEV|none             mounted on /mnt (ext4 or ext2) or not
#   EMBER_TEST_EXIT=<rc>                        after the script
# Kernel command line knobs:
#   ember_boot_marker=1   write 123 to MMIO 0xc0000000 (boot-complete marker)
#   root=DEV              the root device (ember appends root=/dev/vda for a root drive)
#   ember_test=<base64>   the script: run by /bin/sh of the mounted root, chrooted into it (with
#                         /proc, /sys, /dev), or in the initramfs when there is no root
#   ember_end=poweroff    end with `poweroff -f` (needs ACPI) instead of `reboot -f`

export PATH=/bin:/sbin:/usr/bin:/usr/sbin

mount -t proc proc /proc
mount -t devtmpfs devtmpfs /dev
arg() { tr ' ' '\n' </proc/cmdline | sed -n "s/^$1=//p" | tail -n 1; }
[ "$(arg ember_boot_marker)" = 1 ] && devmem 0xc0000000 8 123
mount -t sysfs sysfs /sys
mount -t tmpfs tmpfs /tmp

cpus=$(grep -c '^processor' /proc/cpuinfo)
ram=0
for range in $(sed -n 's/^ *\([0-9a-f]*\)-\([0-9a-f]*\) : System RAM$/\1-\2/p' /proc/iomem); do
    ram=$((ram + 0x${range#*-} - 0x${range%-*} + 1))
done
echo "EMBER_GUEST_USERSPACE cpus=$cpus mem_mib=$(((ram + 524288) / 1048576))"

loaded=0
total=0
while read -r file; do
    name=$(echo "${file%.ko}" | tr - _)
    total=$((total + 1))
    # shellcheck disable=SC2046 # one word per parameter
    insmod "/lib/modules/$file" $(tr ' ' '\n' </proc/cmdline | sed -n "s/^$name\.//p") &&
        loaded=$((loaded + 1)) || echo "EMBER_STOCK_GUEST insmod $file failed"
done </lib/modules/load-order

# Drivers bind as each module loads; the disk's node may follow a moment later.
blk=
for d in /sys/block/vd*; do
    [ -e "$d" ] && blk=/dev/${d##*/} && break
done
i=0
while [ -n "$blk" ] && [ ! -b "$blk" ] && [ $i -lt 50 ]; do
    i=$((i + 1))
    sleep 0.1
done
net=
for n in /sys/class/net/*; do
    [ "${n##*/}" != lo ] && [ -e "$n" ] && net=${n##*/} && break
done
ids=
for dev in /sys/bus/virtio/devices/*; do
    [ -f "$dev/device" ] && ids=${ids:+$ids,}$(cat "$dev/device")
done
vsock=no
case ",$ids," in *,0x0013,*) [ -c /dev/vsock ] && vsock=yes ;; esac
echo "EMBER_STOCK_GUEST modules=$loaded/$total virtio=${ids:-none} blk=${blk:-none} net=${net:-none}" \
     "vsock=$vsock"

root=$(arg root)
root=${root:-/dev/vda}
chroot=
if [ -b "$root" ] && { mount -t ext4 "$root" /mnt || mount -t ext2 "$root" /mnt; }; then
    echo "EMBER_STOCK_GUEST_ROOT=$root"
    for d in proc sys dev; do
        [ -d "/mnt/$d" ] && mount --bind "/$d" "/mnt/$d"
    done
    chroot="chroot /mnt"
else
    echo "EMBER_STOCK_GUEST_ROOT=none"
fi

test_b64=$(arg ember_test)
if [ -n "$test_b64" ]; then
    echo "$test_b64" | base64 -d >/tmp/test.sh
    $chroot /bin/sh -c "$(cat /tmp/test.sh)"
    echo "EMBER_TEST_EXIT=$?"
fi

sync
if [ "$(arg ember_end)" = poweroff ]; then
    poweroff -f
else
    reboot -f
fi
