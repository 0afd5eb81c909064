//! `vmguard detect train`: fit Part B's detector on recorded runs; and Part B's evaluation for
//! `detect eval --model` (window metrics, false positives on benign windows, time to alert, role).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use detect::online::{
    AlertParams, AlertState, Class, DetectorModel, FeatureWindow, KindModel, MODEL_VERSION, Role, Tick, TrainParams,
    WindowExtractor,
};
use serde::Serialize;
use telemetry::{DeltaTracker, Sample};

use crate::Cli;
use crate::dataset::{self, GuestData, Selection};
use crate::output;

#[derive(Debug, Args)]
pub struct TrainArgs {
    #[arg(long, env = "VMGUARD_STORE", default_value = "vmguard.db")]
    pub store: PathBuf,
    /// Where to write the model (JSON).
    #[arg(long, default_value = "vmguard-model.json")]
    pub out: PathBuf,
    /// Window length (sliding by one sampling round).
    #[arg(long, default_value = "5s", value_parser = super::detect::parse_duration_ms)]
    pub window: u64,
    /// Train on these scenarios (comma-separated, trailing * = prefix).
    #[arg(long, value_delimiter = ',', default_value = "train-*")]
    pub scenarios: Vec<String>,
    /// Never train on these.
    #[arg(long, value_delimiter = ',')]
    pub exclude: Vec<String>,
    /// Raise an alert after this many alarming windows in a row.
    #[arg(long, default_value_t = 2)]
    pub raise_after: u32,
    /// Clear it after this many calm windows in a row.
    #[arg(long, default_value_t = 5)]
    pub clear_after: u32,
}

/// Turns one guest's stored samples (any order) into ticks: per-interval increases of the counters
/// Part B uses, grouped by sampling round.
pub fn ticks_of(samples: &[Sample]) -> Vec<Tick> {
    let mut sorted: Vec<&Sample> = samples.iter().collect();
    sorted.sort_by_key(|s| s.time_ns);
    let mut tracker = DeltaTracker::new();
    let deltas: Vec<(&Sample, telemetry::Delta)> =
        sorted.into_iter().filter_map(|s| tracker.observe(s).map(|d| (s, d))).collect();
    detect::online::ticks(deltas.iter().map(|(s, d)| detect::online::CounterDelta {
        time_ns: d.time_ns,
        source: s.source.as_str(),
        counter: &s.counter,
        delta: d.delta,
        interval_ns: d.interval_ns,
    }))
}

/// Sliding windows of one guest's samples.
pub fn windows_of(samples: &[Sample], window_ms: u64) -> Vec<FeatureWindow> {
    let mut x = WindowExtractor::new(window_ms);
    ticks_of(samples).into_iter().filter_map(|t| x.push(t)).collect()
}

fn kind_name(k: telemetry::GuestKind) -> &'static str {
    match k {
        telemetry::GuestKind::Vanilla => "vanilla",
        telemetry::GuestKind::Container => "container",
        telemetry::GuestKind::Qemu => "qemu",
        telemetry::GuestKind::Xen => "xen",
    }
}

/// Public name of a guest kind, as the model's per-kind entries use it.
pub fn kind_str(k: telemetry::GuestKind) -> &'static str {
    kind_name(k)
}

/// Labelled training examples of every guest: (kind, raw feature values, class).
fn examples(data: &[GuestData], window_ms: u64) -> Vec<(&'static str, Vec<Option<f64>>, Class)> {
    let mut out = Vec::new();
    for g in data {
        for w in windows_of(&g.samples, window_ms) {
            let (s, e) = (w.start_ms * 1_000_000, w.end_ms * 1_000_000);
            let class = match g.truth(s, e) {
                Some(detect::Label::Normal) => Class::Normal,
                Some(detect::Label::Dos) => match g.role(s, e) {
                    Some(Role::Attacker) => Class::Attacker,
                    _ => Class::Victim,
                },
                None => continue,
            };
            out.push((kind_name(g.kind), w.values(), class));
        }
    }
    out
}

