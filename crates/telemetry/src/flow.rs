//! Handshake and flow accounting per guest, from the host side of its link.
//!
//! Volume counters cannot tell a flood from a flash crowd or a victim from its attacker; the shape of the
//! traffic can. For every guest this source counts, in both directions: SYNs, SYN-ACKs, the ACKs that
//! complete a handshake, resets, FINs, ICMP destination-unreachable, UDP datagrams, and per sampling
//! round the number of distinct remote addresses and of distinct flows (5-tuples) in a HyperLogLog
//! sketch (bounded memory whatever a flood spoofs).
//!
//! Direction is named from the guest's side: `_in` is what the guest receives, `_out` what it sends.
//!
//! Two halves:
//! - [`FlowAccounting`], pure: frames in, counters out. Tested on crafted frames and fuzzed with
//!   arbitrary bytes (property tests: no panic, bounded tracker).
//! - `FlowCapture` (feature `sources`): a packet socket on the guest's tap or veth, opened inside its
//!   namespace, with a classic BPF filter ([`filter_program`]) that hands user space only the headers
//!   of the packets that matter (TCP with SYN, FIN or RST; TCP without payload, where handshakes
//!   complete; UDP; ICMP). Bulk data never leaves the kernel. A reader thread drains it continuously;
//!   the kernel's drop count and the thread's own CPU time are counters too, so the cost is measured
//!   where it is paid and a lost packet is never silently a zero.
//!
//! Why not nftables counters: the netdev family sees each packet but cannot tell the ACK that completes
//! a handshake from any other ACK without conntrack, and cannot count distinct addresses without a set
//! that grows with the flood. Why not tc: this kernel has no tc classifiers (see lab-facts.md).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;

use etherparse::{LaxNetSlice, LaxSlicedPacket, TransportSlice};

/// The counters of one guest, in emission order (all cumulative).
pub const FLOW_COUNTERS: [&str; 32] = [
    "syn_in",
    "syn_out",
    "synack_in",
    "synack_out",
    // Handshakes the remote opened to the guest and completed (the guest answered with a SYN-ACK).
    "handshakes_in",
    // Handshakes the guest opened and completed.
    "handshakes_out",
    // Handshakes the remote opened to the guest that never completed: no SYN-ACK, or no ACK to it,
    // within 2 to 3 rounds of the last SYN (a client's retransmitted SYN keeps its handshake alive).
    "handshakes_failed_in",
    // Handshakes the guest opened that never completed (or that it reset after the SYN-ACK).
    "handshakes_failed_out",
    // Handshakes begun, counted at their first SYN (a retransmitted SYN is not a new one): begun minus
    // completed is what failed, without waiting for the table to give up on them.
    "handshakes_new_in",
    "handshakes_new_out",
    // SYNs repeating a handshake's SYN within the same round: faster than any retransmission (TCP's
    // first retransmission timeout is 1 s), so a flood reusing one connection's addresses and ports.
    "syn_repeats_in",
    "syn_repeats_out",
    "rst_in",
    "rst_out",
    "fin_in",
    "fin_out",
    "icmp_unreach_in",
    "icmp_unreach_out",
    "udp_in",
    "udp_out",
    // Sum over rounds of the distinct remote addresses of the round (its rate is the mean per second).
    "remote_addrs_in",
    "remote_addrs_out",
    // Sum over rounds of the distinct flows (protocol, addresses, ports) of the round.
    "flows_in",
    "flows_out",
    // The same for UDP alone (a benign UDP sender or server keeps few flows; a flood varies its ports).
    "udp_flows_in",
    "udp_flows_out",
    // Frames the accounting saw, and those it could not parse (truncated, other protocols).
    "frames",
    "frames_unparsed",
    // SYNs not tracked because the handshake table was full: counted as failed (only a flood fills it).
    "handshakes_untracked",
    // Frames the kernel dropped because the reader fell behind (PACKET_STATISTICS).
    "capture_drops",
    // CPU time of the reader thread, nanoseconds.
    "capture_cpu_ns",
    // Frames the packet socket delivered to user space.
    "capture_frames",
];

