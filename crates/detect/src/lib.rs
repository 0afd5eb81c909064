//! Pure detection for vmguard: windows of per-guest counters, scaling, K-means and EM clustering,
//! cluster-to-label mapping, evaluation, CSV I/O over `Read`/`Write`, and online scoring.
//!
//! No files, sockets, clocks or processes here: every function takes values (or `impl Read` /
//! `impl Write`) and returns values, so all of it tests without root or a lab.
//!
//! Shaped like linfa: hyperparameters are a builder (`KMeans::params(2).n_init(4)`) checked into a
//! valid-params type, `params.fit(&data)` returns a fitted model, and `model.predict(&records)` is pure.
//!
//! | concern | module | main items |
//! |---|---|---|
//! | samples → windows | [`windows`], [`features`] | [`build_windows`], [`WindowParams`], [`features::XEN_HYPERCALLS`] |
//! | scaling | [`scale`] | [`MinMaxScaler`], [`RobustScaler`], [`Scaler`] |
//! | K-means | [`kmeans`] | [`KMeans::params`], [`KMeansValidParams::fit`], [`KMeans::predict`] |
//! | EM | [`gmm`] | [`GaussianMixture::params`], [`GaussianMixture::predict_proba`] |
//! | cluster → label | [`mapping`] | [`ClusterMapping::by_signature`], [`ClusterMapping::by_majority`] |
//! | evaluation | [`eval`] | [`binary_metrics`], [`adjusted_rand_index`], [`AccuracyReport::to_table`] |
//! | CSV | [`csvio`] | [`read_windows`], [`write_labels`] |
//! | whole method | [`pipeline`] | [`fit_windows`] (`detect fit`), [`evaluate_lengths`] (`detect eval`) |
//! | online scoring | [`score`] | [`CentroidScorer`], [`LikelihoodScorer`], [`WindowScorer::score`] |
//! | Part B detector | [`online`] | [`online::WindowExtractor`], [`online::KindModel::train`], [`online::AlertState`] |
//!
//! `vmguard detect fit --input windows.csv --method kmeans --k 2 --labels-out labels.csv` is:
//! ```
//! use detect::{CsvOptions, FitConfig, Method, fit_windows, read_windows, write_labels};
//! let csv = "guest,a,b,label\nvm1,1,2,normal\nvm1,2,1,normal\nvm2,90,80,dos\nvm2,95,85,dos\n";
//! let table = read_windows(csv.as_bytes(), &CsvOptions::default()).unwrap();
//! let cfg = FitConfig { method: Method::KMeans, k: 2, ..FitConfig::default() };
//! let out = fit_windows(&table.features, table.labels.as_deref(), &cfg).unwrap();
//! let mut labels_csv = Vec::new();
//! write_labels(&mut labels_csv, &table, &out.clusters, Some(&out.predicted)).unwrap();
//! assert_eq!(out.metrics.unwrap().accuracy, 1.0);
//! ```

pub mod csvio;
mod data;
pub mod eval;
pub mod features;
pub mod gmm;
mod kernel;
pub mod kmeans;
pub mod mapping;
pub mod online;
pub mod pipeline;
mod rng;
pub mod scale;
pub mod score;
pub mod truth;
pub mod windows;

pub use csvio::{CsvError, CsvOptions, WindowTable, read_windows, write_labels, write_windows};
pub use data::{DataError, Matrix};
pub use eval::{
    AccuracyReport, BinaryMetrics, ConfusionMatrix, EvalError, ReportRow, adjusted_rand_index, binary_metrics,
};
pub use features::FeatureSet;
pub use gmm::{CovarianceType, GaussianMixture, GaussianMixtureParams, GaussianMixtureValidParams, GmmError};
pub use kmeans::{KMeans, KMeansError, KMeansInit, KMeansParams, KMeansValidParams};
pub use mapping::{ClusterMapping, Label, MappingError, MappingStrategy};
pub use pipeline::{FitConfig, FitOutcome, FittedModel, Method, PipelineError, Scaling, evaluate_lengths, fit_windows};
pub use scale::{MinMaxScaler, RobustScaler, Scaler};
pub use score::{CentroidScorer, LikelihoodScorer, ScoreError, WindowScorer};
pub use windows::{
    CounterKind, CounterSample, FeatureSpec, Window, WindowError, WindowParams, WindowStats, Windows, build_windows,
};
