//! Scenario families, for the held-out evaluation (`detect eval --leave-one-family-out`,
//! [`crate::heldout`]): which phases are "the same kind of thing", so that a model can be tested on a
//! whole kind it never saw.
//!
//! - An **attack phase** (one with floods) belongs to the family `TOOL/KIND/DIRECTION` of its flood,
//!   e.g. `hping3/udp/attacker` or `vmguard/syn/zombie`: the flood tool, the flood kind and where the
//!   flood comes from (`attacker` = the attacker host, `zombie` = from inside a victim). A phase with
//!   floods of several families gets them all, sorted and joined with `+`
//!   (`hping3/udp/attacker+vmguard/syn/zombie`), so holding it out drops the phase whole.
//! - A **benign phase** (no flood) belongs to `benign/` + its set of workload kinds, sorted and joined
//!   with `+` (`benign/bulk+web`), or `benign/idle` without workloads. One family per workload-kind
//!   set rather than per scenario: the benign phases of attack scenarios (baselines, calm phases)
//!   group with the benign scenarios' phases of the same kinds, and a family is a kind of load, not a
//!   file. The workload's parallelism and direction (`reverse`) do not split families.
//!
//! Every string comes from the enums' `as_str()` (tools, kinds and workload kinds added later get
//! families without a change here). The facts a family is derived from are kept in the store by
//! `record` ([`store_run`]: a run of kind `record` in the store's `runs` table, one [`PhaseRecord`]
//! per phase); stores recorded before that are matched against the scenario files
//! ([`phase_families`]) after checking that the files still describe the recording.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use detect::truth::Truth;
use serde::{Deserialize, Serialize};

use crate::flood::Sender;
use crate::scenario::{FloodSpec, Phase, Scenario};

/// The `kind` of the runs `record` stores beside its labels.
pub const RUN_KIND: &str = "record";

/// The prefix of every benign family.
pub const BENIGN: &str = "benign";

/// Whether a family is a benign one.
pub fn is_benign(family: &str) -> bool {
    family.strip_prefix(BENIGN).is_some_and(|r| r.starts_with('/'))
}

/// Where a flood comes from, as a family's last part: the attacker host or a victim (a zombie).
pub fn direction(from: &Sender) -> &'static str {
    from.guest().map_or("attacker", |_| "zombie")
}

/// One flood of a recorded phase, as strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FloodRecord {
    pub tool: String,
    pub kind: String,
    /// `attacker` or `zombie` ([`direction`]).
    pub direction: String,
    /// `attacker` or the zombie's name.
    pub from: String,
    pub target: String,
    pub rate: String,
}

impl FloodRecord {
    pub fn of(f: &FloodSpec) -> FloodRecord {
        FloodRecord {
            tool: f.tool.as_str().to_string(),
            kind: f.kind.as_str().to_string(),
            direction: direction(&f.from).to_string(),
            from: f.from.to_string(),
            target: f.target.clone(),
            rate: f.rate.to_string(),
        }
    }

    /// `TOOL/KIND/DIRECTION`.
    pub fn family(&self) -> String {
        format!("{}/{}/{}", self.tool, self.kind, self.direction)
    }
}

/// One workload of a recorded phase, as strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadRecord {
    pub kind: String,
    pub target: String,
}

/// What `record` keeps of a phase: enough to know its family later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseRecord {
    pub name: String,
    /// The phase's interval, the same as its labels'.
    pub start_ns: i64,
    pub end_ns: i64,
    #[serde(default)]
    pub floods: Vec<FloodRecord>,
    #[serde(default)]
    pub workloads: Vec<WorkloadRecord>,
}

impl PhaseRecord {
    pub fn of(p: &Phase, start_ns: i64, end_ns: i64) -> PhaseRecord {
        PhaseRecord {
            name: p.name.clone(),
            start_ns,
            end_ns,
            floods: p.floods.iter().map(FloodRecord::of).collect(),
            workloads: p
                .workloads
                .iter()
                .map(|w| WorkloadRecord { kind: w.kind.as_str().to_string(), target: w.target.clone() })
                .collect(),
        }
    }

