//! Per-guest windows of counter counts from a time series of samples.
//!
//! Input: samples `(time_ms, guest, counter, value)` in any order, where each counter is either
//! cumulative (a running total, e.g. a hypercall count) or a per-interval count (the count since the
//! previous sample of that counter). Output: for every guest and window of length `W`, the count of each
//! feature counter in the window.
//!
//! Rules (each one tested):
//! - Windows are aligned to multiples of `W` since the Unix epoch, `[k W, (k+1) W)`, so windows of
//!   different guests line up: back to back, none overlap (tumbling). With a step `S` (a divisor of
//!   `W`, [`WindowParams::step_ms`]) they slide instead: `[k S, k S + W)` for every `k`, overlapping by
//!   `W - S`, so a recording holds more windows of a long `W` (but they are not independent).
//! - The first sample of a `(guest, counter)` series only opens it: its span is unknown.
//! - Each later sample contributes its increment over `(t_prev, t]` (cumulative: `v - v_prev`;
//!   per-interval: `v`), spread over the windows that interval overlaps in proportion to the overlap,
//!   so a sample straddling a window boundary is split.
//! - A drop of a cumulative counter is a reset (guest reboot, counter wrap, collector restart): the
//!   counter restarted from zero, so the increment is the new value itself (Prometheus' rule).
//! - An interval longer than `max_gap` is a gap: its increment is not attributed (we cannot know when
//!   it happened) and it adds no coverage.
//! - A window is emitted only if every feature has samples covering at least `min_coverage` of it
//!   (the default 0.9 drops windows cut by gaps and the partial first/last windows).
//! - Samples of counters not in the feature list are ignored; non-finite values are an error.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::Matrix;

/// How a counter's values are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum CounterKind {
    /// A running total; a drop means the counter was reset.
    #[default]
    Cumulative,
    /// The count since the previous sample of the same counter.
    PerInterval,
}

/// One reading of one counter of one guest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CounterSample {
    /// Milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// Guest name (domain, VM or container).
    pub guest: String,
    /// Counter name (a feature name).
    pub counter: String,
    /// Cumulative value or per-interval count.
    pub value: f64,
}

/// A feature column: which counter and how it is reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureSpec {
    pub counter: String,
    pub kind: CounterKind,
}

/// Why windows could not be built.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum WindowError {
    /// The window length was 0.
    #[error("window length is 0: use a positive length such as 120000 ms (the seed's 2 minutes)")]
    ZeroLength,
    /// No feature counters were given.
    #[error("no feature counters: list at least one counter (e.g. the xen feature set)")]
    NoFeatures,
    /// A feature counter was listed twice.
    #[error("feature counter '{0}' is listed twice: list each counter once")]
    DuplicateFeature(String),
    /// The sliding step is 0 or does not divide the window length.
    #[error(
        "window step {step_ms} ms does not divide the window length {length_ms} ms: use a step that divides every \
         window length (e.g. 1 min for windows of 2, 5, 10 and 20 min), or no step for back-to-back windows"
    )]
    InvalidStep { length_ms: u64, step_ms: u64 },
    /// `min_coverage` is not within [0, 1].
    #[error("min_coverage {0} is outside [0, 1]: use e.g. 0.9")]
    InvalidCoverage(f64),
    /// A sample value is NaN or infinite.
    #[error("sample of guest '{guest}', counter '{counter}' at {time_ms} ms is {value}: values must be finite")]
    NonFinite { guest: String, counter: String, time_ms: i64, value: f64 },
    /// A per-interval count is negative.
    #[error("sample of guest '{guest}', counter '{counter}' at {time_ms} ms is a negative per-interval count {value}")]
    NegativeCount { guest: String, counter: String, time_ms: i64, value: f64 },
}

/// Checked window parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowParams {
    length_ms: u64,
    features: Vec<FeatureSpec>,
    max_gap_ms: u64,
    min_coverage: f64,
    /// Sliding step; `None`: tumbling (the step is the length).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    step_ms: Option<u64>,
}

