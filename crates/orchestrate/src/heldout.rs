//! Leave-one-scenario-family-out evaluation of Part B (`vmguard detect eval --leave-one-family-out`):
//! for every family ([`crate::family`]), train the detector without any phase of that family, replay
//! the recordings through it and the alert state machine (the agent's code path,
//! [`detect::online::timeline`]) and score only the held-out family's phases; beside it the same
//! figures for the model trained on everything (the in-family figure).
//!
//! Holding out is by whole phases: the held-out phases' spans become `unknown` for training, and the
//! window label rule ([`detect::truth::window_truth`]) leaves out every window that touches an
//! `unknown` span, so no training window overlaps a held-out phase. Scored windows are those whose
//! largest overlap is with a held-out phase (so each labelled window counts in one family). The replay
//! runs over each guest's whole recording, as the agent would have seen it; only alerts and windows in
//! the held-out phases are scored.

use std::collections::BTreeSet;
use std::path::Path;

use detect::online::labelled::alert_up_before;
use detect::online::{AlertEvent, AlertParams, DetectorModel, LabelledGuest, Role, timeline};
use detect::truth::{Span, Truth, window_truth};
use serde::Serialize;

use crate::dataset::{DatasetError, GuestData, Selection};
use crate::family::{FamilyError, PhaseIndex, is_benign};

/// The scenario phase and family of one span of a guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tag {
    pub phase: String,
    pub family: String,
}

/// One guest's labelled windows, with the phase and family of each of its spans (`tags[i]` is that of
/// `guest.spans[i]`).
#[derive(Debug, Clone)]
pub struct FamilyGuest {
    pub guest: LabelledGuest,
    pub tags: Vec<Tag>,
}

/// Every family in the data, sorted.
pub fn families(guests: &[FamilyGuest]) -> Vec<String> {
    let s: BTreeSet<&str> = guests.iter().flat_map(|g| g.tags.iter().map(|t| t.family.as_str())).collect();
    s.into_iter().map(str::to_string).collect()
}

/// The training data without `family`: its phases' spans become `unknown`, so no window touching them
/// is trained on (nor used for the benign ceilings of the novelty check).
pub fn without_family(guests: &[FamilyGuest], family: &str) -> Vec<LabelledGuest> {
    guests
        .iter()
        .map(|g| {
            let mut l = g.guest.clone();
            for (s, t) in l.spans.iter_mut().zip(&g.tags) {
                if t.family == family {
                    s.truth = Truth::Unknown;
                }
            }
            l
        })
        .collect()
}

/// Scenarios with at least one phase not of `family` (what a model trained without it saw).
fn scenarios_without(guests: &[FamilyGuest], family: Option<&str>) -> Vec<String> {
    let s: BTreeSet<&str> = guests
        .iter()
        .flat_map(|g| g.guest.spans.iter().zip(&g.tags))
        .filter(|(_, t)| Some(t.family.as_str()) != family)
        .map(|(s, _)| s.scenario.as_str())
        .collect();
    s.into_iter().map(str::to_string).collect()
}

/// One attack (a phase x a guest with an attack label) of the scored phases.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attack {
    pub scenario: String,
    pub phase: String,
    pub guest: String,
    pub truth: Truth,
    /// Seconds from the phase start to the alert (0 when an alert raised before was still on);
    /// `None` = missed.
    pub alert_after_s: Option<f64>,
    pub role: Option<Role>,
}

impl Attack {
    pub fn role_right(&self) -> bool {
        self.role.is_some() && self.role == self.truth.role()
    }
}

/// An alert raised on a guest labelled normal in a scored phase.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FalseAlert {
    pub scenario: String,
    pub phase: String,
    pub guest: String,
    /// Seconds from the phase start.
    pub after_s: f64,
}

/// A model's figures on some phases.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Score {
    /// Scored phases (scenario phase runs, each counted once whatever its guests).
    pub phases: usize,
    pub attacks: Vec<Attack>,
    pub false_alerts: Vec<FalseAlert>,
    pub windows: Confusion,
}