const SYN_IN: usize = 0;
const SYNACK_IN: usize = 2;
const HANDSHAKES_IN: usize = 4;
const FAILED_IN: usize = 6;
const NEW_IN: usize = 8;
const REPEATS_IN: usize = 10;
const RST_IN: usize = 12;
const FIN_IN: usize = 14;
const ICMP_UNREACH_IN: usize = 16;
const UDP_IN: usize = 18;
const ADDRS_IN: usize = 20;
const FLOWS_IN: usize = 22;
const UDP_FLOWS_IN: usize = 24;
const FRAMES: usize = 26;
const UNPARSED: usize = 27;
const UNTRACKED: usize = 28;
pub(crate) const CAPTURE_DROPS: usize = 29;
pub(crate) const CAPTURE_CPU: usize = 30;
pub(crate) const CAPTURE_FRAMES: usize = 31;

/// Which way a frame crossed the guest's link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The guest receives it.
    In,
    /// The guest sent it.
    Out,
}

impl Direction {
    fn offset(self) -> usize {
        match self {
            Direction::In => 0,
            Direction::Out => 1,
        }
    }
}

/// Most handshakes in progress per generation of the table. Three generations of one round each, so
/// the table holds at most three times this (about 6 MiB per guest, reached only under a flood) and a
/// handshake has two to three rounds after its last SYN to complete: a client whose SYN a full listen
/// queue dropped retransmits it after 1 s, then 2 s, which keeps it alive.
pub const HANDSHAKE_TABLE: usize = 32_768;

/// Generations of the handshake table.
const GENERATIONS: usize = 3;

/// A handshake in progress: the direction its SYN travelled, and whether the responder answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Handshake {
    syn_dir: Direction,
    answered: bool,
    /// The round of its last SYN.
    syn_round: u64,
}

/// Relative error of the distinct-count sketches (2^9 registers of one byte each).
const SKETCH_ERROR: f64 = 0.05;

/// One TCP connection as (initiator address, initiator port, responder address, responder port).
type HandshakeKey = (IpAddr, u16, IpAddr, u16);

/// The handshake table's hasher: seeded at random per process, since a flood chooses the keys (a fixed
/// hash would let it aim at one bucket), and several times faster than the standard SipHash, which
/// measured at a third of the per-frame cost (`cargo bench -p telemetry --bench flow`).
type TableHasher = foldhash::fast::RandomState;

/// The sketches' hasher: fixed, so a count does not depend on the run; the sketch is fed 64-bit hashes
/// directly (the crate's own SipHash cost as much as the rest of the accounting).
fn sketch_hash<T: Hash>(v: &T) -> u64 {
    foldhash::quality::FixedState::with_seed(0x766d_6775_6172_6400).hash_one(v)
}

/// One guest's handshake and flow counters.
#[derive(Debug, Clone)]
pub struct FlowAccounting {
    counts: [u64; FLOW_COUNTERS.len()],
    /// Handshakes in progress, by generation (see [`HANDSHAKE_TABLE`]).
    pending: [HashMap<HandshakeKey, Handshake, TableHasher>; GENERATIONS],
    current: usize,
    /// Rounds closed so far.
    round: u64,
    addrs: [hyperloglog::HyperLogLog; 2],
    flows: [hyperloglog::HyperLogLog; 2],
    udp_flows: [hyperloglog::HyperLogLog; 2],
}

impl Default for FlowAccounting {
    fn default() -> Self {
        Self::new()
    }
}

impl FlowAccounting {
    pub fn new() -> Self {
        // Fed hashes directly (`sketch_hash`): the crate's own seed is never used.
        let sketch = || hyperloglog::HyperLogLog::new_deterministic(SKETCH_ERROR, 0);
        FlowAccounting {
            counts: [0; FLOW_COUNTERS.len()],
            pending: std::array::from_fn(|_| HashMap::with_hasher(TableHasher::default())),
            current: 0,
            round: 0,
            addrs: [sketch(), sketch()],
            flows: [sketch(), sketch()],
            udp_flows: [sketch(), sketch()],
        }
    }

    /// Account one Ethernet frame (possibly cut to its headers) that crossed the link in `dir`.
    pub fn observe(&mut self, dir: Direction, frame: &[u8]) {
        self.counts[FRAMES] += 1;
        if !self.account(dir, frame) {
            self.counts[UNPARSED] += 1;
        }
    }

