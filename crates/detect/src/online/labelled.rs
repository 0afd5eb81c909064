//! Part B on labelled windows: training examples, training a [`DetectorModel`] per guest kind, and
//! the evaluation of a model by replaying windows through it and the alert state machine (window
//! metrics, false positives on benign windows, time to alert, the role named).
//!
//! Pure: the caller turns recorded samples into windows (with [`super::ticks`]) and hands them over
//! with the guest's ground truth.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{
    AlertEvent, AlertParams, AlertState, Class, DetectorModel, FeatureWindow, KindModel, MODEL_VERSION, ModelError,
    Role, ScoreMode, TrainParams,
};
use crate::mapping::Label;
use crate::truth::{Span, Truth, window_role, window_truth};

/// One guest's recorded windows and its ground truth.
#[derive(Debug, Clone)]
pub struct LabelledGuest {
    pub name: String,
    /// Guest kind (`vanilla`, `container`, `qemu`, `xen`): the model entry that scores it.
    pub kind: String,
    pub windows: Vec<FeatureWindow>,
    pub spans: Vec<Span>,
}

impl LabelledGuest {
    fn truth_of(&self, w: &FeatureWindow) -> Option<Label> {
        window_truth(&self.spans, w.start_ms * 1_000_000, w.end_ms * 1_000_000)
    }
}

/// Labelled training examples of every guest: (kind, raw feature values, class). Unlabelled windows
/// are left out.
pub fn training_examples(guests: &[LabelledGuest]) -> Vec<(&str, Vec<Option<f64>>, Class)> {
    let mut out = Vec::new();
    for g in guests {
        for w in &g.windows {
            let (s, e) = (w.start_ms * 1_000_000, w.end_ms * 1_000_000);
            let class = match window_truth(&g.spans, s, e) {
                Some(Label::Normal) => Class::Normal,
                Some(Label::Dos) => match window_role(&g.spans, s, e) {
                    Some(Role::Attacker) => Class::Attacker,
                    _ => Class::Victim,
                },
                None => continue,
            };
            out.push((g.kind.as_str(), w.values(), class));
        }
    }
    out
}

/// What [`train`] made, for people.
#[derive(Debug, Clone, Serialize)]
pub struct Training {
    pub model: DetectorModel,
    pub windows: usize,
    /// Kinds that got no model of their own (only benign data, say), with why: the generic model's
    /// benign-only novelty check serves them ([`DetectorModel::scorer_for`]).
    pub without_own_model: Vec<(String, String)>,
}

/// One model per guest kind that has labelled attack windows, plus the generic `*` model (whose
/// novelty check, fitted on the benign windows of every kind, scores the kinds without a model of their
/// own).
pub fn train(
    guests: &[LabelledGuest],
    window_ms: u64,
    alert: AlertParams,
    params: &TrainParams,
    trained_on: Vec<String>,
) -> Result<Training, ModelError> {
    let ex = training_examples(guests);
    let mut kinds: Vec<&str> = ex.iter().map(|(k, _, _)| *k).collect();
    kinds.sort_unstable();
    kinds.dedup();
    let mut models = Vec::new();
    let mut without = Vec::new();
    for kind in kinds {
        let mine: Vec<(Vec<Option<f64>>, Class)> =
            ex.iter().filter(|(k, _, _)| *k == kind).map(|(_, v, c)| (v.clone(), *c)).collect();
        match KindModel::train(kind, &mine, params) {
            Ok(m) => models.push(m),
            Err(e) => without.push((kind.to_string(), e.to_string())),
        }
    }
    let all: Vec<(Vec<Option<f64>>, Class)> = ex.iter().map(|(_, v, c)| (v.clone(), *c)).collect();
    models.push(KindModel::train("*", &all, params)?);
    let model = DetectorModel { version: MODEL_VERSION, window_ms, alert, models, trained_on };
    Ok(Training { model, windows: ex.len(), without_own_model: without })
}