impl WindowParams {
    /// Windows of `length_ms` over cumulative counters `counters` (default gap 10 s, coverage 0.9).
    pub fn new(length_ms: u64, counters: &[&str]) -> Self {
        Self {
            length_ms,
            features: counters
                .iter()
                .map(|c| FeatureSpec { counter: c.to_string(), kind: CounterKind::Cumulative })
                .collect(),
            max_gap_ms: 10_000,
            min_coverage: 0.9,
            step_ms: None,
        }
    }
    /// Windows of `length_ms` over explicit feature specs.
    pub fn with_features(length_ms: u64, features: Vec<FeatureSpec>) -> Self {
        Self { features, ..Self::new(length_ms, &[]) }
    }
    /// Longest interval between two samples of a counter that is still attributed (default 10 s).
    pub fn max_gap_ms(mut self, ms: u64) -> Self {
        self.max_gap_ms = ms;
        self
    }
    /// Fraction of a window each feature's samples must cover for it to be emitted (default 0.9).
    pub fn min_coverage(mut self, c: f64) -> Self {
        self.min_coverage = c;
        self
    }
    /// Windows start every `ms` (a divisor of the length) and overlap; `None` (the default):
    /// back to back.
    pub fn step_ms(mut self, ms: Option<u64>) -> Self {
        self.step_ms = ms;
        self
    }
    /// The same parameters with another window length (the step kept).
    pub fn with_length(&self, length_ms: u64) -> Self {
        Self { length_ms, ..self.clone() }
    }
    /// The sliding step, `None` for tumbling windows.
    pub fn step(&self) -> Option<u64> {
        self.step_ms
    }
    /// Distance between window starts: the step, or the length for tumbling windows.
    pub fn stride_ms(&self) -> u64 {
        self.step_ms.unwrap_or(self.length_ms)
    }
    /// Window length in milliseconds.
    pub fn length_ms(&self) -> u64 {
        self.length_ms
    }
    /// Longest attributed interval in milliseconds.
    pub fn max_gap(&self) -> u64 {
        self.max_gap_ms
    }
    /// Minimum coverage of an emitted window.
    pub fn coverage(&self) -> f64 {
        self.min_coverage
    }
    /// Feature columns.
    pub fn features(&self) -> &[FeatureSpec] {
        &self.features
    }

    fn check(&self) -> Result<(), WindowError> {
        if self.length_ms == 0 {
            return Err(WindowError::ZeroLength);
        }
        if self.features.is_empty() {
            return Err(WindowError::NoFeatures);
        }
        for (i, f) in self.features.iter().enumerate() {
            if self.features[..i].iter().any(|g| g.counter == f.counter) {
                return Err(WindowError::DuplicateFeature(f.counter.clone()));
            }
        }
        if !(0.0..=1.0).contains(&self.min_coverage) {
            return Err(WindowError::InvalidCoverage(self.min_coverage));
        }
        if let Some(step) = self.step_ms
            && (step == 0 || !self.length_ms.is_multiple_of(step))
        {
            return Err(WindowError::InvalidStep { length_ms: self.length_ms, step_ms: step });
        }
        Ok(())
    }
}

/// One guest's counts over one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub guest: String,
    /// Start (inclusive), ms since the epoch.
    pub start_ms: i64,
    /// End (exclusive), ms since the epoch.
    pub end_ms: i64,
    /// Count of each feature counter, in feature order.
    pub counts: Vec<f64>,
    /// Smallest fraction of the window covered by any feature's samples.
    pub coverage: f64,
}

/// What happened while building windows (for logs and reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WindowStats {
    /// Counter resets detected.
    pub resets: u64,
    /// Intervals longer than `max_gap` (not attributed).
    pub gaps: u64,
    /// Windows dropped for insufficient coverage.
    pub dropped_windows: u64,
}

/// Windows of all guests, sorted by guest then start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Windows {
    pub feature_names: Vec<String>,
    pub windows: Vec<Window>,
    pub stats: WindowStats,
}