    fn account(&mut self, dir: Direction, frame: &[u8]) -> bool {
        let Ok(p) = LaxSlicedPacket::from_ethernet(frame) else { return false };
        let (src, dst, first_fragment) = match &p.net {
            Some(LaxNetSlice::Ipv4(ip)) => {
                let h = ip.header();
                (IpAddr::V4(h.source_addr()), IpAddr::V4(h.destination_addr()), h.fragments_offset().value() == 0)
            }
            Some(LaxNetSlice::Ipv6(ip)) => {
                let h = ip.header();
                (IpAddr::V6(h.source_addr()), IpAddr::V6(h.destination_addr()), true)
            }
            _ => return false,
        };
        let remote = if dir == Direction::In { src } else { dst };
        let d = dir.offset();
        self.addrs[d].insert_by_hash_value(sketch_hash(&remote));
        let (proto, sport, dport) = match &p.transport {
            Some(TransportSlice::Tcp(tcp)) => {
                let (sp, dp) = (tcp.source_port(), tcp.destination_port());
                let (syn, ack, rst, fin) = (tcp.syn(), tcp.ack(), tcp.rst(), tcp.fin());
                if syn && !ack {
                    self.counts[SYN_IN + d] += 1;
                    self.syn((src, sp, dst, dp), dir);
                } else if syn && ack {
                    self.counts[SYNACK_IN + d] += 1;
                    // The SYN-ACK's receiver is the initiator.
                    self.syn_ack((dst, dp, src, sp), dir);
                }
                if rst {
                    self.counts[RST_IN + d] += 1;
                    self.reset(src, sp, dst, dp);
                }
                if fin {
                    self.counts[FIN_IN + d] += 1;
                }
                if ack && !syn && !rst {
                    self.complete((src, sp, dst, dp), dir);
                }
                (6u8, sp, dp)
            }
            Some(TransportSlice::Udp(udp)) => {
                self.counts[UDP_IN + d] += 1;
                (17, udp.source_port(), udp.destination_port())
            }
            Some(TransportSlice::Icmpv4(icmp)) => {
                if icmp.type_u8() == 3 {
                    self.counts[ICMP_UNREACH_IN + d] += 1;
                }
                (1, 0, 0)
            }
            Some(TransportSlice::Icmpv6(icmp)) => {
                if icmp.type_u8() == 1 {
                    self.counts[ICMP_UNREACH_IN + d] += 1;
                }
                (58, 0, 0)
            }
            // A later fragment has no transport header: still a flow of its addresses.
            _ if !first_fragment => (0, 0, 0),
            _ => return false,
        };
        let flow = sketch_hash(&(proto, src, sport, dst, dport));
        self.flows[d].insert_by_hash_value(flow);
        if proto == 17 {
            self.udp_flows[d].insert_by_hash_value(flow);
        }
        true
    }

    /// Where a handshake is, if it is in progress: (generation, state).
    fn find(&self, key: &HandshakeKey) -> Option<(usize, Handshake)> {
        self.pending.iter().enumerate().find_map(|(g, t)| t.get(key).map(|h| (g, *h)))
    }

    /// Put a handshake in the current generation (moving it there if it was in an older one).
    fn keep(&mut self, key: HandshakeKey, h: Handshake, from: Option<usize>) {
        match from {
            Some(g) => {
                self.pending[g].remove(&key);
            }
            None => self.counts[NEW_IN + h.syn_dir.offset()] += 1,
        }
        let t = &mut self.pending[self.current];
        if t.len() >= HANDSHAKE_TABLE {
            self.counts[UNTRACKED] += 1;
            self.counts[FAILED_IN + h.syn_dir.offset()] += 1;
        } else {
            t.insert(key, h);
        }
    }

    /// A SYN from the initiator: a new handshake, or a retransmission that keeps one alive.
    fn syn(&mut self, key: HandshakeKey, dir: Direction) {
        let found = self.find(&key);
        let h = match found {
            Some((_, h)) => {
                if h.syn_round == self.round {
                    self.counts[REPEATS_IN + dir.offset()] += 1;
                }
                Handshake { syn_round: self.round, ..h }
            }
            None => Handshake { syn_dir: dir, answered: false, syn_round: self.round },
        };
        self.keep(key, h, found.map(|(g, _)| g));
    }

