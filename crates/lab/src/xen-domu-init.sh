#!/bin/sh
# vmguard Xen domU init (busybox, PV guest). Parameters come on the kernel command line (dom0's
# domU config sets them):
#   vmguard.ip=A/N vmguard.gw=G vmguard.mac=M (the lab NIC) vmguard.ctlip=A/N vmguard.ctlmac=M
#   (the command channel's NIC, on a bridge inside dom0 only) vmguard.syncookies=0|1
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /tmp /data /run /ctl/cgi-bin
mount -t tmpfs tmpfs /tmp
for m in $(cat /lib/modules/order); do insmod /lib/modules/$m 2>/dev/null; done

IP=""; GW=""; MAC=""; CTLIP=""; CTLMAC=""; COOKIES=1
for a in $(cat /proc/cmdline); do
  case $a in
    vmguard.ip=*) IP=${a#vmguard.ip=} ;;
    vmguard.gw=*) GW=${a#vmguard.gw=} ;;
    vmguard.mac=*) MAC=${a#vmguard.mac=} ;;
    vmguard.ctlip=*) CTLIP=${a#vmguard.ctlip=} ;;
    vmguard.ctlmac=*) CTLMAC=${a#vmguard.ctlmac=} ;;
    vmguard.syncookies=*) COOKIES=${a#vmguard.syncookies=} ;;
  esac
done

# The interface with a given MAC (netfront names them in vif order, but do not rely on it).
iface() {
  for d in /sys/class/net/*; do
    [ "$(cat "$d/address" 2>/dev/null)" = "$1" ] && { echo "${d##*/}"; return; }
  done
}
hostname vmguard-domu
ip link set lo up
i=0; while { [ -z "$(iface "$MAC")" ] || [ -z "$(iface "$CTLMAC")" ]; } && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
LAB=$(iface "$MAC"); CTL=$(iface "$CTLMAC")
if [ -n "$LAB" ] && [ -n "$IP" ]; then
  ip addr add "$IP" dev "$LAB"
  ip link set "$LAB" up
  [ -n "$GW" ] && ip route add default via "$GW"
fi
if [ -n "$CTL" ] && [ -n "$CTLIP" ]; then
  ip addr add "$CTLIP" dev "$CTL"
  ip link set "$CTL" up
fi
echo "$COOKIES" > /proc/sys/net/ipv4/tcp_syncookies

# The PV disk for file benchmarks and the database tier (ext4, made by the host).
i=0; while [ ! -b /dev/xvda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
[ -b /dev/xvda ] && mount -t ext4 /dev/xvda /data

mkdir -p /www
echo "<html><body><h1>vmguard victim: xen</h1></body></html>" > /www/index.html
httpd -p 80 -h /www

# Command channel: an HTTP server bound to the control address only (on dom0's private bridge,
# never on the lab network). A POST's body is a base64 shell script; the answer is its output and
# "@@VMGUARD-DOMU-EXIT <status>" on a line of its own. dom0 relays the host's commands to it.
cat > /ctl/cgi-bin/run <<'EOC'
#!/bin/sh
echo "Content-Type: text/plain"
echo
f=/tmp/ctl.$$
head -c "${CONTENT_LENGTH:-0}" | base64 -d > $f.sh
sh $f.sh < /dev/null > $f.out 2>&1
rc=$?
cat $f.out
[ -s $f.out ] && [ "$(tail -c 1 $f.out | wc -l)" = 0 ] && echo
echo "@@VMGUARD-DOMU-EXIT $rc"
rm -f $f.sh $f.out
EOC
chmod 755 /ctl/cgi-bin/run
[ -n "$CTLIP" ] && httpd -p "${CTLIP%/*}:7000" -h /ctl

echo "VMGUARD_GUEST_UP uptime=$(cut -d' ' -f1 /proc/uptime) ip=$IP lab=$LAB ctl=$CTL"
while true; do sleep 3600; done