pub fn run(cli: &Cli, a: &TrainArgs) -> anyhow::Result<()> {
    let store = store::Store::open(&a.store).with_context(|| format!("opening store {}", a.store.display()))?;
    let sel = Selection { include: a.scenarios.clone(), exclude: a.exclude.clone() };
    let data = dataset::load(&store, &sel)?;
    let ex = examples(&data, a.window);
    let params = TrainParams::default();
    let mut models = Vec::new();
    let mut kinds: Vec<&str> = ex.iter().map(|(k, _, _)| *k).collect();
    kinds.sort_unstable();
    kinds.dedup();
    for kind in kinds {
        let mine: Vec<(Vec<Option<f64>>, Class)> =
            ex.iter().filter(|(k, _, _)| *k == kind).map(|(_, v, c)| (v.clone(), *c)).collect();
        match KindModel::train(kind, &mine, &params) {
            Ok(m) => models.push(m),
            // A kind with only benign data is served by the generic model.
            Err(e) => tracing::warn!("no model of its own for guest kind {kind}: {e}; the generic model serves it"),
        }
    }
    let all: Vec<(Vec<Option<f64>>, Class)> = ex.iter().map(|(_, v, c)| (v.clone(), *c)).collect();
    models.push(KindModel::train("*", &all, &params).context("training the generic model")?);
    let mut trained_on: Vec<String> = data.iter().flat_map(|g| g.scenarios()).collect();
    trained_on.sort();
    trained_on.dedup();
    let model = DetectorModel {
        version: MODEL_VERSION,
        window_ms: a.window,
        alert: AlertParams { raise_after: a.raise_after, clear_after: a.clear_after },
        models,
        trained_on,
    };
    let json = serde_json::to_string_pretty(&model)?;
    std::fs::write(&a.out, json).with_context(|| format!("writing model {}", a.out.display()))?;
    if cli.json {
        return output::json(&model);
    }
    println!(
        "trained on {} ({} windows of {} s) -> {}",
        model.trained_on.join(", "),
        ex.len(),
        a.window as f64 / 1000.0,
        a.out.display()
    );
    for m in &model.models {
        let s = &m.summary;
        println!(
            "  {:<10} {} features, windows normal {} / victim {} / attacker {}, threshold {:.2}, training accuracy {:.2}%",
            m.kind,
            m.features.len(),
            s.windows_normal,
            s.windows_victim,
            s.windows_attacker,
            m.threshold,
            100.0 * s.train_accuracy
        );
        if let Some(n) = &m.novelty {
            let c: Vec<String> = n.features.iter().zip(&n.ceiling).map(|(f, c)| format!("{f} {c:.0}/s")).collect();
            println!("             novelty check (alarm above {}x the benign ceiling): {}", n.factor, c.join(", "));
        }
    }
    Ok(())
}

/// Time from an attack's start to its alert.
#[derive(Debug, Clone, Serialize)]
pub struct Detection {
    pub guest: String,
    pub scenario: String,
    pub label: String,
    pub start_ns: i64,
    /// Seconds from the start of the attack to the alert; `None` = never alerted during the attack.
    pub alert_after_s: Option<f64>,
    /// Role named by the alert.
    pub role: Option<Role>,
    /// Seconds from the end of the attack to the alert clearing; `None` = still raised at the end.
    pub cleared_after_s: Option<f64>,
}

/// Part B's figures on some recorded data.
#[derive(Debug, Clone, Serialize)]
pub struct PartBReport {
    pub window_secs: f64,
    pub trained_on: Vec<String>,
    pub metrics: Option<detect::BinaryMetrics>,
    /// Benign windows flagged / benign windows.
    pub false_positive_rate: Option<f64>,
    /// Alerts raised outside attacks (guest, scenario, time).
    pub false_alerts: usize,
    pub per_scenario: BTreeMap<String, detect::BinaryMetrics>,
    pub detections: Vec<Detection>,
    /// Correct role among attacks that were alerted.
    pub role_accuracy: Option<f64>,
    /// Attack windows flagged by the benign-only novelty check alone (the supervised half missed them).
    pub attack_windows_by_novelty: usize,
    /// The seed-style table row for this model.
    pub report: detect::AccuracyReport,
}

