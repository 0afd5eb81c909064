//! Online scoring throughput on ONE thread (target >= 5 M windows/s per core): raw windows in, scaler
//! and model applied per window, as the agent will do every second for every guest.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use detect::{
    CentroidScorer, ClusterMapping, CovarianceType, GaussianMixture, KMeans, LikelihoodScorer, MinMaxScaler, Scaler,
    WindowScorer,
};

mod common;

fn score(c: &mut Criterion) {
    let train = common::mixture(20_000, 3);
    let scaler = MinMaxScaler::fit(&train).unwrap();
    let scaled = scaler.transform(&train).unwrap();
    let km = KMeans::params(2).fit(&scaled).unwrap();
    let km_map = ClusterMapping::by_signature(km.centroids(), None).unwrap();
    let centroid = CentroidScorer::from_kmeans(&km, &km_map, Some(scaler.clone())).unwrap();
    let mut scorers: Vec<(&str, Box<dyn WindowScorer>)> = vec![("centroid", Box::new(centroid))];
    for (name, cov) in [("nll_full", CovarianceType::Full), ("nll_diag", CovarianceType::Diag)] {
        let gmm = GaussianMixture::params(2).covariance_type(cov).fit(&scaled).unwrap();
        let map = ClusterMapping::by_signature(gmm.means(), None).unwrap();
        scorers.push((name, Box::new(LikelihoodScorer::from_gmm(&gmm, &map, Some(scaler.clone())).unwrap())));
    }
    let windows = common::mixture(10_000, 11);
    let mut g = c.benchmark_group("score_one_thread_x8");
    g.throughput(Throughput::Elements(windows.nrows() as u64));
    for (name, s) in &scorers {
        g.bench_function(*name, |b| {
            b.iter(|| {
                let mut acc = 0.0;
                for w in windows.rows() {
                    acc += s.score(black_box(w));
                }
                acc
            })
        });
    }
    g.finish();
}

criterion_group!(benches, score);
criterion_main!(benches);
