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
}

impl WorkloadKind {
    pub const ALL: [WorkloadKind; 5] =
        [WorkloadKind::Web, WorkloadKind::Bulk, WorkloadKind::Connections, WorkloadKind::Cpu, WorkloadKind::Fileio];

    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Web => "web",
            WorkloadKind::Bulk => "bulk",
            WorkloadKind::Connections => "connections",
            WorkloadKind::Cpu => "cpu",
            WorkloadKind::Fileio => "fileio",
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
    /// hping3, the peer tool, from the attacker host only.
    Hping3,
}

impl FloodTool {
    pub fn as_str(self) -> &'static str {
        match self {
            FloodTool::Vmguard => "vmguard",
            FloodTool::Hping3 => "hping3",
        }
    }
}

impl std::str::FromStr for FloodTool {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "vmguard" => Ok(FloodTool::Vmguard),
            "hping3" => Ok(FloodTool::Hping3),
            other => Err(format!("unknown flood tool `{other}` (use vmguard or hping3)")),
        }
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
}

/// A flood in a phase.
#[derive(Debug, Clone, PartialEq)]
pub struct FloodSpec {
    pub target: String,
    pub from: Sender,
    pub rate: Rate,
    pub tool: FloodTool,
    pub kind: FloodKind,
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
                let parallel = w.parallel.unwrap_or(1);
                if parallel == 0 || parallel > 10_000 {
                    return Err(field("workload.parallel", format!("{parallel} must be 1 to 10000")));
                }
                if w.reverse && kind != WorkloadKind::Bulk {
                    return Err(field("workload.reverse", format!("only bulk workloads can run reversed, not {kind}")));
                }
                workloads.push(Workload { kind, target: w.target.clone(), parallel, reverse: w.reverse });
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
                if tool == FloodTool::Hping3 && from != Sender::Attacker {
                    return Err(field("flood.tool", "hping3 floods run from the attacker host only".into()));
                }
                if from.guest() == Some(f.target.as_str()) {
                    return Err(field("flood.target", format!("`{}` cannot flood itself", f.target)));
                }
                if f.target == "attacker" {
                    return Err(field("flood.target", "floods go to lab victims, not to the attacker".into()));
                }
                floods.push(FloodSpec { target: f.target.clone(), from, rate, tool, kind });
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
    fn errors_name_file_phase_and_field() {
        let phase = |body: &str| format!("name = \"x\"\n[[phase]]\nname = \"p1\"\nduration = \"5s\"\n{body}");
        let cases = [
            (phase("").replace("\"5s\"", "\"soon\""), "duration"),
            (phase("[[phase.workload]]\nkind = \"dance\"\ntarget = \"qemu\"\n"), "workload.kind"),
            (phase("[[phase.flood]]\ntarget = \"qemu\"\nrate = \"fast\"\n"), "flood.rate"),
            (phase("[[phase.flood]]\ntarget = \"qemu\"\nrate = \"5\"\nkind = \"icmp\"\n"), "flood.kind"),
            (
                phase("[[phase.flood]]\ntarget = \"qemu\"\nrate = \"5\"\ntool = \"hping3\"\nfrom = \"container\"\n"),
                "flood.tool",
            ),
            (phase("[[phase.flood]]\ntarget = \"qemu\"\nrate = \"5\"\nfrom = \"qemu\"\n"), "flood.target"),
            (phase("[[phase.flood]]\ntarget = \"qemu\"\nrate = \"unlimited\"\n"), "flood.rate"),
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
