#!/bin/sh
# vmguard Xen dom0 init: PID 1 on dom0's Debian root, run from the lab's config disk
# (/run/vmguard/cfg: this script, `params`, the domU's kernel, initramfs and `domu.cfg`).
# Starts xenstored, xen-init-dom0 and xenconsoled, bridges dom0's NIC (xenbr0) for the domU's
# lab vif and a private bridge (vmgctl) for its command channel, serves the host's command
# channel (virtio-serial port vmguard.ctl) and starts the domU with `xl create`.
export PATH=/usr/lib/xen-4.17/bin:/usr/sbin:/usr/bin:/sbin:/bin
CFG=/run/vmguard/cfg
. $CFG/params
up() { cut -d' ' -f1 /proc/uptime; }
fail() {
  echo "VMGUARD_XEN_FAIL $*"
  # Stay up: `vmguard lab exec xen-dom0 -- ...` can look around until `lab down`.
  while true; do sleep 3600; done
}
mount -t proc proc /proc
mount -t sysfs sys /sys
grep -q ' /dev ' /proc/mounts || mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
mount -t xenfs xenfs /proc/xen
mkdir -p /run/xen /run/xenstored /run/lock /var/log/xen /var/lib/xen
hostname vmguard-dom0
ip link set lo up
echo "VMGUARD_DOM0_ROOT uptime=$(up)"

# The host's command channel, as in the qemu guest: "<id> <base64 script>" lines on a virtio-serial
# port; the script's output follows, then "@@VMGUARD-EXIT <id> <status>".
ctl=""
for d in /sys/class/virtio-ports/*; do
  [ -f "$d/name" ] && [ "$(cat "$d/name")" = vmguard.ctl ] && ctl=/dev/${d##*/}
done
if [ -n "$ctl" ]; then
  (
    # Opened once and read again after each end-of-file (the host's client disconnected): closing
    # the port there discarded a command that arrived meanwhile (guest-init.sh says more).
    until exec 3<>"$ctl"; do sleep 0.2; done
    while true; do
      while read -r id script <&3; do
        echo "$script" | base64 -d > /tmp/ctl.sh
        sh /tmp/ctl.sh < /dev/null > /tmp/ctl.out 2>&1 3>&-
        rc=$?
        [ -s /tmp/ctl.out ] && [ "$(tail -c 1 /tmp/ctl.out | wc -l)" = 0 ] && echo >> /tmp/ctl.out
        { cat /tmp/ctl.out; echo "@@VMGUARD-EXIT $id $rc"; } >&3
      done
      sleep 0.2
    done
  ) 2>/dev/null &
fi

xenstored --pid-file /run/xenstored.pid || fail "xenstored did not start"
xen-init-dom0 > /var/log/xen/xen-init-dom0.log 2>&1 || fail "xen-init-dom0: $(tail -n 3 /var/log/xen/xen-init-dom0.log | tr '\n' ' ')"
xenconsoled --log=guest --log-dir=/var/log/xen || fail "xenconsoled did not start"

# Telemetry for the host: xentrace's records on vmguard.trace and our /proc/net/dev every second on
# vmguard.stats. A write blocks while the host has no reader (Xen then drops records and reports how
# many); the host resynchronises on whatever it gets. Both loops run for the life of dom0: a
# xentrace that ends is started again (-D: without the stale records of a dead one's buffers).
# xentrace writes through a pipe to cat, not to the port itself: a write to a virtio port carries at
# most 32 KiB and xentrace drops the rest of a short write (seen: every window over 32 KiB cut at
# 32768 bytes); a pipe takes the whole write and cat finishes short writes. /proc/self/fd/1, not
# /dev/stdout: dom0's devtmpfs has no /dev/stdout (xentrace would create a file there).
port() {
  for d in /sys/class/virtio-ports/*; do
    [ -f "$d/name" ] && [ "$(cat "$d/name")" = "$1" ] && echo "/dev/${d##*/}"
  done
}
trace=$(port vmguard.trace)
if [ -n "$trace" ]; then
  (
    while true; do
      xentrace -D -e "$XENTRACE_MASK" -S "$XENTRACE_PAGES" /proc/self/fd/1 2>> /var/log/xen/xentrace.log | cat > "$trace"
      echo "xentrace ended (status $?) at $(up); starting it again" >> /var/log/xen/xentrace.log
      sleep 1
    done
  ) < /dev/null &
fi
stats=$(port vmguard.stats)
if [ -n "$stats" ]; then
  (
    while true; do
      if exec 4> "$stats"; then
        while { cat /proc/net/dev; echo "@@VMGUARD-NETDEV-END $(up)"; } >&4; do sleep 1; done
        exec 4>&-
      fi
      sleep 1
    done
  ) < /dev/null > /dev/null 2>&1 &
fi

nic=""
for d in /sys/class/net/*; do
  [ "$(cat "$d/address" 2>/dev/null)" = "$DOM0_MAC" ] && nic=${d##*/}
done
[ -n "$nic" ] || fail "dom0 has no NIC with MAC $DOM0_MAC"
ip link add xenbr0 type bridge || fail "cannot create xenbr0"
ip link set "$nic" master xenbr0
ip link set "$nic" up
ip link set xenbr0 up
ip link add vmgctl type bridge || fail "cannot create vmgctl"
ip addr add "$CTL_DOM0_IP" dev vmgctl
ip link set vmgctl up
echo "VMGUARD_DOM0_UP uptime=$(up) nic=$nic ctl=$ctl"

# The domU's /data disk (label vmguard-data), passed on whole through blkback.
data=$(blkid -L vmguard-data 2>/dev/null || busybox findfs LABEL=vmguard-data 2>/dev/null)
[ -n "$data" ] || fail "no data disk (label vmguard-data) for the domU"
xl create $CFG/domu.cfg "disk=['format=raw,vdev=xvda,access=rw,backendtype=phy,script=$CFG/block-data,target=$data']" \
  > /var/log/xen/xl-create.log 2>&1 ||
  fail "xl create: $(tail -n 5 /var/log/xen/xl-create.log | tr '\n' ' ')"
log=/var/log/xen/guest-$DOMU_NAME.log
i=0
while ! grep -q VMGUARD_GUEST_UP "$log" 2>/dev/null; do
  xl domid "$DOMU_NAME" > /dev/null 2>&1 || fail "the domU is gone: $(tail -n 5 "$log" 2>/dev/null | tr '\n' ' ')"
  # A domU too small for its initramfs still boots, with files missing: say so.
  bad=$(grep -E 'Initramfs unpacking failed|Kernel panic|No space left on device' "$log" 2>/dev/null | head -n 1)
  [ -z "$bad" ] || fail "the domU failed: $bad (raise [lab.xen] domu_memory_mib)"
  [ $i -lt "$DOMU_BOOT_SECS" ] || fail "the domU did not come up within $DOMU_BOOT_SECS s: $(tail -n 3 "$log" 2>/dev/null | tr '\n' ' ')"
  sleep 1; i=$((i+1))
done
echo "VMGUARD_DOMU_UP uptime=$(up) domid=$(xl domid "$DOMU_NAME")"
while true; do sleep 3600; done
