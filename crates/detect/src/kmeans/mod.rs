//! K-means clustering (Lloyd's algorithm with k-means++ initialisation and restarts).
//!
//! ```
//! use detect::{KMeans, Matrix};
//! let data = Matrix::from_rows(&[[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]]).unwrap();
//! let model = KMeans::params(2).seed(1).fit(&data).unwrap();
//! let labels = model.predict(&data).unwrap();
//! assert_eq!(labels[0], labels[1]);
//! assert_ne!(labels[0], labels[2]);
//! ```

mod algorithm;
mod errors;
mod hyperparams;

pub use algorithm::KMeans;
pub use errors::KMeansError;
pub use hyperparams::{KMeansInit, KMeansParams, KMeansValidParams};
