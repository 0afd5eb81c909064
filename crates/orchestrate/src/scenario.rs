//! Scenarios: phases run one after the other, each for its duration, with benign workloads and
//! floods, and the ground truth that `record` writes beside the samples.
//!
//! A scenario is a TOML file (the shipped set is in `scenarios/`), parsed once into typed values;
//! an error names the file, the phase and the field.
//!
//! ```toml
//! name = "demo"
//! [[phase]]
//! name = "flood"
//! duration = "15s"
//! workload = [{ kind = "web", target = "container", parallel = 8 }]
//! flood = [{ target = "container", rate = "4000", kind = "syn" }]
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use detect::truth::Truth;
use flood::FloodKind;
use serde::Deserialize;
use units::Rate;

use crate::flood::Sender;

/// A benign workload kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkloadKind {
    /// wrk from the client host against the victim's HTTP server.
    Web,
    /// iperf3 between the client host and the victim's namespace.
    Bulk,
    /// Short HTTP/1.0 requests in a loop (one connection each).
    Connections,
    /// A busy loop inside the victim.
    Cpu,
    /// Writes and reads of a file inside the victim.
    Fileio,
    /// A flash crowd: waves of hundreds of wrk clients opening their connections at once (benign,
    /// but a burst of SYNs that overflows busybox httpd's listen queue of 9).
    FlashCrowd,
    /// Small-packet UDP at a high packet rate (iperf3 -u with a short -l) from the client host.
    Udp,
    /// The victim downloads from the client host at full speed (iperf3 run inside the victim, -R).
    Download,
    /// A backup of many small files: tar inside the victim piped over TCP to the client host (busybox nc).
    Backup,
}

impl WorkloadKind {
    pub const ALL: [WorkloadKind; 9] = [
        WorkloadKind::Web,
        WorkloadKind::Bulk,
        WorkloadKind::Connections,
        WorkloadKind::Cpu,
        WorkloadKind::Fileio,
        WorkloadKind::FlashCrowd,
        WorkloadKind::Udp,
        WorkloadKind::Download,
        WorkloadKind::Backup,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Web => "web",
            WorkloadKind::Bulk => "bulk",
            WorkloadKind::Connections => "connections",
            WorkloadKind::Cpu => "cpu",
            WorkloadKind::Fileio => "fileio",
            WorkloadKind::FlashCrowd => "flash-crowd",
            WorkloadKind::Udp => "udp",
            WorkloadKind::Download => "download",
            WorkloadKind::Backup => "backup",
        }
    }

    /// `parallel` when the scenario does not say: a flash crowd is hundreds of clients.
    pub fn default_parallel(self) -> u32 {
        match self {
            WorkloadKind::FlashCrowd => 600,
            _ => 1,
        }
    }
}

impl std::fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for WorkloadKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        WorkloadKind::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| {
            let names: Vec<&str> = WorkloadKind::ALL.iter().map(|k| k.as_str()).collect();
            format!("unknown workload kind `{s}` (use {})", names.join(", "))
        })
    }
}

/// Which program sends a flood.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FloodTool {
    /// The project's own flood engine (from the attacker or inside a victim acting as a zombie).
    Vmguard,
    /// hping3, the classic peer tool (from the attacker, a victim's namespace, or the qemu guest).
    Hping3,
    /// trafgen (netsniff-ng) with a generated packet configuration (attacker or a victim's namespace).
    Trafgen,
    /// nping (nmap) in raw mode (attacker or a victim's namespace).
    Nping,
}

impl FloodTool {
    pub const ALL: [FloodTool; 4] = [FloodTool::Vmguard, FloodTool::Hping3, FloodTool::Trafgen, FloodTool::Nping];

    pub fn as_str(self) -> &'static str {
        match self {
            FloodTool::Vmguard => "vmguard",
            FloodTool::Hping3 => "hping3",
            FloodTool::Trafgen => "trafgen",
            FloodTool::Nping => "nping",
        }
    }

    /// Whether the tool can draw random sources from the lab's spoof range (hping3's and nping's
    /// random sources would cover all of IPv4, so they send from one fixed lab address).
    pub fn random_sources(self) -> bool {
        matches!(self, FloodTool::Vmguard | FloodTool::Trafgen)
    }

    /// Whether the tool can run inside the qemu guest (its binary is in the guest image).
    pub fn in_guest(self) -> bool {
        matches!(self, FloodTool::Vmguard | FloodTool::Hping3)
    }
}

