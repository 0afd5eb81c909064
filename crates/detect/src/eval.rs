//! Evaluation: binary metrics (DoS = positive), confusion matrix, adjusted Rand index, and the
//! seed's report table (window length x method -> accuracy %).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::Label;

/// Why an evaluation could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EvalError {
    /// Truth and prediction differ in length.
    #[error("{truth} true labels but {predicted} predictions: give one prediction per window")]
    LengthMismatch { truth: usize, predicted: usize },
    /// Nothing to evaluate.
    #[error("no labelled windows to evaluate: add a label column with normal/dos values")]
    Empty,
}

/// Counts of a binary confusion matrix, DoS being the positive class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ConfusionMatrix {
    /// DoS windows flagged DoS.
    pub true_positive: u64,
    /// Normal windows flagged DoS (false alarms).
    pub false_positive: u64,
    /// Normal windows left normal.
    pub true_negative: u64,
    /// DoS windows missed.
    pub false_negative: u64,
}

impl ConfusionMatrix {
    /// Total windows counted.
    pub fn total(&self) -> u64 {
        self.true_positive + self.false_positive + self.true_negative + self.false_negative
    }
}

/// Accuracy, precision, recall and F1 (fractions in [0, 1]) with their confusion matrix. A ratio with a
/// zero denominator is 0 (scikit-learn's `zero_division=0`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BinaryMetrics {
    pub accuracy: f64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub confusion: ConfusionMatrix,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

impl BinaryMetrics {
    /// Metrics from a confusion matrix.
    pub fn from_confusion(c: ConfusionMatrix) -> Self {
        let precision = ratio(c.true_positive, c.true_positive + c.false_positive);
        let recall = ratio(c.true_positive, c.true_positive + c.false_negative);
        let f1 = if precision + recall == 0.0 { 0.0 } else { 2.0 * precision * recall / (precision + recall) };
        Self { accuracy: ratio(c.true_positive + c.true_negative, c.total()), precision, recall, f1, confusion: c }
    }
}

/// Metrics over windows whose truth is known (`None` truths are skipped).
pub fn binary_metrics(truth: &[Option<Label>], predicted: &[Label]) -> Result<BinaryMetrics, EvalError> {
    if truth.len() != predicted.len() {
        return Err(EvalError::LengthMismatch { truth: truth.len(), predicted: predicted.len() });
    }
    let mut c = ConfusionMatrix::default();
    for (t, &p) in truth.iter().zip(predicted) {
        match (t, p) {
            (Some(Label::Dos), Label::Dos) => c.true_positive += 1,
            (Some(Label::Normal), Label::Dos) => c.false_positive += 1,
            (Some(Label::Normal), Label::Normal) => c.true_negative += 1,
            (Some(Label::Dos), Label::Normal) => c.false_negative += 1,
            (None, _) => {}
        }
    }
    if c.total() == 0 {
        return Err(EvalError::Empty);
    }
    Ok(BinaryMetrics::from_confusion(c))
}

/// Adjusted Rand index (Hubert and Arabie 1985) of two partitions of the same windows: 1 for identical
/// partitions (up to renaming), about 0 for independent ones. Two trivial partitions give 1, like
/// scikit-learn.
pub fn adjusted_rand_index<A, B>(a: &[A], b: &[B]) -> Result<f64, EvalError>
where
    A: std::hash::Hash + Eq,
    B: std::hash::Hash + Eq,
{
    if a.len() != b.len() {
        return Err(EvalError::LengthMismatch { truth: a.len(), predicted: b.len() });
    }
    if a.is_empty() {
        return Err(EvalError::Empty);
    }
    let mut ia: HashMap<&A, usize> = HashMap::new();
    let mut ib: HashMap<&B, usize> = HashMap::new();
    let mut cells: HashMap<(usize, usize), u64> = HashMap::new();
    for (x, y) in a.iter().zip(b) {
        let na = ia.len();
        let i = *ia.entry(x).or_insert(na);
        let nb = ib.len();
        let j = *ib.entry(y).or_insert(nb);
        *cells.entry((i, j)).or_default() += 1;
    }
    let comb2 = |n: u64| (n as f64) * (n as f64 - 1.0) / 2.0;
    let mut rows = vec![0u64; ia.len()];
    let mut cols = vec![0u64; ib.len()];
    let mut sum_cells = 0.0;
    for (&(i, j), &n) in &cells {
        rows[i] += n;
        cols[j] += n;
        sum_cells += comb2(n);
    }
    let sum_a: f64 = rows.iter().map(|&n| comb2(n)).sum();
    let sum_b: f64 = cols.iter().map(|&n| comb2(n)).sum();
    let total = comb2(a.len() as u64);
    let expected = if total == 0.0 { 0.0 } else { sum_a * sum_b / total };
    let max = 0.5 * (sum_a + sum_b);
    if max == expected {
        return Ok(1.0);
    }
    Ok((sum_cells - expected) / (max - expected))
}

