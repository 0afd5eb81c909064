#!/usr/bin/env python3
"""CPU, interrupts and packets of the qemu victim, idle and under a SYN flood, per coalescing mode.

Used by scripts/coalesce-compare.sh on a lab that is up with the qemu victim. For every mode (on
qemu's virtio-net only `virtio`; on vmguard-vhost-net `off`, `fixed`, `adaptive`, set with
`vmguard mitigate`), every flood rate (`idle` = no flood) and every repetition it

  1. starts the flood (`vmguard flood --target qemu --rate R`, bounded in time) and lets it settle,
  2. reads the host side: per-thread CPU (schedstat, ns) of the qemu process and of the backend
     process, and the guest side: /proc/uptime, /proc/stat, /proc/interrupts and /proc/net/dev
     inside the guest (`vmguard lab exec qemu`), plus the backend's counters (control socket),
  3. waits DURATION seconds and reads everything again.

Every rate is per second of its own clock (host: monotonic, guest: its uptime), so the seconds the
guest command channel takes cancel out. Prints one JSON document: {"records": [...]}.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import time


def sh(argv, timeout=120):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {r.returncode}: {r.stderr.strip()[-400:]}")
    return r.stdout


def threads(pid):
    """{thread name: CPU ns} of a process, threads of the same name summed."""
    out = {}
    base = f"/proc/{pid}/task"
    for tid in os.listdir(base):
        try:
            with open(f"{base}/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"{base}/{tid}/schedstat") as f:
                ns = int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue  # a worker thread that ended meanwhile
        out[name] = out.get(name, 0) + ns
    return out


def host_cpu():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return {"busy": sum(v) - v[3] - v[4], "total": sum(v)}


GUEST_SCRIPT = (
    "cat /proc/uptime; echo @@; head -1 /proc/stat; echo @@; cat /proc/interrupts; echo @@; "
    "cat /proc/net/dev; echo @@; basename $(readlink /sys/class/net/eth0/device)"
)


def guest(vmguard, config):
    out = sh([vmguard, "--config", config, "lab", "exec", "qemu", "--", "sh", "-c", GUEST_SCRIPT])
    up, stat, intr, netdev, dev = out.split("@@")
    dev = dev.strip()
    cpu = [int(x) for x in stat.split()[1:]]
    irqs = {}
    for line in intr.splitlines()[1:]:
        parts = line.split()
        if not parts or not parts[0].endswith(":") or len(parts) < 2 or not parts[1].isdigit():
            continue
        # "10:  21  IO-APIC  10-fasteoi  virtio0" or "25: 531 PCI-MSI 65537-edge virtio2-input.0"
        name = parts[-1] if parts[0][:-1].isdigit() else parts[0][:-1]
        irqs[name] = irqs.get(name, 0) + int(parts[1])
    rx = None
    for line in netdev.splitlines():
        if line.strip().startswith("eth0:"):
            rx = int(line.split(":", 1)[1].split()[1])
    # USER_HZ is 100 in the guest kernel (as everywhere on x86).
    return {
        "uptime": float(up.split()[0]),
        "busy_ticks": sum(cpu[:8]) - cpu[3] - cpu[4],
        "total_ticks": sum(cpu[:8]),
        "softirq_ticks": cpu[6],
        "system_ticks": cpu[2],
        "irqs": irqs,
        "net_device": dev,
        "rx_packets": rx,
    }


def backend_stats(sock_path):
    if not sock_path:
        return None
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(sock_path)
    s.sendall(b'{"get":"stats"}\n')
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    s.close()
    return json.loads(buf)["stats"]


def snapshot(vmguard, config, victim):
    t0 = time.monotonic()
    h = {
        "t": t0,
        "qemu": threads(victim["pids"][0]),
        "backend": threads(victim["pids"][1]) if len(victim["pids"]) > 1 else {},
        "host": host_cpu(),
        "stats": backend_stats(victim.get("net_control_socket")),
    }
    h["guest"] = guest(vmguard, config)
    return h


def delta(a, b):
    secs = b["t"] - a["t"]
    gsecs = b["guest"]["uptime"] - a["guest"]["uptime"]
    per = lambda d: {k: (v - d[0].get(k, 0)) / secs / 1e9 for k, v in d[1].items()}
    ga, gb = a["guest"], b["guest"]
    irqs = {k: (v - ga["irqs"].get(k, 0)) / gsecs for k, v in gb["irqs"].items()}
    dev = gb["net_device"]
    net_irq = sum(v for k, v in irqs.items() if k == dev or k.startswith(dev + "-"))
    gtot = gb["total_ticks"] - ga["total_ticks"]
    r = {
        "host_secs": secs,
        "guest_secs": gsecs,
        # CPUs busy (1.0 = one core all the time), per thread name
        "qemu_threads": per((a["qemu"], b["qemu"])),
        "backend_threads": per((a["backend"], b["backend"])),
        "host_busy_cpus": (b["host"]["busy"] - a["host"]["busy"]) / max(1, b["host"]["total"] - a["host"]["total"])
        * os.cpu_count(),
        # the guest's one vCPU, as the guest sees it
        "guest_busy": (gb["busy_ticks"] - ga["busy_ticks"]) / max(1, gtot),
        "guest_softirq": (gb["softirq_ticks"] - ga["softirq_ticks"]) / max(1, gtot),
        "guest_system": (gb["system_ticks"] - ga["system_ticks"]) / max(1, gtot),
        "guest_net_irq_per_sec": net_irq,
        "guest_irq_per_sec": {k: v for k, v in irqs.items() if v > 0},
        "guest_rx_pps": (gb["rx_packets"] - ga["rx_packets"]) / gsecs,
    }
    r["qemu_cpus"] = sum(r["qemu_threads"].values())
    r["backend_cpus"] = sum(r["backend_threads"].values())
    if a["stats"] and b["stats"]:
        r["backend_per_sec"] = {k: (b["stats"][k] - a["stats"][k]) / secs for k in b["stats"]}
    return r


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--vmguard", required=True)
    p.add_argument("--config", required=True)
    p.add_argument("--backend", required=True, help="virtio or vhost-user")
    p.add_argument("--modes", default="", help="coalescing modes for vhost-user: off,fixed,adaptive")
    p.add_argument("--rates", default="idle,10mbit,5000")
    p.add_argument("--duration", type=float, default=6)
    p.add_argument("--reps", type=int, default=3)
    a = p.parse_args()

    state = json.loads(sh([a.vmguard, "--config", a.config, "--json", "lab", "status"]))
    prefix = state["prefix"]
    with open(f"/var/lib/vmguard/run/{prefix}/state.json") as f:
        victim = next(v for v in json.load(f)["victims"] if v["kind"] == "qemu")
    modes = ["virtio"] if a.backend == "virtio" else a.modes.split(",")
    rates = a.rates.split(",")
    records = []

    applied = [False]

    def set_mode(mode):
        """Coalescing as `mode` (off: none applied) through vmguard mitigate."""
        if applied[0]:
            sh([a.vmguard, "--config", a.config, "mitigate", "remove", "coalesce", "--victim", "qemu"])
            applied[0] = False
        if mode in ("fixed", "adaptive"):
            sh([a.vmguard, "--config", a.config, "mitigate", "apply", "coalesce", "--victim", "qemu", "--mode", mode])
            applied[0] = True

    try:
        for rep in range(a.reps):
            # Modes and rates interleaved within a repetition, so drift on the machine hits them alike.
            for mode in modes:
                set_mode(mode)
                for rate in rates:
                    flood = None
                    if rate != "idle":
                        flood = subprocess.Popen(
                            [a.vmguard, "--config", a.config, "--json", "flood", "--target", "qemu", "--rate", rate,
                             "--duration", f"{a.duration + 6:.0f}s"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                        time.sleep(1.5)
                    sent = None
                    try:
                        before = snapshot(a.vmguard, a.config, victim)
                        time.sleep(a.duration)
                        after = snapshot(a.vmguard, a.config, victim)
                    finally:
                        if flood is not None:
                            flood.terminate()  # our own child, by its handle
                            out, _ = flood.communicate(timeout=30)
                            try:
                                sent = json.loads(out).get("summary", {}).get("achieved_pps")
                            except (ValueError, AttributeError):
                                sent = None
                    rec = {"backend": a.backend, "mode": mode, "rate": rate, "rep": rep, "flood_pps": sent,
                           **delta(before, after)}
                    # A flood that did not reach the guest (the command failed) measures nothing.
                    rec["ok"] = rate == "idle" or rec["guest_rx_pps"] > 100
                    records.append(rec)
                    print(f"{mode:9} {rate:7} rep {rep}: guest rx {rec['guest_rx_pps']:8.0f}/s, qemu "
                          f"{rec['qemu_cpus']:.2f} + backend {rec['backend_cpus']:.2f} CPUs, guest busy "
                          f"{rec['guest_busy']:.2f}, net irq {rec['guest_net_irq_per_sec']:.0f}/s, flood {sent}",
                          file=sys.stderr)
    finally:
        set_mode("off")
    json.dump({"records": records}, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