impl std::fmt::Display for FloodTool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for FloodTool {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        FloodTool::ALL.into_iter().find(|t| t.as_str() == s).ok_or_else(|| {
            let names: Vec<&str> = FloodTool::ALL.iter().map(|t| t.as_str()).collect();
            format!("unknown flood tool `{s}` (use {})", names.join(", "))
        })
    }
}

/// The source addresses of a flood, always inside the lab's spoof range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceMode {
    /// A new random address of the spoof range per packet (vmguard, trafgen).
    Random,
    /// One address of the spoof range, drawn when the flood starts.
    Fixed,
}

impl SourceMode {
    pub const ALL: [SourceMode; 2] = [SourceMode::Random, SourceMode::Fixed];

    pub fn as_str(self) -> &'static str {
        match self {
            SourceMode::Random => "random",
            SourceMode::Fixed => "fixed",
        }
    }
}

impl std::fmt::Display for SourceMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SourceMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        SourceMode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| format!("unknown flood source `{s}` (use random or fixed)"))
    }
}

/// A benign workload aimed at (or run inside) a victim.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    pub kind: WorkloadKind,
    pub target: String,
    /// web: open connections; connections: parallel clients; bulk: parallel streams; cpu: threads.
    pub parallel: u32,
    /// bulk: the victim sends instead of receiving.
    pub reverse: bool,
    /// udp: the packet rate (or bit rate on Ethernet frames).
    pub rate: Option<Rate>,
    /// udp: payload bytes per datagram.
    pub length: u16,
    /// backup: how many small files are archived.
    pub files: u32,
}

impl Workload {
    /// A workload with every option at its default.
    pub fn new(kind: WorkloadKind, target: impl Into<String>) -> Workload {
        Workload {
            kind,
            target: target.into(),
            parallel: kind.default_parallel(),
            reverse: false,
            rate: None,
            length: DEFAULT_UDP_LENGTH,
            files: DEFAULT_BACKUP_FILES,
        }
    }
}

/// UDP payload bytes when a `udp` workload does not say.
pub const DEFAULT_UDP_LENGTH: u16 = 64;
/// Files a `backup` workload archives when it does not say.
pub const DEFAULT_BACKUP_FILES: u32 = 2000;
/// A `udp` workload's rate when it does not say.
pub const DEFAULT_UDP_RATE: Rate = Rate::PacketsPerSec(10_000);

/// A flood in a phase.
#[derive(Debug, Clone, PartialEq)]
pub struct FloodSpec {
    pub target: String,
    pub from: Sender,
    pub rate: Rate,
    pub tool: FloodTool,
    pub kind: FloodKind,
    /// Random or fixed sources, inside the lab's spoof range either way.
    pub source: SourceMode,
    /// At most this many packets (None: the rate times the phase's duration bounds it).
    pub count: Option<u64>,
}

impl FloodSpec {
    /// The flood to launch for this spec on the running lab, bounded by `dur` (and the spec's count).
    /// A fixed source is one address of the lab's spoof range, drawn now (the guard checks it again).
    pub fn lab_flood(&self, state: &lab::LabState, dur: Duration) -> crate::flood::LabFlood {
        let source = match self.source {
            SourceMode::Random => flood::SourceChoice::Spoof,
            SourceMode::Fixed => {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .subsec_nanos();
                let addr = wire::pick_in_subnet(state.plan.spoof_subnet, nanos.wrapping_mul(2_654_435_761));
                flood::SourceChoice::SpoofIn(ipnet::Ipv4Net::from(addr))
            }
        };
        crate::flood::LabFlood {
            from: self.from.clone(),
            target: self.target.clone(),
            source,
            tool: self.tool,
            config: flood::FloodConfig {
                kind: self.kind,
                rate: self.rate,
                duration: dur,
                count: self.count,
                ..flood::FloodConfig::default()
            },
            measure_victim: false,
        }
    }
}

