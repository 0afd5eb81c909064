//! Evaluation and training on recorded data: the seed's method (Part A) per feature set, and
//! vmguard's detector (Part B) trained and replayed; the data comes from [`crate::dataset`], the
//! maths from `detect`.

use detect::online::{AlertParams, DetectorModel, LabelledGuest, PartBReport, TrainParams, Training};
use detect::{CounterSample, FitConfig, Method, WindowParams};
use serde::Serialize;

use crate::dataset::GuestData;

/// One Part A table: a feature set over the guests that have it.
#[derive(Debug, Serialize)]
pub struct PartATable {
    pub feature_set: &'static str,
    pub guests: Vec<String>,
    pub features: Vec<String>,
    pub report: detect::AccuracyReport,
}

/// The seed's experiment on recorded data, one table per feature set (guest kind). Counters a guest
/// of the set did not collect (KVM statistics under TCG) are left out of that set. Windows are
/// tumbling (back to back); with `step_ms` each length is also evaluated on windows sliding by that
/// step (overlapping), in the same table after the tumbling rows: a 20-minute window fits once or
/// twice in 30 minutes of a class, so the tumbling cell has a handful of windows only.
pub fn part_a(
    data: &[GuestData],
    windows_ms: &[u64],
    step_ms: Option<u64>,
    methods: &[Method],
    cfg: &FitConfig,
) -> Result<Vec<PartATable>, detect::PipelineError> {
    let mut sets: Vec<(detect::FeatureSet, Vec<&GuestData>)> = Vec::new();
    for g in data {
        let set = detect::features::for_guest_kind(g.kind.as_str());
        match sets.iter_mut().find(|(s, _)| s.name == set.name) {
            Some((_, v)) => v.push(g),
            None => sets.push((set, vec![g])),
        }
    }
    let mut out = Vec::new();
    for (set, guests) in sets {
        let present: Vec<(&str, &str)> = set
            .counters
            .iter()
            .copied()
            .filter(|(src, c)| {
                guests.iter().all(|g| g.samples.iter().any(|s| s.source.as_str() == *src && &*s.counter == *c))
            })
            .collect();
        if present.is_empty() {
            tracing::warn!(feature_set = set.name, "none of the feature set's counters were collected; skipped");
            continue;
        }
        let mut samples = Vec::new();
        for g in &guests {
            for s in &g.samples {
                if present.iter().any(|(src, c)| s.source.as_str() == *src && &*s.counter == *c) {
                    samples.push(CounterSample {
                        time_ms: s.time_ns.div_euclid(1_000_000),
                        guest: g.name.clone(),
                        counter: s.counter.to_string(),
                        value: s.value as f64,
                    });
                }
            }
        }
        let names: Vec<&str> = present.iter().map(|(_, c)| *c).collect();
        let base = WindowParams::new(1000, &names).max_gap_ms(5_000);
        let truth = |w: &detect::Window| {
            let g = guests.iter().find(|g| g.name == w.guest)?;
            g.truth(w.start_ms * 1_000_000, w.end_ms * 1_000_000)
        };
        let mut report = detect::evaluate_lengths(&samples, &base, windows_ms, methods, cfg, &truth)?;
        if let Some(step) = step_ms {
            let sliding = base.clone().step_ms(Some(step));
            let more = detect::evaluate_lengths(&samples, &sliding, windows_ms, methods, cfg, &truth)?;
            report.rows.extend(more.rows);
        }
        out.push(PartATable {
            feature_set: set.name,
            guests: guests.iter().map(|g| g.name.clone()).collect(),
            features: names.iter().map(|s| s.to_string()).collect(),
            report,
        });
    }
    Ok(out)
}

/// Trains Part B's detector on recorded data: windows of `window_ms` sliding by one round.
pub fn train(data: &[GuestData], window_ms: u64, alert: AlertParams) -> Result<Training, detect::online::ModelError> {
    let guests: Vec<_> = data.iter().map(|g| g.labelled(window_ms)).collect();
    let mut trained_on: Vec<String> = data.iter().flat_map(|g| g.scenarios()).collect();
    trained_on.sort();
    trained_on.dedup();
    train_labelled(&guests, window_ms, alert, trained_on)
}

/// [`train`] on windows already labelled: the one training path (`detect train` and the held-out
/// evaluation, [`crate::heldout`]), with the same parameters.
pub fn train_labelled(
    guests: &[LabelledGuest],
    window_ms: u64,
    alert: AlertParams,
    trained_on: Vec<String>,
) -> Result<Training, detect::online::ModelError> {
    detect::online::train(guests, window_ms, alert, &TrainParams::default(), trained_on)
}

/// Replays recorded data through a model, as the agent would have scored it.
pub fn evaluate(model: &DetectorModel, data: &[GuestData]) -> PartBReport {
    let guests: Vec<_> = data.iter().map(|g| g.labelled(model.window_ms)).collect();
    detect::online::evaluate(model, &guests)
}