pub fn evaluate_model_file(path: &Path, data: &[GuestData], _lengths: &[u64]) -> anyhow::Result<PartBReport> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading model {}", path.display()))?;
    let model = DetectorModel::from_json(&text).with_context(|| format!("loading model {}", path.display()))?;
    Ok(evaluate(&model, data))
}

/// Replays every guest's recorded data through the model and the alert state machine.
pub fn evaluate(model: &DetectorModel, data: &[GuestData]) -> PartBReport {
    let mut truth = Vec::new();
    let mut pred = Vec::new();
    let mut by_scn: BTreeMap<String, (Vec<Option<detect::Label>>, Vec<detect::Label>)> = BTreeMap::new();
    let mut detections = Vec::new();
    let mut false_alerts = 0;
    let mut by_novelty = 0;
    for g in data {
        let Some(km) = model.for_kind(kind_name(g.kind)) else { continue };
        let windows = windows_of(&g.samples, model.window_ms);
        let mut st = AlertState::new();
        let mut events = Vec::new();
        for w in &windows {
            let v = km.verdict(&w.values(), 3);
            let (s, e) = (w.start_ms * 1_000_000, w.end_ms * 1_000_000);
            let t = g.truth(s, e);
            let p = if v.alarm { detect::Label::Dos } else { detect::Label::Normal };
            if v.by_novelty && t == Some(detect::Label::Dos) {
                by_novelty += 1;
            }
            truth.push(t);
            pred.push(p);
            if let Some(l) = g.labels.iter().find(|l| l.start_ns < e && l.end_ns >= e) {
                let entry = by_scn.entry(l.scenario.clone()).or_default();
                entry.0.push(t);
                entry.1.push(p);
            }
            if let Some(ev) = st.update(&g.name, w.end_ms, &v, km.clear_threshold, &model.alert) {
                events.push(ev);
            }
        }
        let attacks: Vec<&store::Label> = g.labels.iter().filter(|l| dataset::is_attack_label(&l.label)).collect();
        for l in &attacks {
            let raised = events.iter().find_map(|ev| match ev {
                detect::online::AlertEvent::Raised { time_ms, role, .. }
                    if *time_ms * 1_000_000 >= l.start_ns && *time_ms * 1_000_000 <= l.end_ns =>
                {
                    Some((*time_ms, *role))
                }
                _ => None,
            });
            // An alert already raised before this attack and not cleared since (back-to-back attacks)
            // also counts, at 0 s.
            let ongoing = events
                .iter()
                .rev()
                .find(|ev| match ev {
                    detect::online::AlertEvent::Raised { time_ms, .. }
                    | detect::online::AlertEvent::Cleared { time_ms, .. } => *time_ms * 1_000_000 < l.start_ns,
                })
                .and_then(|ev| match ev {
                    detect::online::AlertEvent::Raised { time_ms, role, .. } => Some((*time_ms, *role)),
                    detect::online::AlertEvent::Cleared { .. } => None,
                });
            let cleared = events.iter().find_map(|ev| match ev {
                detect::online::AlertEvent::Cleared { time_ms, .. } if *time_ms * 1_000_000 > l.end_ns => {
                    Some((*time_ms * 1_000_000 - l.end_ns) as f64 / 1e9)
                }
                _ => None,
            });
            let (after, role) = match (raised, ongoing) {
                (Some((t, r)), _) => (Some((t * 1_000_000 - l.start_ns) as f64 / 1e9), Some(r)),
                (None, Some((_, r))) => (Some(0.0), Some(r)),
                _ => (None, None),
            };
            detections.push(Detection {
                guest: g.name.clone(),
                scenario: l.scenario.clone(),
                label: l.label.clone(),
                start_ns: l.start_ns,
                alert_after_s: after,
                role,
                cleared_after_s: cleared,
            });
        }
        for ev in &events {
            if let detect::online::AlertEvent::Raised { time_ms, .. } = ev {
                let t = time_ms * 1_000_000;
                // Alerts up to a window after an attack ended still belong to it.
                let near_attack = attacks
                    .iter()
                    .any(|l| t >= l.start_ns && t <= l.end_ns + model.window_ms as i64 * 1_000_000 + 2_000_000_000);
                if !near_attack {
                    false_alerts += 1;
                }
            }
        }
    }
    let metrics = detect::binary_metrics(&truth, &pred).ok();
    let benign: Vec<(&Option<detect::Label>, &detect::Label)> =
        truth.iter().zip(&pred).filter(|(t, _)| **t == Some(detect::Label::Normal)).collect();
    let fpr = (!benign.is_empty())
        .then(|| benign.iter().filter(|(_, p)| **p == detect::Label::Dos).count() as f64 / benign.len() as f64);
    let alerted: Vec<&Detection> = detections.iter().filter(|d| d.role.is_some()).collect();
    let role_ok = alerted.iter().filter(|d| d.role == dataset::role_of_label(&d.label)).count();
    let mut report = detect::AccuracyReport::default();
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
            .filter_map(|(k, (t, p))| detect::binary_metrics(&t, &p).ok().map(|m| (k, m)))
            .collect(),
        role_accuracy: (!alerted.is_empty()).then(|| role_ok as f64 / alerted.len() as f64),
        attack_windows_by_novelty: by_novelty,
        detections,
        report,
    }
}

