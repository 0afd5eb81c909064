//! The one data type every algorithm takes: a dense, row-major matrix of `f64`, one row per window and
//! one column per feature.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A problem with the numbers handed to an algorithm (shared by every fit and transform).
#[derive(Debug, Clone, PartialEq, Error)]
pub enum DataError {
    /// The matrix buffer does not hold `rows * cols` values.
    #[error("matrix of {rows} rows x {cols} columns needs {expected} values but got {got}")]
    Shape { rows: usize, cols: usize, expected: usize, got: usize },
    /// Rows of different lengths were given to `Matrix::from_rows`.
    #[error("row {row} has {got} values but row 0 has {expected}: every window needs the same features")]
    RaggedRow { row: usize, expected: usize, got: usize },
    /// The data has no rows.
    #[error("the data has no rows: give at least one window")]
    NoRows,
    /// The data has no feature columns.
    #[error("the data has no feature columns: give at least one numeric feature")]
    NoFeatures,
    /// A value is NaN or infinite.
    #[error("row {row}, column {col} is {value}: every feature must be a finite number (fix or drop that window)")]
    NonFinite { row: usize, col: usize, value: f64 },
    /// A model fitted on one number of features was given records with another.
    #[error("the model was fitted on {expected} features but the records have {got}: use the same feature columns")]
    FeatureMismatch { expected: usize, got: usize },
}

/// Dense row-major matrix of `f64` (one contiguous buffer, row `i` is `data[i*cols..(i+1)*cols]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Matrix {
    rows: usize,
    cols: usize,
    data: Vec<f64>,
}

impl Matrix {
    /// Wraps a row-major buffer of `rows * cols` values.
    pub fn new(rows: usize, cols: usize, data: Vec<f64>) -> Result<Self, DataError> {
        let expected = rows.saturating_mul(cols);
        if data.len() != expected {
            return Err(DataError::Shape { rows, cols, expected, got: data.len() });
        }
        Ok(Self { rows, cols, data })
    }

    /// A matrix of zeros.
    pub fn zeros(rows: usize, cols: usize) -> Self {
        Self { rows, cols, data: vec![0.0; rows * cols] }
    }

    /// Builds a matrix from equally long rows.
    pub fn from_rows<R: AsRef<[f64]>>(rows: &[R]) -> Result<Self, DataError> {
        let cols = rows.first().map_or(0, |r| r.as_ref().len());
        let mut data = Vec::with_capacity(rows.len() * cols);
        for (i, r) in rows.iter().enumerate() {
            let r = r.as_ref();
            if r.len() != cols {
                return Err(DataError::RaggedRow { row: i, expected: cols, got: r.len() });
            }
            data.extend_from_slice(r);
        }
        Ok(Self { rows: rows.len(), cols, data })
    }

    /// Number of rows (windows).
    pub fn nrows(&self) -> usize {
        self.rows
    }

    /// Number of columns (features).
    pub fn ncols(&self) -> usize {
        self.cols
    }

    /// The row-major buffer.
    pub fn as_slice(&self) -> &[f64] {
        &self.data
    }

    /// The row-major buffer, mutable.
    pub fn as_mut_slice(&mut self) -> &mut [f64] {
        &mut self.data
    }

    /// Consumes the matrix and returns its buffer.
    pub fn into_vec(self) -> Vec<f64> {
        self.data
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// Row `i`, mutable.
    pub fn row_mut(&mut self, i: usize) -> &mut [f64] {
        &mut self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// Iterates over the rows.
    pub fn rows(&self) -> impl ExactSizeIterator<Item = &[f64]> + '_ {
        // chunks_exact(0) panics: a matrix with no columns yields `rows` empty rows instead.
        (0..self.rows).map(move |i| self.row(i))
    }

    /// Element at row `i`, column `j`.
    pub fn get(&self, i: usize, j: usize) -> f64 {
        self.data[i * self.cols + j]
    }

    /// The first NaN or infinite value, as `(row, col, value)`.
    pub fn find_non_finite(&self) -> Option<(usize, usize, f64)> {
        let pos = self.data.iter().position(|v| !v.is_finite())?;
        Some((pos / self.cols, pos % self.cols, self.data[pos]))
    }

    /// Checks what every fit needs: at least one row and column, every value finite.
    pub fn validate_for_fit(&self) -> Result<(), DataError> {
        if self.cols == 0 {
            return Err(DataError::NoFeatures);
        }
        if self.rows == 0 {
            return Err(DataError::NoRows);
        }
        self.validate_finite()
    }

    /// Checks that every value is finite.
    pub fn validate_finite(&self) -> Result<(), DataError> {
        match self.find_non_finite() {
            Some((row, col, value)) => Err(DataError::NonFinite { row, col, value }),
            None => Ok(()),
        }
    }

    /// Checks that the records have `expected` feature columns.
    pub fn expect_cols(&self, expected: usize) -> Result<(), DataError> {
        if self.cols != expected {
            return Err(DataError::FeatureMismatch { expected, got: self.cols });
        }
        Ok(())
    }
}

/// Serde helper for an `f64` that may be NaN or infinite: JSON has no such numbers, so they are written
/// as `null` and read back as NaN.
pub(crate) mod lenient_f64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() { s.serialize_f64(*v) } else { s.serialize_none() }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}
