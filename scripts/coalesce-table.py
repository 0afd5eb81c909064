#!/usr/bin/env python3
"""The tables of scripts/coalesce-compare.sh from its work directory (WORK): virtio.sample.*.json and
vhost.sample.*.json (scripts/coalesce-sample.py), virtio.json and vhost.json (vmguard bench --json).
Writes WORK/compare.json and prints the tables as markdown.  Usage: coalesce-table.py WORK"""
import json, statistics, sys
from collections import defaultdict

work = sys.argv[1]
NAMES = {"virtio": "virtio-net (qemu)", "off": "vhost-user, off", "fixed": "vhost-user, fixed",
         "adaptive": "vhost-user, adaptive"}
MIT = {("virtio", "none"): "virtio", ("vhost-user", "none"): "off", ("vhost-user", "coalesce-fixed"): "fixed",
       ("vhost-user", "coalesce-adaptive"): "adaptive"}

samples = defaultdict(list)
import glob
for path in sorted(glob.glob(f"{work}/*.sample*.json")):
    for r in json.load(open(path))["records"]:
        samples[(r["mode"], r["rate"])].append(r)
rates = []
for (_, rate) in samples:
    if rate != "idle" and rate not in rates:
        rates.append(rate)

web = defaultdict(list)
defences = []
for out, backend in (("virtio", "virtio"), ("vhost", "vhost-user")):
    doc = json.load(open(f"{work}/{out}.json"))
    for r in doc["records"]:
        if r["ok"] and r["cell"]["benchmark"] == "web":
            web[(MIT[(backend, r["cell"].get("mitigation", "none"))], r["cell"]["phase"])].append(r["figures"])
    for d in doc.get("defences", []):
        defences.append({**d, "config": MIT[(backend, d["mitigation"])]})

med = lambda xs: statistics.median(xs) if xs else None

def figures(mode, rate):
    idle = samples[(mode, "idle")]
    att = [r for r in samples[(mode, rate)] if r.get("ok", r["guest_rx_pps"] > 100)]
    if not idle or not att:
        return None
    m = lambda rs, f: med([f(r) for r in rs])
    host = lambda r: r["qemu_cpus"] + r["backend_cpus"]
    # Per sample: (CPU under flood - median idle CPU) / packets the guest received; then the median.
    per = lambda f: med([(f(r) - m(idle, f)) / r["guest_rx_pps"] * 1e6 for r in att])
    threads = defaultdict(list)
    for r in att:
        for k, v in list(r["qemu_threads"].items()) + [("backend:" + k, v) for k, v in r["backend_threads"].items()]:
            threads[k].append(v)
    return {
        "samples": len(att),
        "guest_rx_pps": m(att, lambda r: r["guest_rx_pps"]),
        "flood_pps": m(att, lambda r: r.get("flood_pps") or 0) or None,
        "host_us_per_packet": per(host),
        "tcg_vcpu_us_per_packet": per(lambda r: r["qemu_threads"].get("CPU 0/TCG", 0)),
        "qemu_main_us_per_packet": per(lambda r: r["qemu_threads"].get("qemu-system-x86", 0)),
        "backend_us_per_packet": per(lambda r: r["backend_cpus"]),
        "guest_us_per_packet": per(lambda r: r["guest_busy"]),
        "guest_busy_attack": m(att, lambda r: r["guest_busy"]),
        "guest_softirq_attack": m(att, lambda r: r["guest_softirq"]),
        "guest_net_irq_per_sec": m(att, lambda r: r["guest_net_irq_per_sec"]),
        "guest_net_irq_per_sec_idle": m(idle, lambda r: r["guest_net_irq_per_sec"]),
        "host_busy_cpus_attack": m(att, lambda r: r["host_busy_cpus"]),
        "attack_threads_cpus": {k: med(v) for k, v in threads.items() if med(v) >= 0.005},
        "backend_per_sec": {k: med([r["backend_per_sec"][k] for r in att]) for k in att[0].get("backend_per_sec", {})},
    }

result = {"rates": rates, "configs": {}}
for mode in ("virtio", "off", "fixed", "adaptive"):
    wa, wi = web[(mode, "attack")], web[(mode, "idle")]
    result["configs"][mode] = {
        "name": NAMES[mode],
        "flood": {rate: figures(mode, rate) for rate in rates},
        "web_rps_attack": med([f["requests_per_sec"] for f in wa]),
        "web_p99_ms_attack": med([f["p99_ms"] for f in wa]),
        "web_rps_idle": med([f["requests_per_sec"] for f in wi]),
        "web_p99_ms_idle": med([f["p99_ms"] for f in wi]),
    }
result["defences"] = defences
result["load"] = open(f"{work}/load.txt").read()
json.dump(result, open(f"{work}/compare.json", "w"), indent=1)

fmt = lambda v, d=1: "–" if v is None else f"{v:.{d}f}"
for rate in rates:
    base = result["configs"]["virtio"]["flood"][rate]
    print(f"\nflood at {rate}:\n")
    print("| configuration | packets to guest/s (samples) | host CPU per packet (us) | vs virtio-net | of which TCG vCPU / qemu main / backend (us) | guest CPU per packet (us) | guest busy | guest net interrupts/s |")
    print("|---|---|---|---|---|---|---|---|")
    for mode, c in result["configs"].items():
        f = c["flood"][rate]
        if not f:
            continue
        rel = (f["host_us_per_packet"] / base["host_us_per_packet"] - 1) * 100 if base and base["host_us_per_packet"] and f["host_us_per_packet"] else None
        print(f"| {c['name']} | {fmt(f['guest_rx_pps'], 0)} ({f['samples']}) | {fmt(f['host_us_per_packet'])} | {fmt(rel, 0)}% "
              f"| {fmt(f['tcg_vcpu_us_per_packet'])} / {fmt(f['qemu_main_us_per_packet'])} / {fmt(f['backend_us_per_packet'])} "
              f"| {fmt(f['guest_us_per_packet'])} | {fmt(100 * f['guest_busy_attack'], 0)}% | {fmt(f['guest_net_irq_per_sec'], 0)} |")
print("\nweb (default flood):\n")
print("| configuration | req/s idle | req/s under attack | web loss | p99 under attack (ms) | p99 idle (ms) | p99 idle vs off |")
print("|---|---|---|---|---|---|---|")
off_p99 = result["configs"]["off"]["web_p99_ms_idle"]
for mode, c in result["configs"].items():
    loss = (1 - c["web_rps_attack"] / c["web_rps_idle"]) * 100 if c["web_rps_attack"] is not None and c["web_rps_idle"] else None
    rel = (c["web_p99_ms_idle"] / off_p99 - 1) * 100 if off_p99 and c["web_p99_ms_idle"] else None
    print(f"| {c['name']} | {fmt(c['web_rps_idle'])} | {fmt(c['web_rps_attack'])} | {fmt(loss, 0)}% | {fmt(c['web_p99_ms_attack'], 0)} "
          f"| {fmt(c['web_p99_ms_idle'], 0)} | {fmt(rel, 0)}% |")
print("\n" + result["load"])
