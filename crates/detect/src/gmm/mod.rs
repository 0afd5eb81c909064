//! Gaussian mixture fitted by expectation-maximisation (full or diagonal covariance).
//!
//! ```
//! use detect::{CovarianceType, GaussianMixture, Matrix};
//! let data = Matrix::from_rows(&[[0.0, 0.1], [0.1, 0.0], [0.05, 0.05], [5.0, 5.1], [5.1, 5.0], [5.05, 5.0]]).unwrap();
//! let model = GaussianMixture::params(2).covariance_type(CovarianceType::Diag).fit(&data).unwrap();
//! let labels = model.predict(&data).unwrap();
//! assert_eq!(labels[0], labels[2]);
//! assert_ne!(labels[0], labels[3]);
//! ```

mod algorithm;
mod errors;
mod hyperparams;

pub use algorithm::GaussianMixture;
pub use errors::GmmError;
pub use hyperparams::{CovarianceType, GaussianMixtureParams, GaussianMixtureValidParams};
