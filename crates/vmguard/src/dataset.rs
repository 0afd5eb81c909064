//! Labelled data from the store, for `detect eval` and `detect train`: the samples of every guest and
//! the ground-truth intervals `record` wrote beside them, and the rule that labels a window.
//!
//! Window labelling (the same rule for Part A's and Part B's figures):
//! - a window is `dos` when attack intervals of its guest cover at least half of it;
//! - it is `normal` when it lies within the recorded intervals and no attack interval touches it;
//! - otherwise (a window only partly under attack, touching an `unknown` phase whose workload or flood
//!   failed, or outside every recorded run) it is unlabelled and left out of the metrics: nobody can
//!   say what the right answer for it is.

use std::collections::BTreeSet;

use anyhow::Context;
use store::{Label as StoredLabel, Store};
use telemetry::{GuestKind, Sample};

/// Stored label values that mean "under attack" (either role).
pub fn is_attack_label(label: &str) -> bool {
    label.starts_with("attack")
}

/// The role a stored label names, if it is an attack label.
pub fn role_of_label(label: &str) -> Option<detect::online::Role> {
    match label {
        "attack-victim" => Some(detect::online::Role::Victim),
        "attack-zombie" | "attack-attacker" => Some(detect::online::Role::Attacker),
        l if is_attack_label(l) => Some(detect::online::Role::Victim),
        _ => None,
    }
}

/// One guest's recorded data.
pub struct GuestData {
    pub name: String,
    pub kind: GuestKind,
    pub samples: Vec<Sample>,
    /// This guest's labels, by start time.
    pub labels: Vec<StoredLabel>,
}

impl GuestData {
    /// Ground truth of `[start_ns, end_ns)` by the module's rule.
    pub fn truth(&self, start_ns: i64, end_ns: i64) -> Option<detect::Label> {
        let len = (end_ns - start_ns).max(1) as f64;
        let overlap = |l: &StoredLabel| (l.end_ns.min(end_ns) - l.start_ns.max(start_ns)).max(0) as f64;
        let attack: f64 = self.labels.iter().filter(|l| is_attack_label(&l.label)).map(overlap).sum();
        let unknown: f64 = self.labels.iter().filter(|l| l.label == "unknown").map(overlap).sum();
        let covered: f64 = self.labels.iter().map(overlap).sum();
        if unknown > 0.0 {
            None
        } else if attack / len >= 0.5 {
            Some(detect::Label::Dos)
        } else if attack == 0.0 && covered / len >= 0.999 {
            Some(detect::Label::Normal)
        } else {
            None
        }
    }

    /// The role under attack in `[start_ns, end_ns)` (the label covering most of it).
    pub fn role(&self, start_ns: i64, end_ns: i64) -> Option<detect::online::Role> {
        self.labels
            .iter()
            .filter_map(|l| {
                let o = l.end_ns.min(end_ns) - l.start_ns.max(start_ns);
                (o > 0).then_some((o, l))
            })
            .filter_map(|(o, l)| role_of_label(&l.label).map(|r| (o, r)))
            .max_by_key(|(o, _)| *o)
            .map(|(_, r)| r)
    }

    /// Scenario names this guest's labels come from.
    pub fn scenarios(&self) -> BTreeSet<String> {
        self.labels.iter().map(|l| l.scenario.clone()).collect()
    }
}

/// Which scenarios to load.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Only these scenarios (empty = all).
    pub include: Vec<String>,
    /// Never these.
    pub exclude: Vec<String>,
}

impl Selection {
    pub fn accepts(&self, scenario: &str) -> bool {
        let m = |pat: &String| pat == scenario || (pat.ends_with('*') && scenario.starts_with(&pat[..pat.len() - 1]));
        (self.include.is_empty() || self.include.iter().any(m)) && !self.exclude.iter().any(m)
    }
}

/// Every guest with labels in the selected scenarios, with the samples inside those labels' span
/// (one load per labelled run, so idle time between runs is not read).
pub fn load(store: &Store, sel: &Selection) -> anyhow::Result<Vec<GuestData>> {
    let labels = store.labels(None, i64::MIN, i64::MAX).context("reading labels from the store")?;
    let labels: Vec<StoredLabel> = labels.into_iter().filter(|l| sel.accepts(&l.scenario)).collect();
    if labels.is_empty() {
        anyhow::bail!(
            "no labelled data in store {} for the selected scenarios: record some first (`vmguard record SCENARIO`)",
            store.path().display()
        );
    }
    let guests = store.guests().context("listing guests in the store")?;
    let mut out = Vec::new();
    for g in guests {
        let mine: Vec<StoredLabel> = labels.iter().filter(|l| l.guest == g.name).cloned().collect();
        if mine.is_empty() {
            continue;
        }
        let kind = g.info.as_ref().map_or(GuestKind::Vanilla, |i| i.kind);
        let mut samples = Vec::new();
        // One span per scenario run: merge overlapping label intervals.
        let mut spans: Vec<(i64, i64)> = mine.iter().map(|l| (l.start_ns, l.end_ns)).collect();
        spans.sort_unstable();
        let mut merged: Vec<(i64, i64)> = Vec::new();
        for (s, e) in spans {
            match merged.last_mut() {
                Some(last) if s <= last.1 + 5_000_000_000 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        for (s, e) in merged {
            // A little before the span, so the first window's deltas have a previous reading.
            let part = store
                .samples(&g.name, s - 3_000_000_000, e + 1_000_000_000)
                .with_context(|| format!("reading samples of guest {}", g.name))?;
            samples.extend(part);
        }
        if samples.is_empty() {
            tracing::warn!(guest = %g.name, "labelled guest has no samples in the store; skipped");
            continue;
        }
        out.push(GuestData { name: g.name, kind, samples, labels: mine });
    }
    if out.is_empty() {
        anyhow::bail!("the store has labels but no samples for the labelled guests");
    }
    Ok(out)
}