/// Window counts (dos = positive).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Confusion {
    pub tp: u64,
    pub fp: u64,
    pub tn: u64,
    #[serde(rename = "fn")]
    pub fn_: u64,
}

impl Confusion {
    pub fn total(&self) -> u64 {
        self.tp + self.fp + self.tn + self.fn_
    }

    pub fn accuracy(&self) -> Option<f64> {
        (self.total() > 0).then(|| (self.tp + self.tn) as f64 / self.total() as f64)
    }
}

impl Score {
    pub fn alerted(&self) -> usize {
        self.attacks.iter().filter(|a| a.alert_after_s.is_some()).count()
    }

    pub fn role_right(&self) -> usize {
        self.attacks.iter().filter(|a| a.role_right()).count()
    }

    /// Median and maximum seconds to alert over the alerted attacks.
    pub fn time_to_alert(&self) -> Option<(f64, f64)> {
        let mut t: Vec<f64> = self.attacks.iter().filter_map(|a| a.alert_after_s).collect();
        if t.is_empty() {
            return None;
        }
        t.sort_by(f64::total_cmp);
        let n = t.len();
        let median = if n % 2 == 1 { t[n / 2] } else { (t[n / 2 - 1] + t[n / 2]) / 2.0 };
        Some((median, t[n - 1]))
    }

    fn add(&mut self, o: &Score) {
        self.phases += o.phases;
        self.attacks.extend(o.attacks.iter().cloned());
        self.false_alerts.extend(o.false_alerts.iter().cloned());
        let (a, b) = (&mut self.windows, &o.windows);
        (a.tp, a.fp, a.tn, a.fn_) = (a.tp + b.tp, a.fp + b.fp, a.tn + b.tn, a.fn_ + b.fn_);
    }
}

/// The figures as JSON readers want them (counts and times computed).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub phases: usize,
    pub attacks: usize,
    pub alerted: usize,
    pub role_right: usize,
    pub median_alert_s: Option<f64>,
    pub max_alert_s: Option<f64>,
    pub false_alerts: usize,
    pub windows: Confusion,
    pub accuracy: Option<f64>,
}

impl From<&Score> for Summary {
    fn from(s: &Score) -> Summary {
        let t = s.time_to_alert();
        Summary {
            phases: s.phases,
            attacks: s.attacks.len(),
            alerted: s.alerted(),
            role_right: s.role_right(),
            median_alert_s: t.map(|t| t.0),
            max_alert_s: t.map(|t| t.1),
            false_alerts: s.false_alerts.len(),
            windows: s.windows,
            accuracy: s.windows.accuracy(),
        }
    }
}

/// The span of `spans` covering most of `[s, e)` (the first on a tie).
fn main_span(spans: &[Span], s: i64, e: i64) -> Option<usize> {
    let mut best: Option<(usize, i64)> = None;
    for (i, sp) in spans.iter().enumerate() {
        let o = sp.end_ns.min(e) - sp.start_ns.max(s);
        if o > 0 && best.is_none_or(|(_, b)| o > b) {
            best = Some((i, o));
        }
    }
    best.map(|(i, _)| i)
}

