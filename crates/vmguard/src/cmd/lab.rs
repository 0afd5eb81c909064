//! `vmguard lab ...`

use clap::Subcommand;

use crate::Cli;
use crate::config::Config;
use crate::output;

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Print the lab's address plan (namespaces, interfaces, addresses) without creating anything.
    Plan,
}

pub fn run(cli: &Cli, command: &LabCommand) -> anyhow::Result<()> {
    let config = Config::load(&cli.config)?;
    match command {
        LabCommand::Plan => {
            let plan = config.lab.plan();
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
