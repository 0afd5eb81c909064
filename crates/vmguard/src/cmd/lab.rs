//! `vmguard lab ...`

use clap::{Args, Subcommand, ValueEnum};

use crate::Cli;
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
    /// Run a command inside a victim (its namespace, its container, the qemu guest, the Xen domU or dom0).
    Exec(ExecArgs),
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Victim name (vanilla, container, qemu, xen: the domU; xen-dom0: the Xen victim's dom0).
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
    /// Victims to start (comma-separated: vanilla,container,qemu,xen); overrides the config file.
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
    let mut spec = cli.load_config()?.lab;
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
            crate::labui::up(cli, &spec).map(|_| ())
        }
        LabCommand::Status => crate::labui::status(cli, &spec),
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
            let state = lab::LabState::running(&spec)?;
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