/// One phase of a scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    pub name: String,
    pub duration: Duration,
    pub workloads: Vec<Workload>,
    pub floods: Vec<FloodSpec>,
}

impl Phase {
    /// The ground truth of `guest` in this phase.
    pub fn truth_of(&self, guest: &str) -> Truth {
        if self.floods.iter().any(|f| f.target == guest) {
            Truth::AttackVictim
        } else if self.floods.iter().any(|f| f.from.guest() == Some(guest)) {
            Truth::AttackZombie
        } else {
            Truth::Normal
        }
    }
}

/// A parsed scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub phases: Vec<Phase>,
}

/// Why a scenario cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file cannot be read.
    #[error("cannot read scenario {path} (scenarios in {dir}: {known})")]
    Read {
        path: PathBuf,
        dir: PathBuf,
        known: String,
        #[source]
        source: std::io::Error,
    },
    /// The text is not TOML of the scenario's shape (the cause names the line and the key).
    #[error("scenario {origin} is not valid")]
    Toml {
        origin: String,
        #[source]
        source: toml::de::Error,
    },
    /// A field of a phase has a value vmguard cannot use.
    #[error("scenario {origin}, phase `{phase}`, field `{field}`: {message}")]
    Field { origin: String, phase: String, field: &'static str, message: String },
    /// No phase at all.
    #[error("scenario {origin} has no [[phase]]: add at least one")]
    NoPhases { origin: String },
    /// A guest the running lab does not have.
    #[error("scenario {scenario}, phase `{phase}`: `{guest}` is not a victim of this lab (victims: {victims})")]
    UnknownGuest { scenario: String, phase: String, guest: String, victims: String },
}