/// Scores `model` on the phases of `family`: each guest's whole recording replayed through the model
/// and the alert state machine ([`timeline`]), windows and alerts counted inside the family's phases.
pub fn score_family(model: &DetectorModel, guests: &[FamilyGuest], family: &str) -> Score {
    let ms = |t: i64| t * 1_000_000;
    // Alerts up to a window (and two rounds) after an attack ended still belong to it, as in
    // `detect::online::evaluate`.
    let tail = model.window_ms as i64 * 1_000_000 + 2_000_000_000;
    let mut score = Score::default();
    let mut phases: BTreeSet<(&str, i64)> = BTreeSet::new();
    for fg in guests {
        let g = &fg.guest;
        let mine: Vec<usize> = (0..g.spans.len()).filter(|&i| fg.tags[i].family == family).collect();
        if mine.is_empty() {
            continue;
        }
        for &i in &mine {
            phases.insert((g.spans[i].scenario.as_str(), g.spans[i].start_ns));
        }
        let Some(tl) = timeline(model, g) else {
            tracing::warn!(guest = %g.name, kind = %g.kind, "the model cannot score this kind of guest; left out");
            continue;
        };
        for (w, p) in g.windows.iter().zip(&tl.points) {
            let (s, e) = (ms(w.start_ms), ms(w.end_ms));
            let Some(t) = window_truth(&g.spans, s, e) else { continue };
            if !main_span(&g.spans, s, e).is_some_and(|i| mine.contains(&i)) {
                continue;
            }
            let c = &mut score.windows;
            match (t, p.alarm) {
                (detect::Label::Dos, true) => c.tp += 1,
                (detect::Label::Dos, false) => c.fn_ += 1,
                (detect::Label::Normal, true) => c.fp += 1,
                (detect::Label::Normal, false) => c.tn += 1,
            }
        }
        let raised: Vec<(i64, Role)> = tl
            .events
            .iter()
            .filter_map(|ev| match ev {
                AlertEvent::Raised { time_ms, role, .. } => Some((ms(*time_ms), *role)),
                _ => None,
            })
            .collect();
        for &i in &mine {
            let a = &g.spans[i];
            let tag = &fg.tags[i];
            if a.truth.is_attack() {
                let during = raised.iter().find(|(t, _)| *t >= a.start_ns && *t <= a.end_ns);
                // An alert raised before this attack and not cleared since also counts, at 0 s.
                let ongoing = alert_up_before(&tl.events, a.start_ns);
                let (after, role) = match (during, ongoing) {
                    (Some((t, r)), _) => (Some((t - a.start_ns) as f64 / 1e9), Some(*r)),
                    (None, Some(r)) => (Some(0.0), Some(r)),
                    _ => (None, None),
                };
                score.attacks.push(Attack {
                    scenario: a.scenario.clone(),
                    phase: tag.phase.clone(),
                    guest: g.name.clone(),
                    truth: a.truth,
                    alert_after_s: after,
                    role,
                });
            } else if a.truth == Truth::Normal {
                let attacks = g.spans.iter().filter(|s| s.truth.is_attack());
                let excused: Vec<(i64, i64)> = attacks.map(|s| (s.start_ns, s.end_ns + tail)).collect();
                for &(t, _) in &raised {
                    if t >= a.start_ns && t < a.end_ns && !excused.iter().any(|(s, e)| t >= *s && t <= *e) {
                        score.false_alerts.push(FalseAlert {
                            scenario: a.scenario.clone(),
                            phase: tag.phase.clone(),
                            guest: g.name.clone(),
                            after_s: (t - a.start_ns) as f64 / 1e9,
                        });
                    }
                }
            }
        }
    }
    score.phases = phases.len();
    score
}

/// One family's row.
#[derive(Debug, Clone, Serialize)]
pub struct FamilyResult {
    pub family: String,
    pub benign: bool,
    /// Scenarios with phases of this family.
    pub scenarios: Vec<String>,
    /// What the held-out model was trained on: every other family, and the scenarios with phases of them.
    pub trained_on_families: Vec<String>,
    pub trained_on_scenarios: Vec<String>,
    pub training_windows: usize,
    /// The model trained without the family, on it; `None` when no model could be trained without it.
    pub held_out: Option<Score>,
    pub held_out_summary: Option<Summary>,
    /// Why there is no held-out model.
    pub error: Option<String>,
    /// The model trained on everything, on the same phases.
    pub in_family: Score,
    pub in_family_summary: Summary,
}

/// The whole evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct HeldOutReport {
    pub window_secs: f64,
    pub families: Vec<FamilyResult>,
    /// Every family's held-out figures together (families without a held-out model left out).
    pub overall_held_out: Summary,
    /// The model trained on everything, on every phase.
    pub overall_in_family: Summary,
    pub in_family_trained_on: Vec<String>,
    pub in_family_training_windows: usize,
}

