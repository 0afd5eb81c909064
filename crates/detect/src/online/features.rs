//! Part B's features: per-guest sliding windows of counter deltas from every source, turned into
//! rates, ratios and per-packet normalisations.
//!
//! Input is one [`Tick`] per guest per sampling round (about one a second): the increase of each
//! cumulative counter since the previous round and the interval it covers. Counters are named
//! `source/counter` as the telemetry sources emit them (`netdev/rx_packets`, `snmp/TcpExt.SyncookiesSent`,
//! `kvm/vcpu.exits`, `process/cpu_ns`, ...). [`WindowExtractor`] keeps the last `W` seconds of ticks and
//! gives the feature vector of that window after each tick.
//!
//! Direction: the network counters are read on the host side of the guest's link (its tap or veth), so
//! the host's `rx` is what the guest sent. Features are named from the guest's side: `tx_pps` is what the
//! guest sends.
//!
//! A window's rate of a counter is (sum of its deltas) / (sum of the intervals those deltas cover), so
//! jitter in the sampling period and a missed round do not bias it. A feature is *available* in a
//! window only if every counter it needs was seen there; an unavailable feature is scored as the benign
//! median (it contributes nothing).

use std::collections::VecDeque;

/// The counters features are built from, as `source/counter`. Index = position here.
pub const BASE_COUNTERS: [&str; 58] = [
    // 0..6: the guest's link, host side (host rx = guest tx).
    "netdev/rx_packets",
    "netdev/rx_bytes",
    "netdev/tx_packets",
    "netdev/tx_bytes",
    "netdev/tx_drop",
    "netdev/rx_drop",
    // 6..17: the guest's own TCP stack (vanilla, container).
    "snmp/Tcp.InSegs",
    "snmp/Tcp.OutSegs",
    "snmp/Tcp.RetransSegs",
    "snmp/Tcp.OutRsts",
    "snmp/Tcp.PassiveOpens",
    "snmp/Tcp.ActiveOpens",
    "snmp/Tcp.AttemptFails",
    "snmp/TcpExt.SyncookiesSent",
    "snmp/TcpExt.SyncookiesFailed",
    "snmp/TcpExt.ListenDrops",
    "snmp/TcpExt.ListenOverflows",
    // 17: half-open requests dropped with a full request queue.
    "snmp/TcpExt.TCPReqQFullDrop",
    // 18..21: CPU.
    "process/cpu_ns",
    "cgroup/cpu.usage_ns",
    "process/ctxt_voluntary",
    "process/ctxt_nonvoluntary",
    // 22..27: the hypervisor (KVM statistics; tracepoint counts where statistics are missing).
    "kvm/vcpu.exits",
    "kvm/vcpu.io_exits",
    "kvm/vcpu.irq_injections",
    "tracepoint/kvm_userspace_exit",
    "tracepoint/kvm_msi_set_irq",
    // 27..31: UDP of the guest's own stack (datagrams to closed ports are what a UDP flood leaves).
    "snmp/Udp.InDatagrams",
    "snmp/Udp.NoPorts",
    "snmp/Udp.InErrors",
    "snmp/Udp.RcvbufErrors",
    // 31..47: handshake and flow accounting of the guest's link (telemetry's `flow` source), named
    // from the guest's side: `_in` is what it receives.
    "flow/syn_in",
    "flow/syn_out",
    "flow/synack_in",
    "flow/synack_out",
    "flow/handshakes_in",
    "flow/handshakes_out",
    "flow/rst_in",
    "flow/rst_out",
    "flow/icmp_unreach_in",
    "flow/icmp_unreach_out",
    "flow/udp_in",
    "flow/udp_out",
    "flow/remote_addrs_in",
    "flow/remote_addrs_out",
    "flow/flows_in",
    "flow/flows_out",
    "flow/handshakes_new_in",
    "flow/handshakes_new_out",
    "flow/syn_repeats_in",
    "flow/syn_repeats_out",
    "flow/udp_flows_in",
    "flow/udp_flows_out",
    // 53..58: the Xen domain's own hypercalls (telemetry's `xentrace` source, attributed per domain
    // by the scheduler records): seed 004's event-channel and grant-table operations (notifications
    // and I/O ring pages: what a PV guest's network traffic costs), MMU and vCPU operations, and
    // sched_op (a domain yielding or blocking: idle or waiting for I/O).
    "xentrace/event_channel_op",
    "xentrace/grant_table_op",
    "xentrace/mmuext_op",
    "xentrace/vcpu_op",
    "xentrace/sched_op",
];

