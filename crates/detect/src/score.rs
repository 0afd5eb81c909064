//! Online scoring: a fitted model turns one window into one number, higher = less normal.
//!
//! This is the per-second hot path of the future agent (Part B): no allocation, no locking, a few dozen
//! floating-point operations per window. Scorers own their scaler, so they take raw counts.
//! - [`CentroidScorer`]: Euclidean distance of the scaled window to the nearest "normal" K-means
//!   centroid.
//! - [`LikelihoodScorer`]: negative log-likelihood of the scaled window under the "normal" components
//!   of a Gaussian mixture (weights renormalised).

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::kernel::nearest;
use crate::scale::{MinMaxScaler, Scaler};
use crate::{ClusterMapping, DataError, GaussianMixture, KMeans, Label, Matrix};

/// Largest number of features the scorers handle on the stack (more is an error at construction).
pub const MAX_SCORE_FEATURES: usize = 64;

/// Why a scorer could not be built or used.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ScoreError {
    /// The mapping names no normal cluster, so there is nothing to compare with.
    #[error("no cluster is mapped to normal: fit with more clusters or map at least one cluster to normal")]
    NoNormalCluster,
    /// The mapping and the model disagree on the number of clusters.
    #[error("the mapping has {mapping} clusters but the model has {model}: build the mapping from this model")]
    MappingMismatch { mapping: usize, model: usize },
    /// The scaler was fitted on another number of features.
    #[error("the scaler has {scaler} features but the model has {model}: fit both on the same columns")]
    ScalerMismatch { scaler: usize, model: usize },
    /// Too many features for the stack buffers.
    #[error("{0} features is more than the scorer's maximum of {MAX_SCORE_FEATURES}: select fewer features")]
    TooManyFeatures(usize),
    /// The records are unusable.
    #[error(transparent)]
    Data(#[from] DataError),
}

/// Scores windows; higher means further from normal.
pub trait WindowScorer: Send + Sync {
    /// Features per window.
    fn n_features(&self) -> usize;
    /// Score of one raw window (length `n_features`; checked only by a debug assertion).
    fn score(&self, window: &[f64]) -> f64;
    /// Scores every row of `records`.
    fn score_all(&self, records: &Matrix) -> Result<Vec<f64>, ScoreError> {
        records.expect_cols(self.n_features())?;
        records.validate_finite()?;
        Ok(records.rows().map(|r| self.score(r)).collect())
    }
}

fn normal_clusters(mapping: &ClusterMapping, k: usize) -> Result<Vec<usize>, ScoreError> {
    if mapping.labels().len() != k {
        return Err(ScoreError::MappingMismatch { mapping: mapping.labels().len(), model: k });
    }
    let normal: Vec<usize> = (0..k).filter(|&c| mapping.label(c) == Some(Label::Normal)).collect();
    if normal.is_empty() {
        return Err(ScoreError::NoNormalCluster);
    }
    Ok(normal)
}

fn check_scaler(scaler: &Option<MinMaxScaler>, d: usize) -> Result<(), ScoreError> {
    if d > MAX_SCORE_FEATURES {
        return Err(ScoreError::TooManyFeatures(d));
    }
    match scaler {
        Some(s) if s.n_features() != d => Err(ScoreError::ScalerMismatch { scaler: s.n_features(), model: d }),
        _ => Ok(()),
    }
}

/// Distance to the nearest normal centroid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CentroidScorer {
    scaler: Option<MinMaxScaler>,
    /// Normal centroids, row-major.
    normal: Vec<f64>,
    k: usize,
    d: usize,
}

impl CentroidScorer {
    /// From a K-means model fitted on `scaler`-scaled windows (or raw ones if `scaler` is `None`).
    pub fn from_kmeans(
        model: &KMeans,
        mapping: &ClusterMapping,
        scaler: Option<MinMaxScaler>,
    ) -> Result<Self, ScoreError> {
        let d = model.centroids().ncols();
        check_scaler(&scaler, d)?;
        let normal_ids = normal_clusters(mapping, model.n_clusters())?;
        let mut normal = Vec::with_capacity(normal_ids.len() * d);
        for &c in &normal_ids {
            normal.extend_from_slice(model.centroids().row(c));
        }
        Ok(Self { scaler, normal, k: normal_ids.len(), d })
    }
}