/// Why the evaluation could not run.
#[derive(Debug, thiserror::Error)]
pub enum HeldOutError {
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error(transparent)]
    Family(#[from] FamilyError),
    #[error("reading the labels of the store {path}")]
    Store {
        path: String,
        #[source]
        source: Box<store::StoreError>,
    },
    #[error("training the detector on every family")]
    Train(#[source] detect::online::ModelError),
}

/// Leave-one-family-out on tagged windows: one model per family trained without it (the
/// [`crate::evaluate::train_labelled`] path, the same as `detect train`), plus the in-family model
/// trained on everything.
pub fn leave_one_family_out(
    guests: &[FamilyGuest],
    window_ms: u64,
    alert: AlertParams,
) -> Result<HeldOutReport, HeldOutError> {
    let all: Vec<LabelledGuest> = guests.iter().map(|g| g.guest.clone()).collect();
    let everything = crate::evaluate::train_labelled(&all, window_ms, alert, scenarios_without(guests, None))
        .map_err(HeldOutError::Train)?;
    let fams = families(guests);
    let mut rows = Vec::new();
    let (mut overall_h, mut overall_i) = (Score::default(), Score::default());
    for f in &fams {
        let in_family = score_family(&everything.model, guests, f);
        overall_i.add(&in_family);
        let train = without_family(guests, f);
        let trained_on_scenarios = scenarios_without(guests, Some(f));
        let (held_out, error, windows) =
            match crate::evaluate::train_labelled(&train, window_ms, alert, trained_on_scenarios.clone()) {
                Ok(t) => {
                    let s = score_family(&t.model, guests, f);
                    overall_h.add(&s);
                    (Some(s), None, t.windows)
                }
                Err(e) => (None, Some(e.to_string()), 0),
            };
        let scenarios: BTreeSet<&str> = guests
            .iter()
            .flat_map(|g| g.guest.spans.iter().zip(&g.tags))
            .filter(|(_, t)| t.family == *f)
            .map(|(s, _)| s.scenario.as_str())
            .collect();
        rows.push(FamilyResult {
            family: f.clone(),
            benign: is_benign(f),
            scenarios: scenarios.into_iter().map(str::to_string).collect(),
            trained_on_families: fams.iter().filter(|o| *o != f).cloned().collect(),
            trained_on_scenarios,
            training_windows: windows,
            held_out_summary: held_out.as_ref().map(Summary::from),
            held_out,
            error,
            in_family_summary: Summary::from(&in_family),
            in_family,
        });
    }
    Ok(HeldOutReport {
        window_secs: window_ms as f64 / 1000.0,
        families: rows,
        overall_held_out: Summary::from(&overall_h),
        overall_in_family: Summary::from(&overall_i),
        in_family_trained_on: everything.model.trained_on.clone(),
        in_family_training_windows: everything.windows,
    })
}

/// Tags every guest's spans with their phase and family.
pub fn tag(data: &[GuestData], index: &PhaseIndex, window_ms: u64) -> Vec<FamilyGuest> {
    data.iter()
        .map(|g| {
            let tags = g
                .spans
                .iter()
                .map(|s| match index.get(&s.scenario, s.start_ns, s.end_ns) {
                    Some(p) => Tag { phase: p.phase.clone(), family: p.family.clone() },
                    None => Tag { phase: "?".into(), family: format!("unknown/{}", s.scenario) },
                })
                .collect();
            FamilyGuest { guest: g.labelled(window_ms), tags }
        })
        .collect()
}

/// What the command needs: the data of the selected scenarios, their phases' families and where those
/// came from.
pub struct Loaded {
    pub data: Vec<GuestData>,
    pub index: PhaseIndex,
}

/// Loads the selected scenarios and their phases' families (see [`crate::family::phase_families`]).
pub fn load(st: &store::Store, sel: &Selection, scenario_dir: &Path) -> Result<Loaded, HeldOutError> {
    let data = crate::dataset::load(st, sel)?;
    let path = st.path().display().to_string();
    let labels = st
        .labels(None, i64::MIN, i64::MAX)
        .map_err(|e| HeldOutError::Store { path, source: Box::new(e) })?
        .into_iter()
        .filter(|l| sel.accepts(&l.scenario))
        .collect::<Vec<_>>();
    let index = crate::family::phase_families(st, &labels, scenario_dir)?;
    Ok(Loaded { data, index })
}

#[cfg(test)]
mod tests;
