//! A small command line over the flood crate, for scripts/flood-compare.sh and manual runs. The
//! `vmguard flood` CLI is the user-facing one; this example takes the lab policy as flags.
//!
//! flood --netns NS --victim NAME=ADDR [--victim ...] --lab-network NET --spoof NET TARGET
//!       [--kind syn|syn-closed|ack|udp] [--port P] [--rate unlimited|20000|20kpps|10mbit (units::Rate)]
//!       [--duration 5|5s|500ms] [--count N] [--threads N] [--batch N] [--backend auto|raw|packet]
//!       [--qdisc-bypass] [--own-source] [--no-options] [--allow-loopback] [--quiet]
//!
//! Prints progress lines on stderr and the JSON summary on stdout.

use std::process::ExitCode;

use flood::{Backend, Flood, FloodConfig, SourceChoice, SynOptions, TargetPolicy};

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let mut policy = TargetPolicy {
        lab_targets: Vec::new(),
        spoof_subnet: "10.213.128.0/17".parse().unwrap(),
        lab_network: "10.213.0.0/16".parse().unwrap(),
        allow_loopback: false,
    };
    let mut cfg = FloodConfig::default();
    let mut source = SourceChoice::Spoof;
    let mut target = None;
    let mut quiet = false;
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--netns" => cfg.netns = Some(val()?),
            "--victim" => {
                let v = val()?;
                let (n, addr) = v.split_once('=').ok_or("--victim takes NAME=ADDR")?;
                policy.lab_targets.push((n.into(), addr.parse().map_err(|e| format!("{addr}: {e}"))?));
            }
            "--lab-network" => policy.lab_network = val()?.parse().map_err(|e| format!("--lab-network: {e}"))?,
            "--spoof" => policy.spoof_subnet = val()?.parse().map_err(|e| format!("--spoof: {e}"))?,
            "--allow-loopback" => policy.allow_loopback = true,
            "--kind" => cfg.kind = val()?.parse()?,
            "--port" => cfg.dst_port = Some(val()?.parse().map_err(|e| format!("--port: {e}"))?),
            "--rate" => cfg.rate = val()?.parse().map_err(|e| format!("--rate: {e}"))?,
            "--duration" => cfg.duration = units::parse_duration(&val()?).map_err(|e| format!("--duration: {e}"))?,
            "--count" => cfg.count = Some(val()?.parse().map_err(|e| format!("--count: {e}"))?),
            "--threads" => cfg.threads = val()?.parse().map_err(|e| format!("--threads: {e}"))?,
            "--batch" => cfg.batch = val()?.parse().map_err(|e| format!("--batch: {e}"))?,
            "--backend" => {
                cfg.backend = match val()?.as_str() {
                    "auto" => Backend::Auto,
                    "raw" => Backend::Raw,
                    "packet" => Backend::Packet,
                    b => return Err(format!("unknown backend `{b}`")),
                }
            }
            "--qdisc-bypass" => cfg.qdisc_bypass = true,
            "--own-source" => source = SourceChoice::Own,
            "--no-options" => cfg.syn_options = SynOptions::NONE,
            "--quiet" => quiet = true,
            t if !t.starts_with('-') && target.is_none() => target = Some(t.to_string()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    let target = target.ok_or("give a TARGET (victim name or address)")?;
    let target = policy.resolve(&target, source).map_err(|e| e.to_string())?;
    let flood = Flood::new(target, cfg).map_err(|e| e.to_string())?;
    let summary = flood
        .run(|p| {
            if !quiet {
                eprintln!("{:6.1}s  sent {:>10}  errors {:>6}  {:>10.0} pps", p.elapsed_secs, p.sent, p.errors, p.pps)
            }
        })
        .map_err(|e| e.to_string())?;
    println!("{}", serde_json::to_string(&summary).expect("summary serializes"));
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flood: {e}");
            ExitCode::FAILURE
        }
    }
}