/// Time from an attack's start to its alert.
#[derive(Debug, Clone, Serialize)]
pub struct Detection {
    pub guest: String,
    pub scenario: String,
    pub truth: Truth,
    pub start_ns: i64,
    /// Seconds from the start of the attack to the alert; `None` = never alerted during the attack.
    pub alert_after_s: Option<f64>,
    /// Role named by the alert.
    pub role: Option<Role>,
    /// Seconds from the end of the attack to the alert clearing; `None` = still raised at the end.
    pub cleared_after_s: Option<f64>,
}

/// Part B's figures on some labelled data.
#[derive(Debug, Clone, Serialize)]
pub struct PartBReport {
    pub window_secs: f64,
    pub trained_on: Vec<String>,
    pub metrics: Option<crate::BinaryMetrics>,
    /// Benign windows flagged / benign windows.
    pub false_positive_rate: Option<f64>,
    /// Alerts raised outside attacks.
    pub false_alerts: usize,
    pub per_scenario: BTreeMap<String, crate::BinaryMetrics>,
    pub detections: Vec<Detection>,
    /// Correct role among attacks that were alerted.
    pub role_accuracy: Option<f64>,
    /// Attack windows flagged by the benign-only novelty check alone (the supervised half missed them,
    /// or was not used: [`ScoreMode::NoveltyOnly`]).
    pub attack_windows_by_novelty: usize,
    /// How each guest kind in the data was scored; kinds the model cannot score are left out (and
    /// their guests' windows with them).
    pub modes: BTreeMap<String, ScoreMode>,
    /// The seed-style table row for this model.
    pub report: crate::AccuracyReport,
}

/// The model's score on one window of a guest's [`Timeline`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TimelinePoint {
    pub end_ms: i64,
    /// [`super::Verdict::score`], in [0, 1].
    pub score: f64,
    /// Whether the window alone alarms (score at or above the threshold, or the novelty check).
    pub alarm: bool,
}

/// One guest's windows replayed through a model, as the agent would have scored them: the score per
/// window and the alerts raised and cleared ([`evaluate`] replays the same way).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Timeline {
    pub mode: ScoreMode,
    pub threshold: f64,
    pub clear_threshold: f64,
    pub points: Vec<TimelinePoint>,
    pub events: Vec<AlertEvent>,
}

/// Every window's verdict, with the alert event the window caused.
struct Replay<'a> {
    mode: ScoreMode,
    km: &'a KindModel,
    windows: Vec<(&'a FeatureWindow, super::Verdict)>,
    events: Vec<AlertEvent>,
}

/// Replays one guest's windows through the model's scorer for its kind and the alert state machine;
/// `None` when the model cannot score the kind.
fn replay<'a>(model: &'a DetectorModel, g: &'a LabelledGuest) -> Option<Replay<'a>> {
    let (km, mode) = model.scorer_for(&g.kind)?;
    let mut st = AlertState::new();
    let mut windows = Vec::with_capacity(g.windows.len());
    let mut events = Vec::new();
    for w in &g.windows {
        let v = km.verdict_as(mode, &w.values(), 3);
        if let Some(ev) = st.update(&g.name, w.end_ms, &v, km.clear_threshold, &model.alert) {
            events.push(ev);
        }
        windows.push((w, v));
    }
    Some(Replay { mode, km, windows, events })
}

/// One guest's score per window and its alert events under `model` (pure; the same replay as
/// [`evaluate`]). `None` when the model cannot score the guest's kind.
pub fn timeline(model: &DetectorModel, guest: &LabelledGuest) -> Option<Timeline> {
    let r = replay(model, guest)?;
    Some(Timeline {
        mode: r.mode,
        threshold: r.km.threshold,
        clear_threshold: r.km.clear_threshold,
        points: r
            .windows
            .iter()
            .map(|(w, v)| TimelinePoint { end_ms: w.end_ms, score: v.score, alarm: v.alarm })
            .collect(),
        events: r.events,
    })
}