/// One cell of the seed's table: a method at a window length.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportRow {
    /// Window length in seconds.
    pub window_secs: u64,
    /// Seconds between window starts when the windows slide (they overlap by `window_secs -
    /// step_secs`); `None`: tumbling, back to back, none overlapping.
    #[serde(default)]
    pub step_secs: Option<u64>,
    /// Method name as shown in the table (e.g. "K-means", "EM").
    pub method: String,
    /// Metrics against the labels (their confusion matrix counts the scored windows of each class).
    pub metrics: BinaryMetrics,
    /// ARI of the clusters against the labels, when computed.
    pub ari: Option<f64>,
    /// Windows the method was fitted on: the scored ones and those without a label (partly under
    /// attack), which are clustered too but not scored.
    #[serde(default)]
    pub fitted_windows: u64,
}

impl ReportRow {
    /// Scored windows labelled normal and DoS.
    pub fn class_counts(&self) -> (u64, u64) {
        let c = &self.metrics.confusion;
        (c.true_negative + c.false_positive, c.true_positive + c.false_negative)
    }

    /// "2 min" for tumbling windows, "2 min every 1 min" for sliding ones.
    pub fn window_label(&self) -> String {
        match self.step_secs {
            Some(step) => format!("{} every {}", window_name(self.window_secs), window_name(step)),
            None => window_name(self.window_secs),
        }
    }
}

/// Detection accuracy per window length and method, in the seed's layout.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AccuracyReport {
    pub rows: Vec<ReportRow>,
}

/// "2 min", "90 s", "1 h".
pub fn window_name(secs: u64) -> String {
    if secs >= 3600 && secs.is_multiple_of(3600) {
        format!("{} h", secs / 3600)
    } else if secs >= 60 && secs.is_multiple_of(60) {
        format!("{} min", secs / 60)
    } else {
        format!("{secs} s")
    }
}

impl AccuracyReport {
    /// Adds one cell of tumbling windows, fitted on the windows it scored.
    pub fn push(&mut self, window_secs: u64, method: impl Into<String>, metrics: BinaryMetrics, ari: Option<f64>) {
        let fitted_windows = metrics.confusion.total();
        self.rows.push(ReportRow { window_secs, step_secs: None, method: method.into(), metrics, ari, fitted_windows });
    }