// The file's shape; values are checked and typed by `Scenario::parse`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(rename = "phase", default)]
    phases: Vec<RawPhase>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPhase {
    name: String,
    duration: String,
    #[serde(default, rename = "workload")]
    workloads: Vec<RawWorkload>,
    #[serde(default, rename = "flood")]
    floods: Vec<RawFlood>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkload {
    kind: String,
    target: String,
    #[serde(default)]
    parallel: Option<u32>,
    #[serde(default)]
    reverse: bool,
    #[serde(default)]
    rate: Option<String>,
    #[serde(default)]
    length: Option<u16>,
    #[serde(default)]
    files: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlood {
    target: String,
    #[serde(default)]
    from: Option<String>,
    rate: String,
    #[serde(default)]
    tool: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    count: Option<u64>,
}

impl Scenario {
    /// Parses and checks a scenario; `origin` names it in errors (its path).
    pub fn parse(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
        let raw: RawScenario =
            toml::from_str(text).map_err(|source| ScenarioError::Toml { origin: origin.to_string(), source })?;
        if raw.phases.is_empty() {
            return Err(ScenarioError::NoPhases { origin: origin.to_string() });
        }
        let mut phases = Vec::new();
        for p in raw.phases {
            let field = |field: &'static str, message: String| ScenarioError::Field {
                origin: origin.to_string(),
                phase: p.name.clone(),
                field,
                message,
            };
            let duration = units::parse_duration(&p.duration).map_err(|e| field("duration", e.to_string()))?;
            let mut workloads = Vec::new();
            for w in &p.workloads {
                let kind: WorkloadKind = w.kind.parse().map_err(|e| field("workload.kind", e))?;
                let parallel = w.parallel.unwrap_or(kind.default_parallel());
                if parallel == 0 || parallel > 10_000 {
                    return Err(field("workload.parallel", format!("{parallel} must be 1 to 10000")));
                }
                if w.reverse && kind != WorkloadKind::Bulk {
                    return Err(field("workload.reverse", format!("only bulk workloads can run reversed, not {kind}")));
                }
                let only = |name: &'static str, set: bool, k: WorkloadKind| {
                    if set && kind != k {
                        Err(field(name, format!("only {k} workloads take `{}`, not {kind}", &name[9..])))
                    } else {
                        Ok(())
                    }
                };
                only("workload.rate", w.rate.is_some(), WorkloadKind::Udp)?;
                only("workload.length", w.length.is_some(), WorkloadKind::Udp)?;
                only("workload.files", w.files.is_some(), WorkloadKind::Backup)?;
                let rate = match &w.rate {
                    Some(r) => {
                        let rate: Rate =
                            r.parse().map_err(|e: units::ParseError| field("workload.rate", e.to_string()))?;
                        if rate.is_unlimited() {
                            return Err(field("workload.rate", "a udp workload needs a rate (e.g. 10kpps)".into()));
                        }
                        Some(rate)
                    }
                    None if kind == WorkloadKind::Udp => Some(DEFAULT_UDP_RATE),
                    None => None,
                };
                let length = w.length.unwrap_or(DEFAULT_UDP_LENGTH);
                if !(16..=1472).contains(&length) {
                    return Err(field("workload.length", format!("{length} must be 16 to 1472 bytes")));
                }
                let files = w.files.unwrap_or(DEFAULT_BACKUP_FILES);
                if files == 0 || files > 100_000 {
                    return Err(field("workload.files", format!("{files} must be 1 to 100000")));
                }
                workloads.push(Workload {
                    kind,
                    target: w.target.clone(),
                    parallel,
                    reverse: w.reverse,
                    rate,
                    length,
                    files,
                });
            }
            let mut floods = Vec::new();
            for f in &p.floods {
                let from: Sender =
                    f.from.as_deref().unwrap_or("attacker").parse().map_err(|e| field("flood.from", e))?;
                let tool: FloodTool =
                    f.tool.as_deref().unwrap_or("vmguard").parse().map_err(|e| field("flood.tool", e))?;
                let kind: FloodKind = f.kind.as_deref().unwrap_or("syn").parse().map_err(|e| field("flood.kind", e))?;
                let rate: Rate = f.rate.parse().map_err(|e: units::ParseError| field("flood.rate", e.to_string()))?;
                if rate.is_unlimited() {
                    return Err(field(
                        "flood.rate",
                        "a scenario's flood needs a rate (e.g. 5000, 5kpps, 10mbit)".into(),
                    ));
                }
                let source = match f.source.as_deref() {
                    Some(m) => m.parse().map_err(|e| field("flood.source", e))?,
                    None if tool.random_sources() => SourceMode::Random,
                    None => SourceMode::Fixed,
                };
                if source == SourceMode::Random && !tool.random_sources() {
                    return Err(field(
                        "flood.source",
                        format!(
                            "{tool}'s random sources cover all of IPv4, outside the lab's spoof range: use source = \"fixed\" \
                             (one lab address), or tool = \"trafgen\" or \"vmguard\" for random lab sources"
                        ),
                    ));
                }
                if let Some(c) = f.count
                    && (c == 0 || c > flood::MAX_COUNT)
                {
                    return Err(field("flood.count", format!("{c} must be 1 to {}", flood::MAX_COUNT)));
                }
                // Victims are named by their kind: `qemu` is the guest and `xen` the Xen domU, whose
                // images have vmguard and hping3 only.
                if let Some(g) = from.guest()
                    && g.parse::<lab::VictimKind>().is_ok_and(|k| k.has_own_kernel())
                    && !tool.in_guest()
                {
                    return Err(field(
                        "flood.tool",
                        format!(
                            "the {g} guest has no {tool}: use tool = \"hping3\" or \"vmguard\" (the vmguard zombie flood) from it"
                        ),
                    ));
                }
                if from.guest() == Some(f.target.as_str()) {
                    return Err(field("flood.target", format!("`{}` cannot flood itself", f.target)));
                }
                if f.target == "attacker" {
                    return Err(field("flood.target", "floods go to lab victims, not to the attacker".into()));
                }
                floods.push(FloodSpec { target: f.target.clone(), from, rate, tool, kind, source, count: f.count });
            }
            phases.push(Phase { name: p.name, duration, workloads, floods });
        }
        Ok(Scenario { name: raw.name, description: raw.description, phases })
    }

    /// Reads a scenario file, or `dir/NAME.toml` for a bare name.
    pub fn load(name: &str, dir: &Path) -> Result<Scenario, ScenarioError> {
        let path = if name.ends_with(".toml") || name.contains('/') {
            PathBuf::from(name)
        } else {
            dir.join(format!("{name}.toml"))
        };
        let text = std::fs::read_to_string(&path).map_err(|source| ScenarioError::Read {
            path: path.clone(),
            dir: dir.to_path_buf(),
            known: known_scenarios(dir).join(", "),
            source,
        })?;
        Scenario::parse(&text, &path.display().to_string())
    }

    /// The scenario's length at `time_scale`.
    pub fn duration(&self, time_scale: f64) -> Duration {
        self.phases.iter().map(|p| p.duration.mul_f64(time_scale)).sum()
    }

    /// Every guest the scenario names must be one of `victims`.
    pub fn check_guests(&self, victims: &[&str]) -> Result<(), ScenarioError> {
        for p in &self.phases {
            let names = p
                .floods
                .iter()
                .flat_map(|f| [Some(f.target.as_str()), f.from.guest()])
                .flatten()
                .chain(p.workloads.iter().map(|w| w.target.as_str()));
            for n in names {
                if !victims.contains(&n) {
                    return Err(ScenarioError::UnknownGuest {
                        scenario: self.name.clone(),
                        phase: p.name.clone(),
                        guest: n.to_string(),
                        victims: victims.join(", "),
                    });
                }
            }
        }
        Ok(())
    }

    /// The scenario without the workloads and floods that involve guests other than `victims` (the
    /// demo's scenarios on a lab with fewer victims).
    pub fn restricted_to(mut self, victims: &[&str]) -> Scenario {
        let known = |n: &str| victims.contains(&n);
        for p in &mut self.phases {
            p.workloads.retain(|w| known(&w.target));
            p.floods.retain(|f| known(&f.target) && f.from.guest().is_none_or(known));
        }
        self
    }
}