/// Replays every guest's windows through the model and the alert state machine, as the agent would.
pub fn evaluate(model: &DetectorModel, guests: &[LabelledGuest]) -> PartBReport {
    let mut truth = Vec::new();
    let mut pred = Vec::new();
    let mut by_scn: BTreeMap<String, (Vec<Option<Label>>, Vec<Label>)> = BTreeMap::new();
    let mut detections = Vec::new();
    let mut false_alerts = 0;
    let mut by_novelty = 0;
    let mut modes = BTreeMap::new();
    let ms = |t: i64| t * 1_000_000;
    for g in guests {
        let Some(Replay { mode, windows, events, .. }) = replay(model, g) else { continue };
        modes.insert(g.kind.clone(), mode);
        for (w, v) in &windows {
            let t = g.truth_of(w);
            let p = if v.alarm { Label::Dos } else { Label::Normal };
            if v.by_novelty && t == Some(Label::Dos) {
                by_novelty += 1;
            }
            truth.push(t);
            pred.push(p);
            let e = ms(w.end_ms);
            if let Some(s) = g.spans.iter().find(|s| s.start_ns < e && s.end_ns >= e) {
                let entry = by_scn.entry(s.scenario.clone()).or_default();
                entry.0.push(t);
                entry.1.push(p);
            }
        }
        let attacks: Vec<&Span> = g.spans.iter().filter(|s| s.truth.is_attack()).collect();
        for a in &attacks {
            let raised = events.iter().find_map(|ev| match ev {
                AlertEvent::Raised { time_ms, role, .. } if ms(*time_ms) >= a.start_ns && ms(*time_ms) <= a.end_ns => {
                    Some((*time_ms, *role))
                }
                _ => None,
            });
            // An alert raised before this attack and not cleared since (back-to-back attacks) also
            // counts, at 0 s.
            let ongoing = alert_up_before(&events, a.start_ns);
            let cleared = events.iter().find_map(|ev| match ev {
                AlertEvent::Cleared { time_ms, .. } if ms(*time_ms) > a.end_ns => {
                    Some((ms(*time_ms) - a.end_ns) as f64 / 1e9)
                }
                _ => None,
            });
            let (after, role) = match (raised, ongoing) {
                (Some((t, r)), _) => (Some((ms(t) - a.start_ns) as f64 / 1e9), Some(r)),
                (None, Some(r)) => (Some(0.0), Some(r)),
                _ => (None, None),
            };
            detections.push(Detection {
                guest: g.name.clone(),
                scenario: a.scenario.clone(),
                truth: a.truth,
                start_ns: a.start_ns,
                alert_after_s: after,
                role,
                cleared_after_s: cleared,
            });
        }
        for ev in &events {
            if let AlertEvent::Raised { time_ms, .. } = ev {
                let t = ms(*time_ms);
                // Alerts up to a window (and two rounds) after an attack ended still belong to it.
                let tail = model.window_ms as i64 * 1_000_000 + 2_000_000_000;
                if !attacks.iter().any(|a| t >= a.start_ns && t <= a.end_ns + tail) {
                    false_alerts += 1;
                }
            }
        }
    }
    let metrics = crate::binary_metrics(&truth, &pred).ok();
    let benign: Vec<&Label> =
        truth.iter().zip(&pred).filter(|(t, _)| **t == Some(Label::Normal)).map(|(_, p)| p).collect();
    let fpr =
        (!benign.is_empty()).then(|| benign.iter().filter(|p| ***p == Label::Dos).count() as f64 / benign.len() as f64);
    let alerted: Vec<&Detection> = detections.iter().filter(|d| d.role.is_some()).collect();
    let role_ok = alerted.iter().filter(|d| d.role == d.truth.role()).count();
    let mut report = crate::AccuracyReport::default();
    if let Some(m) = metrics {
        report.push(model.window_ms / 1000, "vmguard", m, None);
    }
    PartBReport {
        window_secs: model.window_ms as f64 / 1000.0,
        trained_on: model.trained_on.clone(),
        metrics,
        false_positive_rate: fpr,
        false_alerts,
        per_scenario: by_scn
            .into_iter()
            .filter_map(|(k, (t, p))| crate::binary_metrics(&t, &p).ok().map(|m| (k, m)))
            .collect(),
        role_accuracy: (!alerted.is_empty()).then(|| role_ok as f64 / alerted.len() as f64),
        attack_windows_by_novelty: by_novelty,
        modes,
        detections,
        report,
    }
}