    /// Plain-text table: one line per window length (ascending; tumbling before sliding), one column
    /// per method (first-seen order), cells are accuracy in percent, missing cells "-"; the last
    /// column is the scored windows per class of the line's first cell (every method of a line
    /// clusters the same windows).
    pub fn to_table(&self) -> String {
        let mut windows: Vec<(u64, Option<u64>)> = self.rows.iter().map(|r| (r.window_secs, r.step_secs)).collect();
        windows.sort_unstable_by_key(|&(w, s)| (w, s.is_some(), s));
        windows.dedup();
        let mut methods: Vec<&str> = Vec::new();
        for r in &self.rows {
            if !methods.contains(&r.method.as_str()) {
                methods.push(&r.method);
            }
        }
        let width = methods.iter().map(|m| m.len()).max().unwrap_or(0).max(8);
        let cells = |w: u64, s: Option<u64>| self.rows.iter().filter(move |r| r.window_secs == w && r.step_secs == s);
        let label_width =
            windows.iter().filter_map(|&(w, s)| cells(w, s).next()).map(|r| r.window_label().len()).max().unwrap_or(0);
        let lw = label_width.max(10);
        let mut out = format!("{:<lw$}", "window");
        for m in &methods {
            out.push_str(&format!(" {m:>width$}"));
        }
        out.push_str("  normal/dos windows\n");
        for (w, s) in windows {
            let first = cells(w, s).next().expect("a line has a cell");
            out.push_str(&format!("{:<lw$}", first.window_label()));
            for m in &methods {
                let cell = cells(w, s).find(|r| r.method == *m);
                let text = cell.map_or("-".to_string(), |r| format!("{:.1}%", 100.0 * r.metrics.accuracy));
                out.push_str(&format!(" {text:>width$}"));
            }
            let (normal, dos) = first.class_counts();
            out.push_str(&format!("  {normal}/{dos}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Label::{Dos as D, Normal as N};

    #[test]
    fn metrics_by_hand() {
        // truth:     D D D N N N N -
        // predicted: D D N D N N N D   -> TP 2, FN 1, FP 1, TN 3, last unlabelled
        let truth = [Some(D), Some(D), Some(D), Some(N), Some(N), Some(N), Some(N), None];
        let pred = [D, D, N, D, N, N, N, D];
        let m = binary_metrics(&truth, &pred).unwrap();
        assert_eq!(
            m.confusion,
            ConfusionMatrix { true_positive: 2, false_positive: 1, true_negative: 3, false_negative: 1 }
        );
        assert!((m.accuracy - 5.0 / 7.0).abs() < 1e-12);
        assert!((m.precision - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.recall - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.f1 - 2.0 / 3.0).abs() < 1e-12);
        let none = binary_metrics(&[Some(N)], &[N]).unwrap();
        assert_eq!((none.precision, none.recall, none.f1, none.accuracy), (0.0, 0.0, 0.0, 1.0));
        assert!(binary_metrics(&[None], &[N]).is_err());
        assert!(binary_metrics(&[Some(N)], &[]).is_err());
    }

    #[test]
    fn ari_by_hand() {
        // sklearn: adjusted_rand_score([0,0,1,1],[0,0,1,2]) = 0.5714285714285715
        let a = adjusted_rand_index(&[0, 0, 1, 1], &[0, 0, 1, 2]).unwrap();
        assert!((a - 0.571_428_571_428_571_5).abs() < 1e-12, "{a}");
        // Renaming does not matter.
        assert_eq!(adjusted_rand_index(&[0, 0, 1, 1], &["b", "b", "a", "a"]).unwrap(), 1.0);
        // sklearn: adjusted_rand_score([0,0,1,1],[0,1,0,1]) = -0.5
        assert!((adjusted_rand_index(&[0, 0, 1, 1], &[0, 1, 0, 1]).unwrap() + 0.5).abs() < 1e-12);
        assert_eq!(adjusted_rand_index(&[1, 1], &[2, 2]).unwrap(), 1.0);
        assert_eq!(adjusted_rand_index(&[7], &[3]).unwrap(), 1.0);
        assert!(adjusted_rand_index::<u8, u8>(&[], &[]).is_err());
    }

    #[test]
    fn table_in_seed_layout() {
        let m = |acc: f64| BinaryMetrics { accuracy: acc, ..BinaryMetrics::from_confusion(ConfusionMatrix::default()) };
        let mut r = AccuracyReport::default();
        for (w, km, em) in [(120, 0.9, 0.9), (300, 0.9, 0.9), (600, 1.0, 1.0), (1200, 1.0, 1.0)] {
            r.push(w, "K-means", m(km), None);
            r.push(w, "EM", m(em), None);
        }
        let t = r.to_table();
        assert_eq!(
            t,
            "window      K-means       EM  normal/dos windows\n2 min         90.0%    90.0%  0/0\n\
             5 min         90.0%    90.0%  0/0\n10 min       100.0%   100.0%  0/0\n20 min       100.0%   100.0%  0/0\n"
        );
        // Sliding cells come after the tumbling ones of their length, and say their step.
        let c = ConfusionMatrix { true_positive: 3, false_positive: 0, true_negative: 2, false_negative: 1 };
        r.rows.push(ReportRow {
            window_secs: 120,
            step_secs: Some(60),
            method: "K-means".into(),
            metrics: BinaryMetrics::from_confusion(c),
            ari: None,
            fitted_windows: 7,
        });
        let lines: Vec<String> = r.to_table().lines().map(str::to_string).collect();
        assert_eq!(lines[2], "2 min every 1 min    83.3%        -  2/4");
        assert_eq!(r.rows[8].class_counts(), (2, 4));
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<AccuracyReport>(&json).unwrap(), r);
        assert_eq!(window_name(90), "90 s");
        assert_eq!(window_name(7200), "2 h");
    }
}
