#!/bin/sh
# vmguard's block hotplug script for the domU's /data, a whole disk of dom0's (libxl runs it with
# "add" or "remove" and XENBUS_PATH set to the backend's xenstore path). Xen's own `block` script
# checks sharing, locks and loop devices in dozens of subprocesses: under TCG it overran libxl's
# hotplug timeout. This does only what blkback needs: the device's major:minor.
case "$1" in
add)
  dev=$(xenstore-read "$XENBUS_PATH/params") || exit 1
  mm=$(stat -L -c '%t:%T' "$dev") || exit 1
  xenstore-write "$XENBUS_PATH/physical-device" "$mm" \
    "$XENBUS_PATH/physical-device-path" "$dev" \
    "$XENBUS_PATH/hotplug-status" connected
  ;;
remove)
  xenstore-write "$XENBUS_PATH/hotplug-status" disconnected 2>/dev/null
  ;;
esac
exit 0
