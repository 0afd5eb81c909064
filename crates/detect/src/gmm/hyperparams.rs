//! Gaussian-mixture hyperparameters: a builder ([`GaussianMixtureParams`]) validated into
//! [`GaussianMixtureValidParams`].

use serde::{Deserialize, Serialize};

use super::GmmError;

/// Shape of each component's covariance matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CovarianceType {
    /// A full `d x d` covariance per component (features may correlate).
    #[default]
    Full,
    /// A diagonal covariance per component (independent features; `d` variances).
    Diag,
}

/// Checked Gaussian-mixture hyperparameters; build them with
/// [`GaussianMixture::params`](super::GaussianMixture::params).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GaussianMixtureValidParams {
    pub(crate) n_components: usize,
    pub(crate) covariance: CovarianceType,
    pub(crate) n_init: usize,
    pub(crate) max_iter: usize,
    pub(crate) tol: f64,
    pub(crate) reg_covar: f64,
    pub(crate) seed: u64,
    pub(crate) kmeans_max_iter: usize,
    pub(crate) kmeans_tol: f64,
}

impl GaussianMixtureValidParams {
    /// Number of components `k`.
    pub fn n_components(&self) -> usize {
        self.n_components
    }
    /// Covariance shape.
    pub fn covariance_type(&self) -> CovarianceType {
        self.covariance
    }
    /// Number of restarts; the one with the highest log-likelihood is kept.
    pub fn n_init(&self) -> usize {
        self.n_init
    }
    /// Maximum EM iterations per restart.
    pub fn max_iter(&self) -> usize {
        self.max_iter
    }
    /// Tolerance on the change of the mean log-likelihood.
    pub fn tolerance(&self) -> f64 {
        self.tol
    }
    /// Value added to the covariance diagonal.
    pub fn reg_covar(&self) -> f64 {
        self.reg_covar
    }
    /// Seed of the random generator.
    pub fn seed(&self) -> u64 {
        self.seed
    }
}

/// Unchecked Gaussian-mixture hyperparameters (a builder). Defaults match scikit-learn's
/// `GaussianMixture`: full covariance, `n_init = 1`, `max_iter = 100`, `tol = 1e-3`,
/// `reg_covar = 1e-6`, initialised from K-means labels (K-means with `n_init = 1`, `max_iter = 300`,
/// `tol = 1e-4`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GaussianMixtureParams(pub(crate) GaussianMixtureValidParams);

impl GaussianMixtureParams {
    /// Defaults for `n_components` components.
    pub fn new(n_components: usize) -> Self {
        Self(GaussianMixtureValidParams {
            n_components,
            covariance: CovarianceType::Full,
            n_init: 1,
            max_iter: 100,
            tol: 1e-3,
            reg_covar: 1e-6,
            seed: 0,
            kmeans_max_iter: 300,
            kmeans_tol: 1e-4,
        })
    }
    /// Covariance shape (full or diagonal).
    pub fn covariance_type(mut self, covariance: CovarianceType) -> Self {
        self.0.covariance = covariance;
        self
    }
    /// Number of restarts, each from a fresh K-means initialisation (unlike linfa, which initialises
    /// once outside its restart loop); the highest log-likelihood wins.
    pub fn n_init(mut self, n_init: usize) -> Self {
        self.0.n_init = n_init;
        self
    }
    /// Maximum EM iterations per restart.
    pub fn max_iter(mut self, max_iter: usize) -> Self {
        self.0.max_iter = max_iter;
        self
    }
    /// EM stops when the mean log-likelihood per window changes by less than `tol`.
    pub fn tolerance(mut self, tol: f64) -> Self {
        self.0.tol = tol;
        self
    }
    /// Non-negative value added to every covariance diagonal so that constant features and collapsed
    /// components keep a positive-definite covariance.
    pub fn reg_covar(mut self, reg_covar: f64) -> Self {
        self.0.reg_covar = reg_covar;
        self
    }
    /// Seed of the random generator (K-means initialisation of every restart).
    pub fn seed(mut self, seed: u64) -> Self {
        self.0.seed = seed;
        self
    }
    /// Maximum iterations of the K-means initialisation.
    pub fn kmeans_max_iter(mut self, max_iter: usize) -> Self {
        self.0.kmeans_max_iter = max_iter;
        self
    }
    /// Relative tolerance of the K-means initialisation.
    pub fn kmeans_tolerance(mut self, tol: f64) -> Self {
        self.0.kmeans_tol = tol;
        self
    }
    /// Validates the hyperparameters.
    pub fn check(self) -> Result<GaussianMixtureValidParams, GmmError> {
        let p = self.0;
        if p.n_components == 0 {
            return Err(GmmError::ZeroComponents);
        }
        if p.n_init == 0 {
            return Err(GmmError::ZeroRestarts);
        }
        if p.max_iter == 0 {
            return Err(GmmError::ZeroIterations);
        }
        if !p.tol.is_finite() || p.tol < 0.0 {
            return Err(GmmError::InvalidTolerance(p.tol));
        }
        if !p.reg_covar.is_finite() || p.reg_covar < 0.0 {
            return Err(GmmError::InvalidRegCovar(p.reg_covar));
        }
        if p.kmeans_max_iter == 0 {
            return Err(GmmError::Init(crate::KMeansError::ZeroIterations));
        }
        if !p.kmeans_tol.is_finite() || p.kmeans_tol < 0.0 {
            return Err(GmmError::Init(crate::KMeansError::InvalidTolerance(p.kmeans_tol)));
        }
        Ok(p)
    }
    /// Validates, then fits (see [`GaussianMixtureValidParams::fit`]).
    pub fn fit(self, data: &crate::Matrix) -> Result<super::GaussianMixture, GmmError> {
        self.check()?.fit(data)
    }
}
