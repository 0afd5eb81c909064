//! Labelled data from the store, for evaluation and training: every guest's samples and the ground
//! truth `record` wrote beside them. The window label rule itself is pure and lives in
//! [`detect::truth`].

use std::collections::BTreeSet;

use detect::online::LabelledGuest;
use detect::truth::{Span, Truth};
use store::Store;
use telemetry::{GuestKind, Sample};

/// Why labelled data could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("reading {what} from the store {path}")]
    Store {
        what: String,
        path: String,
        #[source]
        source: Box<store::StoreError>,
    },
    #[error(
        "no labelled data in the store {0} for the selected scenarios: record some first (`vmguard record SCENARIO`)"
    )]
    NoLabels(String),
    #[error("the store {0} has labels but no samples for the labelled guests")]
    NoSamples(String),
}

/// One guest's recorded data.
#[derive(Debug, Clone)]
pub struct GuestData {
    pub name: String,
    pub kind: GuestKind,
    pub samples: Vec<Sample>,
    /// This guest's ground truth, by start time.
    pub spans: Vec<Span>,
}

impl GuestData {
    /// Ground truth of `[start_ns, end_ns)` by [`detect::truth::window_truth`].
    pub fn truth(&self, start_ns: i64, end_ns: i64) -> Option<detect::Label> {
        detect::truth::window_truth(&self.spans, start_ns, end_ns)
    }

    /// Scenario names this guest's labels come from.
    pub fn scenarios(&self) -> BTreeSet<String> {
        self.spans.iter().map(|s| s.scenario.clone()).collect()
    }

    /// The guest's sliding windows with its ground truth, for Part B.
    pub fn labelled(&self, window_ms: u64) -> LabelledGuest {
        LabelledGuest {
            name: self.name.clone(),
            kind: self.kind.as_str().to_string(),
            windows: crate::ticks::windows_of(&self.samples, window_ms),
            spans: self.spans.clone(),
        }
    }
}

/// Which scenarios to load.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Only these scenarios (empty = all); a trailing `*` matches a prefix.
    pub include: Vec<String>,
    /// Never these.
    pub exclude: Vec<String>,
}

impl Selection {
    pub fn accepts(&self, scenario: &str) -> bool {
        let m = |pat: &String| pat == scenario || pat.strip_suffix('*').is_some_and(|p| scenario.starts_with(p));
        (self.include.is_empty() || self.include.iter().any(m)) && !self.exclude.iter().any(m)
    }
}

/// Every guest with labels in the selected scenarios, with the samples inside those labels' span (one
/// read per labelled run, so idle time between runs is not read).
pub fn load(store: &Store, sel: &Selection) -> Result<Vec<GuestData>, DatasetError> {
    let path = store.path().display().to_string();
    let err = |what: &str| {
        let path = path.clone();
        let what = what.to_string();
        move |source| DatasetError::Store { what, path, source: Box::new(source) }
    };
    let labels = store.labels(None, i64::MIN, i64::MAX).map_err(err("labels"))?;
    let labels: Vec<store::Label> = labels.into_iter().filter(|l| sel.accepts(&l.scenario)).collect();
    if labels.is_empty() {
        return Err(DatasetError::NoLabels(path));
    }
    let guests = store.guests().map_err(err("guests"))?;
    let mut out = Vec::new();
    for g in guests {
        let spans: Vec<Span> = labels
            .iter()
            .filter(|l| l.guest == g.name)
            .map(|l| Span {
                start_ns: l.start_ns,
                end_ns: l.end_ns,
                truth: Truth::from_stored(&l.label),
                scenario: l.scenario.clone(),
            })
            .collect();
        if spans.is_empty() {
            continue;
        }
        let kind = g.info.as_ref().map_or(GuestKind::Vanilla, |i| i.kind);
        // One read per scenario run: merge spans closer than 5 s.
        let mut runs: Vec<(i64, i64)> = spans.iter().map(|s| (s.start_ns, s.end_ns)).collect();
        runs.sort_unstable();
        let mut merged: Vec<(i64, i64)> = Vec::new();
        for (s, e) in runs {
            match merged.last_mut() {
                Some(last) if s <= last.1 + 5_000_000_000 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        let mut samples = Vec::new();
        for (s, e) in merged {
            // A little before the run, so the first window's deltas have a previous reading.
            let part = store
                .samples(&g.name, s - 3_000_000_000, e + 1_000_000_000)
                .map_err(err(&format!("samples of guest {}", g.name)))?;
            samples.extend(part);
        }
        if samples.is_empty() {
            tracing::warn!(guest = %g.name, "labelled guest has no samples in the store; skipped");
            continue;
        }
        out.push(GuestData { name: g.name, kind, samples, spans });
    }
    if out.is_empty() {
        return Err(DatasetError::NoSamples(path));
    }
    Ok(out)
}

/// Only the samples of `sources` (all when empty); guests left without samples are dropped, so every
/// guest kept still has data to window (`detect export --sources`, `detect eval --sources`).
pub fn keep_sources(data: Vec<GuestData>, sources: &[telemetry::SourceId]) -> Vec<GuestData> {
    if sources.is_empty() {
        return data;
    }
    data.into_iter()
        .filter_map(|mut g| {
            g.samples.retain(|s| sources.contains(&s.source));
            (!g.samples.is_empty()).then_some(g)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection() {
        let s = Selection { include: vec!["train-*".into(), "demo".into()], exclude: vec!["train-zombie".into()] };
        assert!(s.accepts("train-benign") && s.accepts("demo"));
        assert!(!s.accepts("train-zombie") && !s.accepts("heldout-x") && !s.accepts("demo2"));
        assert!(Selection::default().accepts("anything"));
    }
}
