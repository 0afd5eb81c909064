#!/usr/bin/env bash
# The seed's fix, measured side by side in one run: the qemu victim with qemu's own virtio-net, then on
# vmguard's vhost-user backend (crate vhost-coalesce) with RX notification coalescing off, fixed and
# adaptive (the defaults of `vmguard mitigate apply coalesce`).
#
# Two parts per configuration, on the same lab:
#  - scripts/coalesce-sample.py: idle and under SYN floods at RATES (default: the lab's 10mbit link,
#    which is the default flood, and 5000 packets/s), per thread CPU of the qemu process and of the
#    backend process (schedstat), the guest's own /proc/stat, /proc/interrupts and /proc/net/dev (via
#    `vmguard lab exec qemu`), and the backend's counters. CPU per packet = (CPU under flood - CPU
#    idle) / packets the guest received, per second;
#  - `vmguard bench --benchmarks web [--mitigations none,coalesce-fixed,coalesce-adaptive]`: web
#    requests/s and p99, idle and under the default flood, and the web loss.
# Prints the tables (markdown) and writes everything to $work/compare.json.
#
# Usage (root): scripts/coalesce-compare.sh
#   PREFIX=vmgc REPS=3 DURATION=6 RATES=10mbit,5000 VMGUARD=target/release/vmguard
# Every part runs on a lab of prefix PREFIX with the qemu victim only, brought up for it and taken down
# after it (and on exit, also on failure).
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=${PREFIX:-vmgc}
REPS=${REPS:-3}
DURATION=${DURATION:-6}
RATES=${RATES:-10mbit,5000}
VMGUARD=${VMGUARD:-target/release/vmguard}
[ -x "$VMGUARD" ] || { echo "build first: cargo build --release -p vmguard -p vhost-coalesce" >&2; exit 1; }
[ -x "$(dirname "$VMGUARD")/vmguard-vhost-net" ] || { echo "no vmguard-vhost-net next to $VMGUARD" >&2; exit 1; }
work=$(mktemp -d /tmp/vmguard-coalesce-XXXXXX)
cleanup() {
	"$VMGUARD" --config "$work/virtio.toml" lab down >/dev/null 2>&1 || true
}
trap cleanup EXIT

printf '[lab]\nprefix = "%s"\nvictims = ["qemu"]\n' "$PREFIX" >"$work/virtio.toml"
printf '[lab]\nprefix = "%s"\nvictims = ["qemu"]\n\n[lab.qemu]\nnet_backend = "vhost-user"\n' "$PREFIX" >"$work/vhost.toml"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs" >"$work/load.txt"

up() { "$VMGUARD" --config "$1" lab up >>"$work/$2.up.log" 2>&1; }
down() { "$VMGUARD" --config "$1" lab down >/dev/null 2>&1; }

# CPU, interrupts and packets: repetitions alternate between the two backends (a lab each time), and
# within one the modes and rates alternate, so drift in the machine's other load hits all alike.
for rep in $(seq 1 "$REPS"); do
	for b in virtio vhost; do
		if [ $b = virtio ]; then backend=virtio modes=virtio; else backend=vhost-user modes=off,fixed,adaptive; fi
		echo "CPU, interrupts and packets, repetition $rep/$REPS: $backend ($modes; idle,$RATES) ..." >&2
		up "$work/$b.toml" $b
		python3 scripts/coalesce-sample.py --vmguard "$VMGUARD" --config "$work/$b.toml" --backend $backend \
			--modes "$modes" --rates "idle,$RATES" --duration "$DURATION" --reps 1 \
			>"$work/$b.sample.$rep.json" 2>>"$work/$b.sample.log"
		down "$work/$b.toml"
	done
done
# Web, idle and under the default flood: what the README's defences table shows, with coalescing.
echo "web: qemu's virtio-net ..." >&2
up "$work/virtio.toml" virtio
"$VMGUARD" --config "$work/virtio.toml" bench --victims qemu --benchmarks web --reps "$REPS" \
	--duration "$DURATION" --db "$work/virtio.db" --json >"$work/virtio.json" 2>"$work/virtio.log"
down "$work/virtio.toml"
echo "web: vmguard-vhost-net, none,coalesce-fixed,coalesce-adaptive ..." >&2
up "$work/vhost.toml" vhost
"$VMGUARD" --config "$work/vhost.toml" bench --victims qemu --benchmarks web --reps "$REPS" \
	--mitigations none,coalesce-fixed,coalesce-adaptive \
	--duration "$DURATION" --db "$work/vhost.db" --json >"$work/vhost.json" 2>"$work/vhost.log"
down "$work/vhost.toml"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$work/load.txt"

python3 scripts/coalesce-table.py "$work"
echo "raw results: $work (compare.json, *.sample.json, *.json, *.db)" >&2
trap - EXIT
cleanup
