//! Errors of K-means.

use thiserror::Error;

use crate::DataError;

/// Why K-means could not be configured, fitted or applied.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum KMeansError {
    /// `n_clusters` was 0.
    #[error("n_clusters is 0: ask for at least one cluster (the seed uses 2)")]
    ZeroClusters,
    /// `n_init` (number of restarts) was 0.
    #[error("n_init is 0: run at least one initialisation")]
    ZeroRestarts,
    /// `max_iter` was 0.
    #[error("max_iter is 0: allow at least one Lloyd iteration (default 300)")]
    ZeroIterations,
    /// The tolerance was negative or NaN.
    #[error("tolerance {0} is negative or not a number: use a value >= 0 (default 1e-4)")]
    InvalidTolerance(f64),
    /// More clusters were asked for than there are rows.
    #[error("{n_clusters} clusters asked for but the data has only {n_rows} rows: lower k or give more windows")]
    TooFewRows { n_clusters: usize, n_rows: usize },
    /// The data itself is unusable (empty, NaN/inf, wrong width).
    #[error(transparent)]
    Data(#[from] DataError),
}