impl WindowScorer for CentroidScorer {
    fn n_features(&self) -> usize {
        self.d
    }
    #[inline]
    fn score(&self, window: &[f64]) -> f64 {
        debug_assert_eq!(window.len(), self.d);
        let mut buf = [0.0; MAX_SCORE_FEATURES];
        let x = &mut buf[..self.d];
        x.copy_from_slice(window);
        if let Some(s) = &self.scaler {
            s.scale_row(x);
        }
        nearest::<0>(x, self.d, &self.normal, self.k).1.sqrt()
    }
}

/// Negative log-likelihood under the normal components of a Gaussian mixture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LikelihoodScorer {
    scaler: Option<MinMaxScaler>,
    normal: GaussianMixture,
}

impl LikelihoodScorer {
    /// From a mixture fitted on `scaler`-scaled windows (or raw ones if `scaler` is `None`).
    pub fn from_gmm(
        model: &GaussianMixture,
        mapping: &ClusterMapping,
        scaler: Option<MinMaxScaler>,
    ) -> Result<Self, ScoreError> {
        check_scaler(&scaler, model.n_features())?;
        let normal_ids = normal_clusters(mapping, model.n_components())?;
        let normal = model.subset(&normal_ids).expect("ids are valid and non-empty");
        Ok(Self { scaler, normal })
    }
}

impl WindowScorer for LikelihoodScorer {
    fn n_features(&self) -> usize {
        self.normal.n_features()
    }
    #[inline]
    fn score(&self, window: &[f64]) -> f64 {
        let d = self.normal.n_features();
        debug_assert_eq!(window.len(), d);
        let mut buf = [0.0; MAX_SCORE_FEATURES];
        let x = &mut buf[..d];
        x.copy_from_slice(window);
        if let Some(s) = &self.scaler {
            s.scale_row(x);
        }
        -self.normal.score_row(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> Matrix {
        let mut rows = Vec::new();
        for i in 0..100 {
            let t = (i % 10) as f64;
            rows.push([100.0 + t, 50.0 + t]);
            rows.push([5000.0 + 10.0 * t, 900.0 + t]);
        }
        Matrix::from_rows(&rows).unwrap()
    }

    #[test]
    fn dos_windows_score_higher_than_normal_ones() {
        let raw = data();
        let scaler = MinMaxScaler::fit(&raw).unwrap();
        let scaled = scaler.transform(&raw).unwrap();
        let km = KMeans::params(2).fit(&scaled).unwrap();
        let mapping = ClusterMapping::by_signature(km.centroids(), None).unwrap();
        let cs = CentroidScorer::from_kmeans(&km, &mapping, Some(scaler.clone())).unwrap();
        let gmm = GaussianMixture::params(2).fit(&scaled).unwrap();
        let gmap = ClusterMapping::by_signature(gmm.means(), None).unwrap();
        let ls = LikelihoodScorer::from_gmm(&gmm, &gmap, Some(scaler)).unwrap();
        for s in [&cs as &dyn WindowScorer, &ls] {
            let scores = s.score_all(&raw).unwrap();
            let max_normal = scores.iter().step_by(2).copied().fold(f64::MIN, f64::max);
            let min_dos = scores.iter().skip(1).step_by(2).copied().fold(f64::MAX, f64::min);
            assert!(max_normal < min_dos, "{max_normal} vs {min_dos}");
        }
        assert!(cs.score(&[105.0, 55.0]) < 0.01);
    }

    #[test]
    fn construction_errors() {
        let scaled = MinMaxScaler::fit(&data()).unwrap().transform(&data()).unwrap();
        let km = KMeans::params(2).fit(&scaled).unwrap();
        let all_dos = ClusterMapping::new(vec![Label::Dos, Label::Dos]);
        assert_eq!(CentroidScorer::from_kmeans(&km, &all_dos, None).unwrap_err(), ScoreError::NoNormalCluster);
        let one = ClusterMapping::new(vec![Label::Normal]);
        assert!(matches!(CentroidScorer::from_kmeans(&km, &one, None), Err(ScoreError::MappingMismatch { .. })));
        let s1 = MinMaxScaler::fit(&Matrix::from_rows(&[[1.0]]).unwrap()).unwrap();
        let ok = ClusterMapping::new(vec![Label::Normal, Label::Dos]);
        assert!(matches!(CentroidScorer::from_kmeans(&km, &ok, Some(s1)), Err(ScoreError::ScalerMismatch { .. })));
    }
}