    /// A SYN-ACK from the responder (travelling `dir`); a handshake whose SYN was not seen starts here.
    fn syn_ack(&mut self, key: HandshakeKey, dir: Direction) {
        let syn_dir = if dir == Direction::In { Direction::Out } else { Direction::In };
        let found = self.find(&key);
        let syn_round = found.map_or(self.round, |(_, h)| h.syn_round);
        self.keep(key, Handshake { syn_dir, answered: true, syn_round }, found.map(|(g, _)| g));
    }

    /// A reset from `src`: from the initiator it aborts its handshake (failed: e.g. a kernel resetting
    /// the SYN-ACK of a SYN it never sent); from the responder it refuses the SYN (a closed port:
    /// counted as a reset, not as a failed handshake).
    fn reset(&mut self, src: IpAddr, sp: u16, dst: IpAddr, dp: u16) {
        if let Some((g, h)) = self.find(&(src, sp, dst, dp)) {
            self.pending[g].remove(&(src, sp, dst, dp));
            self.counts[FAILED_IN + h.syn_dir.offset()] += 1;
        } else if let Some((g, _)) = self.find(&(dst, dp, src, sp)) {
            self.pending[g].remove(&(dst, dp, src, sp));
        }
    }

    /// An ACK from the initiator: completes its handshake if the responder had answered.
    fn complete(&mut self, key: HandshakeKey, dir: Direction) {
        if let Some((g, h)) = self.find(&key)
            && h.answered
            && h.syn_dir == dir
        {
            self.pending[g].remove(&key);
            // The ACK goes to the guest: the remote opened the connection (handshakes_in).
            self.counts[HANDSHAKES_IN + dir.offset()] += 1;
        }
    }

    /// Close a sampling round: the distinct counts of the round are added to their sums and the
    /// sketches start afresh; handshakes with no news for two to three rounds have failed.
    pub fn end_round(&mut self) {
        for d in 0..2 {
            self.counts[ADDRS_IN + d] += self.addrs[d].len().round() as u64;
            self.counts[FLOWS_IN + d] += self.flows[d].len().round() as u64;
            self.counts[UDP_FLOWS_IN + d] += self.udp_flows[d].len().round() as u64;
            self.udp_flows[d].clear();
            self.addrs[d].clear();
            self.flows[d].clear();
        }
        self.round += 1;
        self.current = (self.current + 1) % GENERATIONS;
        for h in self.pending[self.current].values() {
            self.counts[FAILED_IN + h.syn_dir.offset()] += 1;
        }
        self.pending[self.current].clear();
    }

    /// Handshakes in progress.
    pub fn pending(&self) -> usize {
        self.pending.iter().map(|g| g.len()).sum()
    }

    /// Counters in [`FLOW_COUNTERS`] order.
    pub fn counts(&self) -> &[u64; FLOW_COUNTERS.len()] {
        &self.counts
    }

    /// Add to a counter the accounting does not compute itself (capture drops and CPU).
    pub(crate) fn add(&mut self, counter: usize, v: u64) {
        self.counts[counter] = self.counts[counter].saturating_add(v);
    }
}

/// Bytes of each frame the filter hands to user space: Ethernet, the largest IPv4 header (or IPv6's
/// fixed one) and the largest TCP header.
pub const SNAPLEN: u32 = 14 + 60 + 60;

/// One classic BPF instruction, as `struct sock_filter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct BpfInsn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

// Classic BPF opcodes (linux/filter.h).
const LD_H_ABS: u16 = 0x28;
const LD_B_ABS: u16 = 0x30;
const LD_B_IND: u16 = 0x50;
const LDX_B_MSH: u16 = 0xb1;
const JEQ_K: u16 = 0x15;
const JEQ_X: u16 = 0x1d;
const JSET_K: u16 = 0x45;
const AND_K: u16 = 0x54;
const RSH_K: u16 = 0x74;
const ADD_X: u16 = 0x0c;
const TAX: u16 = 0x07;
const RET_K: u16 = 0x06;

