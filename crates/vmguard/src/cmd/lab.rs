//! `vmguard lab ...`

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};

use crate::Cli;
use crate::config::Config;
use crate::output;

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Create the namespaces, links and victims, and wait until every victim answers HTTP.
    Up(UpArgs),
    /// Show the lab: victims, addresses, HTTP check, accelerator, PIDs, namespaces.
    Status,
    /// Remove everything the lab made (also after a crash, by the lab's prefix).
    Down,
    /// Make the gateway drop forwarded packets, or forward them again (the seed's gateway).
    Gateway(GatewayArgs),
    /// Print the address plan without creating anything.
    Plan,
    /// Run a command inside a victim (its namespace, its container, or the qemu guest).
    Exec(ExecArgs),
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Victim name (vanilla, container, qemu).
    pub victim: String,
    /// Seconds the command may run.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    /// The command and its arguments (after `--`).
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Attacker link rate (e.g. 10mbit, 100mbit, unlimited); overrides the config file.
    #[arg(long)]
    pub attacker_rate: Option<lab::Rate>,
    /// Victims to start (comma-separated: vanilla,container,qemu); overrides the config file.
    #[arg(long, value_delimiter = ',')]
    pub victims: Option<Vec<lab::VictimKind>>,
    /// qemu accelerator: auto probes KVM with the real guest and falls back to TCG.
    #[arg(long)]
    pub accel: Option<Accel>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Accel {
    Auto,
    Kvm,
    Tcg,
}

#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// on: drop every forwarded packet; off: forward again.
    #[arg(long, value_parser = ["on", "off"])]
    pub drop: String,
}

pub fn run(cli: &Cli, command: &LabCommand) -> anyhow::Result<()> {
    let mut spec = Config::load(&cli.config)?.lab;
    match command {
        LabCommand::Up(args) => {
            if let Some(rate) = args.attacker_rate {
                spec.attacker_rate = rate;
            }
            if let Some(victims) = &args.victims {
                spec.victims = victims.clone();
            }
            if let Some(accel) = args.accel {
                spec.qemu.accelerator = match accel {
                    Accel::Auto => lab::AccelChoice::Auto,
                    Accel::Kvm => lab::AccelChoice::Kvm,
                    Accel::Tcg => lab::AccelChoice::Tcg,
                };
            }
            up(cli, &spec)
        }
        LabCommand::Status => status(cli, &spec),
        LabCommand::Down => {
            let report = lab::down(&spec)?;
            for w in &report.warnings {
                tracing::warn!("{w}");
            }
            if cli.json {
                return output::json(&report);
            }
            if report.removed.is_empty() {
                println!("lab `{}`: nothing to remove", spec.prefix);
            } else {
                println!("lab `{}` removed:", spec.prefix);
                for r in &report.removed {
                    println!("  {r}");
                }
            }
            Ok(())
        }
        LabCommand::Gateway(args) => {
            let drop = args.drop == "on";
            lab::gateway_drop(&spec, drop)?;
            if cli.json {
                return output::json(&serde_json::json!({"gateway_drop": drop}));
            }
            println!("gateway {}", if drop { "drops forwarded packets" } else { "forwards packets" });
            Ok(())
        }
        LabCommand::Exec(args) => {
            let state = lab::LabState::load(&spec)?.ok_or_else(|| lab::LabError::NotUp(spec.prefix.clone()))?;
            let out =
                lab::victim::run_in(&state, &args.victim, &args.command, std::time::Duration::from_secs(args.timeout))?;
            if cli.json {
                return output::json(&out);
            }
            print!("{}", out.output);
            if out.status != 0 {
                anyhow::bail!("command exited with status {} inside {}", out.status, args.victim);
            }
            Ok(())
        }
        LabCommand::Plan => {
            let plan = spec.plan();
            if cli.json {
                return output::json(&plan);
            }
            let rows = plan
                .hosts()
                .map(|h| vec![h.ns.clone(), h.ifname.clone(), format!("{}/24", h.address), h.gateway.to_string()]);
            println!("{}", output::table(&["namespace", "interface", "address", "gateway"], rows));
            println!("gateway namespace: {}; spoofed sources: {}", plan.gateway_ns, plan.spoof_subnet);
            Ok(())
        }
    }
}

pub fn up(cli: &Cli, spec: &lab::LabSpec) -> anyhow::Result<()> {
    let spinner = crate::progress::spinner(cli.json);
    let started = std::time::Instant::now();
    let tool = std::env::current_exe().ok();
    let result = lab::up(spec, tool.as_deref(), &|msg| {
        spinner.set_message(msg.to_string());
        tracing::debug!("{msg}");
    });
    spinner.finish_and_clear();
    let state = match result {
        Ok(state) => state,
        // Refused before anything was created: nothing was removed either.
        Err(e @ (lab::LabError::AlreadyUp(_) | lab::LabError::NotRoot | lab::LabError::Spec(_))) => {
            return Err(e.into());
        }
        Err(e) => return Err(e).context("lab up failed (what it had created was removed; logs are kept)"),
    };
    if let Some(image) = &state.image {
        match image.build_secs {
            Some(s) => {
                tracing::info!("guest image {} built in {s:.1} s ({} KiB)", image.key, image.initramfs_bytes / 1024)
            }
            None => tracing::info!("guest image {} from cache", image.key),
        }
    }
    tracing::info!("lab `{}` up in {:.1} s", spec.prefix, started.elapsed().as_secs_f64());
    status(cli, spec)
}

pub fn status(cli: &Cli, spec: &lab::LabSpec) -> anyhow::Result<()> {
    let report = lab::status(spec)?;
    if cli.json {
        return output::json(&report);
    }
    println!("lab `{}`: {}", report.prefix, report.phase);
    if let (Some(rate), Some(drop)) = (&report.attacker_rate, report.gateway_drop) {
        println!("attacker link: {rate}; gateway: {}", if drop { "DROPS forwarded packets" } else { "forwards" });
    }
    if !report.victims.is_empty() {
        let rows = report.victims.iter().map(|v| {
            vec![
                v.name.clone(),
                v.address.to_string(),
                if v.http_ok { "ok".into() } else { "NO ANSWER".into() },
                v.accelerator.clone().unwrap_or_else(|| "-".into()),
                v.pids.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(","),
                format!("{:.1}", v.start_secs),
                format!("{:.1}", v.rss_kib as f64 / 1024.0),
            ]
        });
        println!("{}", output::table(&["victim", "address", "http", "accel", "pids", "start s", "RSS MiB"], rows));
    }
    if report.phase == "leftover" {
        println!("namespaces left over: {} (run `vmguard lab down`)", report.namespaces.join(" "));
    }
    Ok(())
}
