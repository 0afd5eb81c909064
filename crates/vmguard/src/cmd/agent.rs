//! `vmguard agent`: score every guest every round with Part B's model and raise / clear alerts
//! (`orchestrate::agent`: log, JSON lines, OpenMetrics gauges, a webhook on its own thread).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use orchestrate::agent::AgentOptions;
use telemetry::export::{Exporter, MetricsServer};

use crate::Cli;

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The detector (from `vmguard detect train`).
    #[arg(long, default_value = "vmguard-model.json")]
    pub model: PathBuf,
    /// Also append the samples to this store.
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// Append alerts as JSON lines to this file.
    #[arg(long, default_value = "vmguard-alerts.jsonl")]
    pub alerts: PathBuf,
    /// POST every alert (JSON) to this http:// URL (from a queue of its own: a slow receiver never
    /// delays scoring).
    #[arg(long)]
    pub webhook: Option<String>,
    /// Serve OpenMetrics on this address (`/metrics`); `off` to disable.
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub listen: String,
    #[arg(long, default_value = "1s", value_parser = units::parse_duration)]
    pub interval: Duration,
    /// How often the guest list is read again to pick up guests that came, went or restarted.
    #[arg(long, default_value = "5s", value_parser = units::parse_duration)]
    pub refresh: Duration,
    /// Which guests: `lab` (the lab's victims) and/or guests found on the host: `libvirt`, `qemu`
    /// (qemu processes started by hand or other tools), `containers` (Podman, Docker, containerd,
    /// runc), `xen`, `static` (the config's `[[guest]]` entries). Read-only.
    #[arg(long, default_value = "lab")]
    pub discover: String,
    /// Stop after this long (default: until Ctrl-C or SIGTERM).
    #[arg(long, value_parser = units::parse_duration)]
    pub duration: Option<Duration>,
}

pub fn run(cli: &Cli, a: &AgentArgs) -> anyhow::Result<()> {
    let model = orchestrate::agent::load_model(&a.model)?;
    let config = cli.load_config()?;
    let discover = crate::watch::parse_discover(&a.discover).map_err(anyhow::Error::msg)?;
    let (source, guests) = crate::watch::source(&config, &discover)?;
    let stop = Arc::new(AtomicBool::new(false));
    let s = Arc::clone(&stop);
    crate::signals::on_interrupt(move || s.store(true, Ordering::SeqCst));
    let exporter = Exporter::new();
    let server = if a.listen != "off" {
        let addr: SocketAddr = a
            .listen
            .parse()
            .with_context(|| format!("--listen {}: not an address such as 127.0.0.1:9464, or `off`", a.listen))?;
        let server = MetricsServer::bind(addr, exporter.clone())?;
        tracing::info!("OpenMetrics on http://{}/metrics", server.local_addr());
        Some(server)
    } else {
        None
    };
    let opts = AgentOptions {
        model,
        store: a.store.clone(),
        alerts: a.alerts.clone(),
        webhook: a.webhook.clone(),
        exporter: server.as_ref().map(|_| exporter.clone()),
        interval: a.interval,
        refresh: a.refresh,
        duration: a.duration,
    };
    orchestrate::agent::run(source, guests, opts, &stop)?;
    drop(server);
    Ok(())
}
