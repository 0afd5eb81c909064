//! vmguard's flood generator: SYN (to an open or a closed port), ACK and UDP floods at an exact rate
//! (packets/s or bits/s) or unlimited, always bounded in time and count, sent from a named network
//! namespace (the lab's attacker) with `sendmmsg` batches on a raw IPv4 or AF_PACKET socket.
//!
//! Safety first: a flood needs a [`Target`], and only [`TargetPolicy::resolve`] makes one. It accepts
//! the lab's victims (by name or address) and, when the policy allows it, loopback; it refuses
//! everything else before any socket exists.
//!
//! ```no_run
//! use flood::{Flood, FloodConfig, SourceChoice, TargetPolicy, Rate};
//! # fn main() -> Result<(), flood::FloodError> {
//! let policy = TargetPolicy {
//!     lab_targets: vec![("process".into(), "10.213.10.2".parse().unwrap())],
//!     spoof_subnet: "10.213.128.0/17".parse().unwrap(),
//!     lab_network: "10.213.0.0/16".parse().unwrap(),
//!     allow_loopback: false,
//! };
//! let target = policy.resolve("process", SourceChoice::Spoof)?;
//! let config = FloodConfig { netns: Some("vmg-att".into()), rate: Rate::PacketsPerSec(5000), ..Default::default() };
//! let summary = Flood::new(target, config)?.run(|p| eprintln!("{:.0} pps, {} sent", p.pps, p.sent))?;
//! println!("{}", serde_json::to_string(&summary).unwrap());
//! # Ok(()) }
//! ```

mod engine;
pub mod guard;
pub mod rate;
pub mod route;
mod sock;

use std::net::Ipv4Addr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use engine::{Flood, Progress, StopHandle, StopReason, Summary};
pub use guard::{CheckedSource, GuardError, SourceChoice, Target, TargetPolicy};
pub use rate::Rate;
pub use wire::{Number, Port, SynOptions};

/// Longest flood accepted.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
/// Largest packet count accepted.
pub const MAX_COUNT: u64 = 10_000_000_000;
/// Most sending threads accepted.
pub const MAX_THREADS: usize = 64;
/// Largest sendmmsg batch accepted.
pub const MAX_BATCH: usize = 1024;

/// What to flood with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum FloodKind {
    /// TCP SYNs to an open port (default 80): half-open connections, SYN cookies, listen drops.
    #[default]
    Syn,
    /// TCP SYNs to a closed port (default 9): the victim answers every one with a RST.
    SynClosed,
    /// TCP ACKs without a connection (default port 80): lookups and RSTs.
    Ack,
    /// UDP datagrams (default port 9).
    Udp,
}

impl FloodKind {
    pub const ALL: [FloodKind; 4] = [FloodKind::Syn, FloodKind::SynClosed, FloodKind::Ack, FloodKind::Udp];

    /// The kind's name in flags, scenario files and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            FloodKind::Syn => "syn",
            FloodKind::SynClosed => "syn-closed",
            FloodKind::Ack => "ack",
            FloodKind::Udp => "udp",
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            FloodKind::Syn | FloodKind::Ack => 80,
            FloodKind::SynClosed | FloodKind::Udp => 9,
        }
    }
}

impl std::fmt::Display for FloodKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for FloodKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FloodKind::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| {
            let names: Vec<&str> = FloodKind::ALL.iter().map(|k| k.as_str()).collect();
            format!("unknown flood kind `{s}`: use one of {}", names.join(", "))
        })
    }
}

/// How packets leave the namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// AF_PACKET on Ethernet links when the next hop resolves (the faster one measured), raw IPv4
    /// otherwise (loopback, tunnels).
    #[default]
    Auto,
    /// Raw IPv4 socket with IP_HDRINCL: routed by the kernel, through qdiscs and netfilter.
    Raw,
    /// AF_PACKET socket on the egress interface, Ethernet header written here.
    Packet,
}

/// Everything about a flood except its target. Every field has a working default (a 10 s SYN flood
/// at unlimited rate to port 80, in the current namespace).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FloodConfig {
    pub kind: FloodKind,
    /// Destination port; None: the kind's default.
    pub dst_port: Option<u16>,
    pub rate: Rate,
    /// Upper bound on the flood's length (default 10 s, at most [`MAX_DURATION`]).
    pub duration: Duration,
    /// Upper bound on the packets sent (attempts, failed ones included); None: only the duration.
    pub count: Option<u64>,
    /// TCP options of SYNs.
    pub syn_options: SynOptions,
    pub src_port: Port,
    pub seq: Number,
    /// Payload bytes of UDP datagrams.
    pub udp_payload_len: u16,
    pub ttl: u8,
    /// Sending threads (each its own socket and share of the rate and count).
    pub threads: usize,
    pub backend: Backend,
    /// Packets per sendmmsg call.
    pub batch: usize,
    /// With the packet backend: skip the egress qdisc (faster, but also skips any `tc` shaping on the
    /// attacker's link, so it is off by default).
    pub qdisc_bypass: bool,
    /// Network namespace to send from (the lab's attacker); None: the caller's own.
    pub netns: Option<String>,
    /// How often the progress callback runs.
    pub progress_interval: Duration,
}