    /// The phase's family (module docs).
    pub fn family(&self) -> String {
        if !self.floods.is_empty() {
            let f: BTreeSet<String> = self.floods.iter().map(FloodRecord::family).collect();
            return f.into_iter().collect::<Vec<_>>().join("+");
        }
        let w: BTreeSet<&str> = self.workloads.iter().map(|w| w.kind.as_str()).collect();
        if w.is_empty() {
            format!("{BENIGN}/idle")
        } else {
            format!("{BENIGN}/{}", w.into_iter().collect::<Vec<_>>().join("+"))
        }
    }
}

/// A recorded run as stored in the `runs` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// [`RUN_KIND`].
    pub kind: String,
    pub scenario: String,
    pub phases: Vec<PhaseRecord>,
}

/// Stores a recorded run's phases (a run of kind [`RUN_KIND`] in the store's `runs` table).
pub fn store_run(
    st: &mut store::Store,
    scenario: &str,
    start_ns: i64,
    phases: Vec<PhaseRecord>,
) -> Result<(), store::StoreError> {
    let run = RunRecord { kind: RUN_KIND.into(), scenario: scenario.into(), phases };
    let meta =
        serde_json::to_value(&run).map_err(|source| store::StoreError::Json { what: "a recorded run", source })?;
    st.add_run(&format!("{RUN_KIND}-{scenario}-{start_ns}"), start_ns, &meta)
}

/// A phase as the held-out evaluation sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PhaseFamily {
    pub scenario: String,
    pub phase: String,
    pub family: String,
}

/// Every recorded phase's family, by `(scenario, start_ns, end_ns)` of its labels.
#[derive(Debug, Clone, Default)]
pub struct PhaseIndex {
    pub phases: BTreeMap<(String, i64, i64), PhaseFamily>,
    /// Scenarios whose phases came from the scenario files (stores recorded before phase records).
    pub from_files: Vec<String>,
}

impl PhaseIndex {
    pub fn get(&self, scenario: &str, start_ns: i64, end_ns: i64) -> Option<&PhaseFamily> {
        self.phases.get(&(scenario.to_string(), start_ns, end_ns))
    }
}

/// Why the families of recorded phases cannot be known.
#[derive(Debug, thiserror::Error)]
pub enum FamilyError {
    #[error("reading the recorded runs from the store {path}")]
    Store {
        path: String,
        #[source]
        source: Box<store::StoreError>,
    },
    #[error(
        "the store {path} has no phase records for scenario `{scenario}` (recorded before vmguard kept them) and \
         the scenario file cannot stand in for them: {why}; record it again, or point --scenario-dir at the files \
         it was recorded from"
    )]
    NoPhases { path: String, scenario: String, why: String },
}

/// Runs of one scenario in labels recorded without phase records: consecutive phases follow each
/// other within a second; runs are seconds apart (the collector starts and waits two rounds).
fn runs_of(intervals: &[(i64, i64)]) -> Vec<Vec<(i64, i64)>> {
    let mut runs: Vec<Vec<(i64, i64)>> = Vec::new();
    for &iv in intervals {
        match runs.last_mut() {
            Some(r) if iv.0 - r.last().map_or(iv.0, |l| l.1) < 2_000_000_000 => r.push(iv),
            _ => runs.push(vec![iv]),
        }
    }
    runs
}

/// A recorded phase interval and the index of its phase in the scenario file.
type Matched = ((i64, i64), usize);

