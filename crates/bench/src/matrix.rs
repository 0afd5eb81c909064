//! The benchmark matrix: which cells a run has, in which order, and what each cell stores.

use std::time::Duration;

use lab::{QemuNetBackend, Rate, VictimKind, VictimState};
use serde::{Deserialize, Serialize};

use crate::parse::Figures;

/// A benchmark of the seed, plus `idle-cpu` (no load: the victim at rest, for Table 1 and 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Benchmark {
    /// sysbench cpu: events per second.
    Cpu,
    /// sysbench memory: MiB/s.
    Memory,
    /// sysbench fileio, random reads and writes: MiB/s.
    Fileio,
    /// iperf3, client in the client namespace, server in the victim: Mbit/s.
    Network,
    /// vmguard-webapp under wrk from the client namespace: requests/s.
    Web,
    /// Nothing runs: host CPU use and profiling counters of the idle victim.
    IdleCpu,
}

impl Benchmark {
    pub const ALL: [Benchmark; 6] =
        [Benchmark::Cpu, Benchmark::Memory, Benchmark::Fileio, Benchmark::Network, Benchmark::Web, Benchmark::IdleCpu];

    pub fn as_str(self) -> &'static str {
        match self {
            Benchmark::Cpu => "cpu",
            Benchmark::Memory => "memory",
            Benchmark::Fileio => "fileio",
            Benchmark::Network => "network",
            Benchmark::Web => "web",
            Benchmark::IdleCpu => "idle-cpu",
        }
    }

    /// The figure a cell is judged by, and its unit.
    pub fn metric(self) -> (&'static str, &'static str) {
        match self {
            Benchmark::Cpu => ("events_per_sec", "events/s"),
            Benchmark::Memory => ("mib_per_sec", "MiB/s"),
            Benchmark::Fileio => ("mib_per_sec", "MiB/s"),
            Benchmark::Network => ("mbit_per_sec", "Mbit/s"),
            Benchmark::Web => ("requests_per_sec", "requests/s"),
            Benchmark::IdleCpu => ("host_busy_pct", "% host CPU"),
        }
    }

    /// Whether a larger metric is better (false for `idle-cpu`, where it is a cost).
    pub fn higher_is_better(self) -> bool {
        self != Benchmark::IdleCpu
    }
}

impl std::fmt::Display for Benchmark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Benchmark {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Benchmark::ALL
            .into_iter()
            .find(|b| b.as_str() == s || (s == "idle" && *b == Benchmark::IdleCpu))
            .ok_or_else(|| format!("unknown benchmark `{s}`: expected cpu, memory, fileio, network, web or idle-cpu"))
    }
}

/// Whether a cell runs with the victim left alone or under a SYN flood.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Idle,
    Attack,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Attack => "attack",
        }
    }
}

/// qemu's network backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NetBackend {
    /// qemu's own virtio-net device model (userspace): `[lab.qemu] net_backend = "virtio"`.
    Virtio,
    /// The in-kernel vhost-net backend (needs /dev/vhost-net).
    VhostNet,
    /// vmguard's vhost-user backend (`vmguard-vhost-net`): `net_backend = "vhost-user"`.
    VhostUser,
}

impl NetBackend {
    pub fn as_str(self) -> &'static str {
        match self {
            NetBackend::Virtio => "virtio",
            NetBackend::VhostNet => "vhost-net",
            NetBackend::VhostUser => "vhost-user",
        }
    }

    /// The backend a lab configured with `lab` runs qemu with.
    pub fn of_lab(lab: QemuNetBackend) -> NetBackend {
        match lab {
            QemuNetBackend::Virtio => NetBackend::Virtio,
            QemuNetBackend::VhostUser => NetBackend::VhostUser,
        }
    }

    /// `None` when the backend can run on a lab whose qemu runs on `lab`, else why not. The lab's
    /// backend is chosen at `lab up`: a cell never switches it.
    pub fn unavailable_reason(self, lab: QemuNetBackend) -> Option<String> {
        let other = |x: NetBackend| {
            Some(format!("{x} unavailable: the lab runs qemu with {lab}; set [lab.qemu] net_backend and lab up again"))
        };
        match self {
            NetBackend::Virtio | NetBackend::VhostUser if self == NetBackend::of_lab(lab) => None,
            NetBackend::Virtio | NetBackend::VhostUser => other(self),
            NetBackend::VhostNet if !std::path::Path::new("/dev/vhost-net").exists() => {
                Some("vhost-net unavailable: /dev/vhost-net does not exist (host kernel without CONFIG_VHOST_NET)".into())
            }
            NetBackend::VhostNet => {
                Some("vhost-net unavailable: the host has /dev/vhost-net but the lab starts qemu with userspace virtio-net only".into())
            }
        }
    }
}

