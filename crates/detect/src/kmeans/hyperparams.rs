//! K-means hyperparameters: an unchecked builder ([`KMeansParams`]) validated into [`KMeansValidParams`].

use serde::{Deserialize, Serialize};

use super::KMeansError;

/// How the first centers of each restart are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum KMeansInit {
    /// Greedy k-means++ (Arthur and Vassilvitskii 2007, with `2 + ln k` local trials like scikit-learn).
    #[default]
    KMeansPlusPlus,
    /// `k` distinct rows drawn uniformly (the classic initialisation the seed's algorithm assumes).
    Random,
}

/// Checked K-means hyperparameters; build them with [`KMeans::params`](super::KMeans::params).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KMeansValidParams {
    pub(crate) n_clusters: usize,
    pub(crate) n_init: usize,
    pub(crate) max_iter: usize,
    pub(crate) tol: f64,
    pub(crate) seed: u64,
    pub(crate) init: KMeansInit,
}

impl KMeansValidParams {
    /// Number of clusters `k`.
    pub fn n_clusters(&self) -> usize {
        self.n_clusters
    }
    /// Number of restarts; the run with the lowest inertia is kept.
    pub fn n_init(&self) -> usize {
        self.n_init
    }
    /// Maximum Lloyd iterations per restart.
    pub fn max_iter(&self) -> usize {
        self.max_iter
    }
    /// Relative tolerance (see [`KMeansParams::tolerance`]).
    pub fn tolerance(&self) -> f64 {
        self.tol
    }
    /// Seed of the random generator.
    pub fn seed(&self) -> u64 {
        self.seed
    }
    /// Initialisation method.
    pub fn init(&self) -> KMeansInit {
        self.init
    }
}

/// Unchecked K-means hyperparameters (a builder). Defaults match scikit-learn's `KMeans`:
/// k-means++, `n_init = 1` (sklearn's "auto" for k-means++), `max_iter = 300`, `tol = 1e-4`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KMeansParams(pub(crate) KMeansValidParams);

impl KMeansParams {
    /// Defaults for `n_clusters` clusters.
    pub fn new(n_clusters: usize) -> Self {
        Self(KMeansValidParams {
            n_clusters,
            n_init: 1,
            max_iter: 300,
            tol: 1e-4,
            seed: 0,
            init: KMeansInit::KMeansPlusPlus,
        })
    }
    /// Number of restarts (each with a new initialisation); the lowest inertia wins.
    pub fn n_init(mut self, n_init: usize) -> Self {
        self.0.n_init = n_init;
        self
    }
    /// Maximum Lloyd iterations per restart.
    pub fn max_iter(mut self, max_iter: usize) -> Self {
        self.0.max_iter = max_iter;
        self
    }
    /// Convergence tolerance, relative like scikit-learn's: a run stops when the sum of squared center
    /// movements in one iteration is at most `tol` times the mean variance of the features.
    pub fn tolerance(mut self, tol: f64) -> Self {
        self.0.tol = tol;
        self
    }
    /// Seed of the random generator (initialisation and restarts); equal seeds give equal fits.
    pub fn seed(mut self, seed: u64) -> Self {
        self.0.seed = seed;
        self
    }
    /// Initialisation method.
    pub fn init(mut self, init: KMeansInit) -> Self {
        self.0.init = init;
        self
    }
    /// Validates the hyperparameters.
    pub fn check(self) -> Result<KMeansValidParams, KMeansError> {
        let p = self.0;
        if p.n_clusters == 0 {
            return Err(KMeansError::ZeroClusters);
        }
        if p.n_init == 0 {
            return Err(KMeansError::ZeroRestarts);
        }
        if p.max_iter == 0 {
            return Err(KMeansError::ZeroIterations);
        }
        if p.tol.is_nan() || p.tol < 0.0 || p.tol.is_infinite() {
            return Err(KMeansError::InvalidTolerance(p.tol));
        }
        Ok(p)
    }
    /// Validates, then fits (see [`KMeansValidParams::fit`]).
    pub fn fit(self, data: &crate::Matrix) -> Result<super::KMeans, KMeansError> {
        self.check()?.fit(data)
    }
}
