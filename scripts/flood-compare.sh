#!/usr/bin/env bash
# Side-by-side SYN flood speed on one veth pair, one sending core: vmguard's flood (examples/flood.rs)
# vs hping3 (`-S --flood --rand-source`) vs trafgen (netsniff-ng, TX ring, random sources).
#
#   scripts/flood-compare.sh [SECONDS_PER_RUN=5] [ROUNDS=3] [CPU=1]
#   RPS_CPU=0 scripts/flood-compare.sh ...   # receiver's stack on CPU 0 (RPS), so CPU 1 only sends
#
# Creates its own namespaces vmgt-cmp-a (sender) and vmgt-cmp-b (receiver) joined by a veth pair,
# measures packets/s on the receiver's interface (rx_packets over a window after a 1 s warm-up), takes
# the median of ROUNDS runs per tool, prints a table with ratios, and removes everything it created.
# Every tool runs under `timeout`, pinned to CPU with taskset, and is stopped by PID, never by name.
# Traffic goes only to 10.99.0.2 inside vmgt-cmp-b. Needs root.
set -euo pipefail

SECS=${1:-5}
ROUNDS=${2:-3}
CPU=${3:-1}
NS_A=vmgt-cmp-a
NS_B=vmgt-cmp-b
IF_A=vmgt-cmp-a0
IF_B=vmgt-cmp-b0
ADDR_A=10.99.0.1
ADDR_B=10.99.0.2
ROOT=$(cd "$(dirname "$0")/.." && pwd)
FLOOD=$ROOT/target/release/examples/flood
TMP=$(mktemp -d /tmp/vmgt-compare.XXXXXX)
PIDS=()

cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    ip netns del "$NS_A" 2>/dev/null || true
    ip netns del "$NS_B" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

[ "$(id -u)" = 0 ] || { echo "flood-compare: needs root (network namespaces, raw sockets)" >&2; exit 1; }
for tool in ip hping3 trafgen timeout taskset cargo awk; do
    command -v "$tool" >/dev/null || { echo "flood-compare: $tool is missing; run \`make deps\`" >&2; exit 1; }
done

echo "building the flood example (release)..." >&2
(cd "$ROOT" && cargo build --release -q -p flood --example flood)

ip netns del "$NS_A" 2>/dev/null || true
ip netns del "$NS_B" 2>/dev/null || true
ip netns add "$NS_A"
ip netns add "$NS_B"
ip link add "$IF_A" netns "$NS_A" type veth peer name "$IF_B" netns "$NS_B"
ip -n "$NS_A" addr add "$ADDR_A/24" dev "$IF_A"
ip -n "$NS_B" addr add "$ADDR_B/24" dev "$IF_B"
for ns in "$NS_A" "$NS_B"; do ip -n "$ns" link set lo up; done
ip -n "$NS_A" link set "$IF_A" up
ip -n "$NS_B" link set "$IF_B" up
# By default the receiver's TCP/IP processing runs in softirq on the sending CPU (veth delivers on the
# CPU that transmits), so every tool pays the same receive cost. RPS_CPU moves it to another CPU.
if [ -n "${RPS_CPU:-}" ]; then
    printf '%x' $((1 << RPS_CPU)) | ip netns exec "$NS_B" tee "/sys/class/net/$IF_B/queues/rx-0/rps_cpus" >/dev/null
fi

rx_packets() { ip netns exec "$NS_B" cat "/sys/class/net/$IF_B/statistics/rx_packets"; }
mac_bytes() { ip netns exec "$1" cat "/sys/class/net/$2/address" | awk -F: '{for (i = 1; i <= NF; i++) printf "0x%s%s", $i, (i < NF ? ", " : "")}'; }

# trafgen: a 40-byte SYN (no options, like hping3's), random source in 10.99.0.0/16, random id,
# port and sequence, both checksums recomputed per packet.
cat > "$TMP/syn.trafgen" <<CFG
{
  $(mac_bytes "$NS_B" "$IF_B"),
  $(mac_bytes "$NS_A" "$IF_A"),
  0x08, 0x00,
  0x45, 0x00, const16(40), drnd(2), 0x40, 0x00, 64, 6, csumip(14, 33),
  10, 99, drnd(1), drnd(1),
  10, 99, 0, 2,
  drnd(2), const16(80), drnd(4), const32(0), 0x50, 0x02, const16(64240), csumtcp(14, 34), const16(0)
}
CFG

