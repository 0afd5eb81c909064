//! The seed's whole method as two calls, for `vmguard detect fit` and `vmguard detect eval`:
//! scale → cluster (K-means or EM) → map clusters to normal/DoS → score against labels.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::scale::Scaler;
use crate::{
    AccuracyReport, BinaryMetrics, ClusterMapping, CovarianceType, CsvError, DataError, EvalError, GaussianMixture,
    GmmError, KMeans, KMeansError, Label, MappingError, MappingStrategy, Matrix, MinMaxScaler, ReportRow, RobustScaler,
    WindowError, WindowParams, Windows, adjusted_rand_index, binary_metrics, build_windows,
};

/// Clustering method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// K-means (Lloyd, k-means++).
    KMeans,
    /// EM for a Gaussian mixture with the given covariance shape.
    Em(CovarianceType),
}

impl Method {
    /// Name in reports: "K-means", "EM" (full) or "EM (diag)".
    pub fn display_name(self) -> &'static str {
        match self {
            Method::KMeans => "K-means",
            Method::Em(CovarianceType::Full) => "EM",
            Method::Em(CovarianceType::Diag) => "EM (diag)",
        }
    }
}

/// Feature scaling before clustering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Scaling {
    /// No scaling.
    None,
    /// The seed's min-max scaling to [0, 1].
    #[default]
    MinMax,
    /// Median / IQR.
    Robust,
}

/// Everything `detect fit` needs besides the data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitConfig {
    pub method: Method,
    pub k: usize,
    pub n_init: usize,
    /// `None` = the method's default (300 for K-means, 100 for EM).
    pub max_iter: Option<usize>,
    /// `None` = the method's default (1e-4 relative for K-means, 1e-3 for EM).
    pub tol: Option<f64>,
    pub seed: u64,
    pub scaling: Scaling,
    pub mapping: MappingStrategy,
}

impl Default for FitConfig {
    /// The seed's setup: K-means, k = 2, min-max scaling, DoS = busiest cluster.
    fn default() -> Self {
        Self {
            method: Method::KMeans,
            k: 2,
            n_init: 1,
            max_iter: None,
            tol: None,
            seed: 0,
            scaling: Scaling::MinMax,
            mapping: MappingStrategy::Signature { feature: None },
        }
    }
}

/// A fitted clustering model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FittedModel {
    KMeans(KMeans),
    Em(GaussianMixture),
}

/// Result of [`fit_windows`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitOutcome {
    pub model: FittedModel,
    /// Scaling fitted on the training windows (min-max only; `None` for no or robust scaling).
    pub min_max: Option<MinMaxScaler>,
    /// Cluster id per window.
    pub clusters: Vec<usize>,
    /// Label of each cluster.
    pub mapping: ClusterMapping,
    /// Verdict per window.
    pub predicted: Vec<Label>,
    /// Iterations of the kept run.
    pub n_iter: usize,
    /// K-means inertia or EM mean log-likelihood.
    pub objective: f64,
    /// Metrics against the known labels, if any window is labelled.
    pub metrics: Option<BinaryMetrics>,
    /// ARI of the clusters against the known labels (labelled windows only).
    pub ari: Option<f64>,
}

