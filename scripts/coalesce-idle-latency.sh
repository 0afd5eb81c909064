#!/usr/bin/env bash
# Idle latency of the qemu victim on vmguard's vhost-user backend with RX notification coalescing
# off, fixed and adaptive (issue 11's "idle p99 within 5% of off"): what a held notification would
# cost a request when there is no flood.
#
# One lab (qemu victim only, `[lab.qemu] net_backend = "vhost-user"`); ROUNDS rounds, each running
# every mode once in a rotated order (so drift in the machine's load hits every mode alike); in each,
# from the client namespace, `wrk -t1 -c1 --latency` for DURATION seconds on
#  - /health: a request the web tier answers without its database (the network path and the app),
#  - /: the two-tier page (the database tier's query, as in the bench's web cells).
# Prints per mode and path the median over rounds of p50 and p99 and of requests/s, and p99 against
# `off`; writes every round's figures to $work/latency.json.
#
# Usage (root): scripts/coalesce-idle-latency.sh
#   PREFIX=vmgl NETWORK=10.231.0.0/16 ROUNDS=4 DURATION=10 VMGUARD=target/release/vmguard
# The lab is brought up for it and taken down after it (on exit, also on failure).
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=${PREFIX:-vmgl}
NETWORK=${NETWORK:-10.231.0.0/16}
ROUNDS=${ROUNDS:-4}
DURATION=${DURATION:-10}
VMGUARD=${VMGUARD:-target/release/vmguard}
[ -x "$VMGUARD" ] || { echo "build first: cargo build --release -p vmguard -p vhost-coalesce" >&2; exit 1; }
[ -x "$(dirname "$VMGUARD")/vmguard-vhost-net" ] || { echo "no vmguard-vhost-net next to $VMGUARD" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk is missing: make deps" >&2; exit 1; }
work=$(mktemp -d /tmp/vmguard-idle-latency-XXXXXX)
config="$work/lab.toml"
printf '[lab]\nprefix = "%s"\nnetwork = "%s"\nvictims = ["qemu"]\n\n[lab.qemu]\nnet_backend = "vhost-user"\n' \
	"$PREFIX" "$NETWORK" >"$config"
vg() { "$VMGUARD" --config "$config" "$@"; }
trap 'vg lab down >/dev/null 2>&1 || true' EXIT

echo "lab up (qemu on vmguard-vhost-net) ..." >&2
vg lab up >"$work/up.log" 2>&1
addr=$(vg --json lab status | python3 -c 'import json,sys; print([v["address"] for v in json.load(sys.stdin)["victims"] if v["kind"] == "qemu"][0])')
client_ns="$PREFIX-cli"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs" >"$work/load.txt"

modes=(off fixed adaptive)
: >"$work/rounds.txt"
for round in $(seq 1 "$ROUNDS"); do
	for i in 0 1 2; do
		mode=${modes[$(((round + i) % 3))]}
		[ "$mode" = off ] || vg mitigate apply coalesce --victim qemu --mode "$mode" >/dev/null
		for path in /health /; do
			echo "round $round/$ROUNDS: $mode, $path ..." >&2
			out=$(ip netns exec "$client_ns" wrk -t1 -c1 -d"${DURATION}s" --timeout 5s --latency "http://$addr$path")
			printf '%s\t%s\t%s\t%s\n' "$round" "$mode" "$path" "$(tr '\n' '|' <<<"$out")" >>"$work/rounds.txt"
		done
		[ "$mode" = off ] || vg mitigate remove coalesce --victim qemu >/dev/null
	done
done
vg mitigate status >"$work/mitigate-after.txt"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$work/load.txt"

python3 - "$work" <<'PY'
import json, re, statistics, sys
work = sys.argv[1]
unit = {"us": 1e-3, "ms": 1.0, "s": 1e3}
def ms(v):
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", v)
    return float(m.group(1)) * unit[m.group(2)]
rows = []
for line in open(f"{work}/rounds.txt"):
    rnd, mode, path, out = line.rstrip("\n").split("\t")
    out = out.replace("|", "\n")
    pct = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if "50" not in pct or "99" not in pct or not rps:
        raise SystemExit(f"round {rnd} {mode} {path}: wrk's output has no latency distribution:\n{out}")
    rows.append({"round": int(rnd), "mode": mode, "path": path, "p50_ms": ms(pct["50"]),
                 "p99_ms": ms(pct["99"]), "req_per_s": float(rps.group(1))})
json.dump(rows, open(f"{work}/latency.json", "w"), indent=1)
print(open(f"{work}/load.txt").read().strip())
print("| path | mode | p50 (ms) | p99 (ms) | p99 vs off | req/s | rounds |")
print("|---|---|---|---|---|---|---|")
for path in ("/health", "/"):
    med = lambda mode, k: statistics.median(r[k] for r in rows if r["mode"] == mode and r["path"] == path)
    for mode in ("off", "fixed", "adaptive"):
        n = sum(1 for r in rows if r["mode"] == mode and r["path"] == path)
        vs = "–" if mode == "off" else f"{100 * (med(mode, 'p99_ms') / med('off', 'p99_ms') - 1):+.1f}%"
        print(f"| {path} | {mode} | {med(mode, 'p50_ms'):.2f} | {med(mode, 'p99_ms'):.2f} | {vs} | {med(mode, 'req_per_s'):.1f} | {n} |")
print(f"figures: {work}/latency.json")
PY
