//! `vmguard report`: one HTML file from the store: the benchmark run, the seed-004 table, Part B's
//! figures (with `--model`) and a detection timeline per guest and scenario (the `report` crate).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use orchestrate::dataset::Selection;

use crate::Cli;
use crate::output;

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The store `vmguard bench` and `vmguard record` wrote.
    #[arg(long, env = "VMGUARD_STORE", default_value = "vmguard.db")]
    pub db: PathBuf,
    /// Where to write the HTML report.
    #[arg(long, default_value = "report.html")]
    pub out: PathBuf,
    /// Which benchmark run (default: the latest).
    #[arg(long)]
    pub run: Option<String>,
    /// vmguard's detector (from `detect train`): Part B's figures and the score lines of the timelines.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Only these recorded scenarios (comma-separated; a trailing * matches a prefix). Default: all.
    #[arg(long, value_delimiter = ',')]
    pub scenarios: Vec<String>,
    /// Never these scenarios.
    #[arg(long, value_delimiter = ',')]
    pub exclude: Vec<String>,
    /// Window lengths of the seed-004 table.
    #[arg(long, value_delimiter = ',', default_value = "5s,10s,30s,2m", value_parser = units::parse_duration)]
    pub windows: Vec<Duration>,
}

pub fn run(cli: &Cli, args: &ReportArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.db.exists(),
        "no store at {}: run `vmguard bench --db {}` or `vmguard record` first",
        args.db.display(),
        args.db.display()
    );
    let store = store::Store::open(&args.db).with_context(|| format!("opening the store {}", args.db.display()))?;
    let model = match &args.model {
        Some(p) => Some((p.display().to_string(), orchestrate::agent::load_model(p)?)),
        None => None,
    };
    let opts = report::Options {
        run: args.run.clone(),
        model,
        selection: Selection { include: args.scenarios.clone(), exclude: args.exclude.clone() },
        windows_ms: args.windows.iter().map(|w| w.as_millis() as u64).collect(),
        ..report::Options::default()
    };
    let r = report::render(&store, &opts)?;
    std::fs::write(&args.out, &r.html).with_context(|| format!("writing {}", args.out.display()))?;
    if cli.json {
        return output::json(&serde_json::json!({
            "run_id": r.run_id, "out": args.out, "cells": r.cells, "scenarios": r.scenarios,
            "timelines": r.timelines, "bytes": r.html.len(),
        }));
    }
    let bench = r.run_id.as_ref().map_or("no benchmark run".to_string(), |id| format!("run {id}, {} cells", r.cells));
    println!("wrote {} ({bench}; {} timelines of scenarios {})", args.out.display(), r.timelines, {
        if r.scenarios.is_empty() { "none".to_string() } else { r.scenarios.join(", ") }
    });
    Ok(())
}