/// Names of the scenarios in `dir`.
pub fn known_scenarios(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str()?.strip_suffix(".toml").map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_scenarios_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios");
        let names = known_scenarios(&dir);
        assert!(names.len() >= 6, "{names:?}");
        for n in names {
            let s = Scenario::load(&n, &dir).unwrap_or_else(|e| panic!("{n}: {e}"));
            assert_eq!(s.name, n, "scenario name matches its file");
        }
    }

    #[test]
    fn the_seed004_xen_scenario_has_30_minutes_of_each_class_with_the_domu_as_zombie() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios");
        let s = Scenario::load("seed004-xen", &dir).unwrap();
        let secs = |zombie: bool| -> u64 {
            s.phases
                .iter()
                .filter(|p| (p.truth_of("xen") == Truth::AttackZombie) == zombie)
                .map(|p| p.duration.as_secs())
                .sum()
        };
        assert_eq!((secs(false), secs(true)), (1800, 1800), "benign and DoS seconds at --time-scale 1");
        assert_eq!(s.duration(0.05).as_secs(), 180, "the short version");
        let kinds: std::collections::HashSet<FloodKind> =
            s.phases.iter().flat_map(|p| &p.floods).map(|f| f.kind).collect();
        assert!(kinds.contains(&FloodKind::Syn) && kinds.len() >= 3, "SYN and other kinds: {kinds:?}");
        for p in &s.phases {
            // The domU is only ever the zombie, never a target; the vanilla victim takes the floods.
            assert!(p.floods.iter().all(|f| f.from.guest() == Some("xen") && f.target == "vanilla"), "{}", p.name);
            assert_ne!(p.truth_of("xen"), Truth::AttackVictim, "{}", p.name);
            // The domU's command channel runs one command at a time: one job inside it per phase.
            let inside = p
                .workloads
                .iter()
                .filter(|w| w.target == "xen" && !matches!(w.kind, WorkloadKind::Web | WorkloadKind::Connections))
                .count()
                + p.floods.len();
            assert!(inside <= 1, "phase {} runs {inside} jobs inside the domU", p.name);
        }
        s.check_guests(&["vanilla", "xen"]).unwrap();
    }

    #[test]
    fn typed_values_and_truth() {
        let s = Scenario::parse(
            "name = \"x\"\n[[phase]]\nname = \"a\"\nduration = \"5s\"\n[[phase.flood]]\ntarget = \"qemu\"\nfrom = \"container\"\nrate = \"2kpps\"\nkind = \"syn-closed\"\n",
            "t.toml",
        )
        .unwrap();
        let p = &s.phases[0];
        assert_eq!(p.duration, Duration::from_secs(5));
        assert_eq!(p.floods[0].rate, Rate::PacketsPerSec(2000));
        assert_eq!(p.floods[0].kind, FloodKind::SynClosed);
        assert_eq!(p.floods[0].from, Sender::Guest("container".into()));
        assert_eq!(p.truth_of("qemu"), Truth::AttackVictim);
        assert_eq!(p.truth_of("container"), Truth::AttackZombie);
        assert_eq!(p.truth_of("vanilla"), Truth::Normal);
        assert!(s.check_guests(&["qemu", "container"]).is_ok());
        let e = s.check_guests(&["qemu"]).unwrap_err().to_string();
        assert!(e.contains("container") && e.contains("phase `a`"), "{e}");
        assert!(s.clone().restricted_to(&["qemu"]).phases[0].floods.is_empty());
    }

    #[test]
    fn new_tools_sources_counts_and_workloads() {
        let s = Scenario::parse(
            r#"name = "x"
[[phase]]
name = "a"
duration = "20s"
workload = [
  { kind = "flash-crowd", target = "vanilla" },
  { kind = "udp", target = "container", rate = "8kpps", length = 32 },
  { kind = "udp", target = "qemu" },
  { kind = "download", target = "qemu", parallel = 2 },
  { kind = "backup", target = "container", files = 500 },
]
flood = [
  { target = "qemu", tool = "trafgen", rate = "500", kind = "ack" },
  { target = "qemu", tool = "nping", rate = "500", count = 4000 },
  { target = "vanilla", tool = "hping3", from = "qemu", rate = "2kpps", kind = "udp" },
  { target = "qemu", tool = "trafgen", from = "container", rate = "3000", source = "fixed" },
]
"#,
            "t.toml",
        )
        .unwrap();
        let p = &s.phases[0];
        let kinds: Vec<&str> = p.workloads.iter().map(|w| w.kind.as_str()).collect();
        assert_eq!(kinds, ["flash-crowd", "udp", "udp", "download", "backup"]);
        assert_eq!(p.workloads[0].parallel, 600, "a flash crowd is hundreds of clients by default");
        assert_eq!((p.workloads[1].rate, p.workloads[1].length), (Some(Rate::PacketsPerSec(8000)), 32));
        assert_eq!((p.workloads[2].rate, p.workloads[2].length), (Some(DEFAULT_UDP_RATE), DEFAULT_UDP_LENGTH));
        assert_eq!(p.workloads[4].files, 500);
        assert_eq!(p.workloads[3], Workload { parallel: 2, ..Workload::new(WorkloadKind::Download, "qemu") });
        let f = &p.floods;
        assert_eq!((f[0].tool, f[0].source, f[0].count), (FloodTool::Trafgen, SourceMode::Random, None));
        assert_eq!((f[1].tool, f[1].source, f[1].count), (FloodTool::Nping, SourceMode::Fixed, Some(4000)));
        assert_eq!(
            (f[2].tool, f[2].source, &f[2].from),
            (FloodTool::Hping3, SourceMode::Fixed, &Sender::Guest("qemu".into()))
        );
        assert_eq!((f[3].source, f[3].from.guest()), (SourceMode::Fixed, Some("container")));
        assert_eq!(p.truth_of("qemu"), Truth::AttackVictim);
        assert_eq!(p.truth_of("container"), Truth::AttackZombie);
        for t in FloodTool::ALL {
            assert_eq!(t.as_str().parse::<FloodTool>(), Ok(t));
        }
        for k in WorkloadKind::ALL {
            assert_eq!(k.as_str().parse::<WorkloadKind>(), Ok(k));
        }
        for m in SourceMode::ALL {
            assert_eq!(m.as_str().parse::<SourceMode>(), Ok(m));
        }
        let names: Vec<&str> = FloodTool::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(names, ["vmguard", "hping3", "trafgen", "nping"]);
    }

    #[test]
    fn errors_name_file_phase_and_field() {
        let phase = |body: &str| format!("name = \"x\"\n[[phase]]\nname = \"p1\"\nduration = \"5s\"\n{body}");
        let cases = [
            (phase("").replace("\"5s\"", "\"soon\""), "duration"),
            (phase("[[phase.workload]]\nkind = \"dance\"\ntarget = \"qemu\"\n"), "workload.kind"),
            (phase("[[phase.flood]]\ntarget = \"qemu\"\nrate = \"fast\"\n"), "flood.rate"),
            (phase("[[phase.flood]]\ntarget = \"qemu\"\nrate = \"5\"\nkind = \"icmp\"\n"), "flood.kind"),
            (phase("[[phase.flood]]\ntarget = \"qemu\"\nrate = \"5\"\nfrom = \"qemu\"\n"), "flood.target"),
            (phase("[[phase.flood]]\ntarget = \"qemu\"\nrate = \"unlimited\"\n"), "flood.rate"),
            (phase("[[phase.flood]]\ntarget = \"qemu\"\nrate = \"5\"\ntool = \"scapy\"\n"), "flood.tool"),
            (phase("[[phase.flood]]\ntarget = \"qemu\"\nrate = \"5\"\nsource = \"everywhere\"\n"), "flood.source"),
            (
                phase("[[phase.flood]]\ntarget = \"qemu\"\nrate = \"5\"\ntool = \"hping3\"\nsource = \"random\"\n"),
                "flood.source",
            ),
            (
                phase("[[phase.flood]]\ntarget = \"qemu\"\nrate = \"5\"\ntool = \"nping\"\nsource = \"random\"\n"),
                "flood.source",
            ),
            (phase("[[phase.flood]]\ntarget = \"qemu\"\nrate = \"5\"\ncount = 0\n"), "flood.count"),
            (
                phase("[[phase.flood]]\ntarget = \"vanilla\"\nrate = \"5\"\ntool = \"trafgen\"\nfrom = \"qemu\"\n"),
                "flood.tool",
            ),
            (
                phase("[[phase.flood]]\ntarget = \"vanilla\"\nrate = \"5\"\ntool = \"nping\"\nfrom = \"qemu\"\n"),
                "flood.tool",
            ),
            (
                phase("[[phase.flood]]\ntarget = \"vanilla\"\nrate = \"5\"\ntool = \"trafgen\"\nfrom = \"xen\"\n"),
                "flood.tool",
            ),
            (phase("[[phase.workload]]\nkind = \"web\"\ntarget = \"qemu\"\nrate = \"5kpps\"\n"), "workload.rate"),
            (phase("[[phase.workload]]\nkind = \"udp\"\ntarget = \"qemu\"\nrate = \"soon\"\n"), "workload.rate"),
            (phase("[[phase.workload]]\nkind = \"udp\"\ntarget = \"qemu\"\nrate = \"unlimited\"\n"), "workload.rate"),
            (phase("[[phase.workload]]\nkind = \"udp\"\ntarget = \"qemu\"\nlength = 8\n"), "workload.length"),
            (phase("[[phase.workload]]\nkind = \"bulk\"\ntarget = \"qemu\"\nlength = 64\n"), "workload.length"),
            (phase("[[phase.workload]]\nkind = \"backup\"\ntarget = \"qemu\"\nfiles = 0\n"), "workload.files"),
            (phase("[[phase.workload]]\nkind = \"web\"\ntarget = \"qemu\"\nfiles = 10\n"), "workload.files"),
            (
                phase("[[phase.workload]]\nkind = \"flash-crowd\"\ntarget = \"qemu\"\nparallel = 20000\n"),
                "workload.parallel",
            ),
        ];
        for (text, field) in cases {
            let e = Scenario::parse(&text, "s.toml").unwrap_err().to_string();
            assert!(e.contains("s.toml") && e.contains("phase `p1`") && e.contains(&format!("`{field}`")), "{e}");
        }
        // Unknown keys and bad TOML: toml's own message names the line and the key.
        let e = Scenario::parse(&phase("colour = \"red\"\n"), "s.toml").unwrap_err();
        let chain = format!("{e}: {}", std::error::Error::source(&e).unwrap());
        assert!(chain.contains("s.toml") && chain.contains("colour") && chain.contains("line"), "{chain}");
        assert!(matches!(Scenario::parse("name = \"x\"\n", "s"), Err(ScenarioError::NoPhases { .. })));
    }
}
