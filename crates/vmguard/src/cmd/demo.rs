//! `vmguard demo` (what `make demo` runs): the main job end to end on embedded defaults: the lab
//! up with every victim answering, a bounded SYN flood at each victim over the seed's 10 Mbit/s
//! attacker link with its effect measured, and the lab torn down, also when a step fails.

use std::time::Duration;

use flood::{FloodConfig, Rate, SourceChoice};

use crate::Cli;
use crate::config::Config;

pub fn run(cli: &Cli) -> anyhow::Result<()> {
    let spec = Config::load(&cli.config)?.lab;
    // A lab left over by an earlier crash would make `lab up` refuse: clear it first.
    let leftover = lab::down(&spec)?;
    if !leftover.removed.is_empty() {
        tracing::info!("removed a lab left over from an earlier run");
    }
    let result = steps(cli, &spec);
    println!("\n== tearing the lab down");
    let down = lab::down(&spec);
    result?;
    let down = down?;
    println!("removed {} items; nothing of the lab is left", down.removed.len());
    Ok(())
}

fn steps(cli: &Cli, spec: &lab::LabSpec) -> anyhow::Result<()> {
    println!("== lab up: attacker, gateway, client and victims {:?}", spec.victims);
    super::lab::up(cli, spec)?;
    let state = lab::LabState::load(spec)?.ok_or_else(|| lab::LabError::NotUp(spec.prefix.clone()))?;

    println!("\n== SYN flood from the attacker over its {} link, 5 s at each victim", spec.attacker_rate);
    let mut rows = Vec::new();
    for v in &state.victims {
        let config = FloodConfig { rate: Rate::Unlimited, duration: Duration::from_secs(5), ..FloodConfig::default() };
        let report = super::flood::launch(&state, "attacker", &v.name, SourceChoice::Spoof, config, &mut |_| {})?;
        let s = &report.summary;
        let e = report.victim.expect("a lab victim has effects");
        rows.push(vec![
            v.name.clone(),
            s["sent"].to_string(),
            format!("{:.0}", s["achieved_pps"].as_f64().unwrap_or(0.0)),
            e.rx_packets.to_string(),
            e.syncookies_sent.to_string(),
            format!("{:.1}", e.victim_cpu_percent),
            format!("{:.1}", e.host_softirq_percent),
        ]);
    }
    println!(
        "{}",
        crate::output::table(
            &["victim", "SYNs sent", "pps", "victim rx", "SYN cookies", "victim CPU %", "host softirq %"],
            rows
        )
    );
    Ok(())
}