/// Why the pipeline failed; each variant wraps the failing stage's error.
#[derive(Debug, Error)]
pub enum PipelineError {
    /// Reading or writing CSV failed.
    #[error(transparent)]
    Csv(#[from] CsvError),
    /// The windows could not be built.
    #[error(transparent)]
    Windows(#[from] WindowError),
    /// The data is unusable.
    #[error(transparent)]
    Data(#[from] DataError),
    /// K-means failed.
    #[error(transparent)]
    KMeans(#[from] KMeansError),
    /// EM failed.
    #[error(transparent)]
    Gmm(#[from] GmmError),
    /// Clusters could not be mapped to labels.
    #[error(transparent)]
    Mapping(#[from] MappingError),
    /// Metrics could not be computed.
    #[error(transparent)]
    Eval(#[from] EvalError),
    /// The majority mapping needs labels, and the input has none.
    #[error("the majority mapping needs labelled windows: add a label column or use the signature strategy")]
    NoLabels,
}

/// Scales, clusters, maps and (if `truth` is given) scores windows.
pub fn fit_windows(
    features: &Matrix,
    truth: Option<&[Option<Label>]>,
    cfg: &FitConfig,
) -> Result<FitOutcome, PipelineError> {
    features.validate_for_fit()?;
    let (data, min_max) = match cfg.scaling {
        Scaling::None => (features.clone(), None),
        Scaling::MinMax => {
            let s = MinMaxScaler::fit(features)?;
            (s.transform(features)?, Some(s))
        }
        Scaling::Robust => (RobustScaler::fit(features)?.transform(features)?, None),
    };
    let (model, clusters, centers, n_iter, objective) = match cfg.method {
        Method::KMeans => {
            let mut p = KMeans::params(cfg.k).n_init(cfg.n_init).seed(cfg.seed);
            if let Some(m) = cfg.max_iter {
                p = p.max_iter(m);
            }
            if let Some(t) = cfg.tol {
                p = p.tolerance(t);
            }
            let m = p.fit(&data)?;
            let c = m.predict(&data)?;
            let centers = m.centroids().clone();
            let (it, obj) = (m.n_iter(), m.inertia());
            (FittedModel::KMeans(m), c, centers, it, obj)
        }
        Method::Em(cov) => {
            let mut p = GaussianMixture::params(cfg.k).covariance_type(cov).n_init(cfg.n_init).seed(cfg.seed);
            if let Some(m) = cfg.max_iter {
                p = p.max_iter(m);
            }
            if let Some(t) = cfg.tol {
                p = p.tolerance(t);
            }
            let m = p.fit(&data)?;
            let c = m.predict(&data)?;
            let centers = m.means().clone();
            let (it, obj) = (m.n_iter(), m.log_likelihood());
            (FittedModel::Em(m), c, centers, it, obj)
        }
    };
    let mapping = match &cfg.mapping {
        MappingStrategy::Signature { feature } => ClusterMapping::by_signature(&centers, *feature)?,
        MappingStrategy::Majority => {
            ClusterMapping::by_majority(&clusters, truth.ok_or(PipelineError::NoLabels)?, cfg.k)?
        }
    };
    let predicted = mapping.apply(&clusters)?;
    let (metrics, ari) = match truth {
        Some(t) if t.iter().any(Option::is_some) => {
            let m = binary_metrics(t, &predicted)?;
            let (tl, cl): (Vec<Label>, Vec<usize>) =
                t.iter().zip(&clusters).filter_map(|(t, &c)| t.map(|t| (t, c))).unzip();
            (Some(m), Some(adjusted_rand_index(&tl, &cl)?))
        }
        _ => (None, None),
    };
    Ok(FitOutcome { model, min_max, clusters, mapping, predicted, n_iter, objective, metrics, ari })
}

/// The seed's experiment: for every window length and method, build windows from `samples` (tumbling,
/// or sliding by `base`'s step: [`WindowParams::step_ms`]), label them with `truth` (e.g. "did this
/// guest's window overlap an attack?"), fit, and report accuracy. Window lengths with no labelled
/// window are skipped.
pub fn evaluate_lengths(
    samples: &[crate::CounterSample],
    base: &WindowParams,
    lengths_ms: &[u64],
    methods: &[Method],
    cfg: &FitConfig,
    truth: &dyn Fn(&crate::Window) -> Option<Label>,
) -> Result<AccuracyReport, PipelineError> {
    let mut report = AccuracyReport::default();
    for &len in lengths_ms {
        let params = base.with_length(len);
        let windows: Windows = build_windows(samples, &params)?;
        if windows.windows.len() < cfg.k {
            continue;
        }
        let labels: Vec<Option<Label>> = windows.windows.iter().map(truth).collect();
        if labels.iter().all(Option::is_none) {
            continue;
        }
        let features = windows.to_matrix();
        for &method in methods {
            let out = fit_windows(&features, Some(&labels), &FitConfig { method, ..cfg.clone() })?;
            if let Some(metrics) = out.metrics {
                report.rows.push(ReportRow {
                    window_secs: len / 1000,
                    step_secs: params.step().map(|s| s / 1000),
                    method: method.display_name().to_string(),
                    metrics,
                    ari: out.ari,
                    fitted_windows: windows.windows.len() as u64,
                });
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CounterSample;

    /// Two guests sampled every second for 40 minutes; "zombie" floods (100x the hypercalls) from
    /// minute 20 on, "quiet" stays normal.
    fn samples() -> Vec<CounterSample> {
        let mut v = Vec::new();
        for guest in ["quiet", "zombie"] {
            let mut total = [0.0f64; 5];
            for t in 0..=2400i64 {
                let attack = guest == "zombie" && t >= 1200;
                for (j, name) in crate::features::XEN_HYPERCALLS.counter_names().iter().enumerate() {
                    let base = (10 + j * 3 + (t as usize * 7 + j) % 5) as f64;
                    total[j] += if attack && j < 2 { base * 100.0 } else { base };
                    v.push(CounterSample {
                        time_ms: t * 1000,
                        guest: guest.into(),
                        counter: name.to_string(),
                        value: total[j],
                    });
                }
            }
        }
        v
    }

    #[test]
    fn seed_experiment_end_to_end() {
        let base = WindowParams::new(1, &crate::features::XEN_HYPERCALLS.counter_names());
        let truth = |w: &crate::Window| {
            Some(if w.guest == "zombie" && w.start_ms >= 1_200_000 { Label::Dos } else { Label::Normal })
        };
        let lengths = [120_000, 300_000, 600_000, 1_200_000];
        let methods = [Method::KMeans, Method::Em(CovarianceType::Full), Method::Em(CovarianceType::Diag)];
        let report = evaluate_lengths(&samples(), &base, &lengths, &methods, &FitConfig::default(), &truth).unwrap();
        assert_eq!(report.rows.len(), 12);
        for r in &report.rows {
            assert_eq!(r.metrics.accuracy, 1.0, "{} {}", r.method, r.window_secs);
        }
        assert!(report.to_table().starts_with("window"));
        // 40 min at 20 min windows, per guest: 2 back to back; sliding every minute, 25 overlapping (21
        // inside the recording, and 2 at each end that stick out by at most the 10% coverage allows).
        let rows = |r: &AccuracyReport| r.rows.iter().map(|r| (r.step_secs, r.fitted_windows)).collect::<Vec<_>>();
        let one = evaluate_lengths(&samples(), &base, &[1_200_000], &methods[..1], &FitConfig::default(), &truth);
        assert_eq!(rows(&one.unwrap()), vec![(None, 4)]);
        let sliding = base.clone().step_ms(Some(60_000));
        let r = evaluate_lengths(&samples(), &sliding, &[1_200_000], &methods[..1], &FitConfig::default(), &truth);
        let r = r.unwrap();
        assert_eq!(rows(&r), vec![(Some(60), 50)]);
        assert_eq!(r.rows[0].metrics.confusion.total(), 50);
    }

    #[test]
    fn majority_mapping_needs_labels() {
        let m = Matrix::from_rows(&[[0.0], [1.0], [10.0], [11.0]]).unwrap();
        let cfg = FitConfig { mapping: MappingStrategy::Majority, ..FitConfig::default() };
        assert!(matches!(fit_windows(&m, None, &cfg), Err(PipelineError::NoLabels)));
        let truth = [Some(Label::Normal), None, Some(Label::Dos), None];
        let out = fit_windows(&m, Some(&truth), &cfg).unwrap();
        assert_eq!(out.predicted, vec![Label::Normal, Label::Normal, Label::Dos, Label::Dos]);
        assert_eq!(out.ari, Some(1.0));
        let robust =
            FitConfig { scaling: Scaling::Robust, method: Method::Em(CovarianceType::Diag), ..FitConfig::default() };
        assert_eq!(fit_windows(&m, None, &robust).unwrap().predicted[3], Label::Dos);
    }
}