impl Windows {
    /// The counts as a matrix (one row per window), ready for scaling and clustering.
    pub fn to_matrix(&self) -> Matrix {
        let d = self.feature_names.len();
        let mut data = Vec::with_capacity(self.windows.len() * d);
        for w in &self.windows {
            data.extend_from_slice(&w.counts);
        }
        Matrix::new(self.windows.len(), d, data).expect("every window has d counts")
    }
}

/// Accumulated counts and covered time of one (guest, window).
struct Cell {
    counts: Vec<f64>,
    covered_ms: Vec<f64>,
}

fn cell<'a, 'g>(cells: &'a mut BTreeMap<(&'g str, i64), Cell>, guest: &'g str, k: i64, d: usize) -> &'a mut Cell {
    cells.entry((guest, k)).or_insert_with(|| Cell { counts: vec![0.0; d], covered_ms: vec![0.0; d] })
}

/// Sliding windows from slots: the window starting at slot `k` sums slots `k..k + n`; every start
/// whose window holds at least one slot with data is a candidate (coverage decides the rest).
fn slide<'g>(slots: &BTreeMap<(&'g str, i64), Cell>, n: i64, d: usize) -> BTreeMap<(&'g str, i64), Cell> {
    let mut out: BTreeMap<(&'g str, i64), Cell> = BTreeMap::new();
    for &(guest, k) in slots.keys() {
        for start in k - n + 1..=k {
            if out.contains_key(&(guest, start)) {
                continue;
            }
            let mut c = Cell { counts: vec![0.0; d], covered_ms: vec![0.0; d] };
            for s in start..start + n {
                if let Some(x) = slots.get(&(guest, s)) {
                    for f in 0..d {
                        c.counts[f] += x.counts[f];
                        c.covered_ms[f] += x.covered_ms[f];
                    }
                }
            }
            out.insert((guest, start), c);
        }
    }
    out
}

/// Builds per-guest windows from counter samples (see the module documentation for the rules).
pub fn build_windows(samples: &[CounterSample], params: &WindowParams) -> Result<Windows, WindowError> {
    params.check()?;
    let d = params.features.len();
    let w = params.length_ms as i64;
    // Counts are accumulated per slot of one stride (the step, or the whole length when tumbling);
    // a window is the sum of `n` consecutive slots.
    let slot = params.stride_ms() as i64;
    let n = w / slot;
    let feat_index: HashMap<&str, usize> =
        params.features.iter().enumerate().map(|(i, f)| (f.counter.as_str(), i)).collect();
    // (guest, feature) -> samples (time, value)
    let mut series: HashMap<(&str, usize), Vec<(i64, f64)>> = HashMap::new();
    for s in samples {
        let Some(&f) = feat_index.get(s.counter.as_str()) else { continue };
        if !s.value.is_finite() {
            return Err(WindowError::NonFinite {
                guest: s.guest.clone(),
                counter: s.counter.clone(),
                time_ms: s.time_ms,
                value: s.value,
            });
        }
        if params.features[f].kind == CounterKind::PerInterval && s.value < 0.0 {
            return Err(WindowError::NegativeCount {
                guest: s.guest.clone(),
                counter: s.counter.clone(),
                time_ms: s.time_ms,
                value: s.value,
            });
        }
        series.entry((s.guest.as_str(), f)).or_default().push((s.time_ms, s.value));
    }
    let mut stats = WindowStats::default();
    let mut cells: BTreeMap<(&str, i64), Cell> = BTreeMap::new();
    for ((guest, f), mut pts) in series {
        pts.sort_by_key(|p| p.0); // stable: equal times keep input order
        for pair in pts.windows(2) {
            let ((a, va), (b, vb)) = (pair[0], pair[1]);
            let inc = match params.features[f].kind {
                CounterKind::Cumulative if vb < va => {
                    stats.resets += 1;
                    vb
                }
                CounterKind::Cumulative => vb - va,
                CounterKind::PerInterval => vb,
            };
            let span = b - a;
            if span as u64 > params.max_gap_ms {
                stats.gaps += 1;
                continue;
            }
            if span == 0 {
                cell(&mut cells, guest, b.div_euclid(slot), d).counts[f] += inc;
                continue;
            }
            // Spread over [a, b) split at slot boundaries (the half-open choice only decides
            // which slot gets a zero-length piece).
            let mut k = a.div_euclid(slot);
            let last = (b - 1).div_euclid(slot);
            while k <= last {
                let lo = a.max(k * slot);
                let hi = b.min((k + 1) * slot);
                let part = (hi - lo) as f64;
                let c = cell(&mut cells, guest, k, d);
                c.counts[f] += inc * part / span as f64;
                c.covered_ms[f] += part;
                k += 1;
            }
        }
    }
    if n > 1 {
        cells = slide(&cells, n, d);
    }
    let mut windows = Vec::new();
    for ((guest, k), c) in cells {
        let coverage = c.covered_ms.iter().map(|&m| m / w as f64).fold(f64::INFINITY, f64::min);
        if coverage + 1e-12 < params.min_coverage {
            stats.dropped_windows += 1;
            continue;
        }
        windows.push(Window {
            guest: guest.to_string(),
            start_ms: k * slot,
            end_ms: k * slot + w,
            counts: c.counts,
            coverage,
        });
    }
    Ok(Windows { feature_names: params.features.iter().map(|f| f.counter.clone()).collect(), windows, stats })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t: i64, g: &str, c: &str, v: f64) -> CounterSample {
        CounterSample { time_ms: t, guest: g.into(), counter: c.into(), value: v }
    }

    /// One sample per second from t0 to t1 (inclusive) of a counter increasing by `rate` per second.
    fn ramp(g: &str, c: &str, t0: i64, t1: i64, start: f64, rate: f64) -> Vec<CounterSample> {
        (t0..=t1).map(|t| s(t * 1000, g, c, start + rate * (t - t0) as f64)).collect()
    }

    #[test]
    fn counts_per_window_and_guest() {
        let mut v = ramp("a", "x", 0, 20, 100.0, 2.0);
        v.extend(ramp("b", "x", 0, 20, 0.0, 5.0));
        v.push(s(3000, "a", "ignored", 1.0));
        let out = build_windows(&v, &WindowParams::new(10_000, &["x"])).unwrap();
        let got: Vec<(&str, i64, f64)> =
            out.windows.iter().map(|w| (w.guest.as_str(), w.start_ms, w.counts[0])).collect();
        assert_eq!(got, vec![("a", 0, 20.0), ("a", 10_000, 20.0), ("b", 0, 50.0), ("b", 10_000, 50.0)]);
        assert_eq!(out.to_matrix().as_slice(), &[20.0, 20.0, 50.0, 50.0]);
    }

    #[test]
    fn reset_counts_from_the_new_value() {
        // 0..5 s rises by 1/s to 5; the guest reboots and reads 2 at 6 s; then 3..6 from 7 to 10 s.
        let mut v = ramp("g", "x", 0, 5, 0.0, 1.0);
        v.push(s(6000, "g", "x", 2.0));
        v.extend(ramp("g", "x", 7, 10, 3.0, 1.0));
        let out = build_windows(&v, &WindowParams::new(10_000, &["x"])).unwrap();
        assert_eq!(out.stats.resets, 1);
        // 5 (before) + 2 (since the reset) + 4 (6..10 s, 1/s)
        assert_eq!(out.windows[0].counts[0], 11.0);
    }

    #[test]
    fn gaps_are_not_attributed_and_drop_windows() {
        let mut v = ramp("g", "x", 0, 12, 0.0, 1.0);
        v.extend(ramp("g", "x", 40, 60, 1000.0, 1.0));
        let out = build_windows(&v, &WindowParams::new(10_000, &["x"]).max_gap_ms(5_000)).unwrap();
        assert_eq!(out.stats.gaps, 1);
        let starts: Vec<i64> = out.windows.iter().map(|w| w.start_ms).collect();
        assert_eq!(starts, vec![0, 40_000, 50_000]);
        assert_eq!(out.windows[1].counts[0], 10.0);
        assert_eq!(out.stats.dropped_windows, 1); // [10 s, 20 s) is covered 2 s out of 10
        let lenient =
            build_windows(&v, &WindowParams::new(10_000, &["x"]).max_gap_ms(5_000).min_coverage(0.0)).unwrap();
        assert!(lenient.windows.len() > out.windows.len());
    }

    #[test]
    fn straddling_interval_is_split_and_per_interval_counts_work() {
        let feats = vec![FeatureSpec { counter: "p".into(), kind: CounterKind::PerInterval }];
        let v = vec![s(0, "g", "p", 99.0), s(6000, "g", "p", 6.0), s(14_000, "g", "p", 8.0), s(20_000, "g", "p", 6.0)];
        let out = build_windows(&v, &WindowParams::with_features(10_000, feats).min_coverage(0.5)).unwrap();
        // (0,6]: 6 -> w0; (6,14]: 8 split 4/4; (14,20]: 6 -> w1
        assert_eq!(out.windows.iter().map(|w| w.counts[0]).collect::<Vec<_>>(), vec![10.0, 10.0]);
        assert_eq!(out.windows[0].coverage, 1.0);
    }

    #[test]
    fn missing_feature_drops_the_window_and_errors_are_clear() {
        let v = ramp("g", "x", 0, 10, 0.0, 1.0);
        let out = build_windows(&v, &WindowParams::new(10_000, &["x", "y"])).unwrap();
        assert!(out.windows.is_empty());
        assert_eq!(build_windows(&v, &WindowParams::new(0, &["x"])).unwrap_err(), WindowError::ZeroLength);
        assert_eq!(build_windows(&v, &WindowParams::new(1, &[])).unwrap_err(), WindowError::NoFeatures);
        assert!(matches!(build_windows(&v, &WindowParams::new(1, &["x", "x"])), Err(WindowError::DuplicateFeature(_))));
        assert!(matches!(
            build_windows(&v, &WindowParams::new(1, &["x"]).min_coverage(2.0)),
            Err(WindowError::InvalidCoverage(_))
        ));
        let bad = vec![s(0, "g", "x", f64::NAN)];
        assert!(matches!(build_windows(&bad, &WindowParams::new(1, &["x"])), Err(WindowError::NonFinite { .. })));
    }

    #[test]
    fn sliding_windows_overlap_by_length_minus_step() {
        // 2/s from 0 to 40 s; windows of 20 s every 10 s.
        let v = ramp("g", "x", 0, 40, 0.0, 2.0);
        let p = WindowParams::new(20_000, &["x"]).step_ms(Some(10_000));
        let out = build_windows(&v, &p).unwrap();
        let got: Vec<(i64, i64, f64)> = out.windows.iter().map(|w| (w.start_ms, w.end_ms, w.counts[0])).collect();
        assert_eq!(got, vec![(0, 20_000, 40.0), (10_000, 30_000, 40.0), (20_000, 40_000, 40.0)]);
        // The partial windows at both ends were candidates and dropped for coverage.
        assert_eq!(out.stats.dropped_windows, 2);
        // A step equal to the length is tumbling, window for window.
        let tumbling = build_windows(&v, &WindowParams::new(20_000, &["x"])).unwrap();
        assert_eq!(build_windows(&v, &p.clone().step_ms(Some(20_000))).unwrap(), tumbling);
        assert_eq!(tumbling.windows.len(), 2);
        for bad in [0, 3_000, 30_000] {
            assert_eq!(
                build_windows(&v, &p.clone().step_ms(Some(bad))).unwrap_err(),
                WindowError::InvalidStep { length_ms: 20_000, step_ms: bad }
            );
        }
        assert!(WindowError::InvalidStep { length_ms: 1, step_ms: 2 }.to_string().contains("does not divide"));
    }

    #[test]
    fn negative_times_align_to_the_epoch() {
        let v = ramp("g", "x", -20, 0, 0.0, 1.0);
        let out = build_windows(&v, &WindowParams::new(10_000, &["x"])).unwrap();
        assert_eq!(out.windows.iter().map(|w| w.start_ms).collect::<Vec<_>>(), vec![-20_000, -10_000]);
    }
}
