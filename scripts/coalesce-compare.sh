#!/usr/bin/env bash
# The seed's fix, measured side by side in one run: the qemu victim under the default SYN flood with
# qemu's own virtio-net, then on vmguard's vhost-user backend (crate vhost-coalesce) with RX
# notification coalescing off, fixed and adaptive. Prints, per configuration: host CPU and guest
# (vCPU thread) CPU per packet delivered to the guest, over idle; web requests/s and p99 under attack;
# p99 at idle.
#
# Usage (root): scripts/coalesce-compare.sh   (REPS=3 DURATION=6 VMGUARD=target/release/vmguard)
# Each configuration runs on a lab of its own prefix (vmgcv, vmgcu) with the qemu victim only; both
# are removed on exit, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-3}
DURATION=${DURATION:-6}
VMGUARD=${VMGUARD:-target/release/vmguard}
[ -x "$VMGUARD" ] || { echo "build first: cargo build --release --workspace --bins" >&2; exit 1; }
work=$(mktemp -d /tmp/vmguard-coalesce-XXXXXX)
cleanup() {
	for c in "$work"/virtio.toml "$work"/vhost.toml; do
		[ -f "$c" ] && "$VMGUARD" --config "$c" lab down >/dev/null 2>&1 || true
	done
}
trap cleanup EXIT

printf '[lab]\nprefix = "vmgcv"\nvictims = ["qemu"]\n' >"$work/virtio.toml"
printf '[lab]\nprefix = "vmgcu"\nvictims = ["qemu"]\n\n[lab.qemu]\nnet_backend = "vhost-user"\n' >"$work/vhost.toml"

run() { # config, output name, extra bench args...
	local config=$1 out=$2
	shift 2
	"$VMGUARD" --config "$config" lab up >"$work/$out.up.log" 2>&1
	"$VMGUARD" --config "$config" bench --victims qemu --benchmarks web,idle-cpu --reps "$REPS" \
		--duration "$DURATION" --db "$work/$out.db" --json "$@" >"$work/$out.json" 2>"$work/$out.log"
	"$VMGUARD" --config "$config" lab down >/dev/null 2>&1
}

echo "qemu's virtio-net ..." >&2
run "$work/virtio.toml" virtio
echo "vmguard-vhost-net: off, fixed, adaptive ..." >&2
run "$work/vhost.toml" vhost --mitigations none,coalesce-fixed,coalesce-adaptive

python3 - "$work/virtio.json" "$work/vhost.json" <<'EOF'
import json, statistics, sys
from collections import defaultdict

ncpu = None
groups = defaultdict(list)
for path, backend in ((sys.argv[1], "virtio-net (qemu)"), (sys.argv[2], "vhost-user")):
    for r in json.load(open(path))["records"]:
        if not r["ok"]:
            continue
        c = r["cell"]
        name = backend if c.get("mitigation", "none") == "none" else f"{backend}, {c['mitigation']}"
        if backend == "vhost-user" and c.get("mitigation", "none") == "none":
            name = "vhost-user, coalescing off"
        groups[(name, c["benchmark"], c["phase"])].append(r)

def med(rs, f):
    vals = [v for v in (f(r) for r in rs) if v is not None]
    return statistics.median(vals) if vals else None

names = []
for (n, _, _) in groups:
    if n not in names:
        names.append(n)
import os
ncpu = os.cpu_count()
print(f"| configuration | host CPU per packet (us) | vCPU per packet (us) | packets to guest/s | web req/s under attack | p99 under attack (ms) | p99 idle (ms) |")
print("|---|---|---|---|---|---|---|")
for n in names:
    idle, att = groups.get((n, "idle-cpu", "idle"), []), groups.get((n, "idle-cpu", "attack"), [])
    busy = lambda r: r["host"]["busy_pct"] * ncpu / 100.0
    vcpu = lambda r: sum(v for k, v in r["host"]["victim_threads_pct"].items() if k.startswith("CPU ")) / 100.0
    pps = med(att, lambda r: r["host"]["telemetry_per_sec"].get("netdev.rx_packets"))
    host_pp = vcpu_pp = None
    if pps and idle and att:
        host_pp = (med(att, busy) - med(idle, busy)) / pps * 1e6
        vcpu_pp = (med(att, vcpu) - med(idle, vcpu)) / pps * 1e6
    web_a = groups.get((n, "web", "attack"), [])
    web_i = groups.get((n, "web", "idle"), [])
    fmt = lambda v, d=1: "–" if v is None else f"{v:.{d}f}"
    print(f"| {n} | {fmt(host_pp)} | {fmt(vcpu_pp)} | {fmt(pps, 0)} | {fmt(med(web_a, lambda r: r['figures'].get('requests_per_sec')))} "
          f"| {fmt(med(web_a, lambda r: r['figures'].get('p99_ms')), 0)} | {fmt(med(web_i, lambda r: r['figures'].get('p99_ms')), 0)} |")
EOF
echo "raw results: $work (*.json, *.db)" >&2
trap - EXIT
cleanup
