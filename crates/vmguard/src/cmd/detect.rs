//! `vmguard detect ...`: the seed's method on CSV windows (`fit`) and on recorded data (`eval`), and
//! vmguard's own detector (`train`, and its figures beside the seed's in `eval`).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use detect::{CounterSample, CovarianceType, CsvOptions, FitConfig, MappingStrategy, Method, Scaling, WindowParams};
use serde::Serialize;
use telemetry::{GuestKind, SourceId};

use crate::Cli;
use crate::dataset::{self, GuestData, Selection};
use crate::output;

#[derive(Debug, Subcommand)]
pub enum DetectCommand {
    /// Cluster windows from a CSV file (the seed's method): one cluster id per row.
    Fit(FitArgs),
    /// Accuracy per window length and method on labelled data in the store (seed's table), with
    /// vmguard's detector beside it when a model is given.
    Eval(EvalArgs),
    /// Fit vmguard's detector on recorded runs and write it as JSON.
    Train(super::train::TrainArgs),
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
    #[arg(long, env = "VMGUARD_STORE", default_value = "vmguard.db")]
    pub store: PathBuf,
    /// Window lengths (e.g. 5s,10s,30s or the seed's 2m,5m,10m,20m).
    #[arg(long, value_delimiter = ',', default_value = "5s,10s,30s,2m,5m,10m,20m", value_parser = parse_duration_ms)]
    pub windows: Vec<u64>,
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
}

/// Parses "500ms", "10s", "2m", "2min", "1h" or plain seconds into milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let v: f64 = num.parse().map_err(|_| format!("'{s}' is not a duration (e.g. 10s, 2m, 500ms)"))?;
    let mult = match unit.trim() {
        "ms" => 1.0,
        "" | "s" | "sec" => 1e3,
        "m" | "min" => 60e3,
        "h" => 3600e3,
        u => return Err(format!("unknown unit '{u}' in '{s}': use ms, s, m or h")),
    };
    let ms = (v * mult).round();
    if ms <= 0.0 {
        return Err(format!("duration '{s}' must be positive"));
    }
    Ok(ms as u64)
}