/// Matches one scenario's labels (recorded without phase records) to its scenario file: every run
/// must have at most the file's phases, the same truth per guest and phase, and durations in the same
/// proportion (one time scale).
fn match_file(s: &Scenario, labels: &[&store::Label]) -> Result<Vec<Matched>, String> {
    let mut intervals: Vec<(i64, i64)> = labels.iter().map(|l| (l.start_ns, l.end_ns)).collect();
    intervals.sort_unstable();
    intervals.dedup();
    let mut out = Vec::new();
    for run in runs_of(&intervals) {
        if run.len() > s.phases.len() {
            return Err(format!("a run has {} phases, the file {}", run.len(), s.phases.len()));
        }
        let scales: Vec<f64> = run
            .iter()
            .zip(&s.phases)
            .map(|((a, b), p)| (b - a) as f64 / 1e9 / p.duration.as_secs_f64().max(1e-3))
            .collect();
        let (lo, hi) = scales.iter().fold((f64::MAX, 0.0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        if hi > 1.25 * lo {
            return Err("the recorded phase durations are not in the file's proportions".into());
        }
        for (i, (iv, p)) in run.iter().zip(&s.phases).enumerate() {
            for l in labels.iter().filter(|l| (l.start_ns, l.end_ns) == *iv) {
                let stored = Truth::from_stored(&l.label);
                if stored != Truth::Unknown && stored != p.truth_of(&l.guest) {
                    return Err(format!(
                        "phase {} `{}` gives {} the label {}, the recording {}",
                        i + 1,
                        p.name,
                        l.guest,
                        p.truth_of(&l.guest).as_str(),
                        l.label
                    ));
                }
            }
            out.push((*iv, i));
        }
    }
    Ok(out)
}

/// The family of every labelled phase of the selected scenarios: from the store's phase records, or
/// for scenarios recorded before those from the scenario files in `scenario_dir` (checked against the
/// labels; see [`match_file`]).
pub fn phase_families(
    st: &store::Store,
    labels: &[store::Label],
    scenario_dir: &Path,
) -> Result<PhaseIndex, FamilyError> {
    let path = st.path().display().to_string();
    let runs = st.runs().map_err(|e| FamilyError::Store { path: path.clone(), source: Box::new(e) })?;
    let mut index = PhaseIndex::default();
    for (_, _, meta) in runs {
        if meta["kind"] != RUN_KIND {
            continue;
        }
        let Ok(run) = serde_json::from_value::<RunRecord>(meta) else {
            tracing::warn!(store = %path, "a recorded run's phase record is unreadable; skipped");
            continue;
        };
        for p in run.phases {
            let pf = PhaseFamily { scenario: run.scenario.clone(), phase: p.name.clone(), family: p.family() };
            index.phases.insert((run.scenario.clone(), p.start_ns, p.end_ns), pf);
        }
    }
    let mut missing: BTreeMap<&str, Vec<&store::Label>> = BTreeMap::new();
    for l in labels {
        if index.get(&l.scenario, l.start_ns, l.end_ns).is_none() {
            missing.entry(l.scenario.as_str()).or_default().push(l);
        }
    }
    for (name, ls) in missing {
        let no = |why: String| FamilyError::NoPhases { path: path.clone(), scenario: name.to_string(), why };
        let file: PathBuf = scenario_dir.join(format!("{name}.toml"));
        let s = Scenario::load(name, scenario_dir).map_err(|e| no(crate::error_chain(&e)))?;
        let matched = match_file(&s, &ls).map_err(|e| no(format!("{}: {e}", file.display())))?;
        for ((a, b), i) in matched {
            let p = &s.phases[i];
            let pf = PhaseFamily {
                scenario: name.to_string(),
                phase: p.name.clone(),
                family: PhaseRecord::of(p, a, b).family(),
            };
            index.phases.insert((name.to_string(), a, b), pf);
        }
        index.from_files.push(name.to_string());
    }
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{FloodTool, WorkloadKind};

    fn scenario() -> Scenario {
        Scenario::parse(&toml_of_scenario(), "s.toml").unwrap()
    }

    #[test]
    fn families_of_phases() {
        let s = scenario();
        let f: Vec<String> = s.phases.iter().map(|p| PhaseRecord::of(p, 0, 1).family()).collect();
        assert_eq!(
            f,
            ["benign/bulk+web", "hping3/udp/attacker", "hping3/udp/attacker+vmguard/syn/zombie", "benign/idle"]
        );
        assert!(is_benign(&f[0]) && is_benign(&f[3]) && !is_benign(&f[1]) && !is_benign("benignish/x"));
        // The strings are the enums' own.
        let r = FloodRecord::of(&s.phases[1].floods[0]);
        assert_eq!((r.tool.as_str(), r.kind.as_str()), (FloodTool::Hping3.as_str(), flood::FloodKind::Udp.as_str()));
        assert_eq!(PhaseRecord::of(&s.phases[0], 0, 1).workloads[1].kind, WorkloadKind::Bulk.as_str());
        // What the store keeps reads back to the same family.
        let p = PhaseRecord::of(&s.phases[2], 5, 9);
        let back: PhaseRecord = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back.family(), p.family());
    }

    fn label(guest: &str, s: i64, e: i64, l: &str) -> store::Label {
        store::Label { guest: guest.into(), start_ns: s, end_ns: e, label: l.into(), scenario: "s".into() }
    }

    #[test]
    fn stored_runs_and_old_stores() {
        let dir = tempfile::tempdir().unwrap();
        let sdir = dir.path().join("scenarios");
        std::fs::create_dir(&sdir).unwrap();
        let s = scenario();
        let g = 1_000_000_000i64;
        // Two runs (the second one interrupted after two phases), recorded before phase records.
        let mut labels = Vec::new();
        for (t0, n) in [(100 * g, 4), (300 * g, 2)] {
            let mut t = t0;
            for p in s.phases.iter().take(n) {
                let e = t + p.duration.as_nanos() as i64;
                for guest in ["vanilla", "qemu"] {
                    labels
                        .push(store::Label { scenario: "s".into(), ..label(guest, t, e, p.truth_of(guest).as_str()) });
                }
                t = e + g / 10;
            }
        }
        let mut st = store::Store::open(dir.path().join("x.db")).unwrap();
        st.add_labels(&labels).unwrap();
        // No file: the error says what to do.
        let e = phase_families(&st, &labels, &sdir).unwrap_err().to_string();
        assert!(e.contains("no phase records for scenario `s`") && e.contains("record it again"), "{e}");
        std::fs::write(sdir.join("s.toml"), toml_of_scenario()).unwrap();
        let idx = phase_families(&st, &labels, &sdir).unwrap();
        assert_eq!(idx.from_files, ["s"]);
        assert_eq!(idx.phases.len(), 6);
        assert_eq!(
            idx.get("s", 300 * g + 10 * g + g / 10, 300 * g + 30 * g + g / 10).unwrap().family,
            "hping3/udp/attacker"
        );
        // A file that no longer matches the recording (a flood moved to another guest) is refused.
        let changed = toml_of_scenario().replace("target = \"vanilla\", tool", "target = \"qemu\", tool");
        std::fs::write(sdir.join("s.toml"), changed).unwrap();
        let e = phase_families(&st, &labels, &sdir).unwrap_err().to_string();
        assert!(e.contains("phase 2 `hping`"), "{e}");
        // With a stored run, the store's record wins and the file is not read.
        let phases: Vec<PhaseRecord> = {
            let mut t = 100 * g;
            s.phases
                .iter()
                .map(|p| {
                    let e = t + p.duration.as_nanos() as i64;
                    let r = PhaseRecord::of(p, t, e);
                    t = e + g / 10;
                    r
                })
                .collect()
        };
        store_run(&mut st, "s", 100 * g, phases).unwrap();
        let only_first: Vec<store::Label> = labels.iter().filter(|l| l.start_ns < 200 * g).cloned().collect();
        let idx = phase_families(&st, &only_first, &sdir).unwrap();
        assert!(idx.from_files.is_empty());
        assert_eq!(idx.get("s", 100 * g, 110 * g).unwrap().family, "benign/bulk+web");
    }

    fn toml_of_scenario() -> String {
        r#"name = "s"
[[phase]]
name = "base"
duration = "10s"
workload = [{ kind = "web", target = "vanilla" }, { kind = "bulk", target = "qemu" }, { kind = "web", target = "qemu" }]
[[phase]]
name = "hping"
duration = "20s"
flood = [{ target = "vanilla", tool = "hping3", kind = "udp", rate = "1000" }]
workload = [{ kind = "web", target = "qemu" }]
[[phase]]
name = "zombie"
duration = "20s"
flood = [{ target = "qemu", from = "vanilla", rate = "1000" }, { target = "vanilla", tool = "hping3", kind = "udp", rate = "5" }]
[[phase]]
name = "tail"
duration = "10s"
"#
        .to_string()
    }
}
