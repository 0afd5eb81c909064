//! Cluster → label mapping: which clusters are "DoS" and which are "normal".
//!
//! Two strategies, matching what an operator has at hand:
//! - [`ClusterMapping::by_signature`]: no labels at all. A DoS window makes far more hypercalls /
//!   exits / packets than a normal one, so the cluster whose centroid has the largest activity (sum of
//!   all features, or one designated feature) is DoS and every other cluster is normal. Works on scaled
//!   or raw centroids.
//! - [`ClusterMapping::by_majority`]: a few labelled windows; each cluster takes the majority label of
//!   its labelled windows (ties go to DoS: a missed attack costs more than a second look).

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::Matrix;

/// Ground truth or verdict for one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Label {
    /// Ordinary activity.
    Normal,
    /// The guest takes part in a denial of service (attacker or victim).
    Dos,
}

impl Label {
    /// Parses `normal`, `benign`, `0` / `dos`, `attack`, `1` (any case); `None` for anything else.
    pub fn parse(s: &str) -> Option<Label> {
        let s = s.trim();
        if s == "0" || s.eq_ignore_ascii_case("normal") || s.eq_ignore_ascii_case("benign") {
            Some(Label::Normal)
        } else if s == "1" || s.eq_ignore_ascii_case("dos") || s.eq_ignore_ascii_case("attack") {
            Some(Label::Dos)
        } else {
            None
        }
    }

    /// `"normal"` or `"dos"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Label::Normal => "normal",
            Label::Dos => "dos",
        }
    }
}

impl std::fmt::Display for Label {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How to map clusters to labels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MappingStrategy {
    /// The cluster with the largest activity is DoS: the sum of the centroid's features, or the one
    /// feature at this column index.
    Signature { feature: Option<usize> },
    /// Majority vote of the labelled windows in each cluster.
    Majority,
}

/// Why a mapping could not be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MappingError {
    /// There were no clusters.
    #[error("no clusters to map: fit a model with at least one cluster")]
    NoClusters,
    /// The designated signature feature does not exist.
    #[error("signature feature index {feature} is out of range: the model has {n_features} features")]
    FeatureOutOfRange { feature: usize, n_features: usize },
    /// Cluster ids and labels differ in length.
    #[error("{clusters} cluster ids but {labels} labels: give one label (or none) per window")]
    LengthMismatch { clusters: usize, labels: usize },
    /// A cluster id is not below the number of clusters.
    #[error("cluster id {id} at row {row} is not below the number of clusters ({k})")]
    ClusterOutOfRange { row: usize, id: usize, k: usize },
    /// A cluster has no labelled window, so a majority vote cannot name it.
    #[error("cluster {cluster} has no labelled window: label a few of its windows or use the signature strategy")]
    UnlabelledCluster { cluster: usize },
}

/// A label for every cluster id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMapping {
    labels: Vec<Label>,
}

impl ClusterMapping {
    /// A mapping from explicit labels (cluster id = index).
    pub fn new(labels: Vec<Label>) -> Self {
        Self { labels }
    }

    /// Signature strategy: the centroid with the largest activity (sum of features, or the designated
    /// feature) is DoS, every other cluster normal. Ties go to the lowest cluster id.
    pub fn by_signature(centroids: &Matrix, feature: Option<usize>) -> Result<Self, MappingError> {
        if centroids.nrows() == 0 {
            return Err(MappingError::NoClusters);
        }
        if let Some(f) = feature
            && f >= centroids.ncols()
        {
            return Err(MappingError::FeatureOutOfRange { feature: f, n_features: centroids.ncols() });
        }
        let activity = |r: &[f64]| feature.map_or_else(|| r.iter().sum::<f64>(), |f| r[f]);
        let mut dos = 0;
        for (i, r) in centroids.rows().enumerate() {
            if activity(r) > activity(centroids.row(dos)) {
                dos = i;
            }
        }
        let mut labels = vec![Label::Normal; centroids.nrows()];
        labels[dos] = Label::Dos;
        Ok(Self { labels })
    }

