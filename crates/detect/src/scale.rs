//! Feature scaling fitted on the training windows.
//!
//! - [`MinMaxScaler`]: the seed's `(e - min) / (max - min)`, mapping training data into [0, 1]. A
//!   constant feature (max = min) maps to 0 rather than NaN. Windows outside the training range map
//!   outside [0, 1] (not clipped): an unusually busy window should look unusual.
//! - [`RobustScaler`]: `(e - median) / IQR` (interquartile range, numpy's linear interpolation), so a
//!   few extreme windows (the floods themselves) do not squash the normal range. A feature with
//!   IQR = 0 is only centred (scale 1), like scikit-learn's `RobustScaler`.

use serde::{Deserialize, Serialize};

use crate::{DataError, Matrix};

/// Anything that scales one window in place (used by the online scorers).
pub trait Scaler: Send + Sync {
    /// Number of features it was fitted on.
    fn n_features(&self) -> usize;
    /// Scales one window in place (length `n_features`).
    fn scale_row(&self, row: &mut [f64]);

    /// Scales every row of `data` into a new matrix.
    fn transform(&self, data: &Matrix) -> Result<Matrix, DataError> {
        data.expect_cols(self.n_features())?;
        data.validate_finite()?;
        let mut out = data.clone();
        if out.ncols() > 0 {
            for r in out.as_mut_slice().chunks_exact_mut(self.n_features()) {
                self.scale_row(r);
            }
        }
        Ok(out)
    }
}

/// Min-max scaling to [0, 1] over the training windows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MinMaxScaler {
    min: Vec<f64>,
    max: Vec<f64>,
    /// `max - min` (0 for a constant feature, which maps to 0). Scaling divides rather than
    /// multiplies by a reciprocal: a training maximum then maps to exactly 1, never 1 + 1 ulp.
    range: Vec<f64>,
}

impl MinMaxScaler {
    /// Learns each feature's minimum and maximum.
    pub fn fit(data: &Matrix) -> Result<Self, DataError> {
        data.validate_for_fit()?;
        let d = data.ncols();
        let mut min = data.row(0).to_vec();
        let mut max = min.clone();
        for r in data.rows() {
            for j in 0..d {
                min[j] = min[j].min(r[j]);
                max[j] = max[j].max(r[j]);
            }
        }
        Ok(Self::from_bounds(min, max))
    }

    /// A scaler from known bounds (e.g. configured ranges).
    pub fn from_bounds(min: Vec<f64>, max: Vec<f64>) -> Self {
        let range = min.iter().zip(&max).map(|(a, b)| if b > a { b - a } else { 0.0 }).collect();
        Self { min, max, range }
    }

    /// Training minimum per feature.
    pub fn min(&self) -> &[f64] {
        &self.min
    }
    /// Training maximum per feature.
    pub fn max(&self) -> &[f64] {
        &self.max
    }
}

impl Scaler for MinMaxScaler {
    fn n_features(&self) -> usize {
        self.min.len()
    }
    #[inline]
    fn scale_row(&self, row: &mut [f64]) {
        for ((v, m), r) in row.iter_mut().zip(&self.min).zip(&self.range) {
            *v = if *r > 0.0 { (*v - m) / r } else { 0.0 };
        }
    }
}

/// Median / interquartile-range scaling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RobustScaler {
    median: Vec<f64>,
    iqr: Vec<f64>,
    /// `1 / IQR`, or 1 when the IQR is 0.
    inv_scale: Vec<f64>,
}

/// The `q`-quantile (0..=1) of `v` with linear interpolation between order statistics (numpy's default).
fn quantile(v: &mut [f64], q: f64) -> f64 {
    let pos = q * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let frac = pos - lo as f64;
    let (_, &mut a, rest) = v.select_nth_unstable_by(lo, f64::total_cmp);
    if frac == 0.0 || rest.is_empty() {
        return a;
    }
    let b = rest.iter().copied().fold(f64::INFINITY, f64::min);
    a + frac * (b - a)
}

impl RobustScaler {
    /// Learns each feature's median and interquartile range.
    pub fn fit(data: &Matrix) -> Result<Self, DataError> {
        data.validate_for_fit()?;
        let d = data.ncols();
        let mut col = vec![0.0; data.nrows()];
        let (mut median, mut iqr, mut inv_scale) = (vec![0.0; d], vec![0.0; d], vec![0.0; d]);
        for j in 0..d {
            for (c, r) in col.iter_mut().zip(data.rows()) {
                *c = r[j];
            }
            median[j] = quantile(&mut col, 0.5);
            let q1 = quantile(&mut col, 0.25);
            let q3 = quantile(&mut col, 0.75);
            iqr[j] = q3 - q1;
            inv_scale[j] = if iqr[j] > 0.0 { 1.0 / iqr[j] } else { 1.0 };
        }
        Ok(Self { median, iqr, inv_scale })
    }
    /// Training median per feature.
    pub fn median(&self) -> &[f64] {
        &self.median
    }
    /// Training interquartile range per feature.
    pub fn iqr(&self) -> &[f64] {
        &self.iqr
    }
}

impl Scaler for RobustScaler {
    fn n_features(&self) -> usize {
        self.median.len()
    }
    #[inline]
    fn scale_row(&self, row: &mut [f64]) {
        for ((v, m), s) in row.iter_mut().zip(&self.median).zip(&self.inv_scale) {
            *v = (*v - m) * s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_max_formula_and_constant_feature() {
        let data = Matrix::from_rows(&[[1.0, 7.0, 10.0], [3.0, 7.0, 0.0], [2.0, 7.0, 5.0]]).unwrap();
        let s = MinMaxScaler::fit(&data).unwrap();
        let t = s.transform(&data).unwrap();
        assert_eq!(t.as_slice(), &[0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.5, 0.0, 0.5]);
        let mut row = [5.0, 9.0, -10.0];
        s.scale_row(&mut row);
        assert_eq!(row, [2.0, 0.0, -1.0]);
        assert!(s.transform(&Matrix::from_rows(&[[1.0]]).unwrap()).is_err());
        assert!(MinMaxScaler::fit(&Matrix::from_rows(&[[f64::NAN]]).unwrap()).is_err());
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<MinMaxScaler>(&json).unwrap(), s);
    }

    #[test]
    fn robust_matches_numpy_percentiles() {
        // numpy: median([1,2,3,4,100]) = 3, percentile 25 = 2, 75 = 4 -> IQR 2.
        let data = Matrix::from_rows(&[[1.0, 5.0], [2.0, 5.0], [3.0, 5.0], [4.0, 5.0], [100.0, 5.0]]).unwrap();
        let s = RobustScaler::fit(&data).unwrap();
        assert_eq!(s.median(), &[3.0, 5.0]);
        assert_eq!(s.iqr(), &[2.0, 0.0]);
        let t = s.transform(&data).unwrap();
        assert_eq!(t.row(4), &[48.5, 0.0]);
        // Interpolated quantile: [1,2,3,4] -> 25% at 1.75.
        let mut v = [4.0, 1.0, 3.0, 2.0];
        assert!((quantile(&mut v, 0.25) - 1.75).abs() < 1e-12);
    }
}
