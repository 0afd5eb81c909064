//! `vmguard mitigate apply|remove|status`: the SYN defences on the lab's victims.

use clap::{Args, Subcommand};
use mitigate::{CoalesceMode, Defence, DefenceKind, Place};

use crate::{Cli, output};

#[derive(Debug, Subcommand)]
pub enum MitigateCommand {
    /// Apply a defence: syncookies, synproxy, syn-ratelimit, ingress-filter, coalesce (the qemu
    /// victim on the vhost-user backend: `--mode fixed|adaptive`).
    Apply(ApplyArgs),
    /// Remove a defence, restoring every rule and sysctl it changed.
    Remove(Target),
    /// The applied defences, checked against the live rulesets.
    Status,
}

#[derive(Debug, Args)]
pub struct Target {
    /// syncookies, synproxy, syn-ratelimit, ingress-filter or coalesce.
    pub defence: DefenceKind,
    /// The victim it protects (vanilla, container, qemu, xen).
    #[arg(long)]
    pub victim: String,
    /// Where it runs: `gateway` (in front of the victim) or `victim` (its own kernel). Default:
    /// the victim for syncookies, the gateway for the nftables defences.
    #[arg(long)]
    pub at: Option<Place>,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub target: Target,
    /// syncookies: turn SYN cookies off instead of on.
    #[arg(long)]
    pub off: bool,
    /// syncookies: the SYN backlog (net.ipv4.tcp_max_syn_backlog).
    #[arg(long)]
    pub backlog: Option<u32>,
    /// syn-ratelimit: SYNs per second allowed from one source.
    #[arg(long, default_value_t = 20)]
    pub rate: u32,
    /// syn-ratelimit: SYNs allowed above the rate in a burst.
    #[arg(long, default_value_t = 40)]
    pub burst: u32,
    /// coalesce: `fixed` (always hold) or `adaptive` (hold above --pps-threshold).
    #[arg(long)]
    pub mode: Option<CoalesceMode>,
    /// coalesce: longest hold of an RX notification, microseconds.
    #[arg(long, default_value_t = mitigate::DEFAULT_RX_USECS)]
    pub rx_usecs: u32,
    /// coalesce: notify once this many frames are pending (0: the timer alone).
    #[arg(long, default_value_t = mitigate::DEFAULT_RX_FRAMES)]
    pub rx_frames: u32,
    /// coalesce, adaptive: received frames/s above which notifications are held.
    #[arg(long, default_value_t = mitigate::DEFAULT_PPS_THRESHOLD)]
    pub pps_threshold: u64,
}

fn defence(a: &ApplyArgs) -> anyhow::Result<Defence> {
    let kind = a.target.defence;
    if kind != DefenceKind::Syncookies && (a.off || a.backlog.is_some()) {
        anyhow::bail!("--off and --backlog belong to syncookies, not {kind}");
    }
    if kind != DefenceKind::Coalesce && a.mode.is_some() {
        anyhow::bail!("--mode belongs to coalesce, not {kind}");
    }
    Ok(match kind {
        DefenceKind::Syncookies => Defence::Syncookies { on: !a.off, backlog: a.backlog },
        DefenceKind::Synproxy => Defence::Synproxy,
        DefenceKind::SynRatelimit => Defence::SynRatelimit { rate: a.rate, burst: a.burst },
        DefenceKind::IngressFilter => Defence::IngressFilter,
        DefenceKind::Coalesce => Defence::Coalesce {
            mode: a.mode.ok_or_else(|| anyhow::anyhow!("coalesce needs --mode fixed or --mode adaptive"))?,
            rx_usecs: a.rx_usecs,
            rx_frames: a.rx_frames,
            pps_threshold: a.pps_threshold,
        },
    })
}

pub fn run(cli: &Cli, cmd: &MitigateCommand) -> anyhow::Result<()> {
    lab::require_root()?;
    let config = cli.load_config()?;
    let state = lab::LabState::running(&config.lab)?;
    match cmd {
        MitigateCommand::Apply(a) => {
            let d = defence(a)?;
            let rec = mitigate::apply(&state, &d, &a.target.victim, a.target.at)?;
            if cli.json {
                return output::json(&rec);
            }
            println!(
                "{}: {} on {} at the {}",
                rec.defence.kind(),
                rec.defence.describe(),
                rec.victim,
                rec.place.as_str()
            );
            Ok(())
        }
        MitigateCommand::Remove(t) => {
            let rec = mitigate::remove(&state, t.defence, &t.victim, t.at)?;
            if cli.json {
                return output::json(&rec);
            }
            let restored: Vec<String> = rec.sysctls.iter().map(|s| format!("{} = {}", s.key, s.previous)).collect();
            println!(
                "{} removed from {} at the {}{}{}",
                rec.defence.kind(),
                rec.victim,
                rec.place.as_str(),
                rec.table.map(|t| format!("; table {t} deleted")).unwrap_or_default(),
                if restored.is_empty() { String::new() } else { format!("; restored {}", restored.join(", ")) }
            );
            Ok(())
        }
        MitigateCommand::Status => {
            let all = mitigate::status(&state)?;
            if cli.json {
                return output::json(&all);
            }
            crate::tables::mitigations(&all);
            Ok(())
        }
    }
}