impl std::fmt::Display for NetBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for NetBackend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "virtio" | "virtio-net" | "user" => Ok(NetBackend::Virtio),
            "vhost" | "vhost-net" => Ok(NetBackend::VhostNet),
            "vhost-user" => Ok(NetBackend::VhostUser),
            _ => Err(format!("unknown network backend `{s}`: expected virtio, vhost-net or vhost-user")),
        }
    }
}

/// A defence the victim runs with during a cell (`vmguard bench --mitigations`), applied through
/// `mitigate` with its defaults: the nftables ones on the gateway, SYN cookies in the victim.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mitigation {
    /// The victim as the lab set it up.
    #[default]
    None,
    SyncookiesOff,
    Synproxy,
    SynRatelimit,
    IngressFilter,
    CoalesceFixed,
    CoalesceAdaptive,
}

impl Mitigation {
    pub const ALL: [Mitigation; 7] = [
        Mitigation::None,
        Mitigation::SyncookiesOff,
        Mitigation::Synproxy,
        Mitigation::SynRatelimit,
        Mitigation::IngressFilter,
        Mitigation::CoalesceFixed,
        Mitigation::CoalesceAdaptive,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Mitigation::None => "none",
            Mitigation::SyncookiesOff => "syncookies-off",
            Mitigation::Synproxy => "synproxy",
            Mitigation::SynRatelimit => "syn-ratelimit",
            Mitigation::IngressFilter => "ingress-filter",
            Mitigation::CoalesceFixed => "coalesce-fixed",
            Mitigation::CoalesceAdaptive => "coalesce-adaptive",
        }
    }

    /// The defence to apply, or `None` for the victim as it is.
    pub fn defence(self) -> Option<mitigate::Defence> {
        use mitigate::Defence;
        match self {
            Mitigation::None => None,
            Mitigation::SyncookiesOff => Some(Defence::Syncookies { on: false, backlog: None }),
            Mitigation::Synproxy => Some(Defence::Synproxy),
            // mitigate's command-line defaults.
            Mitigation::SynRatelimit => Some(Defence::SynRatelimit { rate: 20, burst: 40 }),
            Mitigation::IngressFilter => Some(Defence::IngressFilter),
            // mitigate's command-line defaults (and vmguard-vhost-net's).
            Mitigation::CoalesceFixed => Some(Defence::Coalesce {
                mode: mitigate::CoalesceMode::Fixed,
                rx_usecs: mitigate::DEFAULT_RX_USECS,
                rx_frames: mitigate::DEFAULT_RX_FRAMES,
                pps_threshold: mitigate::DEFAULT_PPS_THRESHOLD,
            }),
            Mitigation::CoalesceAdaptive => Some(Defence::Coalesce {
                mode: mitigate::CoalesceMode::Adaptive,
                rx_usecs: mitigate::DEFAULT_RX_USECS,
                rx_frames: mitigate::DEFAULT_RX_FRAMES,
                pps_threshold: mitigate::DEFAULT_PPS_THRESHOLD,
            }),
        }
    }

    /// `None` when the mitigation can run on `victim` (coalesce: only on the vhost-user backend),
    /// else why not.
    pub fn unavailable_reason(self, victim: &VictimState) -> Option<String> {
        let kind = self.defence()?.kind();
        mitigate::check_victim(kind, victim, kind.default_place()).err().map(|e| format!("{}: {e}", self.as_str()))
    }
}

impl std::fmt::Display for Mitigation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Mitigation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Mitigation::ALL.into_iter().find(|m| m.as_str() == s).ok_or_else(|| {
            let names: Vec<&str> = Mitigation::ALL.iter().map(|m| m.as_str()).collect();
            format!("unknown mitigation `{s}`: expected {}", names.join(", "))
        })
    }
}

