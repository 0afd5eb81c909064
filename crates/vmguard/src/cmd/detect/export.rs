//! `vmguard detect export`: a store's labelled data as a data file (`orchestrate::datafile`), for
//! `detect eval --samples` without the store.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use orchestrate::dataset::Selection;
use telemetry::SourceId;

use crate::Cli;
use crate::output;

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The store `record` wrote to.
    #[arg(long, visible_alias = "db", env = "VMGUARD_STORE", default_value = "vmguard.db")]
    pub store: PathBuf,
    /// Only these scenarios (comma-separated; a trailing * matches a prefix). Default: all.
    #[arg(long, value_delimiter = ',')]
    pub scenarios: Vec<String>,
    /// Never these scenarios.
    #[arg(long, value_delimiter = ',')]
    pub exclude: Vec<String>,
    /// Only the samples of these telemetry sources (comma-separated, e.g. xentrace); guests without
    /// any are left out. Default: every source.
    #[arg(long, value_delimiter = ',', value_parser = |s: &str| s.parse::<SourceId>())]
    pub sources: Vec<SourceId>,
    /// The data file to write (docs/dataset.md); xz-compressed when it ends in `.xz`.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(cli: &Cli, a: &ExportArgs) -> anyhow::Result<()> {
    let store = store::Store::open(&a.store).with_context(|| format!("opening store {}", a.store.display()))?;
    let sel = Selection { include: a.scenarios.clone(), exclude: a.exclude.clone() };
    let r = orchestrate::datafile::export(&store, &sel, &a.sources, &a.out)
        .with_context(|| format!("exporting {} to {}", a.store.display(), a.out.display()))?;
    if cli.json {
        return output::json(&r);
    }
    let counters: Vec<String> = r.counters.iter().map(|(g, n)| format!("{g} {n}")).collect();
    println!(
        "wrote {} ({:.1} KiB): {} samples and {} labels of guests {} (counters: {}), scenarios {}, sources {}",
        r.path,
        r.bytes as f64 / 1024.0,
        r.samples,
        r.labels,
        r.guests.join(", "),
        counters.join(", "),
        r.scenarios.join(", "),
        r.sources.join(", ")
    );
    Ok(())
}