impl Default for FloodConfig {
    fn default() -> Self {
        FloodConfig {
            kind: FloodKind::Syn,
            dst_port: None,
            rate: Rate::Unlimited,
            duration: Duration::from_secs(10),
            count: None,
            syn_options: SynOptions::LINUX,
            src_port: Port::Random,
            seq: Number::Random,
            udp_payload_len: 64,
            ttl: 64,
            threads: 1,
            backend: Backend::Auto,
            batch: 64,
            qdisc_bypass: false,
            netns: None,
            progress_interval: Duration::from_secs(1),
        }
    }
}

impl FloodConfig {
    /// Refuse missing, zero or absurd bounds and settings.
    pub fn check(&self) -> Result<(), FloodError> {
        let bad = |what: String| Err(FloodError::Config { what });
        if self.duration.is_zero() {
            return bad("duration is zero: give a bound such as 10s".into());
        }
        if self.duration > MAX_DURATION {
            return bad(format!("duration {:?} exceeds the limit of {:?}", self.duration, MAX_DURATION));
        }
        match self.count {
            Some(0) => return bad("count is zero: give a positive packet count or none".into()),
            Some(c) if c > MAX_COUNT => return bad(format!("count {c} exceeds the limit of {MAX_COUNT}")),
            _ => {}
        }
        match self.rate {
            Rate::PacketsPerSec(0) | Rate::BitsPerSec(0) => {
                return bad("rate is zero: give packets/s or bits/s, or unlimited".into());
            }
            Rate::PacketsPerSec(p) if p > rate::MAX_PPS => {
                return bad(format!("rate {p} packets/s exceeds the limit of {}", rate::MAX_PPS));
            }
            Rate::BitsPerSec(b) if b > rate::MAX_PPS * 64 * 8 => {
                return bad(format!("rate {b} bit/s is absurd (above 51.2 Gbit/s)"));
            }
            _ => {}
        }
        if self.threads == 0 || self.threads > MAX_THREADS {
            return bad(format!("threads = {} must be 1 to {MAX_THREADS}", self.threads));
        }
        if self.batch == 0 || self.batch > MAX_BATCH {
            return bad(format!("batch = {} must be 1 to {MAX_BATCH}", self.batch));
        }
        if self.dst_port == Some(0) {
            return bad("destination port 0 is not a port".into());
        }
        if self.ttl == 0 {
            return bad("ttl 0 would be dropped at the first hop".into());
        }
        if self.udp_payload_len > 1472 {
            return bad(format!("UDP payload {} does not fit a 1500-byte MTU (at most 1472)", self.udp_payload_len));
        }
        if let Some(ws) = self.syn_options.window_scale
            && ws > 14
        {
            return bad(format!("window scale {ws} above 14"));
        }
        if self.progress_interval < Duration::from_millis(10) {
            return bad("progress interval below 10 ms".into());
        }
        Ok(())
    }

    pub fn dst_port(&self) -> u16 {
        self.dst_port.unwrap_or(self.kind.default_port())
    }
}

/// Why a flood could not run.
#[derive(Debug, thiserror::Error)]
pub enum FloodError {
    /// The guard refused the target, the source or the policy.
    #[error(transparent)]
    Guard(#[from] GuardError),
    /// The flood configuration is invalid.
    #[error("invalid flood configuration: {what}")]
    Config { what: String },
    /// The packets cannot be built.
    #[error("cannot build the flood's packets: {0}")]
    Wire(#[from] wire::WireError),
    /// The sending namespace is missing or cannot be entered.
    #[error(transparent)]
    Netns(#[from] netns::NetnsError),
    /// An external command (`ip`) failed.
    #[error(transparent)]
    Exec(#[from] exec::ExecError),
    /// Opening or configuring a socket failed.
    #[error("cannot open {what}: {source}")]
    Socket { what: &'static str, source: std::io::Error },
    /// No usable route to the target from the sending namespace.
    #[error("no usable route to {target} from {netns}: {detail} (is the lab up? `vmguard lab status`)")]
    Route { target: Ipv4Addr, netns: String, detail: String },
    /// The next hop's MAC address did not resolve (needed by the packet backend).
    #[error("next hop {next_hop} on {dev} does not answer ARP; check the link, or use the raw backend")]
    Neighbor { next_hop: Ipv4Addr, dev: String },
    /// Every send failed: nothing left the host.
    #[error("all {errors} sends failed, none left the host; first error: {first} (a firewall rule? a link down?)")]
    NothingSent { errors: u64, first: String },
    /// A sending thread panicked.
    #[error("a sending thread panicked: {0}")]
    Panicked(String),
}