/// Index of a `source/counter` in [`BASE_COUNTERS`].
pub fn base_index(source: &str, counter: &str) -> Option<usize> {
    BASE_COUNTERS
        .iter()
        .position(|k| k.len() == source.len() + 1 + counter.len() && k.starts_with(source) && k.ends_with(counter))
}

const RX_PKTS: usize = 2; // host tx = guest rx
const RX_BYTES: usize = 3;
const TX_PKTS: usize = 0;
const TX_BYTES: usize = 1;
const RX_DROP: usize = 4;
const TCP_IN: usize = 6;
const TCP_OUT: usize = 7;
const RETRANS: usize = 8;
const OUT_RSTS: usize = 9;
const PASSIVE: usize = 10;
const ACTIVE: usize = 11;
const ATTEMPT_FAILS: usize = 12;
const COOKIES_FAILED: usize = 14;
const CPU: usize = 18;
const CG_CPU: usize = 19;
const CTX_VOL: usize = 20;
const CTX_NONVOL: usize = 21;
const EXITS: usize = 22;
const IO_EXITS: usize = 23;
const IRQ_INJ: usize = 24;
const TP_USER_EXIT: usize = 25;
const TP_MSI: usize = 26;
const UDP_IN: usize = 27;
const UDP_NOPORTS: usize = 28;
const UDP_INERR: usize = 29;
const SYN_IN: usize = 31;
const SYN_OUT: usize = 32;
const SYNACK_IN: usize = 33;
const SYNACK_OUT: usize = 34;
const HS_IN: usize = 35;
const HS_OUT: usize = 36;
const FL_RST_IN: usize = 37;
const FL_RST_OUT: usize = 38;
const UNREACH_IN: usize = 39;
const UNREACH_OUT: usize = 40;
const FL_UDP_IN: usize = 41;
const FL_UDP_OUT: usize = 42;
const ADDRS_IN: usize = 43;
const ADDRS_OUT: usize = 44;
const FLOWS_IN: usize = 45;
const FLOWS_OUT: usize = 46;
const NEW_IN: usize = 47;
const NEW_OUT: usize = 48;
const REPEATS_IN: usize = 49;
const REPEATS_OUT: usize = 50;
const UDP_FLOWS_IN: usize = 51;
const UDP_FLOWS_OUT: usize = 52;
const HC_EVTCHN: usize = 53;
const HC_GRANT: usize = 54;
const HC_MMUEXT: usize = 55;
const HC_VCPU: usize = 56;
const HC_SCHED: usize = 57;

/// Packets the guest's stack refused: resets sent (SYN or ACK at a closed port or to no connection),
/// UDP to closed ports, invalid SYN cookies (ACKs of no connection at a listener).
/// Benign traffic makes few of them at any load; every flood kind but a SYN flood at a listener makes
/// one per packet (that one is the flow source's failed handshakes). SYN cookies sent, listen drops and
/// full UDP buffers are left out: a flash crowd that overflows a listen queue, or a fast benign UDP
/// stream, makes hundreds of them per second too, so they are symptoms of load, not of a flood.
const REFUSED: &[usize] = &[OUT_RSTS, UDP_NOPORTS, COOKIES_FAILED];

/// How a feature is computed from a window's per-second rates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Expr {
    /// Sum of the counters' rates (events/s).
    Rate(&'static [usize]),
    /// Sum of `num` rates over sum of `den` rates, 0 when `den` is 0 (e.g. bytes per packet).
    PerUnit(&'static [usize], &'static [usize]),
    /// (num + 1) / (den + 1) of rates: a direction ratio defined at zero traffic.
    Ratio(&'static [usize], &'static [usize]),
    /// Nanoseconds per second as CPU cores.
    Cores(usize),
    /// `max(0, sum(a) - sum(b))` of rates (a counter may appear twice): what is left of `a` once `b`
    /// is accounted for (handshakes begun that did not complete).
    Excess(&'static [usize], &'static [usize]),
    /// "Bare" packets/s of one direction: `pkts` small packets (mean size from `bytes`) that got little
    /// data back (`answer_bytes` per packet): `pps * min(1, 200 / size) * min(1, 120 / answer)`. A flood
    /// of any kind (SYN, ACK, UDP; answered by SYN-ACKs, resets or nothing) is bare; web or bulk
    /// traffic is not (big packets one way or the other).
    Bare { pkts: usize, bytes: usize, answer_bytes: usize },
}