/// The capture filter: accept (cut to [`SNAPLEN`]) IPv4 and IPv6 frames that are TCP with SYN, FIN or
/// RST, TCP without payload (the handshake's last ACK, ACK floods), UDP or ICMP; reject the rest,
/// bulk TCP data above all, so it never leaves the kernel. Untagged Ethernet, as taps and veths carry.
pub fn filter_program() -> Vec<BpfInsn> {
    // Built with symbolic jump targets: `J(code, k, then, else)` with labels resolved below.
    #[derive(Clone, Copy)]
    enum I {
        S(u16, u32),
        J(u16, u32, L, L),
        Label(L),
    }
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum L {
        Next,
        Ipv4Tcp,
        Ipv6,
        Ipv6Tcp,
        Accept,
        Reject,
    }
    use I::*;
    use L::*;
    let tcp_flags = 0x07; // FIN | SYN | RST
    let prog = [
        S(LD_H_ABS, 12), // ethertype
        J(JEQ_K, 0x0800, Next, Ipv6),
        S(LD_B_ABS, 23), // IPv4 protocol
        J(JEQ_K, 6, Ipv4Tcp, Next),
        J(JEQ_K, 17, Accept, Next),
        J(JEQ_K, 1, Accept, Reject),
        Label(Ipv4Tcp),
        S(LD_H_ABS, 20),                 // flags and fragment offset
        J(JSET_K, 0x1fff, Reject, Next), // a later fragment: no TCP header
        S(LDX_B_MSH, 14),                // X = IPv4 header length
        S(LD_B_IND, 14 + 13),            // TCP flags
        J(JSET_K, tcp_flags, Accept, Next),
        S(LD_B_IND, 14 + 12), // TCP data offset
        S(AND_K, 0xf0),
        S(RSH_K, 2), // TCP header length
        S(ADD_X, 0), // + IPv4 header length
        S(TAX, 0),
        S(LD_H_ABS, 16),             // IPv4 total length
        J(JEQ_X, 0, Accept, Reject), // no payload
        Label(Ipv6),
        J(JEQ_K, 0x86dd, Next, Reject),
        S(LD_B_ABS, 20), // next header
        J(JEQ_K, 6, Ipv6Tcp, Next),
        J(JEQ_K, 17, Accept, Next),
        J(JEQ_K, 58, Accept, Reject),
        Label(Ipv6Tcp),
        S(LD_B_ABS, 14 + 40 + 13),
        J(JSET_K, tcp_flags, Accept, Next),
        S(LD_B_ABS, 14 + 40 + 12),
        S(AND_K, 0xf0),
        S(RSH_K, 2),
        S(TAX, 0),
        S(LD_H_ABS, 18), // IPv6 payload length
        J(JEQ_X, 0, Accept, Reject),
        Label(Accept),
        S(RET_K, SNAPLEN),
        Label(Reject),
        S(RET_K, 0),
    ];
    // Resolve labels to instruction indices.
    let mut at = Vec::new();
    let mut n = 0usize;
    for i in &prog {
        match i {
            Label(l) => at.push((*l, n)),
            _ => n += 1,
        }
    }
    let target = |l: L, here: usize| -> u8 {
        let to = if l == Next { here + 1 } else { at.iter().find(|(x, _)| *x == l).expect("label defined").1 };
        u8::try_from(to - here - 1).expect("forward jump within 255")
    };
    let mut out = Vec::with_capacity(n);
    for i in prog {
        match i {
            S(code, k) => out.push(BpfInsn { code, jt: 0, jf: 0, k }),
            J(code, k, t, f) => {
                let here = out.len();
                out.push(BpfInsn { code, jt: target(t, here), jf: target(f, here), k });
            }
            Label(_) => {}
        }
    }
    out
}

#[cfg(feature = "sources")]
pub use capture::FlowCapture;

#[cfg(feature = "sources")]
mod capture {
    //! The packet socket and its reader thread.

    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::thread::JoinHandle;

    use super::{CAPTURE_CPU, CAPTURE_DROPS, CAPTURE_FRAMES, Direction, FLOW_COUNTERS, FlowAccounting};
    use crate::TelemetryError;
    use crate::sample::{Emit, Kind, NameCache, Sample, SourceId};

    /// The receive ring (TPACKET_V3): blocks the kernel fills with filtered frames and hands over
    /// whole, so the reader makes no system call and no copy per frame. With `recvmmsg` (batches of
    /// 64, drained every 20 ms) the reader's thread spent 1.9 to 2.8 us of CPU per frame at the
    /// default flood (`scripts/flow-cost.sh`, 7 to 9% of a core), most of it dequeuing and copying
    /// each frame; from the ring, 0.9 us (3%). The ring holds about a second of the flood's headers.
    const RING_BLOCK: u32 = 1 << 18;
    const RING_BLOCKS: u32 = 32;
    /// Frame slot for the kernel's bookkeeping; TPACKET_V3 packs frames by their real size.
    const RING_FRAME: u32 = 2048;
    /// A block that is not full is handed over after this long, so a quiet link is still read
    /// promptly (and a round never waits on a half-filled block for long).
    const RING_BLOCK_TIMEOUT_MS: u32 = 20;
    /// How long the reader waits for a block before looking at its stop flag again.
    const POLL_MS: libc::c_int = 200;

