//! `vmguard collect`: sample every telemetry source of the lab's guests each interval, store the samples
//! in SQLite (one transaction per round) and serve them as OpenMetrics.
//!
//! The loop is `telemetry::pipeline::run`; this command only wires the lab (the guest list, re-read every
//! few seconds), the store and the exporter to it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use serde::Serialize;
use telemetry::SourceId;
use telemetry::export::{Exporter, MetricsServer};
use telemetry::pipeline::{Pipeline, RunOptions, Stats};

use crate::Cli;
use crate::{output, progress};
use orchestrate::collect::store_round;

#[derive(Debug, Args)]
pub struct CollectArgs {
    /// Time between two sampling rounds (e.g. 1s, 500ms).
    #[arg(long, default_value = "1s", value_parser = parse_interval)]
    pub interval: Duration,
    /// The SQLite store to append the samples to (created if missing).
    #[arg(long, default_value = "vmguard.db")]
    pub db: PathBuf,
    /// Serve OpenMetrics at http://ADDR/metrics (e.g. 127.0.0.1:9464).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Stop after this long (e.g. 60s, 10m); without it, run until Ctrl-C or SIGTERM.
    #[arg(long, value_parser = units::parse_duration)]
    pub duration: Option<Duration>,
    /// How often the guest list is read again to pick up guests that came, went or restarted.
    #[arg(long, default_value = "5s", value_parser = units::parse_duration)]
    pub refresh: Duration,
    /// Which guests: `lab` (the lab's victims) and/or guests found on the host: `libvirt`, `qemu`
    /// (qemu processes started by hand or other tools), `containers` (Podman, Docker, containerd,
    /// runc), `xen`, `static` (the config's `[[guest]]` entries). Read-only.
    #[arg(long, default_value = "lab")]
    pub discover: String,
    /// Kinds of telemetry source not to start (comma-separated, e.g. `flow` for no packet socket on
    /// the guests' links, `tracepoint`)
    #[arg(long, value_delimiter = ',')]
    pub skip_sources: Vec<SourceId>,
}

/// At least 10 ms: shorter rounds would measure the collector more than the guests.
fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = units::parse_duration(s).map_err(|e| e.to_string())?;
    if d < Duration::from_millis(10) {
        return Err(format!("interval `{s}` is shorter than the 10ms minimum"));
    }
    Ok(d)
}

/// What `collect --json` prints at the end.
#[derive(Debug, Serialize)]
pub struct CollectSummary {
    pub db: PathBuf,
    pub listen: Option<SocketAddr>,
    pub interval_ms: u64,
    pub rounds: u64,
    pub samples: u64,
    pub interrupted: bool,
    pub elapsed_ms: u64,
    /// Mean and maximum time one round of every source took, microseconds.
    pub round_us_mean: u64,
    pub round_us_max: u64,
    /// guest → source → samples stored.
    pub samples_by_guest: std::collections::BTreeMap<String, std::collections::BTreeMap<SourceId, u64>>,
    /// guest → source → rounds in which that source failed.
    pub failures_by_guest: std::collections::BTreeMap<String, std::collections::BTreeMap<SourceId, u64>>,
}

pub fn run(cli: &Cli, args: &CollectArgs) -> anyhow::Result<()> {
    let config = cli.load_config()?;
    // Bad input first (store, port), then the guests: the lab must be up to start; later guests may
    // come and go.
    let mut store =
        store::Store::open(&args.db).with_context(|| format!("cannot store samples in {}", args.db.display()))?;
    let exporter = args.listen.map(|_| Exporter::new());
    let server = match (args.listen, &exporter) {
        (Some(addr), Some(e)) => Some(MetricsServer::bind(addr, e.clone())?),
        _ => None,
    };
    let discover = crate::watch::parse_discover(&args.discover).map_err(anyhow::Error::msg)?;
    let (mut source, first) = crate::watch::source(&config, &discover)?;
    if let Some(s) = &server {
        tracing::info!("serving OpenMetrics at http://{}/metrics", s.local_addr());
    }

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        crate::signals::on_interrupt(move || stop.store(true, Ordering::SeqCst));
    }

    let mut pipeline = Pipeline::new(exporter);
    pipeline.skip_sources(&args.skip_sources);
    let opts = RunOptions { interval: args.interval, refresh: args.refresh, duration: args.duration };
    let pb = progress::spinner(cli.json);
    let started = Instant::now();
    let mut first = Some(first);
    let summary = telemetry::pipeline::run(
        &mut pipeline,
        &opts,
        &stop,
        || match first.take() {
            Some(g) => Ok(g),
            None => source.current(),
        },
        |round| {
            store_round(&mut store, round)?;
            let secs = started.elapsed().as_secs_f64().max(1e-3);
            let failing: std::collections::BTreeSet<String> =
                round.failures.iter().map(|f| format!("{}/{}", f.guest, f.source)).collect();
            pb.set_message(format!(
                "{} rounds, {} samples/round, {:.0} samples/s, {} guests, {} failing{}",
                round.index + 1,
                round.samples.len(),
                (round.index + 1) as f64 * round.samples.len() as f64 / secs,
                round.guests,
                failing.len(),
                if failing.is_empty() { String::new() } else { format!(" ({})", join_short(&failing)) }
            ));
            Ok(())
        },
    )?;
    pb.finish_and_clear();
    drop(server);

    let stats: &Stats = pipeline.stats();
    let summary = CollectSummary {
        db: args.db.clone(),
        listen: args.listen,
        interval_ms: args.interval.as_millis() as u64,
        rounds: summary.rounds,
        samples: stats.samples,
        interrupted: summary.interrupted,
        elapsed_ms: summary.elapsed_ms,
        round_us_mean: stats.round_us_total.checked_div(stats.rounds).unwrap_or(0),
        round_us_max: stats.round_us_max,
        samples_by_guest: stats.samples_by_guest.clone(),
        failures_by_guest: stats.failures_by_guest.clone(),
    };
    if cli.json {
        return output::json(&summary);
    }
    println!(
        "{} rounds, {} samples in {} ({:.1} s{}); round time mean {} µs, max {} µs",
        summary.rounds,
        summary.samples,
        summary.db.display(),
        summary.elapsed_ms as f64 / 1e3,
        if summary.interrupted { ", interrupted" } else { "" },
        summary.round_us_mean,
        summary.round_us_max
    );
    // Every (guest, source) that sampled or failed.
    let mut rows: std::collections::BTreeMap<(String, SourceId), (u64, u64)> = Default::default();
    for (g, by) in &summary.samples_by_guest {
        for (src, n) in by {
            rows.entry((g.clone(), *src)).or_default().0 = *n;
        }
    }
    for (g, by) in &summary.failures_by_guest {
        for (src, n) in by {
            rows.entry((g.clone(), *src)).or_default().1 = *n;
        }
    }
    let rows =
        rows.into_iter().map(|((g, src), (n, failed))| vec![g, src.to_string(), n.to_string(), failed.to_string()]);
    println!("{}", output::table(&["guest", "source", "samples", "failed rounds"], rows));
    Ok(())
}

fn join_short(items: &std::collections::BTreeSet<String>) -> String {
    let mut s: Vec<&str> = items.iter().take(3).map(String::as_str).collect();
    if items.len() > 3 {
        s.push("...");
    }
    s.join(", ")
}
