//! `vmguard report`: the HTML report of a benchmark run from the store.

use std::path::PathBuf;

use anyhow::Context;
use bench::CellRecord;
use bench::report::RunInfo;

use crate::Cli;
use crate::output;

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The store `vmguard bench` wrote.
    #[arg(long, default_value = "vmguard.db")]
    pub db: PathBuf,
    /// Where to write the HTML report.
    #[arg(long, default_value = "report.html")]
    pub out: PathBuf,
    /// Which benchmark run (default: the latest).
    #[arg(long)]
    pub run: Option<String>,
}

pub fn run(cli: &Cli, args: &ReportArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.db.exists(),
        "no store at {}: run `vmguard bench --db {}` first",
        args.db.display(),
        args.db.display()
    );
    let store = store::Store::open(&args.db).with_context(|| format!("opening the store {}", args.db.display()))?;
    let runs: Vec<_> = store.runs()?.into_iter().filter(|(_, _, meta)| meta["kind"] == "bench").collect();
    let (run_id, started_ns, meta) = match &args.run {
        Some(id) => runs
            .into_iter()
            .find(|(r, _, _)| r == id)
            .with_context(|| format!("no benchmark run `{id}` in {}", args.db.display()))?,
        None => runs
            .into_iter()
            .next_back()
            .with_context(|| format!("no benchmark run in {}: run `vmguard bench` first", args.db.display()))?,
    };
    let results = store.bench_results(&run_id)?;
    let mut records: Vec<CellRecord> = Vec::new();
    let mut unreadable = 0;
    for r in &results {
        match serde_json::from_value::<CellRecord>(r.figures.clone()) {
            Ok(rec) => records.push(rec),
            Err(_) => unreadable += 1,
        }
    }
    // The store returns cells by name; show them in matrix order.
    records.sort_by_key(|r| {
        (r.cell.victim, r.cell.backend, !r.cell.syncookies, r.cell.benchmark, r.cell.rep, r.cell.phase)
    });
    anyhow::ensure!(!records.is_empty(), "run {run_id} has no readable results ({unreadable} unreadable)");
    let elapsed = records.iter().map(|r| r.elapsed_secs).sum::<f64>();
    let mut facts = vec![
        ("cells".to_string(), format!("{} ({} failed)", records.len(), records.iter().filter(|r| !r.ok).count())),
        ("time in cells".to_string(), format!("{elapsed:.0} s")),
    ];
    for key in ["lab", "host_kernel", "host_cpus", "accelerators", "vhost_net"] {
        if let Some(v) = meta.get(key) {
            facts.push((key.replace('_', " "), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())));
        }
    }
    if let Some(m) = meta.get("matrix") {
        facts.push(("matrix".into(), m.to_string()));
    }
    let info = RunInfo { run_id: run_id.clone(), started: format!("{} (unix ms)", started_ns / 1_000_000), facts };
    let html = bench::report::html(&info, &records);
    std::fs::write(&args.out, &html).with_context(|| format!("writing {}", args.out.display()))?;
    if cli.json {
        return output::json(
            &serde_json::json!({"run_id": run_id, "out": args.out, "cells": records.len(), "bytes": html.len()}),
        );
    }
    println!("wrote {} (run {run_id}, {} cells)", args.out.display(), records.len());
    Ok(())
}