    /// A started capture: what the reader shares, its thread, and the namespace inode it was opened in.
    type Running = (Arc<Shared>, JoinHandle<()>, Option<u64>);

    struct Shared {
        acct: Mutex<FlowAccounting>,
        stop: AtomicBool,
    }

    /// Handshake and flow accounting of one guest's link (see the module docs).
    pub struct FlowCapture {
        guest: Arc<str>,
        iface: crate::Iface,
        running: Option<Running>,
        names: NameCache,
        /// Counters carried over from captures that were restarted (a recreated namespace).
        carried: [u64; FLOW_COUNTERS.len()],
    }

    impl FlowCapture {
        /// Account the traffic of `iface` (opened on the first round).
        pub fn new(guest: &str, iface: &crate::Iface) -> Self {
            FlowCapture {
                guest: guest.into(),
                iface: iface.clone(),
                running: None,
                names: NameCache::new(),
                carried: [0; FLOW_COUNTERS.len()],
            }
        }

        fn start(&self) -> Result<Running, TelemetryError> {
            let name = self.iface.name.clone();
            let open = move || open_socket(&name);
            let (ring, inode) = match &self.iface.netns {
                None => (open()?, None),
                Some(ns) => (netns::run_in(ns, open)??, netns::inode(ns)),
            };
            let shared = Arc::new(Shared { acct: Mutex::new(FlowAccounting::new()), stop: AtomicBool::new(false) });
            let reader = Arc::clone(&shared);
            let guest_side = self.iface.guest_side;
            let thread = std::thread::Builder::new()
                .name(format!("flow-{}", self.guest))
                .spawn(move || read_loop(&ring, &reader, guest_side))
                .map_err(|e| TelemetryError::read("flow capture thread", e))?;
            Ok((shared, thread, inode))
        }

        fn stop(&mut self) {
            if let Some((shared, thread, _)) = self.running.take() {
                shared.stop.store(true, Ordering::Relaxed);
                let _ = thread.join();
                let acct = shared.acct.lock().unwrap_or_else(|p| p.into_inner());
                for (c, v) in self.carried.iter_mut().zip(acct.counts()) {
                    *c += v;
                }
            }
        }
    }

    impl Drop for FlowCapture {
        fn drop(&mut self) {
            self.stop();
        }
    }

    impl crate::Source for FlowCapture {
        fn id(&self) -> SourceId {
            SourceId::Flow
        }

        fn guest(&self) -> &str {
            &self.guest
        }

        fn sample(&mut self, time_ns: i64, out: &mut Vec<Sample>) -> Result<(), TelemetryError> {
            // A namespace deleted and made again under the same name: the socket watches the old one.
            let current = self.iface.netns.as_deref().and_then(netns::inode);
            let stale = self.running.as_ref().is_some_and(|(_, t, ino)| *ino != current || t.is_finished());
            if stale {
                self.stop();
            }
            if self.running.is_none() {
                self.running = Some(self.start()?);
            }
            let (shared, _, _) = self.running.as_ref().expect("just started");
            let counts = {
                let mut acct = shared.acct.lock().unwrap_or_else(|p| p.into_inner());
                acct.end_round();
                *acct.counts()
            };
            let mut emit = Emit::new(out, &self.guest, SourceId::Flow, time_ns).with_names(&mut self.names);
            for (i, name) in FLOW_COUNTERS.iter().enumerate() {
                emit.push(*name, counts[i] + self.carried[i], Kind::Counter);
            }
            Ok(())
        }
    }

    fn os_err(what: &str) -> TelemetryError {
        TelemetryError::read(what, std::io::Error::last_os_error())
    }

