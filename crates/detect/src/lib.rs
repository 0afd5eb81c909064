//! Pure detection for vmguard: windows of per-guest counters, scaling, K-means and EM clustering,
//! cluster-to-label mapping, evaluation, CSV I/O over `Read`/`Write`, and online scoring.
//!
//! No files, sockets, clocks or processes here: every function takes values (or `impl Read` /
//! `impl Write`) and returns values, so all of it tests without root or a lab.
//!
//! Shaped like linfa: hyperparameters are a builder (`KMeans::params(2).n_init(4)`) checked into a
//! valid-params type, `params.fit(&data)` returns a fitted model, and `model.predict(&records)` is pure.

pub mod csvio;
mod data;
pub mod eval;
pub mod features;
pub mod gmm;
mod kernel;
pub mod kmeans;
pub mod mapping;
mod rng;
pub mod scale;
pub mod score;
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
pub use scale::{MinMaxScaler, RobustScaler, Scaler};
pub use score::{CentroidScorer, LikelihoodScorer, ScoreError, WindowScorer};
pub use windows::{
    CounterKind, CounterSample, FeatureSpec, Window, WindowError, WindowParams, WindowStats, Windows, build_windows,
};
