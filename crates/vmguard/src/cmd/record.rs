//! `vmguard record SCENARIO`: run a scenario on the lab while collecting every guest's counters into
//! the store, with ground-truth labels beside them (`orchestrate::record`).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Args;
use orchestrate::record::RecordOptions;
use orchestrate::scenario::Scenario;

use crate::Cli;
use crate::output;

#[derive(Debug, Args)]
pub struct RecordArgs {
    /// Scenario: a TOML file, or the name of one in --scenario-dir (e.g. `train-benign`).
    pub scenario: String,
    /// Where named scenarios live.
    #[arg(long, default_value = "scenarios")]
    pub scenario_dir: PathBuf,
    /// The store to append samples and labels to.
    #[arg(long, env = "VMGUARD_STORE", default_value = "vmguard.db")]
    pub store: PathBuf,
    /// Sampling period of the collector.
    #[arg(long, default_value = "1s", value_parser = units::parse_duration)]
    pub interval: Duration,
    /// Scale every phase's duration (e.g. 0.5 for a quick run).
    #[arg(long, default_value_t = 1.0)]
    pub time_scale: f64,
}

pub fn run(cli: &Cli, a: &RecordArgs) -> anyhow::Result<()> {
    let scenario = Scenario::load(&a.scenario, &a.scenario_dir)?;
    let spec = cli.load_config()?.lab;
    let state = lab::LabState::running(&spec)?;
    let stop = Arc::new(AtomicBool::new(false));
    let s = Arc::clone(&stop);
    crate::signals::on_interrupt(move || s.store(true, Ordering::SeqCst));
    let opts = RecordOptions { store: a.store.clone(), interval: a.interval, time_scale: a.time_scale };
    let bar = crate::progress::spinner(cli.json);
    let report = orchestrate::record::record(&state, &scenario, &opts, &stop, &mut |m| bar.set_message(m.to_string()));
    bar.finish_and_clear();
    let report = report?;
    for f in &report.failures {
        tracing::warn!("{f}");
    }
    if cli.json {
        return output::json(&report);
    }
    crate::tables::record_report(&report);
    Ok(())
}