/// One feature: a name, how to compute it, and whether the model sees it through `ln(1 + x)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FeatureDef {
    pub name: &'static str,
    pub expr: Expr,
    /// The model input is `ln(1 + value)` (rates spanning orders of magnitude) rather than the value.
    pub log: bool,
    /// Unit for people.
    pub unit: &'static str,
    pub help: &'static str,
    /// Watched by the novelty check: a rate that only floods drive up, whatever their kind. The value
    /// is the smallest benign ceiling (in the feature's unit) the check compares against, so a baseline
    /// that never saw any of it does not alarm on a handful.
    pub novelty_floor: Option<f64>,
    /// Flood shape: a rate of what only unsolicited traffic makes (handshakes that fail, refusals,
    /// repeated SYNs, a spread of UDP flows), not of how much traffic there is. A window alarms only
    /// if one of these is above its benign ceiling (the shape gate, [`crate::online::Novelty`]).
    pub shape: bool,
}

const fn f(name: &'static str, expr: Expr, log: bool, unit: &'static str, help: &'static str) -> FeatureDef {
    FeatureDef { name, expr, log, unit, help, novelty_floor: None, shape: false }
}

/// A flood-shape feature the benign-only novelty check watches (see [`FeatureDef::novelty_floor`]).
const fn nov(name: &'static str, expr: Expr, unit: &'static str, help: &'static str, floor: f64) -> FeatureDef {
    FeatureDef { name, expr, log: true, unit, help, novelty_floor: Some(floor), shape: true }
}

/// A volume feature the novelty check watches (small packets that got little back): a flood of any
/// kind makes them, but so does a fast benign stream of small datagrams, so it is not flood shape.
const fn nov_volume(name: &'static str, expr: Expr, unit: &'static str, help: &'static str, floor: f64) -> FeatureDef {
    FeatureDef { name, expr, log: true, unit, help, novelty_floor: Some(floor), shape: false }
}