pub fn print_part_b(b: &PartBReport) {
    println!(
        "\nPart B (vmguard detector), sliding windows of {} s, trained on {}:",
        b.window_secs,
        b.trained_on.join(", ")
    );
    if let Some(m) = &b.metrics {
        print!("{}", b.report.to_table());
        println!("{}", super::detect::report_details(&b.report));
        let _ = m;
    } else {
        println!("  (no labelled windows)");
    }
    if let Some(f) = b.false_positive_rate {
        println!("false positives on benign windows: {:.2}%; alerts outside attacks: {}", 100.0 * f, b.false_alerts);
    }
    let per: Vec<Vec<String>> = b
        .per_scenario
        .iter()
        .map(|(k, m)| {
            vec![
                k.clone(),
                m.confusion.total().to_string(),
                format!("{:.1}%", 100.0 * m.accuracy),
                m.confusion.false_positive.to_string(),
                m.confusion.false_negative.to_string(),
            ]
        })
        .collect();
    println!("{}", output::table(&["scenario", "windows", "accuracy", "FP", "FN"], per));
    let det: Vec<Vec<String>> = b
        .detections
        .iter()
        .map(|d| {
            vec![
                d.scenario.clone(),
                d.guest.clone(),
                d.label.clone(),
                d.alert_after_s.map_or("missed".into(), |s| format!("{s:.1} s")),
                d.role.map_or("-".into(), |r| r.as_str().to_string()),
                d.cleared_after_s.map_or("-".into(), |s| format!("{s:.1} s")),
            ]
        })
        .collect();
    println!("{}", output::table(&["scenario", "guest", "truth", "alert after", "role", "cleared after"], det));
    if let Some(r) = b.role_accuracy {
        println!("role named correctly in {:.0}% of alerted attacks", 100.0 * r);
    }
    if let Some(m) = &b.metrics {
        println!(
            "attack windows caught by the benign-only novelty check alone: {} of {}",
            b.attack_windows_by_novelty,
            m.confusion.true_positive + m.confusion.false_negative
        );
    }
}
