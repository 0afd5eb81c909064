#!/bin/sh
# vmguard guest init (busybox). Parameters come on the kernel command line:
#   vmguard.ip=A/N vmguard.gw=G vmguard.syncookies=0|1 vmguard.probe=1
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /tmp /data /run
mount -t tmpfs tmpfs /tmp
# Kernel modules, in dependency order (written by the image builder).
for m in $(cat /lib/modules/order); do insmod /lib/modules/$m 2>/dev/null; done

IP=""; GW=""; COOKIES=1; PROBE=0
for a in $(cat /proc/cmdline); do
  case $a in
    vmguard.ip=*) IP=${a#vmguard.ip=} ;;
    vmguard.gw=*) GW=${a#vmguard.gw=} ;;
    vmguard.syncookies=*) COOKIES=${a#vmguard.syncookies=} ;;
    vmguard.probe=*) PROBE=${a#vmguard.probe=} ;;
  esac
done
if [ "$PROBE" = 1 ]; then
  echo "VMGUARD_GUEST_UP probe"
  poweroff -f
fi

hostname vmguard-guest
ip link set lo up
i=0; while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
if [ -n "$IP" ]; then
  ip addr add "$IP" dev eth0
  ip link set eth0 up
  [ -n "$GW" ] && ip route add default via "$GW"
fi
echo "$COOKIES" > /proc/sys/net/ipv4/tcp_syncookies

# The virtio disk for file benchmarks (formatted ext4 by the host).
[ -b /dev/vda ] && mount -t ext4 /dev/vda /data

mkdir -p /www
echo "<html><body><h1>vmguard victim: qemu</h1></body></html>" > /www/index.html
httpd -p 80 -h /www

# Command channel: the host sends "<id> <base64 script>" lines on a virtio-serial port and reads the
# script's output followed by "@@VMGUARD-EXIT <id> <status>".
ctl=""
for d in /sys/class/virtio-ports/*; do
  [ -f "$d/name" ] && [ "$(cat "$d/name")" = vmguard.ctl ] && ctl=/dev/${d##*/}
done
if [ -n "$ctl" ]; then
  (
    # A virtio port opens once at a time: one read-write descriptor for both directions, opened
    # once. A read gives end-of-file whenever the host's client has disconnected (after every
    # command); the port stays open and is read again. Closing it there lost commands: the kernel
    # discards a port's unread data on close, and the next client's command could arrive between
    # the end-of-file and the close (seen as a channel silent to its timeout on a loaded machine).
    until exec 3<>"$ctl"; do sleep 0.2; done
    while true; do
      while read -r id script <&3; do
        echo "$script" | base64 -d > /tmp/ctl.sh
        # fd 3 is the channel: a daemon the script starts must not inherit it, or the port
        # stays open and can never be reopened.
        sh /tmp/ctl.sh < /dev/null > /tmp/ctl.out 2>&1 3>&-
        rc=$?
        { cat /tmp/ctl.out; echo "@@VMGUARD-EXIT $id $rc"; } >&3
      done
      sleep 0.2
    done
  ) 2>/dev/null &
fi

echo "VMGUARD_GUEST_UP uptime=$(cut -d' ' -f1 /proc/uptime) ip=$IP ctl=$ctl"
while true; do sleep 3600; done