/// Every Part B feature. Models pick the subset available for their kind of guest.
pub const FEATURES: [FeatureDef; 59] = [
    f("rx_pps", Expr::Rate(&[RX_PKTS]), true, "packets/s", "packets the guest receives"),
    f("tx_pps", Expr::Rate(&[TX_PKTS]), true, "packets/s", "packets the guest sends"),
    f("rx_bps", Expr::Rate(&[RX_BYTES]), true, "bytes/s", "bytes the guest receives"),
    f("tx_bps", Expr::Rate(&[TX_BYTES]), true, "bytes/s", "bytes the guest sends"),
    f("rx_pkt_size", Expr::PerUnit(&[RX_BYTES], &[RX_PKTS]), true, "bytes", "mean size of received packets"),
    f("tx_pkt_size", Expr::PerUnit(&[TX_BYTES], &[TX_PKTS]), true, "bytes", "mean size of sent packets"),
    f("tx_rx_ratio", Expr::Ratio(&[TX_PKTS], &[RX_PKTS]), true, "ratio", "sent / received packets"),
    f("rx_drop_ps", Expr::Rate(&[RX_DROP]), true, "packets/s", "packets the host could not hand to the guest"),
    f("tcp_in_ps", Expr::Rate(&[TCP_IN]), true, "segments/s", "TCP segments received"),
    f("tcp_out_ps", Expr::Rate(&[TCP_OUT]), true, "segments/s", "TCP segments sent"),
    f("retrans_ps", Expr::Rate(&[RETRANS]), true, "segments/s", "TCP retransmissions (SYN-ACKs to half-open requests)"),
    f("rst_out_ps", Expr::Rate(&[OUT_RSTS]), true, "segments/s", "TCP resets sent"),
    f("opens_ps", Expr::Rate(&[PASSIVE, ACTIVE]), true, "connections/s", "TCP connections established"),
    f(
        "in_segs_per_open",
        Expr::Ratio(&[TCP_IN], &[PASSIVE, ACTIVE]),
        true,
        "ratio",
        "received segments per connection",
    ),
    f("attempt_fails_ps", Expr::Rate(&[ATTEMPT_FAILS]), true, "1/s", "failed connection attempts"),
    f("syncookies_failed_ps", Expr::Rate(&[COOKIES_FAILED]), true, "1/s", "invalid SYN cookies received"),
    // SYN cookies sent and listen drops are not features: a flash crowd overflowing a listen queue
    // makes as many as a flood (they tell load, not attack); failed handshakes tell the flood.
    f("cpu_cores", Expr::Cores(CPU), false, "cores", "CPU of the guest's host process"),
    f("cgroup_cpu_cores", Expr::Cores(CG_CPU), false, "cores", "CPU of the guest's cgroup"),
    f(
        "ctx_per_pkt",
        Expr::PerUnit(&[CTX_VOL, CTX_NONVOL], &[RX_PKTS, TX_PKTS]),
        true,
        "1/packet",
        "context switches per packet",
    ),
    f("exits_per_pkt", Expr::PerUnit(&[EXITS], &[RX_PKTS, TX_PKTS]), true, "1/packet", "VM exits per packet"),
    f("io_exits_ps", Expr::Rate(&[IO_EXITS, TP_USER_EXIT]), true, "1/s", "I/O exits to qemu (virtio kicks)"),
    f(
        "irqs_per_pkt",
        Expr::PerUnit(&[IRQ_INJ, TP_MSI], &[RX_PKTS, TX_PKTS]),
        true,
        "1/packet",
        "interrupts injected per packet",
    ),
    f(
        "cpu_ns_per_pkt",
        Expr::PerUnit(&[CPU], &[RX_PKTS, TX_PKTS]),
        true,
        "ns/packet",
        "CPU of the guest's host process per packet",
    ),
    // Flood-shape features: what any flood does, whatever its protocol and tool.
    f("udp_in_ps", Expr::Rate(&[UDP_IN, UDP_NOPORTS, UDP_INERR]), true, "datagrams/s", "UDP datagrams received"),
    nov(
        "refused_ps",
        Expr::Rate(REFUSED),
        "packets/s",
        "packets refused: resets, UDP to closed ports, SYN cookies, drops",
        50.0,
    ),
    f(
        "refused_per_rx_pkt",
        Expr::PerUnit(REFUSED, &[RX_PKTS]),
        true,
        "1/packet",
        "refused packets per packet received",
    ),
    f(
        "tx_bytes_per_rx_pkt",
        Expr::PerUnit(&[TX_BYTES], &[RX_PKTS]),
        true,
        "bytes/packet",
        "bytes sent per packet received",
    ),
    nov_volume(
        "bare_rx_pps",
        Expr::Bare { pkts: RX_PKTS, bytes: RX_BYTES, answer_bytes: TX_BYTES },
        "packets/s",
        "small packets received that got little data back",
        200.0,
    ),
    nov_volume(
        "bare_tx_pps",
        Expr::Bare { pkts: TX_PKTS, bytes: TX_BYTES, answer_bytes: RX_BYTES },
        "packets/s",
        "small packets sent that got little data back",
        200.0,
    ),
    // The shape of the traffic, from the flow source: handshakes, answers and spread per direction.
    f("syn_in_ps", Expr::Rate(&[SYN_IN]), true, "1/s", "SYNs the guest receives"),
    f("syn_out_ps", Expr::Rate(&[SYN_OUT]), true, "1/s", "SYNs the guest sends"),
    f("synack_in_ps", Expr::Rate(&[SYNACK_IN]), true, "1/s", "SYN-ACKs the guest receives"),
    f("synack_out_ps", Expr::Rate(&[SYNACK_OUT]), true, "1/s", "SYN-ACKs the guest sends"),
    nov(
        "failed_handshakes_in_ps",
        // begun - completed - retried, where retried = SYNs - begun - repeats (a SYN of a known
        // handshake a round or more after the last: a client waiting out a full listen queue).
        Expr::Excess(&[NEW_IN, NEW_IN, REPEATS_IN], &[HS_IN, SYN_IN]),
        "1/s",
        "handshakes begun with the guest that neither completed nor were retried by their client",
        50.0,
    ),
    nov(
        "failed_handshakes_out_ps",
        Expr::Excess(&[NEW_OUT, NEW_OUT, REPEATS_OUT], &[HS_OUT, SYN_OUT]),
        "1/s",
        "handshakes the guest began that neither completed nor were retried",
        50.0,
    ),
    f(
        "completion_in",
        Expr::Ratio(&[HS_IN], &[NEW_IN]),
        false,
        "ratio",
        "share of the handshakes opened to the guest that completed",
    ),
    f(
        "completion_out",
        Expr::Ratio(&[HS_OUT], &[NEW_OUT]),
        false,
        "ratio",
        "share of the handshakes the guest opened that completed",
    ),
    nov(
        "refusals_out_ps",
        Expr::Rate(&[FL_RST_OUT, UNREACH_OUT]),
        "1/s",
        "resets and ICMP unreachables the guest sends (it refuses what it gets)",
        50.0,
    ),
    nov(
        "refusals_in_ps",
        Expr::Rate(&[FL_RST_IN, UNREACH_IN]),
        "1/s",
        "resets and ICMP unreachables the guest receives (what it sends is refused)",
        50.0,
    ),
    f(
        "refusals_out_per_rx_pkt",
        Expr::PerUnit(&[FL_RST_OUT, UNREACH_OUT], &[RX_PKTS]),
        true,
        "1/packet",
        "refusals sent per packet received: a victim's signature",
    ),
    f(
        "starts_out_per_answer_in",
        Expr::Ratio(&[SYN_OUT, FL_UDP_OUT], &[SYNACK_IN, FL_RST_IN, UNREACH_IN, FL_UDP_IN]),
        true,
        "ratio",
        "SYNs and datagrams sent per answer received: an attacker's signature",
    ),
    f("flow_udp_in_ps", Expr::Rate(&[FL_UDP_IN]), true, "datagrams/s", "UDP datagrams the guest receives"),
    f("flow_udp_out_ps", Expr::Rate(&[FL_UDP_OUT]), true, "datagrams/s", "UDP datagrams the guest sends"),
    f("remote_addrs_in", Expr::Rate(&[ADDRS_IN]), true, "addresses", "distinct sources per second"),
    f("remote_addrs_out", Expr::Rate(&[ADDRS_OUT]), true, "addresses", "distinct destinations per second"),
    nov(
        "syn_repeats_in_ps",
        Expr::Rate(&[REPEATS_IN]),
        "1/s",
        "SYNs to the guest repeating a handshake's SYN within a second (faster than any retransmission)",
        50.0,
    ),
    nov(
        "syn_repeats_out_ps",
        Expr::Rate(&[REPEATS_OUT]),
        "1/s",
        "SYNs from the guest repeating a handshake's SYN within a second",
        50.0,
    ),
    // UDP flows one way beyond those the other way: a service answering many clients (DNS) has as
    // many flows out as in; a flood's datagrams get no UDP back.
    nov(
        "unanswered_udp_flows_in",
        Expr::Excess(&[UDP_FLOWS_IN], &[UDP_FLOWS_OUT]),
        "flows",
        "distinct UDP flows received per second beyond those sent (unanswered)",
        50.0,
    ),
    nov(
        "unanswered_udp_flows_out",
        Expr::Excess(&[UDP_FLOWS_OUT], &[UDP_FLOWS_IN]),
        "flows",
        "distinct UDP flows sent per second beyond those received (unanswered)",
        50.0,
    ),
    f("flows_in", Expr::Rate(&[FLOWS_IN]), true, "flows", "distinct flows received per second"),
    f("flows_out", Expr::Rate(&[FLOWS_OUT]), true, "flows", "distinct flows sent per second"),
    f(
        "flows_out_per_flow_in",
        Expr::Ratio(&[FLOWS_OUT], &[FLOWS_IN]),
        true,
        "ratio",
        "distinct flows sent per distinct flow received",
    ),
    // The Xen domain's hypercalls (only a Xen guest has them; models of other kinds leave them out).
    f("hc_event_channel_ps", Expr::Rate(&[HC_EVTCHN]), true, "1/s", "event-channel hypercalls of the domain"),
    f("hc_grant_table_ps", Expr::Rate(&[HC_GRANT]), true, "1/s", "grant-table hypercalls of the domain"),
    f("hc_mmuext_ps", Expr::Rate(&[HC_MMUEXT]), true, "1/s", "MMU extended-operation hypercalls of the domain"),
    f("hc_vcpu_ps", Expr::Rate(&[HC_VCPU]), true, "1/s", "vCPU-operation hypercalls of the domain"),
    f("hc_sched_ps", Expr::Rate(&[HC_SCHED]), true, "1/s", "scheduler hypercalls of the domain (yield, block)"),
    f(
        "hc_event_channel_per_pkt",
        Expr::PerUnit(&[HC_EVTCHN], &[RX_PKTS, TX_PKTS]),
        true,
        "1/packet",
        "event-channel hypercalls per packet (how well notifications are batched)",
    ),
    f(
        "hc_grant_table_per_pkt",
        Expr::PerUnit(&[HC_GRANT], &[RX_PKTS, TX_PKTS]),
        true,
        "1/packet",
        "grant-table hypercalls per packet",
    ),
];