/// What a run covers. Every list is a dimension of the matrix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatrixSpec {
    pub victims: Vec<VictimKind>,
    pub benchmarks: Vec<Benchmark>,
    pub reps: u32,
    pub syncookies: Vec<bool>,
    /// Flood rates (the attacker link's own shaping still applies).
    pub attack_rates: Vec<Rate>,
    /// Backends of the qemu victim (other victims have none).
    pub backends: Vec<NetBackend>,
    /// Defences the victims run with, each a dimension value.
    #[serde(default = "no_mitigation")]
    pub mitigations: Vec<Mitigation>,
    /// How long each benchmark runs.
    pub duration: Duration,
    /// sysbench fileio's files.
    pub fileio: FileioSpec,
    /// wrk's open connections.
    pub web_connections: u32,
}

/// sysbench fileio's working set: how much, in how many files, and whether the page cache is bypassed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileioSpec {
    pub total_mib: u32,
    pub files: u32,
    /// `--file-extra-flags=direct`: O_DIRECT, so the page cache does not turn the file benchmark
    /// into a memory benchmark (the guest's and the host's alike).
    pub direct: bool,
}

impl FileioSpec {
    /// The seed's: 2 GB of files, random reads and writes, on the disk.
    pub const SEED: FileioSpec = FileioSpec { total_mib: 2048, files: 128, direct: true };

    /// The sysbench options that describe the files (the same for prepare, run and cleanup).
    pub fn sysbench_args(&self) -> String {
        let mut a = format!("--file-total-size={}M --file-num={}", self.total_mib, self.files);
        if self.direct {
            a.push_str(" --file-extra-flags=direct");
        }
        a
    }
}

fn no_mitigation() -> Vec<Mitigation> {
    vec![Mitigation::None]
}

/// A named set of matrix parameters (`vmguard bench --profile`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// One repetition of 2 s per cell and a small direct file set: every cell, for CI.
    Quick,
    /// Three repetitions of 6 s, the seed's 2 GB direct file set: the README's matrix.
    Default,
    /// The seed's parameters: 2 GB in 128 files (sysbench's default count), three repetitions of 30 s.
    Seed,
}

impl std::str::FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "quick" => Ok(Profile::Quick),
            "default" => Ok(Profile::Default),
            "seed" => Ok(Profile::Seed),
            _ => Err(format!("unknown profile `{s}`: expected quick, default or seed")),
        }
    }
}

impl MatrixSpec {
    /// The matrix of `profile`: every victim and benchmark, SYN cookies on, the given attack rate,
    /// qemu's virtio-net.
    pub fn profile(profile: Profile, attack_rate: Rate) -> MatrixSpec {
        let base = MatrixSpec {
            victims: lab::BUILT_VICTIMS.to_vec(),
            benchmarks: Benchmark::ALL.to_vec(),
            reps: 3,
            syncookies: vec![true],
            attack_rates: vec![attack_rate],
            backends: vec![NetBackend::Virtio],
            mitigations: no_mitigation(),
            duration: Duration::from_secs(6),
            fileio: FileioSpec { files: 8, ..FileioSpec::SEED },
            web_connections: 8,
        };
        match profile {
            Profile::Default => base,
            Profile::Quick => MatrixSpec {
                reps: 1,
                duration: Duration::from_secs(2),
                fileio: FileioSpec { total_mib: 64, files: 8, direct: true },
                ..base
            },
            Profile::Seed => MatrixSpec { duration: Duration::from_secs(30), fileio: FileioSpec::SEED, ..base },
        }
    }

    /// The default matrix (see [`Profile::Default`]).
    pub fn full(attack_rate: Rate) -> MatrixSpec {
        MatrixSpec::profile(Profile::Default, attack_rate)
    }

    /// `--quick` (see [`Profile::Quick`]).
    pub fn quick(attack_rate: Rate) -> MatrixSpec {
        MatrixSpec::profile(Profile::Quick, attack_rate)
    }