FLOOD_ARGS=(--netns "$NS_A" --victim "b=$ADDR_B" --lab-network 10.99.0.0/16 --spoof 10.99.128.0/17
    --duration $((SECS + 3)) --quiet b)

# measure NAME CMD...: run CMD in the background under timeout, return receiver pps over the window.
measure() {
    local name=$1; shift
    local log="$TMP/$name.log"
    timeout --signal=TERM --kill-after=2 $((SECS + 4)) taskset -c "$CPU" "$@" >"$log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    sleep 1
    local c1 t1 c2 t2
    c1=$(rx_packets); t1=$(date +%s.%N)
    sleep "$SECS"
    c2=$(rx_packets); t2=$(date +%s.%N)
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    awk -v a="$c1" -v b="$c2" -v s="$t1" -v e="$t2" 'BEGIN { printf "%.0f\n", (b - a) / (e - s) }'
}

declare -A RESULTS
TOOLS=(vmguard vmguard-raw vmguard-opts hping3 trafgen)
for round in $(seq 1 "$ROUNDS"); do
    for tool in "${TOOLS[@]}"; do
        case $tool in
            vmguard) pps=$(measure "$tool" "$FLOOD" "${FLOOD_ARGS[@]}" --no-options --backend packet --qdisc-bypass) ;;
            vmguard-raw) pps=$(measure "$tool" "$FLOOD" "${FLOOD_ARGS[@]}" --no-options --backend raw) ;;
            vmguard-opts) pps=$(measure "$tool" "$FLOOD" "${FLOOD_ARGS[@]}" --backend packet --qdisc-bypass) ;;
            hping3) pps=$(measure "$tool" ip netns exec "$NS_A" hping3 -S --flood --rand-source -p 80 "$ADDR_B") ;;
            trafgen) pps=$(measure "$tool" ip netns exec "$NS_A" trafgen -o "$IF_A" -c "$TMP/syn.trafgen" -P 1 -C) ;;
        esac
        RESULTS[$tool]="${RESULTS[$tool]:-} $pps"
        echo "round $round  $tool  $pps pps" >&2
    done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : int((v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
declare -A MED
for tool in "${TOOLS[@]}"; do MED[$tool]=$(echo "${RESULTS[$tool]}" | median); done

echo
echo "SYN flood, one veth pair, sender pinned to CPU $CPU, receiver rx_packets over ${SECS}s windows, median of $ROUNDS"
if [ -n "${RPS_CPU:-}" ]; then echo "receiver stack on CPU $RPS_CPU (RPS)"; else echo "receiver stack on the sending CPU"; fi
printf '%-14s %12s %10s %10s  %s\n' tool "rx pps" "x hping3" "x trafgen" "runs"
descr() {
    case $1 in
        vmguard) echo "AF_PACKET+sendmmsg, qdisc bypass, 40-byte SYN" ;;
        vmguard-raw) echo "raw IPv4 socket+sendmmsg, 40-byte SYN" ;;
        vmguard-opts) echo "AF_PACKET+sendmmsg, 60-byte SYN with Linux options" ;;
        hping3) echo "hping3 -S --flood --rand-source, 40-byte SYN" ;;
        trafgen) echo "trafgen TX ring, 40-byte SYN, random source" ;;
    esac
}
for tool in "${TOOLS[@]}"; do
    awk -v t="$tool" -v p="${MED[$tool]}" -v h="${MED[hping3]}" -v g="${MED[trafgen]}" -v r="${RESULTS[$tool]}" \
        'BEGIN { printf "%-14s %12d %10.2f %10.2f  %s\n", t, p, (h ? p / h : 0), (g ? p / g : 0), r }'
done
echo
for tool in "${TOOLS[@]}"; do echo "  $tool: $(descr "$tool")"; done
