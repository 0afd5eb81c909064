#!/bin/sh
# vmguard Xen dom0, first stage (busybox initramfs): load the drivers, find the root disk
# (label vmguard-dom0) and the lab's config disk (label vmguard-xencfg), switch to the root and run
# the config disk's dom0-init.sh as PID 1. vmguard.probe=1 on the command line: report and power off.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /lib/modules/order); do insmod /lib/modules/$m 2>/dev/null; done
fail() {
  echo "VMGUARD_XEN_FAIL $*"
  while true; do sleep 3600; done
}
if grep -q 'vmguard.probe=1' /proc/cmdline; then
  echo "VMGUARD_XEN_PROBE_UP uptime=$(cut -d' ' -f1 /proc/uptime)"
  poweroff -f
fi
echo "VMGUARD_DOM0_INITRD uptime=$(cut -d' ' -f1 /proc/uptime) hypervisor=$(cat /sys/hypervisor/type 2>/dev/null)"
root=""; cfg=""; i=0
while [ $i -lt 600 ]; do
  root=$(findfs LABEL=vmguard-dom0 2>/dev/null)
  cfg=$(findfs LABEL=vmguard-xencfg 2>/dev/null)
  [ -n "$root" ] && [ -n "$cfg" ] && break
  sleep 0.1; i=$((i+1))
done
[ -n "$root" ] || fail "no dom0 root disk (label vmguard-dom0)"
[ -n "$cfg" ] || fail "no config disk (label vmguard-xencfg)"
mkdir -p /newroot
mount -t ext4 "$root" /newroot || fail "cannot mount dom0's root $root"
mount -t tmpfs -o mode=755 tmpfs /newroot/run
mkdir -p /newroot/run/vmguard/cfg
mount -t ext4 -o ro "$cfg" /newroot/run/vmguard/cfg || fail "cannot mount the config disk $cfg"
mount -o move /dev /newroot/dev
umount /sys
umount /proc
exec switch_root /newroot /bin/sh /run/vmguard/cfg/dom0-init.sh
