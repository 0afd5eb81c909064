//! Measures linfa-clustering 0.8 (KMeans, GaussianMixtureModel) against this crate on the same CSV, to
//! decide whether to build on linfa (the project guide: "use linfa where it measures well enough").
//!
//! ```text
//! cargo run --release -p detect --features linfa-compare --example linfa_compare -- windows.csv [rows]
//! ```
//! Same hyperparameters on both sides: k = 2, one run, K-means max 300 iterations with scikit-learn's
//! tolerance (linfa's absolute centroid-shift tolerance is set to the equivalent
//! sqrt(1e-4 * mean feature variance)), EM max 100 iterations, tol 1e-3, reg_covar 1e-6, full
//! covariance (linfa has no diagonal one). Prints fit+predict times and the ARI between the partitions.

use std::time::Instant;

use detect::{CsvOptions, GaussianMixture, KMeans, Matrix, adjusted_rand_index, read_windows};
use linfa::DatasetBase;
use linfa::traits::{Fit, Predict};
use ndarray::Array2;
use rand_xoshiro::Xoshiro256Plus;
use rand_xoshiro::rand_core::SeedableRng;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: linfa_compare windows.csv [rows]")?;
    let limit: Option<usize> = args.next().map(|s| s.parse()).transpose()?;
    let table = read_windows(std::io::BufReader::new(std::fs::File::open(path)?), &CsvOptions::default())?;
    let d = table.features.ncols();
    let n = limit.unwrap_or(usize::MAX).min(table.features.nrows());
    let data = Matrix::new(n, d, table.features.as_slice()[..n * d].to_vec())?;
    let array = Array2::from_shape_vec((n, d), data.as_slice().to_vec())?;
    let dataset = DatasetBase::from(array.clone());
    let mean_var = {
        let m = array.mean_axis(ndarray::Axis(0)).unwrap();
        (0..d).map(|j| array.column(j).iter().map(|v| (v - m[j]).powi(2)).sum::<f64>() / n as f64).sum::<f64>()
            / d as f64
    };
    println!("{n} windows x {d} features, {} threads", rayon::current_num_threads());

    let t = Instant::now();
    let lk = linfa_clustering::KMeans::params_with_rng(2, Xoshiro256Plus::seed_from_u64(0))
        .n_runs(1)
        .max_n_iterations(300)
        .tolerance((1e-4 * mean_var).sqrt())
        .fit(&dataset)?;
    let lk_labels = lk.predict(&array);
    let t_lk = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let vk = KMeans::params(2).seed(0).fit(&data)?;
    let vk_labels = vk.predict(&data)?;
    let t_vk = t.elapsed().as_secs_f64();
    let ari_k = adjusted_rand_index(&lk_labels.to_vec(), &vk_labels)?;
    println!("kmeans   linfa {t_lk:8.3}s  vmguard {t_vk:8.3}s  linfa/vmguard {:6.1}x  ARI {ari_k:.4}", t_lk / t_vk);

    let t = Instant::now();
    let lg = linfa_clustering::GaussianMixtureModel::params_with_rng(2, Xoshiro256Plus::seed_from_u64(0))
        .n_runs(1)
        .max_n_iterations(100)
        .tolerance(1e-3)
        .reg_covariance(1e-6)
        .fit(&dataset);
    let t_fit = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let vg = GaussianMixture::params(2).seed(0).fit(&data)?;
    let vg_labels = vg.predict(&data)?;
    let t_vg = t.elapsed().as_secs_f64();
    match lg {
        Ok(lg) => {
            let t = Instant::now();
            let lg_labels = lg.predict(&array);
            let t_lg = t_fit + t.elapsed().as_secs_f64();
            let ari_g = adjusted_rand_index(&lg_labels.to_vec(), &vg_labels)?;
            println!(
                "em-full  linfa {t_lg:8.3}s  vmguard {t_vg:8.3}s  linfa/vmguard {:6.1}x  ARI {ari_g:.4}",
                t_lg / t_vg
            );
        }
        Err(e) => println!("em-full  linfa failed after {t_fit:.3}s: {e}; vmguard {t_vg:.3}s"),
    }
    Ok(())
}
