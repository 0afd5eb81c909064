//! `vmguard detect ...`: the seed's method on CSV windows (`fit`) and on recorded data (`eval`, from a
//! store or a data file that `export` wrote), and vmguard's own detector (`train`, and its figures
//! beside the seed's in `eval`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use detect::{CovarianceType, CsvOptions, FitConfig, MappingStrategy, Method, Scaling};
use serde::Serialize;

mod export;
mod heldout;
mod train;

use crate::Cli;
use crate::output;
use orchestrate::dataset::{self, Selection};
use orchestrate::evaluate::PartATable;

#[derive(Debug, Subcommand)]
pub enum DetectCommand {
    /// Cluster windows from a CSV file (the seed's method): one cluster id per row.
    Fit(FitArgs),
    /// Accuracy per window length and method on labelled data in the store or a data file (seed's
    /// table), with vmguard's detector beside it when a model is given.
    Eval(EvalArgs),
    /// Write a store's labelled samples (of chosen sources) and ground truth to a data file.
    Export(export::ExportArgs),
    /// Fit vmguard's detector on recorded runs and write it as JSON.
    Train(train::TrainArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MethodArg {
    /// K-means (k-means++ initialisation, restarts).
    Kmeans,
    /// EM for a Gaussian mixture with full covariances.
    Em,
    /// EM with diagonal covariances.
    EmDiag,
}

impl MethodArg {
    fn method(self) -> Method {
        match self {
            MethodArg::Kmeans => Method::KMeans,
            MethodArg::Em => Method::Em(CovarianceType::Full),
            MethodArg::EmDiag => Method::Em(CovarianceType::Diag),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScalingArg {
    /// The seed's (e - min) / (max - min).
    Minmax,
    /// (e - median) / IQR.
    Robust,
    None,
}

impl ScalingArg {
    fn scaling(self) -> Scaling {
        match self {
            ScalingArg::Minmax => Scaling::MinMax,
            ScalingArg::Robust => Scaling::Robust,
            ScalingArg::None => Scaling::None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MappingArg {
    /// The busiest cluster (largest centroid sum) is DoS; needs no labels.
    Signature,
    /// Each cluster takes the majority label of its windows; needs the label column.
    Majority,
}

#[derive(Debug, Args)]
pub struct FitArgs {
    /// CSV: a header of feature names, one window per row; an optional `label` column (normal/dos) is
    /// used only for scoring; `guest`, `window_start`, `window_end` columns are passed through. `-` = stdin.
    #[arg(long)]
    pub input: PathBuf,
    #[arg(long, value_enum, default_value = "kmeans")]
    pub method: MethodArg,
    /// Number of clusters.
    #[arg(long, default_value_t = 2)]
    pub k: usize,
    /// Where to write one cluster id (and verdict) per row; `-` = stdout. Omitted: not written.
    #[arg(long)]
    pub labels_out: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "minmax")]
    pub scaling: ScalingArg,
    #[arg(long, value_enum, default_value = "signature")]
    pub mapping: MappingArg,
    /// Only these feature columns, in this order (comma-separated); default: every numeric column.
    #[arg(long, value_delimiter = ',')]
    pub features: Option<Vec<String>>,
    /// Name of the ground-truth column.
    #[arg(long, default_value = "label")]
    pub label_column: String,
    /// Restarts (the best run is kept).
    #[arg(long, default_value_t = 4)]
    pub n_init: usize,
    #[arg(long)]
    pub max_iter: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The store `record` wrote to.
    #[arg(long, visible_alias = "db", env = "VMGUARD_STORE", default_value = "vmguard.db")]
    pub store: PathBuf,
    /// Read the labelled data from this data file (`detect export`; e.g. data/seed004-xen.csv.xz)
    /// instead of the store.
    #[arg(long, conflicts_with = "leave_one_family_out")]
    pub samples: Option<PathBuf>,
    /// Only the samples of these telemetry sources (comma-separated, e.g. xentrace), as `detect
    /// export --sources` keeps them. Default: every source.
    #[arg(long, value_delimiter = ',', value_parser = |s: &str| s.parse::<telemetry::SourceId>())]
    pub sources: Vec<telemetry::SourceId>,
    /// Window lengths (e.g. 5s,10s,30s or the seed's 2m,5m,10m,20m). Default: 5s,10s,30s,2m,5m,10m,20m,
    /// and 5s with --leave-one-family-out.
    #[arg(long, value_delimiter = ',', value_parser = units::parse_duration)]
    pub windows: Option<Vec<Duration>>,
    /// Part A on windows sliding by this step too (e.g. 1m; it must divide every window length), after
    /// the tumbling (back-to-back) ones: overlapping windows, more of them per class.
    #[arg(long, value_parser = units::parse_duration)]
    pub window_step: Option<Duration>,
    /// Clustering methods of the seed's table.
    #[arg(long, value_delimiter = ',', value_enum, default_value = "kmeans,em")]
    pub methods: Vec<MethodArg>,
    #[arg(long, value_enum, default_value = "minmax")]
    pub scaling: ScalingArg,
    #[arg(long, value_enum, default_value = "signature")]
    pub mapping: MappingArg,
    /// Only these scenarios (comma-separated; a trailing * matches a prefix). Default: all.
    #[arg(long, value_delimiter = ',')]
    pub scenarios: Vec<String>,
    /// Never these scenarios.
    #[arg(long, value_delimiter = ',')]
    pub exclude: Vec<String>,
    /// vmguard's detector (from `detect train`) to score beside the seed's method.
    #[arg(long)]
    pub model: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Leave-one-scenario-family-out (Part B only): for every family, train without its phases, score
    /// it, beside the model trained on everything. Trains its own models: no --model.
    #[arg(long, conflicts_with = "model")]
    pub leave_one_family_out: bool,
    /// Where the scenario files are: families of runs recorded before the store kept phase records
    /// are read from them (checked against the labels).
    #[arg(long, default_value = "scenarios")]
    pub scenario_dir: PathBuf,
    /// With --leave-one-family-out: raise an alert after this many alarming windows (as `detect train`).
    #[arg(long, default_value_t = 2)]
    pub raise_after: u32,
    /// With --leave-one-family-out: clear it after this many calm windows (as `detect train`).
    #[arg(long, default_value_t = 5)]
    pub clear_after: u32,
}

pub fn run(cli: &Cli, cmd: &DetectCommand) -> anyhow::Result<()> {
    match cmd {
        DetectCommand::Fit(a) => fit(cli, a),
        DetectCommand::Eval(a) => eval(cli, a),
        DetectCommand::Export(a) => export::run(cli, a),
        DetectCommand::Train(a) => train::run(cli, a),
    }
}

#[derive(Serialize)]
struct FitReport<'a> {
    input: String,
    method: &'static str,
    k: usize,
    windows: usize,
    features: &'a [String],
    iterations: usize,
    /// K-means inertia (sum of squared distances) or EM mean log-likelihood per window.
    inertia: Option<f64>,
    log_likelihood: Option<f64>,
    cluster_sizes: Vec<usize>,
    cluster_labels: Vec<String>,
    metrics: Option<detect::BinaryMetrics>,
    ari: Option<f64>,
}

fn fit(cli: &Cli, a: &FitArgs) -> anyhow::Result<()> {
    let opts =
        CsvOptions { label_column: a.label_column.clone(), features: a.features.clone(), ..CsvOptions::default() };
    let name = a.input.display().to_string();
    let table = if a.input == Path::new("-") {
        detect::read_windows(std::io::stdin().lock(), &opts)
    } else {
        let f = std::fs::File::open(&a.input).with_context(|| format!("cannot open input {name}"))?;
        detect::read_windows(std::io::BufReader::new(f), &opts)
    }
    .with_context(|| format!("reading windows from {name}"))?;
    let cfg = FitConfig {
        method: a.method.method(),
        k: a.k,
        n_init: a.n_init,
        max_iter: a.max_iter,
        seed: a.seed,
        scaling: a.scaling.scaling(),
        mapping: match a.mapping {
            MappingArg::Signature => MappingStrategy::Signature { feature: None },
            MappingArg::Majority => MappingStrategy::Majority,
        },
        ..FitConfig::default()
    };
    let out = detect::fit_windows(&table.features, table.labels.as_deref(), &cfg)
        .with_context(|| format!("fitting {} with k = {} on {name}", cfg.method.display_name(), a.k))?;
    if let Some(path) = &a.labels_out {
        if path == Path::new("-") {
            detect::write_labels(std::io::stdout().lock(), &table, &out.clusters, Some(&out.predicted))?;
        } else {
            let f = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
            let mut w = std::io::BufWriter::new(f);
            detect::write_labels(&mut w, &table, &out.clusters, Some(&out.predicted))
                .with_context(|| format!("writing labels to {}", path.display()))?;
            w.flush().with_context(|| format!("writing labels to {}", path.display()))?;
        }
    }
    let mut sizes = vec![0usize; a.k];
    for &c in &out.clusters {
        sizes[c] += 1;
    }
    let is_km = matches!(cfg.method, Method::KMeans);
    let report = FitReport {
        input: name,
        method: cfg.method.display_name(),
        k: a.k,
        windows: table.features.nrows(),
        features: &table.feature_names,
        iterations: out.n_iter,
        inertia: is_km.then_some(out.objective),
        log_likelihood: (!is_km).then_some(out.objective),
        cluster_sizes: sizes,
        cluster_labels: out.mapping.labels().iter().map(|l| l.to_string()).collect(),
        metrics: out.metrics,
        ari: out.ari,
    };
    let to_stdout = a.labels_out.as_deref() == Some(Path::new("-"));
    if cli.json && !to_stdout {
        return output::json(&report);
    }
    // With the labels on stdout, the summary goes to stderr so stdout stays one CSV.
    let mut text = format!(
        "{} (k = {}) on {} windows x {} features: {} iterations, {} {:.6}\n",
        report.method,
        report.k,
        report.windows,
        report.features.len(),
        report.iterations,
        if is_km { "inertia" } else { "mean log-likelihood" },
        out.objective
    );
    for (c, (n, l)) in report.cluster_sizes.iter().zip(&report.cluster_labels).enumerate() {
        text.push_str(&format!("  cluster {c}: {n} windows -> {l}\n"));
    }
    if let Some(m) = &out.metrics {
        text.push_str(&metrics_text(m));
        if let Some(ari) = out.ari {
            text.push_str(&format!("  adjusted Rand index {ari:.3}\n"));
        }
    }
    if to_stdout {
        eprint!("{text}");
    } else {
        print!("{text}");
    }
    Ok(())
}

fn metrics_text(m: &detect::BinaryMetrics) -> String {
    let c = &m.confusion;
    format!(
        "  accuracy {:.1}%  precision {:.1}%  recall {:.1}%  F1 {:.3}\n  confusion (dos = positive): TP {} FP {} TN {} FN {}\n",
        100.0 * m.accuracy,
        100.0 * m.precision,
        100.0 * m.recall,
        m.f1,
        c.true_positive,
        c.false_positive,
        c.true_negative,
        c.false_negative
    )
}

#[derive(Serialize)]
struct EvalReport {
    /// The store, or the data file (`--samples`), the data came from.
    store: String,
    scenarios: Vec<String>,
    part_a: Vec<PartATable>,
    part_b: Option<detect::online::PartBReport>,
}

fn eval(cli: &Cli, a: &EvalArgs) -> anyhow::Result<()> {
    if a.leave_one_family_out {
        return heldout::run(cli, a);
    }
    let (input, data) = match &a.samples {
        Some(path) => {
            if !a.scenarios.is_empty() || !a.exclude.is_empty() {
                anyhow::bail!(
                    "--scenarios and --exclude select from a store: a data file holds what `detect export` selected; \
                     export the scenarios you want instead"
                );
            }
            (path, orchestrate::datafile::load(path)?)
        }
        None => {
            let store = store::Store::open(&a.store).with_context(|| format!("opening store {}", a.store.display()))?;
            let sel = Selection { include: a.scenarios.clone(), exclude: a.exclude.clone() };
            (&a.store, dataset::load(&store, &sel)?)
        }
    };
    let data = dataset::keep_sources(data, &a.sources);
    if data.is_empty() {
        anyhow::bail!("no guest has samples of the sources {:?} in {}", a.sources, input.display());
    }
    let cfg = FitConfig {
        scaling: a.scaling.scaling(),
        mapping: match a.mapping {
            MappingArg::Signature => MappingStrategy::Signature { feature: None },
            MappingArg::Majority => MappingStrategy::Majority,
        },
        n_init: 4,
        seed: a.seed,
        ..FitConfig::default()
    };
    let methods: Vec<Method> = a.methods.iter().map(|m| m.method()).collect();
    let windows_ms: Vec<u64> = match &a.windows {
        Some(w) => w.iter().map(|w| w.as_millis() as u64).collect(),
        None => vec![5_000, 10_000, 30_000, 120_000, 300_000, 600_000, 1_200_000],
    };
    let step_ms = a.window_step.map(|s| s.as_millis() as u64);
    let tables = orchestrate::evaluate::part_a(&data, &windows_ms, step_ms, &methods, &cfg)
        .context("evaluating the seed's method")?;
    let part_b = match &a.model {
        Some(path) => Some(orchestrate::evaluate::evaluate(&orchestrate::agent::load_model(path)?, &data)),
        None => None,
    };
    let mut scenarios: Vec<String> = data.iter().flat_map(|g| g.scenarios()).collect();
    scenarios.sort();
    scenarios.dedup();
    let report = EvalReport { store: input.display().to_string(), scenarios, part_a: tables, part_b };
    if cli.json {
        return output::json(&report);
    }
    println!("scenarios: {}", report.scenarios.join(", "));
    crate::tables::part_a(&report.part_a);
    if let Some(b) = &report.part_b {
        crate::tables::part_b(b);
    }
    Ok(())
}