    /// Every cell, in run order: per victim, backend, cookie setting and rate, each benchmark's
    /// repetitions with idle and attack side by side (so a ratio compares neighbours in time).
    pub fn cells(&self) -> Vec<CellSpec> {
        let mut out = Vec::new();
        for &victim in &self.victims {
            let backends: Vec<Option<NetBackend>> =
                if victim == VictimKind::Qemu { self.backends.iter().copied().map(Some).collect() } else { vec![None] };
            for backend in backends {
                for &mitigation in &self.mitigations {
                    for &syncookies in &self.syncookies {
                        for &attack_rate in &self.attack_rates {
                            for &benchmark in &self.benchmarks {
                                for rep in 0..self.reps {
                                    for phase in [Phase::Idle, Phase::Attack] {
                                        out.push(CellSpec {
                                            victim,
                                            backend,
                                            mitigation,
                                            syncookies,
                                            attack_rate,
                                            benchmark,
                                            rep,
                                            phase,
                                        });
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        out
    }
}

/// One cell of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellSpec {
    pub victim: VictimKind,
    pub backend: Option<NetBackend>,
    /// Stored results from before the dimension existed ran without one.
    #[serde(default)]
    pub mitigation: Mitigation,
    pub syncookies: bool,
    pub attack_rate: Rate,
    pub benchmark: Benchmark,
    pub rep: u32,
    pub phase: Phase,
}

impl CellSpec {
    /// The store's cell name: `qemu/web/attack/cookies-on/10mbit/virtio/rep0`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.group_key(), self.phase.as_str()) + &format!("/rep{}", self.rep)
    }

    /// Everything but phase and repetition: the cells whose figures are summarized together.
    pub fn group_key(&self) -> String {
        let key = format!(
            "{}/{}/cookies-{}/{}/{}",
            self.victim,
            self.benchmark,
            if self.syncookies { "on" } else { "off" },
            self.attack_rate,
            self.backend.map(NetBackend::as_str).unwrap_or("host")
        );
        // Keys of runs without a defence stay what they were before the dimension existed.
        match self.mitigation {
            Mitigation::None => key,
            m => format!("{key}/{m}"),
        }
    }
}

/// Flood figures of an attack cell.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FloodFigures {
    pub sent: u64,
    pub achieved_pps: f64,
    pub achieved_bps: f64,
    pub elapsed_secs: f64,
}

/// Host-side CPU and profiling counters over one cell (deltas between its start and end).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostFigures {
    pub secs: f64,
    pub busy_pct: f64,
    pub user_pct: f64,
    pub system_pct: f64,
    pub irq_pct: f64,
    pub softirq_pct: f64,
    /// Context switches, interrupts and NET_RX softirqs on the whole host, per second.
    pub ctxt_per_sec: f64,
    pub intr_per_sec: f64,
    pub net_rx_per_sec: f64,
    /// The victim's host processes (server, container init, qemu): CPU in % of one core, per thread name.
    pub victim_cpu_pct: f64,
    pub victim_threads_pct: std::collections::BTreeMap<String, f64>,
    /// The victim's host processes: context switches per second.
    pub victim_ctxt_per_sec: f64,
    /// Every other cumulative telemetry counter of the victim (KVM exits by reason over QMP, KVM
    /// tracepoints, tap/veth packets, SNMP), per second, as `source.counter`.
    pub telemetry_per_sec: std::collections::BTreeMap<String, f64>,
}

/// What one cell stores as its figures (JSON in the store's `bench_results.figures`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellRecord {
    pub cell: CellSpec,
    pub ok: bool,
    pub error: Option<String>,
    /// The judged figure (see [`Benchmark::metric`]).
    pub metric: String,
    pub value: Option<f64>,
    /// Everything the tool's parser found.
    pub figures: Figures,
    pub host: Option<HostFigures>,
    pub flood: Option<FloodFigures>,
    pub accelerator: Option<String>,
    pub elapsed_secs: f64,
    /// Runs it took: 2 when the first failed in a way worth another run (its error is in the raw
    /// output). Records stored before this field was added ran once.
    #[serde(default = "one_run")]
    pub runs: u32,
}

fn one_run() -> u32 {
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_cover_the_matrix_with_phases_side_by_side() {
        let rate = Rate::BitsPerSec(10_000_000);
        let mut m = MatrixSpec::quick(rate);
        m.backends = vec![NetBackend::Virtio, NetBackend::VhostNet];
        m.syncookies = vec![true, false];
        let cells = m.cells();
        // vanilla and container: 1 backend; qemu: 2.
        assert_eq!(cells.len(), (1 + 1 + 2) * 2 * Benchmark::ALL.len() * 2);
        for pair in cells.chunks(2) {
            assert_eq!((pair[0].phase, pair[1].phase), (Phase::Idle, Phase::Attack));
            assert_eq!(pair[0].group_key(), pair[1].group_key());
        }
        let keys: std::collections::HashSet<String> = cells.iter().map(CellSpec::key).collect();
        assert_eq!(keys.len(), cells.len(), "keys are unique");
        assert_eq!(cells[0].key(), "vanilla/cpu/cookies-on/10mbit/host/idle/rep0");
        assert!(cells.iter().any(|c| c.key() == "qemu/web/cookies-off/10mbit/vhost-net/attack/rep0"));
    }

    #[test]
    fn profiles_differ_where_they_should() {
        let rate = Rate::BitsPerSec(10_000_000);
        let seed = MatrixSpec::profile(Profile::Seed, rate);
        assert_eq!(seed.fileio, FileioSpec::SEED);
        assert_eq!(seed.fileio.sysbench_args(), "--file-total-size=2048M --file-num=128 --file-extra-flags=direct");
        let quick = MatrixSpec::quick(rate);
        assert!(quick.fileio.direct && quick.fileio.total_mib < 256 && quick.reps == 1);
        assert_eq!(MatrixSpec::full(rate).fileio.total_mib, 2048, "the README's matrix uses the seed's 2 GB");
        assert_eq!("seed".parse::<Profile>().unwrap(), Profile::Seed);
        assert!("fast".parse::<Profile>().unwrap_err().contains("quick, default or seed"));
    }

    #[test]
    fn mitigations_are_a_dimension_and_say_where_they_cannot_run() {
        let mut m = MatrixSpec::quick(Rate::BitsPerSec(10_000_000));
        m.benchmarks = vec![Benchmark::Web];
        m.mitigations = vec![Mitigation::None, Mitigation::Synproxy];
        let cells = m.cells();
        assert_eq!(cells.len(), 3 * 2 * 2);
        assert!(cells.iter().any(|c| c.key() == "qemu/web/cookies-on/10mbit/virtio/synproxy/attack/rep0"));
        assert!(cells.iter().any(|c| c.key() == "qemu/web/cookies-on/10mbit/virtio/attack/rep0"));
        let plan = lab::LabSpec::default().plan();
        let victim = |kind| VictimState::new(kind, plan.victim(kind).unwrap(), vec![], "/dev/null".into());
        let mut qemu = victim(VictimKind::Qemu);
        assert_eq!(Mitigation::Synproxy.unavailable_reason(&qemu), None, "on the gateway");
        assert!(Mitigation::CoalesceFixed.unavailable_reason(&victim(VictimKind::Vanilla)).is_some());
        // coalesce depends on the qemu victim's backend.
        let why = Mitigation::CoalesceAdaptive.unavailable_reason(&qemu).unwrap();
        assert!(why.contains("net_backend = \"vhost-user\""), "{why}");
        qemu.net_control_socket = Some("/run/vhost-net-ctl.sock".into());
        assert_eq!(Mitigation::CoalesceAdaptive.unavailable_reason(&qemu), None);
        assert_eq!(Mitigation::CoalesceFixed.defence().unwrap().kind(), mitigate::DefenceKind::Coalesce);
        assert!("synproxy".parse::<Mitigation>().is_ok());
        assert!("cookies".parse::<Mitigation>().unwrap_err().contains("syncookies-off"));
        // A stored cell from before the dimension reads as `none`.
        let old = r#"{"victim":"qemu","backend":"virtio","syncookies":true,"attack_rate":"10mbit","benchmark":"web","rep":0,"phase":"idle"}"#;
        assert_eq!(serde_json::from_str::<CellSpec>(old).unwrap().mitigation, Mitigation::None);
    }

    #[test]
    fn names_parse() {
        for b in Benchmark::ALL {
            assert_eq!(b.as_str().parse::<Benchmark>().unwrap(), b);
        }
        assert!("gpu".parse::<Benchmark>().unwrap_err().contains("expected"));
        assert_eq!("vhost".parse::<NetBackend>().unwrap(), NetBackend::VhostNet);
        assert_eq!("vhost-user".parse::<NetBackend>().unwrap(), NetBackend::VhostUser);
        assert!(NetBackend::Virtio.unavailable_reason(QemuNetBackend::Virtio).is_none());
        assert!(NetBackend::VhostUser.unavailable_reason(QemuNetBackend::VhostUser).is_none());
        // A cell on another backend than the lab's is unavailable, not switched to.
        let why = NetBackend::VhostUser.unavailable_reason(QemuNetBackend::Virtio).unwrap();
        assert_eq!(
            why,
            "vhost-user unavailable: the lab runs qemu with virtio; set [lab.qemu] net_backend and lab up again"
        );
        assert!(NetBackend::Virtio.unavailable_reason(QemuNetBackend::VhostUser).unwrap().contains("with vhost-user"));
    }
}