/// The role of the alert still up just before `t_ns` (raised and not cleared since), if any: an
/// attack that begins while the previous one's alert is up is alerted from its first second.
pub fn alert_up_before(events: &[AlertEvent], t_ns: i64) -> Option<Role> {
    events
        .iter()
        .rev()
        .find(|ev| match ev {
            AlertEvent::Raised { time_ms, .. } | AlertEvent::Cleared { time_ms, .. } => time_ms * 1_000_000 < t_ns,
        })
        .and_then(|ev| match ev {
            AlertEvent::Raised { role, .. } => Some(*role),
            AlertEvent::Cleared { .. } => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::online::FEATURES;
    use crate::online::features::Rates;

    /// Windows every second of a guest whose rx packet rate is `rx(t)`.
    fn windows(rx: impl Fn(i64) -> f64, secs: i64) -> Vec<FeatureWindow> {
        (5..secs)
            .map(|t| {
                let mut r = [None; super::super::BASE_COUNTERS.len()];
                r[0] = Some(10.0);
                r[2] = Some(rx(t));
                FeatureWindow { start_ms: (t - 5) * 1000, end_ms: t * 1000, rates: Rates(r) }
            })
            .collect()
    }

    fn span(s: i64, e: i64, truth: Truth) -> Span {
        Span { start_ns: s * 1_000_000_000, end_ns: e * 1_000_000_000, truth, scenario: "s".into() }
    }

    #[test]
    fn trains_and_replays() {
        let g = LabelledGuest {
            name: "v".into(),
            kind: "vanilla".into(),
            windows: windows(|t| if (40..80).contains(&t) { 5000.0 + t as f64 } else { 20.0 + (t % 7) as f64 }, 120),
            spans: vec![span(0, 35, Truth::Normal), span(35, 80, Truth::AttackVictim), span(80, 130, Truth::Normal)],
        };
        let guests = vec![g];
        let t = train(&guests, 5000, AlertParams { raise_after: 2, clear_after: 3 }, &TrainParams::default(), vec![])
            .unwrap();
        assert_eq!(t.model.models.len(), 2, "vanilla and *");
        let r = evaluate(&t.model, &guests);
        assert_eq!(r.detections.len(), 1);
        let d = &r.detections[0];
        assert_eq!(d.role, Some(Role::Victim));
        assert!(d.alert_after_s.unwrap() < 10.0, "{d:?}");
        assert_eq!(r.false_alerts, 0);
        assert!(r.metrics.unwrap().accuracy > 0.9);
        assert!(FEATURES.len() > 2);

        // The timeline is the same replay: one point per window, the same alert.
        let tl = timeline(&t.model, &guests[0]).unwrap();
        assert_eq!(tl.mode, ScoreMode::Own);
        assert_eq!(tl.points.len(), guests[0].windows.len());
        assert!(tl.points.iter().all(|p| (0.0..=1.0).contains(&p.score)));
        let raised: Vec<i64> = tl
            .events
            .iter()
            .filter_map(|e| match e {
                AlertEvent::Raised { time_ms, .. } => Some(*time_ms),
                _ => None,
            })
            .collect();
        assert_eq!(raised.len(), 1, "{:?}", tl.events);
        assert!((35_000..=45_000).contains(&raised[0]), "{raised:?}");
        assert_eq!(d.alert_after_s, Some((raised[0] - 35_000) as f64 / 1000.0));
        assert!(matches!(tl.events.last(), Some(AlertEvent::Cleared { time_ms, .. }) if *time_ms > 80_000));
        let calm = tl.points.iter().find(|p| p.end_ms == 20_000).unwrap();
        let flood = tl.points.iter().find(|p| p.end_ms == 60_000).unwrap();
        assert!(!calm.alarm && flood.alarm && flood.score > calm.score);
        // A kind the model cannot score has no timeline.
        let no_generic = DetectorModel { models: vec![], ..t.model.clone() };
        assert!(timeline(&no_generic, &guests[0]).is_none());
    }

    /// Windows every second with rx packet rate `rx(t)` and refused packets (resets sent) `refused(t)`.
    fn windows_refused(rx: impl Fn(i64) -> f64, refused: impl Fn(i64) -> f64, secs: i64) -> Vec<FeatureWindow> {
        let mut w = windows(rx, secs);
        for (t, w) in (5..secs).zip(&mut w) {
            w.rates.0[9] = Some(refused(t));
        }
        w
    }

    #[test]
    fn a_kind_never_trained_on_is_scored_by_the_novelty_check_only() {
        let calm = |t: i64| 20.0 + (t % 7) as f64;
        let flood = |t: i64| (40..80).contains(&t);
        let lab = LabelledGuest {
            name: "v".into(),
            kind: "vanilla".into(),
            windows: windows_refused(
                |t| if flood(t) { 5000.0 + t as f64 } else { calm(t) },
                |t| if flood(t) { 4000.0 } else { 1.0 },
                120,
            ),
            spans: vec![span(0, 35, Truth::Normal), span(35, 80, Truth::AttackVictim), span(80, 130, Truth::Normal)],
        };
        let t = train(
            std::slice::from_ref(&lab),
            5000,
            AlertParams { raise_after: 2, clear_after: 3 },
            &TrainParams::default(),
            vec![],
        )
        .unwrap();
        // A container: heavy benign traffic (a rate the lab only saw in floods, few refused packets),
        // then a flood of packets it refuses at a rate it never saw.
        let busy = |t: i64| (40..70).contains(&t);
        let attack = |t: i64| (80..110).contains(&t);
        let c = LabelledGuest {
            name: "c".into(),
            kind: "container".into(),
            windows: windows_refused(
                |t| {
                    if busy(t) {
                        6000.0
                    } else if attack(t) {
                        300.0
                    } else {
                        calm(t)
                    }
                },
                |t| if attack(t) { 900.0 } else { 2.0 },
                140,
            ),
            spans: vec![span(0, 75, Truth::Normal), span(75, 110, Truth::AttackVictim), span(110, 150, Truth::Normal)],
        };
        let busy_window = c.windows.iter().find(|w| w.end_ms == 60_000).unwrap().values();
        let generic = t.model.own_model("*").unwrap();
        let busy_verdict = generic.verdict(&busy_window, 3);
        assert!(
            busy_verdict.score >= generic.threshold && !busy_verdict.alarm,
            "the supervised half calls heavy traffic a flood, and the shape gate stops it: {busy_verdict:?}"
        );
        let r = evaluate(&t.model, &[lab, c]);
        assert_eq!(
            r.modes,
            BTreeMap::from([("container".into(), ScoreMode::NoveltyOnly), ("vanilla".into(), ScoreMode::Own)])
        );
        assert_eq!(r.false_alerts, 0, "{:?}", r.detections);
        let d = r.detections.iter().find(|d| d.guest == "c").unwrap();
        assert_eq!(d.role, Some(Role::Victim));
        assert!(d.alert_after_s.unwrap() < 15.0, "{d:?}");
        assert!(r.attack_windows_by_novelty > 0);
    }
}