/// Index of a feature by name.
pub fn feature_index(name: &str) -> Option<usize> {
    FEATURES.iter().position(|f| f.name == name)
}

/// Rates of one window: per base counter, `Some(events/s)` if it was seen.
#[derive(Debug, Clone, PartialEq)]
pub struct Rates(pub [Option<f64>; BASE_COUNTERS.len()]);

impl Rates {
    /// A feature's raw value (in its unit), `None` if a counter it needs is missing. For a sum of
    /// alternatives (`Rate(&[a, b])`), at least one must be present.
    pub fn feature(&self, def: &FeatureDef) -> Option<f64> {
        let sum = |cs: &[usize]| -> Option<f64> {
            let present: Vec<f64> = cs.iter().filter_map(|&c| self.0[c]).collect();
            (!present.is_empty()).then(|| present.iter().sum())
        };
        Some(match def.expr {
            Expr::Rate(c) => sum(c)?,
            Expr::PerUnit(a, b) => {
                let (n, d) = (sum(a)?, sum(b)?);
                if d > 0.0 { n / d } else { 0.0 }
            }
            Expr::Ratio(a, b) => (sum(a)? + 1.0) / (sum(b)? + 1.0),
            Expr::Cores(c) => self.0[c]? / 1e9,
            Expr::Excess(a, b) => (sum(a)? - sum(b)?).max(0.0),
            Expr::Bare { pkts, bytes, answer_bytes } => {
                let (p, b, a) = (self.0[pkts]?, self.0[bytes]?, self.0[answer_bytes]?);
                if p <= 0.0 {
                    0.0
                } else {
                    p * (200.0 / (b / p).max(1.0)).min(1.0) * (120.0 / (a / p).max(1.0)).min(1.0)
                }
            }
        })
    }

