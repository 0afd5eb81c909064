//! Fits K-means or EM on a windows CSV and writes one cluster id per row, with the detect crate
//! alone (no CLI): a quick way to try the library. `scripts/detect-vs-sklearn.sh` times the real
//! `vmguard detect fit` instead.
//!
//! ```text
//! cargo run --release -p detect --example fit_csv -- --input windows.csv --method kmeans|em \
//!     [--covariance full|diag] [--k 2] [--n-init 1] [--max-iter N] [--tol T] [--seed S] \
//!     [--repeat R] [--labels-out labels.csv]
//! ```
//! Prints one JSON line: parse time, best-of-R fit time and predict time (CSV parsing excluded from
//! both), iterations, inertia or log-likelihood.

use std::time::Instant;

use detect::{CovarianceType, CsvOptions, GaussianMixture, KMeans, read_windows, write_labels};

fn main() {
    if let Err(e) = run() {
        eprintln!("fit_csv: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut input = None;
    let mut method = "kmeans".to_string();
    let mut cov = CovarianceType::Full;
    let mut k = 2usize;
    let mut n_init = 1usize;
    let mut max_iter = None;
    let mut tol = None;
    let mut seed = 0u64;
    let mut repeat = 1usize;
    let mut labels_out = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--input" => input = Some(val()?),
            "--method" => method = val()?,
            "--covariance" => {
                cov = match val()?.as_str() {
                    "full" => CovarianceType::Full,
                    "diag" => CovarianceType::Diag,
                    other => return Err(format!("--covariance {other}: use full or diag").into()),
                }
            }
            "--k" => k = val()?.parse()?,
            "--n-init" => n_init = val()?.parse()?,
            "--max-iter" => max_iter = Some(val()?.parse()?),
            "--tol" => tol = Some(val()?.parse()?),
            "--seed" => seed = val()?.parse()?,
            "--repeat" => repeat = val()?.parse::<usize>()?.max(1),
            "--labels-out" => labels_out = Some(val()?),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let input = input.ok_or("--input windows.csv is required")?;
    let t = Instant::now();
    let file = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&input)?);
    let table = read_windows(file, &CsvOptions::default())?;
    let parse_secs = t.elapsed().as_secs_f64();
    let data = &table.features;

    let mut fit_secs = f64::INFINITY;
    let mut predict_secs = f64::INFINITY;
    let mut labels = Vec::new();
    let mut summary = serde_json::Value::Null;
    for _ in 0..repeat {
        match method.as_str() {
            "kmeans" => {
                let mut p = KMeans::params(k).n_init(n_init).seed(seed);
                if let Some(m) = max_iter {
                    p = p.max_iter(m);
                }
                if let Some(t) = tol {
                    p = p.tolerance(t);
                }
                let t0 = Instant::now();
                let model = p.fit(data)?;
                let t1 = Instant::now();
                labels = model.predict(data)?;
                let t2 = Instant::now();
                fit_secs = fit_secs.min((t1 - t0).as_secs_f64());
                predict_secs = predict_secs.min((t2 - t1).as_secs_f64());
                summary = serde_json::json!({"n_iter": model.n_iter(), "inertia": model.inertia(),
                    "converged": model.converged()});
            }
            "em" => {
                let mut p = GaussianMixture::params(k).covariance_type(cov).n_init(n_init).seed(seed);
                if let Some(m) = max_iter {
                    p = p.max_iter(m);
                }
                if let Some(t) = tol {
                    p = p.tolerance(t);
                }
                let t0 = Instant::now();
                let model = p.fit(data)?;
                let t1 = Instant::now();
                labels = model.predict(data)?;
                let t2 = Instant::now();
                fit_secs = fit_secs.min((t1 - t0).as_secs_f64());
                predict_secs = predict_secs.min((t2 - t1).as_secs_f64());
                summary = serde_json::json!({"n_iter": model.n_iter(), "log_likelihood": model.log_likelihood(),
                    "converged": model.converged()});
            }
            other => return Err(format!("--method {other}: use kmeans or em").into()),
        }
    }
    if let Some(path) = labels_out {
        let out = std::io::BufWriter::new(std::fs::File::create(path)?);
        write_labels(out, &table, &labels, None)?;
    }
    let report = serde_json::json!({
        "rows": data.nrows(), "features": data.ncols(), "method": method,
        "covariance": if method == "em" { serde_json::to_value(cov)? } else { serde_json::Value::Null },
        "threads": rayon::current_num_threads(),
        "parse_secs": parse_secs, "fit_secs": fit_secs, "predict_secs": predict_secs,
        "fit_predict_secs": fit_secs + predict_secs, "model": summary,
    });
    println!("{report}");
    Ok(())
}
