//! Errors of the Gaussian mixture (EM).

use thiserror::Error;

use crate::{DataError, KMeansError};

/// Why a Gaussian mixture could not be configured, fitted or applied.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum GmmError {
    /// `n_components` was 0.
    #[error("n_components is 0: ask for at least one component (the seed uses 2)")]
    ZeroComponents,
    /// `n_init` (number of restarts) was 0.
    #[error("n_init is 0: run at least one initialisation")]
    ZeroRestarts,
    /// `max_iter` was 0.
    #[error("max_iter is 0: allow at least one EM iteration (default 100)")]
    ZeroIterations,
    /// The tolerance was negative or NaN.
    #[error("tolerance {0} is negative or not a number: use a value >= 0 (default 1e-3)")]
    InvalidTolerance(f64),
    /// `reg_covar` was negative or not finite.
    #[error("reg_covar {0} is negative or not finite: use a value >= 0 (default 1e-6)")]
    InvalidRegCovar(f64),
    /// More components were asked for than there are rows.
    #[error("{n_components} components asked for but the data has only {n_rows} rows: lower k or give more windows")]
    TooFewRows { n_components: usize, n_rows: usize },
    /// A component's covariance lost positive definiteness (a collapsed component or a constant feature
    /// with `reg_covar = 0`).
    #[error(
        "covariance of component {component} is not positive definite (a collapsed component or a constant \
         feature): increase reg_covar (e.g. 1e-6), drop constant features, or lower k"
    )]
    NotPositiveDefinite { component: usize },
    /// The K-means initialisation failed.
    #[error("k-means initialisation failed: {0}")]
    Init(#[from] KMeansError),
    /// The data itself is unusable (empty, NaN/inf, wrong width).
    #[error(transparent)]
    Data(#[from] DataError),
}