    /// Majority strategy over `k` clusters: `truth[i]` is the label of window `i` if known.
    pub fn by_majority(clusters: &[usize], truth: &[Option<Label>], k: usize) -> Result<Self, MappingError> {
        if k == 0 {
            return Err(MappingError::NoClusters);
        }
        if clusters.len() != truth.len() {
            return Err(MappingError::LengthMismatch { clusters: clusters.len(), labels: truth.len() });
        }
        let mut votes = vec![(0usize, 0usize); k];
        for (row, (&c, t)) in clusters.iter().zip(truth).enumerate() {
            if c >= k {
                return Err(MappingError::ClusterOutOfRange { row, id: c, k });
            }
            match t {
                Some(Label::Normal) => votes[c].0 += 1,
                Some(Label::Dos) => votes[c].1 += 1,
                None => {}
            }
        }
        let labels = votes
            .iter()
            .enumerate()
            .map(|(cluster, &(normal, dos))| match (normal, dos) {
                (0, 0) => Err(MappingError::UnlabelledCluster { cluster }),
                (n, d) if d >= n => Ok(Label::Dos),
                _ => Ok(Label::Normal),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { labels })
    }

    /// Label of every cluster (index = cluster id).
    pub fn labels(&self) -> &[Label] {
        &self.labels
    }

    /// Label of one cluster id.
    pub fn label(&self, cluster: usize) -> Option<Label> {
        self.labels.get(cluster).copied()
    }

    /// Labels of a sequence of cluster ids.
    pub fn apply(&self, clusters: &[usize]) -> Result<Vec<Label>, MappingError> {
        clusters
            .iter()
            .enumerate()
            .map(|(row, &id)| self.label(id).ok_or(MappingError::ClusterOutOfRange { row, id, k: self.labels.len() }))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_labels() {
        assert_eq!(Label::parse("DoS"), Some(Label::Dos));
        assert_eq!(Label::parse(" attack "), Some(Label::Dos));
        assert_eq!(Label::parse("1"), Some(Label::Dos));
        assert_eq!(Label::parse("benign"), Some(Label::Normal));
        assert_eq!(Label::parse("0"), Some(Label::Normal));
        assert_eq!(Label::parse("maybe"), None);
        assert_eq!(serde_json::to_string(&Label::Dos).unwrap(), "\"dos\"");
    }

    #[test]
    fn signature_picks_the_busiest_centroid() {
        let c = Matrix::from_rows(&[[0.1, 0.2], [0.9, 0.8], [0.5, 0.0]]).unwrap();
        let m = ClusterMapping::by_signature(&c, None).unwrap();
        assert_eq!(m.labels(), &[Label::Normal, Label::Dos, Label::Normal]);
        let m = ClusterMapping::by_signature(&c, Some(0)).unwrap();
        assert_eq!(m.label(1), Some(Label::Dos));
        assert!(matches!(ClusterMapping::by_signature(&c, Some(2)), Err(MappingError::FeatureOutOfRange { .. })));
        assert_eq!(m.apply(&[0, 1]).unwrap(), vec![Label::Normal, Label::Dos]);
        assert!(m.apply(&[3]).is_err());
    }

    #[test]
    fn majority_vote_with_ties_to_dos() {
        let clusters = [0, 0, 0, 1, 1, 2, 2];
        let truth = [
            Some(Label::Normal),
            Some(Label::Normal),
            Some(Label::Dos),
            Some(Label::Dos),
            None,
            Some(Label::Dos),
            Some(Label::Normal),
        ];
        let m = ClusterMapping::by_majority(&clusters, &truth, 3).unwrap();
        assert_eq!(m.labels(), &[Label::Normal, Label::Dos, Label::Dos]);
        let err = ClusterMapping::by_majority(&[0, 0], &[Some(Label::Dos), None], 2).unwrap_err();
        assert_eq!(err, MappingError::UnlabelledCluster { cluster: 1 });
        assert!(ClusterMapping::by_majority(&[0], &[], 1).is_err());
        assert!(ClusterMapping::by_majority(&[5], &[None], 1).is_err());
    }
}