    /// A packet socket on `iface` (in the calling thread's namespace) with the filter attached before
    /// it is bound, so no unfiltered frame is ever queued, and its receive ring mapped.
    fn open_socket(iface: &str) -> Result<Ring, TelemetryError> {
        let protocol = (libc::ETH_P_ALL as u16).to_be() as libc::c_int;
        // SAFETY: plain socket(2); the descriptor is owned at once.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, protocol) };
        if raw < 0 {
            let e = std::io::Error::last_os_error();
            return Err(TelemetryError::read(
                format!("packet socket for {iface} (needs CAP_NET_RAW: run as root or grant the capability)"),
                e,
            ));
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let prog = super::filter_program();
        let fprog = libc::sock_fprog { len: prog.len() as u16, filter: prog.as_ptr() as *mut libc::sock_filter };
        let set = |level, opt, val: *const libc::c_void, len: usize| {
            // SAFETY: `val` points at `len` valid bytes for the duration of the call.
            unsafe { libc::setsockopt(fd.as_raw_fd(), level, opt, val, len as libc::socklen_t) }
        };
        if set(libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, (&raw const fprog).cast(), std::mem::size_of_val(&fprog)) < 0 {
            return Err(os_err("SO_ATTACH_FILTER on the flow capture socket"));
        }
        let version = libc::tpacket_versions::TPACKET_V3 as libc::c_int;
        if set(libc::SOL_PACKET, libc::PACKET_VERSION, (&raw const version).cast(), 4) < 0 {
            return Err(os_err("PACKET_VERSION (TPACKET_V3) on the flow capture socket"));
        }
        let req = libc::tpacket_req3 {
            tp_block_size: RING_BLOCK,
            tp_block_nr: RING_BLOCKS,
            tp_frame_size: RING_FRAME,
            tp_frame_nr: RING_BLOCK / RING_FRAME * RING_BLOCKS,
            tp_retire_blk_tov: RING_BLOCK_TIMEOUT_MS,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        if set(libc::SOL_PACKET, libc::PACKET_RX_RING, (&raw const req).cast(), std::mem::size_of_val(&req)) < 0 {
            return Err(os_err("PACKET_RX_RING on the flow capture socket"));
        }
        let cname =
            std::ffi::CString::new(iface).map_err(|_| TelemetryError::parse(iface, "interface name with NUL"))?;
        // SAFETY: a valid C string.
        let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if index == 0 {
            return Err(TelemetryError::read(format!("interface {iface}"), std::io::Error::last_os_error()));
        }
        // SAFETY: zeroed sockaddr_ll is a valid value; fields set below.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = protocol as u16;
        sll.sll_ifindex = index as i32;
        // SAFETY: `sll` is a valid sockaddr_ll of the given size.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const sll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(os_err(&format!("bind the flow capture socket to {iface}")));
        }
        Ring::map(fd)
    }

    /// The socket and its mapped receive ring.
    struct Ring {
        fd: OwnedFd,
        base: std::ptr::NonNull<u8>,
    }

    // SAFETY: the mapping is owned by this value alone and only its reader thread touches it.
    unsafe impl Send for Ring {}

    impl Ring {
        const LEN: usize = (RING_BLOCK as usize) * (RING_BLOCKS as usize);

        fn map(fd: OwnedFd) -> Result<Ring, TelemetryError> {
            // SAFETY: maps the ring the socket just set up, of exactly its size; checked below.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    Self::LEN,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    fd.as_raw_fd(),
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                return Err(os_err("mmap of the flow capture ring"));
            }
            let base = std::ptr::NonNull::new(p.cast::<u8>()).ok_or_else(|| os_err("mmap returned null"))?;
            Ok(Ring { fd, base })
        }

        /// Block `i`'s status word, shared with the kernel.
        fn status(&self, i: usize) -> &std::sync::atomic::AtomicU32 {
            let off = i * RING_BLOCK as usize + std::mem::offset_of!(libc::tpacket_block_desc, hdr);
            // SAFETY: inside the mapping, 4-byte aligned (block starts are page aligned), and the
            // kernel only ever writes it as a whole word.
            unsafe { &*self.base.as_ptr().add(off).cast::<std::sync::atomic::AtomicU32>() }
        }

        /// The frames of block `i` (handed to user space): (`sll_pkttype`, frame bytes) each.
        fn frames(&self, i: usize) -> impl Iterator<Item = (u8, &[u8])> {
            let block = i * RING_BLOCK as usize;
            // SAFETY: the block belongs to user space until handed back; the header is in it.
            let bh = unsafe {
                std::ptr::read_unaligned(
                    self.base
                        .as_ptr()
                        .add(block + std::mem::offset_of!(libc::tpacket_block_desc, hdr))
                        .cast::<libc::tpacket_hdr_v1>(),
                )
            };
            let end = block + RING_BLOCK as usize;
            let mut off = block + bh.offset_to_first_pkt as usize;
            let mut left = bh.num_pkts;
            let sll_at = (std::mem::size_of::<libc::tpacket3_hdr>() + 15) & !15;
            std::iter::from_fn(move || {
                if left == 0 || off + sll_at + std::mem::size_of::<libc::sockaddr_ll>() > end {
                    return None;
                }
                left -= 1;
                // SAFETY: `off` is a frame header inside this block (checked against its end).
                let h = unsafe { std::ptr::read_unaligned(self.base.as_ptr().add(off).cast::<libc::tpacket3_hdr>()) };
                let sll = unsafe {
                    std::ptr::read_unaligned(self.base.as_ptr().add(off + sll_at).cast::<libc::sockaddr_ll>())
                };
                // Kept inside the block whatever the header says (the kernel's are sane, but a
                // pointer past the mapping is never formed).
                let start = (off + h.tp_mac as usize).min(end);
                let len = (h.tp_snaplen as usize).min(end - start);
                // SAFETY: `start..start + len` lies inside the block.
                let frame = unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(start), len) };
                off = if h.tp_next_offset == 0 { end } else { off + h.tp_next_offset as usize };
                Some((sll.sll_pkttype, frame))
            })
        }
    }

    impl Drop for Ring {
        fn drop(&mut self) {
            // SAFETY: the mapping made in `map`, unmapped once.
            unsafe { libc::munmap(self.base.as_ptr().cast(), Self::LEN) };
        }
    }

    fn thread_cpu_ns() -> u64 {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: valid out-pointer.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    }

    /// Kernel drops since the last call (PACKET_STATISTICS resets on read).
    fn kernel_drops(fd: &OwnedFd) -> u64 {
        let mut st = libc::tpacket_stats { tp_packets: 0, tp_drops: 0 };
        let mut len = std::mem::size_of_val(&st) as libc::socklen_t;
        // SAFETY: valid out-pointers of the stated size.
        let r = unsafe {
            libc::getsockopt(fd.as_raw_fd(), libc::SOL_PACKET, libc::PACKET_STATISTICS, (&raw mut st).cast(), &mut len)
        };
        if r < 0 { 0 } else { u64::from(st.tp_drops) }
    }

    /// Read the ring until told to stop: each block the kernel hands over into the accounting, then
    /// back to the kernel.
    fn read_loop(ring: &Ring, shared: &Shared, guest_side: bool) {
        let mut cpu_seen = thread_cpu_ns();
        let mut next = 0usize;
        while !shared.stop.load(Ordering::Relaxed) {
            let status = ring.status(next);
            if status.load(Ordering::Acquire) & libc::TP_STATUS_USER == 0 {
                let mut pfd =
                    libc::pollfd { fd: ring.fd.as_raw_fd(), events: libc::POLLIN | libc::POLLERR, revents: 0 };
                // SAFETY: one valid pollfd.
                unsafe { libc::poll(&mut pfd, 1, POLL_MS) };
                continue;
            }
            let drops = kernel_drops(&ring.fd);
            let mut acct = shared.acct.lock().unwrap_or_else(|p| p.into_inner());
            let mut frames = 0u64;
            for (pkttype, frame) in ring.frames(next) {
                // On the host side of the link, frames the host sends go to the guest; on the guest's
                // own side (a container's eth0), the other way round.
                let outgoing = pkttype == libc::PACKET_OUTGOING;
                let dir = if outgoing != guest_side { Direction::In } else { Direction::Out };
                acct.observe(dir, frame);
                frames += 1;
            }
            status.store(libc::TP_STATUS_KERNEL, Ordering::Release);
            next = (next + 1) % RING_BLOCKS as usize;
            let cpu = thread_cpu_ns();
            acct.add(CAPTURE_FRAMES, frames);
            acct.add(CAPTURE_DROPS, drops);
            acct.add(CAPTURE_CPU, cpu.saturating_sub(cpu_seen));
            cpu_seen = cpu;
        }
    }
}

#[cfg(test)]
mod tests;