pub fn run(cli: &Cli, cmd: &DetectCommand) -> anyhow::Result<()> {
    match cmd {
        DetectCommand::Fit(a) => fit(cli, a),
        DetectCommand::Eval(a) => eval(cli, a),
        DetectCommand::Train(a) => super::train::run(cli, a),
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

/// Part A's feature set for a kind of guest, as stored counters: (source, counter) in column order.
/// Counters the host did not collect for a guest (KVM statistics under TCG) are left out at load time.
pub fn part_a_features(kind: GuestKind) -> (&'static str, Vec<(SourceId, &'static str)>) {
    match kind {
        GuestKind::Xen => {
            ("xen", detect::features::XEN_HYPERCALLS.counter_names().into_iter().map(|c| (SourceId::Xentrace, c)).collect())
        }
        GuestKind::Qemu => (
            "kvm",
            vec![
                (SourceId::Kvm, "vcpu.exits"),
                (SourceId::Kvm, "vcpu.io_exits"),
                (SourceId::Kvm, "vcpu.mmio_exits"),
                (SourceId::Kvm, "vcpu.irq_exits"),
                (SourceId::Kvm, "vcpu.halt_exits"),
                (SourceId::Kvm, "vcpu.hypercalls"),
                (SourceId::Kvm, "vcpu.irq_injections"),
                (SourceId::Netdev, "rx_packets"),
                (SourceId::Netdev, "tx_packets"),
            ],
        ),
        GuestKind::Container | GuestKind::Vanilla => (
            "container",
            vec![
                (SourceId::Snmp, "TcpExt.SyncookiesSent"),
                (SourceId::Snmp, "TcpExt.ListenDrops"),
                (SourceId::Snmp, "TcpExt.ListenOverflows"),
                (SourceId::Snmp, "Tcp.InSegs"),
                (SourceId::Snmp, "Tcp.OutSegs"),
                (SourceId::Cgroup, "cpu.usage_ns"),
            ],
        ),
    }
}

/// One Part A table: a feature set over the guests that have it.
#[derive(Serialize)]
pub struct PartATable {
    pub feature_set: &'static str,
    pub guests: Vec<String>,
    pub features: Vec<String>,
    pub report: detect::AccuracyReport,
}

/// The seed's experiment on recorded data, one table per feature set (guest kind).
pub fn part_a(
    data: &[GuestData],
    windows_ms: &[u64],
    methods: &[Method],
    cfg: &FitConfig,
) -> anyhow::Result<Vec<PartATable>> {
    let mut sets: Vec<(&'static str, Vec<&GuestData>)> = Vec::new();
    for g in data {
        let (name, _) = part_a_features(g.kind);
        match sets.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => v.push(g),
            None => sets.push((name, vec![g])),
        }
    }
    let mut out = Vec::new();
    for (set, guests) in sets {
        let (_, wanted) = part_a_features(guests[0].kind);
        // Only counters every guest of the set has (KVM statistics are absent under TCG).
        let present: Vec<(SourceId, &str)> = wanted
            .into_iter()
            .filter(|(src, c)| guests.iter().all(|g| g.samples.iter().any(|s| s.source == *src && s.counter == *c)))
            .collect();
        if present.is_empty() {
            tracing::warn!(feature_set = set, "none of the feature set's counters were collected; skipped");
            continue;
        }
        let mut samples = Vec::new();
        for g in &guests {
            for s in &g.samples {
                if present.iter().any(|(src, c)| s.source == *src && s.counter == *c) {
                    samples.push(CounterSample {
                        time_ms: s.time_ns.div_euclid(1_000_000),
                        guest: g.name.clone(),
                        counter: s.counter.to_string(),
                        value: s.value as f64,
                    });
                }
            }
        }
        let names: Vec<&str> = present.iter().map(|(_, c)| *c).collect();
        let base = WindowParams::new(1000, &names).max_gap_ms(5_000);
        let truth = |w: &detect::Window| {
            let g = guests.iter().find(|g| g.name == w.guest)?;
            g.truth(w.start_ms * 1_000_000, w.end_ms * 1_000_000)
        };
        let report = detect::evaluate_lengths(&samples, &base, windows_ms, methods, cfg, &truth)
            .with_context(|| format!("evaluating the seed's method on the {set} feature set"))?;
        out.push(PartATable {
            feature_set: set,
            guests: guests.iter().map(|g| g.name.clone()).collect(),
            features: names.iter().map(|s| s.to_string()).collect(),
            report,
        });
    }
    Ok(out)
}

/// Metrics rows of a report, for people.
pub fn report_details(r: &detect::AccuracyReport) -> comfy_table::Table {
    output::table(
        &["window", "method", "windows", "accuracy", "precision", "recall", "F1", "TP", "FP", "TN", "FN"],
        r.rows.iter().map(|row| {
            let m = &row.metrics;
            let c = &m.confusion;
            vec![
                detect::eval::window_name(row.window_secs),
                row.method.clone(),
                c.total().to_string(),
                format!("{:.1}%", 100.0 * m.accuracy),
                format!("{:.1}%", 100.0 * m.precision),
                format!("{:.1}%", 100.0 * m.recall),
                format!("{:.3}", m.f1),
                c.true_positive.to_string(),
                c.false_positive.to_string(),
                c.true_negative.to_string(),
                c.false_negative.to_string(),
            ]
        }),
    )
}

#[derive(Serialize)]
struct EvalReport {
    store: String,
    scenarios: Vec<String>,
    part_a: Vec<PartATable>,
    part_b: Option<super::train::PartBReport>,
}

fn eval(cli: &Cli, a: &EvalArgs) -> anyhow::Result<()> {
    let store = store::Store::open(&a.store).with_context(|| format!("opening store {}", a.store.display()))?;
    let sel = Selection { include: a.scenarios.clone(), exclude: a.exclude.clone() };
    let data = dataset::load(&store, &sel)?;
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
    let tables = part_a(&data, &a.windows, &methods, &cfg)?;
    let part_b = match &a.model {
        Some(path) => Some(super::train::evaluate_model_file(path, &data, &a.windows)?),
        None => None,
    };
    let mut scenarios: Vec<String> = data.iter().flat_map(|g| g.scenarios()).collect();
    scenarios.sort();
    scenarios.dedup();
    let report = EvalReport { store: a.store.display().to_string(), scenarios, part_a: tables, part_b };
    if cli.json {
        return output::json(&report);
    }
    println!("scenarios: {}", report.scenarios.join(", "));
    for t in &report.part_a {
        println!(
            "\nPart A (seed's method), feature set {} ({}) on guests {}:",
            t.feature_set,
            t.features.join(", "),
            t.guests.join(", ")
        );
        if t.report.rows.is_empty() {
            println!("  (no window length had labelled windows)");
            continue;
        }
        print!("{}", t.report.to_table());
        println!("{}", report_details(&t.report));
    }
    if let Some(b) = &report.part_b {
        super::train::print_part_b(b);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("10s"), Ok(10_000));
        assert_eq!(parse_duration_ms("2m"), Ok(120_000));
        assert_eq!(parse_duration_ms("2min"), Ok(120_000));
        assert_eq!(parse_duration_ms("500ms"), Ok(500));
        assert_eq!(parse_duration_ms("90"), Ok(90_000));
        assert!(parse_duration_ms("ten").is_err());
        assert!(parse_duration_ms("5 parsecs").is_err());
        assert!(parse_duration_ms("0s").is_err());
    }
}