    /// Whether every counter (or one of the alternatives) a feature needs is present.
    pub fn has(&self, def: &FeatureDef) -> bool {
        self.feature(def).is_some()
    }
}

/// Model input of a raw feature value.
pub fn transform(def: &FeatureDef, raw: f64) -> f64 {
    if def.log { raw.max(0.0).ln_1p() } else { raw }
}

/// One guest's counter increases over one sampling interval.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Tick {
    /// End of the interval, ms since the epoch.
    pub time_ms: i64,
    /// `(base counter index, increase, interval in ms)`.
    pub deltas: Vec<(usize, f64, f64)>,
}

/// One window of one guest: its span and the rates in it.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureWindow {
    pub start_ms: i64,
    pub end_ms: i64,
    pub rates: Rates,
}

impl FeatureWindow {
    /// Raw values of every feature in [`FEATURES`] order.
    pub fn values(&self) -> Vec<Option<f64>> {
        FEATURES.iter().map(|d| self.rates.feature(d)).collect()
    }
}

/// Sliding windows of `window_ms` over one guest's ticks.
#[derive(Debug, Clone)]
pub struct WindowExtractor {
    window_ms: i64,
    ticks: VecDeque<Tick>,
    /// Longest gap between ticks before the window restarts (a collector pause).
    max_gap_ms: i64,
}

impl WindowExtractor {
    /// Windows of `window_ms` (at least 1 ms).
    pub fn new(window_ms: u64) -> Self {
        let window_ms = window_ms.max(1) as i64;
        Self { window_ms, ticks: VecDeque::new(), max_gap_ms: window_ms.max(5_000) }
    }

    /// Adds a tick (ticks must come in time order; an older one is ignored) and returns the window
    /// ending at it once the ticks span at least 90% of the window.
    pub fn push(&mut self, tick: Tick) -> Option<FeatureWindow> {
        if let Some(last) = self.ticks.back() {
            if tick.time_ms <= last.time_ms {
                return None;
            }
            if tick.time_ms - last.time_ms > self.max_gap_ms {
                self.ticks.clear();
            }
        }
        let end = tick.time_ms;
        self.ticks.push_back(tick);
        // Keep ticks whose interval ends within the window.
        while let Some(first) = self.ticks.front() {
            if first.time_ms <= end - self.window_ms {
                self.ticks.pop_front();
            } else {
                break;
            }
        }
        let mut sum = [0.0f64; BASE_COUNTERS.len()];
        let mut span = [0.0f64; BASE_COUNTERS.len()];
        for t in &self.ticks {
            for &(c, d, iv) in &t.deltas {
                if c < sum.len() && iv > 0.0 && d.is_finite() {
                    sum[c] += d.max(0.0);
                    span[c] += iv;
                }
            }
        }
        let covered = span.iter().copied().fold(0.0, f64::max);
        if covered < 0.9 * self.window_ms as f64 {
            return None;
        }
        let mut rates = [None; BASE_COUNTERS.len()];
        for c in 0..rates.len() {
            if span[c] > 0.0 {
                rates[c] = Some(sum[c] * 1000.0 / span[c]);
            }
        }
        Some(FeatureWindow { start_ms: end - self.window_ms, end_ms: end, rates: Rates(rates) })
    }
}

