//! `vmguard flood`: a bounded flood at a lab victim, from the attacker or from inside another victim
//! (a zombie), with the effect on the victim measured. The launch is `orchestrate::flood`'s.

use std::time::Duration;

use clap::{Args, ValueEnum};
use flood::{Backend, FloodConfig, FloodKind, SourceChoice};
use orchestrate::flood::{LabFlood, Sender, ZombieRequest};
use orchestrate::scenario::FloodTool;
use units::Rate;

use crate::Cli;
use crate::output;

#[derive(Debug, Args)]
pub struct FloodArgs {
    /// The victim to flood: its name (vanilla, container, qemu, xen) or address. Nothing else is accepted.
    #[arg(long)]
    pub target: String,
    /// Where the flood comes from: `attacker` (the attacker host, over its shaped link) or a victim
    /// (container, qemu, xen: the Xen domU) acting as a zombie.
    #[arg(long, default_value = "attacker")]
    pub from: Sender,
    /// syn, syn-closed, ack or udp.
    #[arg(long, default_value = "syn")]
    pub kind: FloodKind,
    /// Destination port (default: 80 for syn and ack, 9 for syn-closed and udp).
    #[arg(long)]
    pub port: Option<u16>,
    /// Packets/s (`20000`, `20kpps`), bits/s counted on Ethernet frames (`10mbit`), or `unlimited`.
    #[arg(long, default_value = "unlimited")]
    pub rate: Rate,
    /// Upper bound on the flood's length (`5`, `5s`, `500ms`, `2m`; at most 1 h).
    #[arg(long, default_value = "10s", value_parser = units::parse_duration)]
    pub duration: Duration,
    /// Upper bound on the packets sent.
    #[arg(long)]
    pub count: Option<u64>,
    /// Source addresses: random from the lab's spoof range, or the sender's own address.
    #[arg(long, value_enum, default_value_t = SourceArg::Spoof)]
    pub source: SourceArg,
    /// Sending threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// SYNs without TCP options (a real SYN carries MSS, SACK-permitted, timestamps, window scale).
    #[arg(long)]
    pub no_options: bool,
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    pub backend: BackendArg,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SourceArg {
    Spoof,
    Own,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BackendArg {
    Auto,
    Raw,
    Packet,
}

impl FloodArgs {
    fn plan(&self) -> LabFlood {
        LabFlood {
            from: self.from.clone(),
            target: self.target.clone(),
            source: match self.source {
                SourceArg::Spoof => SourceChoice::Spoof,
                SourceArg::Own => SourceChoice::Own,
            },
            tool: FloodTool::Vmguard,
            config: FloodConfig {
                kind: self.kind,
                dst_port: self.port,
                rate: self.rate,
                duration: self.duration,
                count: self.count,
                syn_options: if self.no_options { flood::SynOptions::NONE } else { flood::SynOptions::LINUX },
                threads: self.threads,
                backend: match self.backend {
                    BackendArg::Auto => Backend::Auto,
                    BackendArg::Raw => Backend::Raw,
                    BackendArg::Packet => Backend::Packet,
                },
                ..FloodConfig::default()
            },
            measure_victim: true,
        }
    }
}

pub fn run(cli: &Cli, args: &FloodArgs) -> anyhow::Result<()> {
    let spec = cli.load_config()?.lab;
    let state = lab::LabState::running(&spec)?;
    let prepared = orchestrate::flood::prepare(&state, args.plan())?;
    let stopper = prepared.stopper();
    crate::signals::on_interrupt(move || stopper.stop());
    let bar = crate::progress::spinner(cli.json);
    let report = prepared.run(&mut |p| {
        bar.set_message(format!("{:.0} pps, {:.2} Mbit/s, {} sent, {} errors", p.pps, p.bps / 1e6, p.sent, p.errors))
    });
    bar.finish_and_clear();
    let report = report?;
    if cli.json {
        return output::json(&report);
    }
    crate::tables::flood_report(&report);
    Ok(())
}

/// `vmguard flood-agent`: the part of a zombie's flood that runs inside the victim.
pub fn agent(request: &str) -> anyhow::Result<()> {
    let summary = ZombieRequest::from_json(request)?.run()?;
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}
