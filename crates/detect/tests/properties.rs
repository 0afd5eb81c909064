//! Property tests of the detect crate's invariants.

use detect::{
    CounterSample, CovarianceType, CsvOptions, GaussianMixture, GmmError, KMeans, KMeansInit, Matrix, MinMaxScaler,
    Scaler, WindowParams, adjusted_rand_index, build_windows, read_windows,
};
use proptest::prelude::*;

/// n x d matrices of moderate values, some columns possibly constant.
fn matrix(max_rows: usize, max_cols: usize) -> impl Strategy<Value = Matrix> {
    (1..=max_rows, 1..=max_cols).prop_flat_map(|(n, d)| {
        (prop::collection::vec(-1e6f64..1e6, n * d), prop::collection::vec(any::<bool>(), d)).prop_map(
            move |(mut v, constant)| {
                for (j, &c) in constant.iter().enumerate() {
                    if c {
                        for i in 0..n {
                            v[i * d + j] = 42.0;
                        }
                    }
                }
                Matrix::new(n, d, v).unwrap()
            },
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn min_max_maps_training_data_into_unit_interval(m in matrix(40, 6)) {
        let s = MinMaxScaler::fit(&m).unwrap();
        let t = s.transform(&m).unwrap();
        for &v in t.as_slice() {
            prop_assert!((0.0..=1.0).contains(&v), "{v}");
        }
        // Each non-constant column reaches both 0 and 1; constant columns are all 0.
        for j in 0..m.ncols() {
            let col: Vec<f64> = t.rows().map(|r| r[j]).collect();
            if s.min()[j] == s.max()[j] {
                prop_assert!(col.iter().all(|&v| v == 0.0));
            } else {
                prop_assert!(col.contains(&0.0) && col.contains(&1.0));
            }
        }
    }

    #[test]
    fn kmeans_inertia_never_increases(m in matrix(60, 4), k in 1usize..5, seed in any::<u64>(), random in any::<bool>()) {
        prop_assume!(k <= m.nrows());
        let init = if random { KMeansInit::Random } else { KMeansInit::KMeansPlusPlus };
        let model = KMeans::params(k).seed(seed).init(init).tolerance(0.0).fit(&m).unwrap();
        let h = model.inertia_history();
        for w in h.windows(2) {
            prop_assert!(w[1] <= w[0] * (1.0 + 1e-12) + 1e-9, "{h:?}");
        }
        prop_assert_eq!(*h.last().unwrap(), model.inertia());
        prop_assert!(model.centroids().as_slice().iter().all(|v| v.is_finite()));
        let labels = model.predict(&m).unwrap();
        prop_assert!(labels.iter().all(|&l| l < k));
    }

    #[test]
    fn em_log_likelihood_never_decreases(
        seed in any::<u64>(),
        n in 40usize..120,
        d in 1usize..4,
        diag in any::<bool>(),
        pts in prop::collection::vec(0.0f64..1.0, 120 * 4),
    ) {
        // Continuous data, no regularisation: EM is then an exact ascent method.
        let data = Matrix::new(n, d, pts[..n * d].to_vec()).unwrap();
        let cov = if diag { CovarianceType::Diag } else { CovarianceType::Full };
        let fit = GaussianMixture::params(2).covariance_type(cov).reg_covar(0.0).tolerance(0.0).max_iter(30)
            .seed(seed).fit(&data);
        let model = match fit {
            Ok(m) => m,
            Err(GmmError::NotPositiveDefinite { .. }) => return Ok(()), // a component collapsed: allowed
            Err(e) => return Err(TestCaseError::fail(e.to_string())),
        };
        let h = model.log_likelihood_history();
        for w in h.windows(2) {
            prop_assert!(w[1] >= w[0] - 1e-9 * (1.0 + w[0].abs()), "{h:?}");
        }
        prop_assert!(model.log_likelihood().is_finite());
    }

    #[test]
    fn separated_blobs_are_recovered_exactly(
        seed in any::<u64>(),
        k in 2usize..5,
        d in 1usize..6,
        per in 5usize..30,
        noise in prop::collection::vec(0.0f64..1.0, 5 * 30 * 6),
    ) {
        // Blob c sits at 100*c on every axis, points within 1 of it.
        let mut v = Vec::new();
        let mut truth = Vec::new();
        for c in 0..k {
            for i in 0..per {
                for j in 0..d {
                    v.push(100.0 * c as f64 + noise[(c * 30 + i) * 6 + j]);
                }
                truth.push(c);
            }
        }
        let data = Matrix::new(k * per, d, v).unwrap();
        let km = KMeans::params(k).n_init(4).seed(seed).fit(&data).unwrap();
        prop_assert_eq!(adjusted_rand_index(&truth, &km.predict(&data).unwrap()).unwrap(), 1.0);
        let em = GaussianMixture::params(k).covariance_type(CovarianceType::Diag).seed(seed).n_init(2).fit(&data).unwrap();
        prop_assert_eq!(adjusted_rand_index(&truth, &em.predict(&data).unwrap()).unwrap(), 1.0);
    }

    #[test]
    fn ari_is_symmetric_bounded_and_label_blind(a in prop::collection::vec(0u8..4, 1..60), perm in 0u8..4) {
        let b: Vec<u8> = a.iter().map(|x| (x + perm) % 4).collect();
        prop_assert_eq!(adjusted_rand_index(&a, &b).unwrap(), 1.0);
        let c: Vec<u8> = a.iter().rev().copied().collect();
        let ac = adjusted_rand_index(&a, &c).unwrap();
        let ca = adjusted_rand_index(&c, &a).unwrap();
        prop_assert!((ac - ca).abs() < 1e-12);
        prop_assert!((-1.0..=1.0 + 1e-12).contains(&ac));
    }

    #[test]
    fn csv_reader_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = read_windows(bytes.as_slice(), &CsvOptions::default());
    }

    #[test]
    fn csv_reader_never_panics_on_csv_like_text(
        text in "([a-z_]{0,4}|label|guest)(,([a-z_]{0,4}|label|guest)){0,4}(\n(-?[0-9.e]{0,6}|NaN|inf|dos|\"x\"|)(,(-?[0-9.e]{0,6}|dos|)){0,5}){0,6}\n?"
    ) {
        if let Ok(t) = read_windows(text.as_bytes(), &CsvOptions::default()) {
            prop_assert!(t.features.as_slice().iter().all(|v| v.is_finite()));
            prop_assert_eq!(t.features.ncols(), t.feature_names.len());
        }
    }

    #[test]
    fn windows_conserve_counts_without_gaps(
        steps in prop::collection::vec((1i64..3000, 0.0f64..1000.0), 1..200),
        start in -100_000i64..100_000,
        len in 1_000u64..20_000,
    ) {
        let mut t = start;
        let mut v = 5.0;
        let mut samples = vec![CounterSample { time_ms: t, guest: "g".into(), counter: "x".into(), value: v }];
        for &(dt, inc) in &steps {
            t += dt;
            v += inc;
            samples.push(CounterSample { time_ms: t, guest: "g".into(), counter: "x".into(), value: v });
        }
        let out = build_windows(&samples, &WindowParams::new(len, &["x"]).min_coverage(0.0).max_gap_ms(3000)).unwrap();
        let total: f64 = out.windows.iter().map(|w| w.counts[0]).sum();
        prop_assert!((total - (v - 5.0)).abs() <= 1e-6 * (1.0 + v), "{total} vs {}", v - 5.0);
        for w in &out.windows {
            prop_assert!(w.coverage <= 1.0 + 1e-9 && w.start_ms.rem_euclid(len as i64) == 0);
        }
    }
}

#[test]
fn scaler_handles_a_single_row() {
    let m = Matrix::from_rows(&[[3.0, -1.0]]).unwrap();
    let s = MinMaxScaler::fit(&m).unwrap();
    assert_eq!(s.transform(&m).unwrap().as_slice(), &[0.0, 0.0]);
}