/// One counter increase as telemetry reports it, before it is mapped to a [`BASE_COUNTERS`] entry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CounterDelta<'a> {
    /// When the later reading was taken, unix nanoseconds.
    pub time_ns: i64,
    /// Telemetry source name (`netdev`, `snmp`, ...).
    pub source: &'a str,
    pub counter: &'a str,
    pub delta: u64,
    /// Time between the two readings, nanoseconds.
    pub interval_ns: i64,
}

/// Readings closer than this to the first of their group belong to one sampling round: the sources of
/// a round are read a few milliseconds apart, rounds are at least [`MIN_ROUND_MS`] apart.
pub const ROUND_GAP_MS: i64 = 300;

/// Shortest sampling interval the grouping by [`ROUND_GAP_MS`] supports.
pub const MIN_ROUND_MS: i64 = 2 * ROUND_GAP_MS;

/// One guest's ticks from its counter deltas: the one function that both the live agent (the deltas
/// of one collection round) and training and evaluation (every delta of a recorded run, in time order)
/// use, so what is measured offline is what runs online. Deltas of counters the detector does not use
/// are skipped.
pub fn ticks<'a>(deltas: impl IntoIterator<Item = CounterDelta<'a>>) -> Vec<Tick> {
    let mut out: Vec<Tick> = Vec::new();
    let mut start = i64::MIN;
    for d in deltas {
        let Some(c) = base_index(d.source, d.counter) else { continue };
        let t = d.time_ns.div_euclid(1_000_000);
        let entry = (c, d.delta as f64, d.interval_ns as f64 / 1e6);
        match out.last_mut() {
            Some(tick) if t - start < ROUND_GAP_MS => {
                tick.time_ms = tick.time_ms.max(t);
                tick.deltas.push(entry);
            }
            _ => {
                start = t;
                out.push(Tick { time_ms: t, deltas: vec![entry] });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(t: i64, rx: f64, tx: f64) -> Tick {
        Tick {
            time_ms: t,
            deltas: vec![
                (TX_PKTS, tx, 1000.0),
                (RX_PKTS, rx, 1000.0),
                (TX_BYTES, tx * 60.0, 1000.0),
                (RX_BYTES, rx * 1500.0, 1000.0),
            ],
        }
    }

    #[test]
    fn names_resolve() {
        assert_eq!(base_index("netdev", "rx_packets"), Some(0));
        assert_eq!(base_index("snmp", "TcpExt.SyncookiesFailed"), Some(COOKIES_FAILED));
        assert_eq!(base_index("netdev", "nope"), None);
        assert_eq!(base_index("netde", "v/rx_packets"), None);
        for (i, d) in FEATURES.iter().enumerate() {
            assert_eq!(feature_index(d.name), Some(i));
        }
    }

    #[test]
    fn sliding_window_rates_and_directions() {
        let mut x = WindowExtractor::new(3000);
        assert!(x.push(tick(1000, 10.0, 100.0)).is_none());
        assert!(x.push(tick(2000, 10.0, 100.0)).is_none());
        let w = x.push(tick(3000, 40.0, 100.0)).unwrap();
        assert_eq!((w.start_ms, w.end_ms), (0, 3000));
        let v = w.values();
        assert_eq!(v[0], Some(20.0)); // rx_pps = mean of 10, 10, 40
        assert_eq!(v[1], Some(100.0)); // tx_pps
        assert_eq!(v[4], Some(1500.0));
        assert_eq!(v[5], Some(60.0));
        assert_eq!(v[6], Some(101.0 / 21.0));
        assert_eq!(v[15], None); // no SNMP
        // Slides by one tick.
        let w = x.push(tick(4000, 40.0, 100.0)).unwrap();
        assert_eq!(w.values()[0], Some(30.0));
        // A long gap restarts the window.
        assert!(x.push(tick(20_000, 1.0, 1.0)).is_none());
    }

    #[test]
    fn grouping_rounds() {
        let d = |ms: i64, source: &'static str, counter: &'static str, delta: u64| CounterDelta {
            time_ns: ms * 1_000_000,
            source,
            counter,
            delta,
            interval_ns: 1_000_000_000,
        };
        let t = ticks([
            d(1000, "netdev", "tx_packets", 1),
            d(1001, "netdev", "unknown_counter", 7),
            d(1003, "netdev", "rx_packets", 1),
            d(2001, "netdev", "tx_packets", 2),
        ]);
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].time_ms, 1003);
        let (tx, rx) = (base_index("netdev", "tx_packets").unwrap(), base_index("netdev", "rx_packets").unwrap());
        assert_eq!(t[0].deltas, vec![(tx, 1.0, 1000.0), (rx, 1.0, 1000.0)]);
        assert_eq!(t[1].deltas, vec![(tx, 2.0, 1000.0)]);
    }

    #[test]
    fn a_xen_domains_hypercalls_are_features_and_other_guests_lack_them() {
        let evtchn = base_index("xentrace", "event_channel_op").unwrap();
        let grant = base_index("xentrace", "grant_table_op").unwrap();
        // dom0's hypercalls come under the same guest as `dom0.*`: not the domain's own.
        assert_eq!(base_index("xentrace", "dom0.event_channel_op"), None);
        let mut x = WindowExtractor::new(2000);
        let xen = |t: i64| {
            let mut k = tick(t, 1000.0, 1000.0);
            k.deltas.push((evtchn, 500.0, 1000.0));
            k.deltas.push((grant, 50.0, 1000.0));
            k
        };
        x.push(xen(1000));
        let v = x.push(xen(2000)).unwrap().values();
        let at = |n: &str| v[feature_index(n).unwrap()];
        assert_eq!(at("hc_event_channel_ps"), Some(500.0));
        assert_eq!(at("hc_grant_table_ps"), Some(50.0));
        assert_eq!(at("hc_event_channel_per_pkt"), Some(0.25));
        assert_eq!(at("hc_vcpu_ps"), None);
        // A guest of another kind: unavailable, so its models leave the features out.
        let mut y = WindowExtractor::new(2000);
        y.push(tick(1000, 10.0, 10.0));
        let v = y.push(tick(2000, 10.0, 10.0)).unwrap().values();
        assert_eq!(v[feature_index("hc_event_channel_ps").unwrap()], None);
    }

    #[test]
    fn bare_packets_are_floods_of_any_kind() {
        let bare = |rx: f64, rx_size: f64, tx_bytes: f64| {
            let mut r = [None; BASE_COUNTERS.len()];
            r[RX_PKTS] = Some(rx);
            r[RX_BYTES] = Some(rx * rx_size);
            r[TX_BYTES] = Some(tx_bytes);
            Rates(r).feature(&FEATURES[feature_index("bare_rx_pps").unwrap()]).unwrap()
        };
        // UDP flood (nothing back), SYN flood (a SYN-ACK per SYN): all bare.
        assert_eq!(bare(1000.0, 60.0, 0.0), 1000.0);
        assert_eq!(bare(1000.0, 74.0, 74_000.0), 1000.0);
        // Web requests answered with 1200 bytes each, bulk upload of full frames: mostly not.
        assert!(bare(1000.0, 150.0, 1_200_000.0) < 150.0);
        assert!(bare(1000.0, 1500.0, 33_000.0) < 150.0);
        assert_eq!(bare(0.0, 60.0, 0.0), 0.0);
    }

    #[test]
    fn alternatives_and_zero_denominators() {
        let mut r = [None; BASE_COUNTERS.len()];
        r[PASSIVE] = Some(0.0);
        r[TCP_IN] = Some(9.0);
        let rates = Rates(r);
        assert_eq!(rates.feature(&FEATURES[feature_index("opens_ps").unwrap()]), Some(0.0));
        assert_eq!(rates.feature(&FEATURES[feature_index("in_segs_per_open").unwrap()]), Some(10.0));
        assert_eq!(rates.feature(&FEATURES[feature_index("ctx_per_pkt").unwrap()]), None);
        assert!((transform(&FEATURES[0], std::f64::consts::E - 1.0) - 1.0).abs() < 1e-12);
    }
}
