//! `vmguard detect train`: fit Part B's detector on recorded runs (`orchestrate::evaluate::train`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use detect::online::AlertParams;
use orchestrate::dataset::{self, Selection};

use crate::Cli;
use crate::output;

#[derive(Debug, Args)]
pub struct TrainArgs {
    #[arg(long, env = "VMGUARD_STORE", default_value = "vmguard.db")]
    pub store: PathBuf,
    /// Where to write the model (JSON).
    #[arg(long, default_value = "vmguard-model.json")]
    pub out: PathBuf,
    /// Window length (sliding by one sampling round).
    #[arg(long, default_value = "5s", value_parser = units::parse_duration)]
    pub window: Duration,
    /// Train on these scenarios (comma-separated, trailing * = prefix).
    #[arg(long, value_delimiter = ',', default_value = "train-*")]
    pub scenarios: Vec<String>,
    /// Never train on these.
    #[arg(long, value_delimiter = ',')]
    pub exclude: Vec<String>,
    /// Raise an alert after this many alarming windows in a row.
    #[arg(long, default_value_t = 2)]
    pub raise_after: u32,
    /// Clear it after this many calm windows in a row.
    #[arg(long, default_value_t = 5)]
    pub clear_after: u32,
}

pub fn run(cli: &Cli, a: &TrainArgs) -> anyhow::Result<()> {
    let store = store::Store::open(&a.store).with_context(|| format!("opening store {}", a.store.display()))?;
    let data = dataset::load(&store, &Selection { include: a.scenarios.clone(), exclude: a.exclude.clone() })?;
    let window_ms = a.window.as_millis() as u64;
    let alert = AlertParams { raise_after: a.raise_after, clear_after: a.clear_after };
    let training = orchestrate::evaluate::train(&data, window_ms, alert).context("training the detector")?;
    for (kind, why) in &training.without_own_model {
        tracing::warn!(
            "no model of its own for guest kind {kind}: {why}; its guests get the generic model's benign-only novelty check"
        );
    }
    let model = &training.model;
    let json = serde_json::to_string_pretty(model)?;
    std::fs::write(&a.out, json).with_context(|| format!("writing model {}", a.out.display()))?;
    if cli.json {
        return output::json(model);
    }
    println!(
        "trained on {} ({} windows of {} s) -> {}",
        model.trained_on.join(", "),
        training.windows,
        window_ms as f64 / 1000.0,
        a.out.display()
    );
    for m in &model.models {
        let s = &m.summary;
        println!(
            "  {:<10} {} features, windows normal {} / victim {} / attacker {}, threshold {:.2}, training accuracy {:.2}%",
            m.kind,
            m.features.len(),
            s.windows_normal,
            s.windows_victim,
            s.windows_attacker,
            m.threshold,
            100.0 * s.train_accuracy
        );
        if let Some(n) = &m.novelty {
            let c: Vec<String> = n.features.iter().zip(&n.ceiling).map(|(f, c)| format!("{f} {c:.0}/s")).collect();
            println!("             novelty check (alarm above {}x the benign ceiling): {}", n.factor, c.join(", "));
        }
    }
    Ok(())
}
