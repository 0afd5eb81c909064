//! Fit time of K-means and EM (full, diag) on 100,000 windows x 8 features, min-max scaled.
//! The 1,000,000-window comparison with scikit-learn is scripts/detect-vs-sklearn.sh.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use detect::{CovarianceType, GaussianMixture, KMeans, MinMaxScaler, Scaler};

mod common;

fn fit(c: &mut Criterion) {
    let raw = common::mixture(100_000, 7);
    let data = MinMaxScaler::fit(&raw).unwrap().transform(&raw).unwrap();
    let mut g = c.benchmark_group("fit_100k_x8");
    g.sample_size(20);
    g.throughput(Throughput::Elements(data.nrows() as u64));
    g.bench_function("kmeans_k2", |b| b.iter(|| KMeans::params(2).seed(1).fit(black_box(&data)).unwrap()));
    for (name, cov) in [("em_full_k2", CovarianceType::Full), ("em_diag_k2", CovarianceType::Diag)] {
        g.bench_function(name, |b| {
            b.iter(|| GaussianMixture::params(2).covariance_type(cov).seed(1).fit(black_box(&data)).unwrap())
        });
    }
    g.bench_function("minmax_fit_transform", |b| {
        b.iter(|| MinMaxScaler::fit(black_box(&raw)).unwrap().transform(&raw).unwrap())
    });
    g.finish();
}

criterion_group!(benches, fit);
criterion_main!(benches);
