#!/usr/bin/env bash
# The flow source's cost at the default flood rate, end to end and side by side in one run: the same
# bounded SYN flood (the default: unlimited rate over the attacker's shaped link) at the lab's vanilla
# victim while `vmguard collect` runs with the flow source and without it (`--skip-sources flow`),
# alternating, REPS times each. Prints, per mode: host CPU busy (all cores, /proc/stat) during the
# flood, the packets the victim got, and for the flow mode the capture thread's own CPU. The
# difference of host CPU between the modes is the whole cost (the kernel's filter and copy included),
# per flood packet and in % of one core.
#
# Usage (root): scripts/flow-cost.sh   (REPS=3 DURATION=10 VMGUARD=target/release/vmguard)
# The lab has its own prefix (vmgfc) and is removed on exit, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-3}
DURATION=${DURATION:-10}
VMGUARD=${VMGUARD:-target/release/vmguard}
[ -x "$VMGUARD" ] || { echo "build first: cargo build --release -p vmguard" >&2; exit 1; }
work=$(mktemp -d /tmp/vmguard-flowcost-XXXXXX)
conf="$work/lab.toml"
printf '[lab]\nprefix = "vmgfc"\nvictims = ["vanilla"]\n' >"$conf"
collector=""
cleanup() {
	[ -n "$collector" ] && kill "$collector" 2>/dev/null || true
	"$VMGUARD" --config "$conf" lab down >/dev/null 2>&1 || true
}
trap cleanup EXIT
"$VMGUARD" --config "$conf" lab up >"$work/up.log" 2>&1

busy() { # prints "busy total" jiffies of all CPUs
	awk '/^cpu /{b=$2+$3+$4+$7+$8+$9; t=b+$5+$6; print b, t}' /proc/stat
}
metric() { # counter name -> value from the collector's /metrics
	curl -s "127.0.0.1:9479/metrics" | awk -v c="counter=\"$1\"" 'index($0, c) && /source="flow"/ {print $2; exit}'
}

cores=$(nproc)
printf 'mode rep host_cores victim_pkts capture_cores capture_frames\n' >"$work/raw.txt"
for rep in $(seq "$REPS"); do
	for mode in flow none; do
		skip=()
		[ "$mode" = none ] && skip=(--skip-sources flow)
		"$VMGUARD" --config "$conf" collect --duration "$((DURATION + 8))s" --db "$work/c.db" \
			--listen 127.0.0.1:9479 "${skip[@]}" >/dev/null 2>"$work/collect.log" &
		collector=$!
		sleep 3
		cpu0=$(metric capture_cpu_ns || true)
		fr0=$(metric capture_frames || true)
		read -r b0 t0 < <(busy)
		"$VMGUARD" --config "$conf" --json flood --target vanilla --duration "${DURATION}s" >"$work/flood.json" 2>/dev/null
		read -r b1 t1 < <(busy)
		cpu1=$(metric capture_cpu_ns || true)
		fr1=$(metric capture_frames || true)
		kill "$collector" 2>/dev/null || true
		wait "$collector" 2>/dev/null || true
		collector=""
		pkts=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["victim"]["rx_packets"])' "$work/flood.json")
		secs=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["summary"]["elapsed_secs"])' "$work/flood.json")
		host=$(echo "$b0 $t0 $b1 $t1 $cores" | awk '{printf "%.4f", ($3-$1)/($4-$2)*$5}')
		cap=$(echo "${cpu0:-0} ${cpu1:-0} $secs" | awk '{printf "%.4f", ($2-$1)/1e9/$3}')
		frames=$(echo "${fr0:-0} ${fr1:-0}" | awk '{print $2-$1}')
		printf '%s %s %s %s %s %s\n' "$mode" "$rep" "$host" "$pkts" "$cap" "$frames" >>"$work/raw.txt"
		echo "rep $rep $mode: host $host cores, $pkts packets, capture $cap cores, $frames frames" >&2
	done
done
python3 - "$work/raw.txt" "$DURATION" <<'PY'
import statistics as st, sys
rows = [l.split() for l in open(sys.argv[1]).read().splitlines()[1:]]
dur = float(sys.argv[2])
by = {m: [r for r in rows if r[0] == m] for m in ("flow", "none")}
med = lambda m, i: st.median(float(r[i]) for r in by[m])
flow, none = med("flow", 2), med("none", 2)
pkts = med("flow", 3)
print(f"{'mode':<6} {'host CPU (cores)':>17} {'victim packets':>15} {'capture thread (cores)':>23}")
for m in ("flow", "none"):
    print(f"{m:<6} {med(m, 2):>17.3f} {med(m, 3):>15.0f} {med(m, 4):>23.4f}")
extra = flow - none
pps = pkts / dur
print(f"flow source: +{extra:.3f} cores host-wide (+{100 * extra:.1f}% of one core), "
      f"{extra * 1e9 / pps:.0f} ns per flood packet at {pps:.0f} packets/s; "
      f"its reader thread {100 * med('flow', 4):.1f}% of one core "
      f"({med('flow', 4) * 1e9 * dur / max(med('flow', 5), 1):.0f} ns per captured frame)")
PY
