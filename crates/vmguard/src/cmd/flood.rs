//! `vmguard flood`: a bounded flood at a lab victim, from the attacker or from inside another victim
//! (a container or the qemu guest acting as a zombie), with the effect on the victim measured.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use flood::{Backend, FloodConfig, FloodKind, Rate, SourceChoice, TargetPolicy};
use serde::{Deserialize, Serialize};
use telemetry::Source;

use crate::Cli;
use crate::config::Config;
use crate::output;

#[derive(Debug, Args)]
pub struct FloodArgs {
    /// The victim to flood: its name (vanilla, container, qemu) or address. Nothing else is accepted.
    #[arg(long)]
    pub target: String,
    /// Where the flood comes from: `attacker` (the attacker host, over its shaped link) or a victim
    /// (container, qemu) acting as a zombie.
    #[arg(long, default_value = "attacker")]
    pub from: String,
    #[arg(long, value_enum, default_value_t = KindArg::Syn)]
    pub kind: KindArg,
    /// Destination port (default: 80 for syn and ack, 9 for syn-closed and udp).
    #[arg(long)]
    pub port: Option<u16>,
    /// Packets/s (`20000`, `20kpps`), bits/s counted on Ethernet frames (`10mbit`), or `unlimited`.
    #[arg(long, default_value = "unlimited", value_parser = parse_rate)]
    pub rate: Rate,
    /// Upper bound on the flood's length (`5`, `5s`, `500ms`, `2m`; at most 1 h).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
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
pub enum KindArg {
    Syn,
    SynClosed,
    Ack,
    Udp,
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

/// Packets/s, bits/s or unlimited.
pub fn parse_rate(s: &str) -> Result<Rate, String> {
    let t = s.trim().to_ascii_lowercase();
    if t == "unlimited" {
        return Ok(Rate::Unlimited);
    }
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("bad rate `{s}`: e.g. 20000, 20kpps, 10mbit or unlimited"))?;
    let rate = match unit.trim().trim_end_matches("/s") {
        "" | "pps" => Rate::PacketsPerSec(n.round() as u64),
        "kpps" => Rate::PacketsPerSec((n * 1e3).round() as u64),
        "mpps" => Rate::PacketsPerSec((n * 1e6).round() as u64),
        "bit" | "bps" => Rate::BitsPerSec(n.round() as u64),
        "kbit" => Rate::BitsPerSec((n * 1e3).round() as u64),
        "mbit" => Rate::BitsPerSec((n * 1e6).round() as u64),
        "gbit" => Rate::BitsPerSec((n * 1e9).round() as u64),
        other => return Err(format!("bad rate unit `{other}` in `{s}`: use pps, kpps, mpps, bit, kbit, mbit or gbit")),
    };
    Ok(rate)
}

/// `5` (seconds), `5s`, `500ms`, `2m`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("bad duration `{s}`: e.g. 10, 10s, 500ms, 2m"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1e3,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => return Err(format!("bad duration unit `{other}` in `{s}`: use ms, s, m or h")),
    };
    if !secs.is_finite() || secs <= 0.0 {
        return Err(format!("duration `{s}` must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// What a flood sent and what it did to its victim.
#[derive(Debug, Serialize)]
pub struct FloodReport {
    pub from: String,
    /// The flood engine's summary (sent, errors, achieved rate, ...).
    pub summary: serde_json::Value,
    pub victim: Option<VictimEffects>,
}

/// The victim's side of a flood: its TCP counters and CPU over the flood.
#[derive(Debug, Clone, Serialize)]
pub struct VictimEffects {
    pub name: String,
    pub rx_packets: u64,
    pub syncookies_sent: u64,
    pub listen_drops: u64,
    pub listen_overflows: u64,
    pub req_queue_full_drops: u64,
    /// CPU of the victim's own processes (container: its cgroup; qemu: the whole qemu process), % of one core.
    pub victim_cpu_percent: f64,
    /// Host-wide softirq CPU, % of one core: where packet processing goes, charged to no cgroup.
    pub host_softirq_percent: f64,
}

/// What the host-side `flood` hands to `flood-agent` inside a victim.
#[derive(Debug, Serialize, Deserialize)]
pub struct AgentRequest {
    pub target: String,
    pub own_source: bool,
    pub lab_targets: Vec<(String, Ipv4Addr)>,
    pub spoof_subnet: ipnet::Ipv4Net,
    pub lab_network: ipnet::Ipv4Net,
    pub config: FloodConfig,
}

/// The flood policy of a running lab: its victims (but `exclude`, the sender) and its spoof range.
pub fn lab_policy(state: &lab::LabState, exclude: &str) -> TargetPolicy {
    TargetPolicy {
        lab_targets: state.victims.iter().filter(|v| v.name != exclude).map(|v| (v.name.clone(), v.address)).collect(),
        spoof_subnet: state.plan.spoof_subnet,
        lab_network: state.plan.network,
        allow_loopback: false,
    }
}

impl FloodArgs {
    fn config(&self) -> FloodConfig {
        FloodConfig {
            kind: match self.kind {
                KindArg::Syn => FloodKind::Syn,
                KindArg::SynClosed => FloodKind::SynClosed,
                KindArg::Ack => FloodKind::Ack,
                KindArg::Udp => FloodKind::Udp,
            },
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
        }
    }
}

pub fn run(cli: &Cli, args: &FloodArgs) -> anyhow::Result<()> {
    let spec = Config::load(&cli.config)?.lab;
    let state = lab::LabState::load(&spec)?.ok_or_else(|| lab::LabError::NotUp(spec.prefix.clone()))?;
    let source = match args.source {
        SourceArg::Spoof => SourceChoice::Spoof,
        SourceArg::Own => SourceChoice::Own,
    };
    let bar = crate::progress::spinner(cli.json);
    let report = launch(&state, &args.from, &args.target, source, args.config(), &mut |p| {
        bar.set_message(format!("{:.0} pps, {:.2} Mbit/s, {} sent, {} errors", p.pps, p.bps / 1e6, p.sent, p.errors))
    });
    bar.finish_and_clear();
    let report = report?;
    if cli.json {
        return output::json(&report);
    }
    print_report(&report);
    Ok(())
}

/// Run one flood on the lab and measure its victim. The guard checks the target before anything
/// else happens; a flood from a victim runs the vmguard binary inside it, which checks again.
pub fn launch(
    state: &lab::LabState,
    from: &str,
    target: &str,
    source: SourceChoice,
    mut config: FloodConfig,
    progress: &mut dyn FnMut(&flood::Progress),
) -> anyhow::Result<FloodReport> {
    let policy = lab_policy(state, from);
    let checked = policy.resolve(target, source)?;
    config.check()?;
    let victim = state.victims.iter().find(|v| v.address == checked.addr()).cloned();
    let before = victim.as_ref().map(|v| VictimProbe::take(state, v)).transpose()?;

    let summary = if from == "attacker" {
        config.netns = Some(state.plan.attacker.ns.clone());
        let flood = flood::Flood::new(checked, config)?;
        let stop = flood.stop_handle();
        crate::signals::on_interrupt(move || stop.stop());
        serde_json::to_value(flood.run(|p| progress(p))?)?
    } else {
        let sender = state
            .victim(from)
            .with_context(|| format!("--from `{from}` is neither `attacker` nor a victim of the lab"))?;
        if sender.kind == lab::VictimKind::Vanilla {
            bail!(
                "--from vanilla: the vanilla victim is a bare server process; floods come from the attacker, a container or the qemu guest"
            );
        }
        let request = AgentRequest {
            target: checked.addr().to_string(),
            own_source: matches!(source, SourceChoice::Own),
            lab_targets: policy.lab_targets.clone(),
            spoof_subnet: policy.spoof_subnet,
            lab_network: policy.lab_network,
            config: FloodConfig { netns: None, ..config.clone() },
        };
        let argv: Vec<String> = vec![
            lab::image::TOOL_PATH.into(),
            "flood-agent".into(),
            "--request".into(),
            serde_json::to_string(&request)?,
        ];
        let timeout = config.duration + Duration::from_secs(60);
        let out = lab::victim::run_in(state, from, &argv, timeout)?;
        if out.status != 0 {
            bail!("the flood inside {from} failed (status {}): {}", out.status, out.output.trim());
        }
        let json = out.output.lines().rev().find(|l| l.starts_with('{')).unwrap_or_default();
        serde_json::from_str(json)
            .with_context(|| format!("no flood summary from inside {from}: {}", out.output.trim()))?
    };
    let effects = match (&victim, before) {
        (Some(v), Some(before)) => Some(VictimProbe::take(state, v)?.effects_since(&before, &v.name)),
        _ => None,
    };
    Ok(FloodReport { from: from.to_string(), summary, victim: effects })
}

/// `vmguard flood-agent`: the part of a flood that runs inside a victim.
pub fn agent(request: &str) -> anyhow::Result<()> {
    let req: AgentRequest = serde_json::from_str(request).context("flood-agent: malformed request")?;
    let policy = TargetPolicy {
        lab_targets: req.lab_targets,
        spoof_subnet: req.spoof_subnet,
        lab_network: req.lab_network,
        allow_loopback: false,
    };
    let source = if req.own_source { SourceChoice::Own } else { SourceChoice::Spoof };
    let target = policy.resolve(&req.target, source)?;
    let summary = flood::Flood::new(target, req.config)?.run(|_| {})?;
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}

/// Counters of a victim at one moment.
struct VictimProbe {
    at: Instant,
    syn: telemetry::snmp::SynCounters,
    rx_packets: u64,
    victim_cpu_ns: u64,
    softirq_ns: u64,
}

impl VictimProbe {
    fn take(state: &lab::LabState, v: &lab::VictimState) -> anyhow::Result<VictimProbe> {
        let syn = match v.kind {
            lab::VictimKind::Qemu => {
                let argv = ["cat".to_string(), "/proc/net/netstat".to_string()];
                let out = lab::victim::run_in(state, &v.name, &argv, Duration::from_secs(20))?;
                telemetry::snmp::SynCounters::from_netstat(&out.output)?
            }
            _ => telemetry::snmp::SynCounters::read(v.pids[0])
                .with_context(|| format!("reading the TCP counters of {} (pid {})", v.name, v.pids[0]))?,
        };
        let mut samples = Vec::new();
        let now = telemetry::unix_now_ns();
        let cpu_counter = match (&v.cgroup, v.kind) {
            (Some(cg), lab::VictimKind::Container) => {
                telemetry::cgroup::CgroupCpu::new(&v.name, cg.trim_start_matches('/')).sample(now, &mut samples)?;
                "cpu.usage_ns"
            }
            _ => {
                telemetry::procfs::ProcessCpu::new(&v.name, v.pids[0]).sample(now, &mut samples)?;
                "cpu_ns"
            }
        };
        let mut netdev = Vec::new();
        let iface = telemetry::Iface { name: v.host_iface.clone(), netns: Some(v.host_iface_ns.clone()) };
        telemetry::netdev::NetDev::new(&v.name, &iface).sample(now, &mut netdev)?;
        // The host side of the victim's link: what it transmits goes to the victim.
        let rx_packets = netdev.iter().find(|s| s.counter.ends_with("tx_packets")).map(|s| s.value).unwrap_or(0);
        Ok(VictimProbe {
            at: Instant::now(),
            syn,
            rx_packets,
            victim_cpu_ns: samples.iter().find(|s| s.counter == cpu_counter).map(|s| s.value).unwrap_or(0),
            softirq_ns: host_softirq_ns(),
        })
    }

    fn effects_since(&self, before: &VictimProbe, name: &str) -> VictimEffects {
        let secs = self.at.duration_since(before.at).as_secs_f64().max(1e-3);
        let pct = |ns: u64| ns as f64 / 1e9 / secs * 100.0;
        let d = self.syn.since(&before.syn);
        VictimEffects {
            name: name.to_string(),
            rx_packets: self.rx_packets.saturating_sub(before.rx_packets),
            syncookies_sent: d.syncookies_sent,
            listen_drops: d.listen_drops,
            listen_overflows: d.listen_overflows,
            req_queue_full_drops: d.tcp_req_q_full_drop,
            victim_cpu_percent: pct(self.victim_cpu_ns.saturating_sub(before.victim_cpu_ns)),
            host_softirq_percent: pct(self.softirq_ns.saturating_sub(before.softirq_ns)),
        }
    }
}

/// Host-wide softirq time from /proc/stat, in nanoseconds.
fn host_softirq_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    parse_softirq_ticks(&stat) * 1_000_000_000 / clock_ticks()
}

/// The softirq column (7th value) of the aggregate `cpu` line of /proc/stat.
pub fn parse_softirq_ticks(stat: &str) -> u64 {
    stat.lines()
        .find(|l| l.starts_with("cpu "))
        .and_then(|l| l.split_whitespace().nth(7))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn clock_ticks() -> u64 {
    // USER_HZ is 100 on every Linux architecture vmguard runs on.
    100
}

fn print_report(r: &FloodReport) {
    let s = &r.summary;
    let num = |k: &str| s[k].as_f64().unwrap_or(0.0);
    println!(
        "flood from {} to {} ({}:{}): {} packets sent in {:.2} s, {:.0} pps, {:.2} Mbit/s, {} errors, stopped by {}",
        r.from,
        s["target_name"].as_str().unwrap_or(s["target"].as_str().unwrap_or("?")),
        s["kind"].as_str().unwrap_or("?"),
        s["dst_port"],
        s["sent"],
        num("elapsed_secs"),
        num("achieved_pps"),
        num("achieved_bps") / 1e6,
        s["errors"],
        s["stopped_by"].as_str().unwrap_or("?"),
    );
    if let Some(v) = &r.victim {
        let rows = [vec![
            v.name.clone(),
            v.rx_packets.to_string(),
            v.syncookies_sent.to_string(),
            v.listen_drops.to_string(),
            format!("{:.1}", v.victim_cpu_percent),
            format!("{:.1}", v.host_softirq_percent),
        ]];
        println!(
            "{}",
            output::table(
                &["victim", "rx packets", "SYN cookies sent", "listen drops", "victim CPU %", "host softirq %"],
                rows
            )
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!(parse_rate("20000").unwrap(), Rate::PacketsPerSec(20000));
        assert_eq!(parse_rate("20kpps").unwrap(), Rate::PacketsPerSec(20000));
        assert_eq!(parse_rate("10mbit").unwrap(), Rate::BitsPerSec(10_000_000));
        assert_eq!(parse_rate("unlimited").unwrap(), Rate::Unlimited);
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("10 furlongs").is_err());
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("5").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn softirq_column_is_read() {
        let stat = "cpu  4705 356 584 3699 23 23 812 0 0 0\ncpu0 1 2 3 4 5 6 7 0 0 0\n";
        assert_eq!(parse_softirq_ticks(stat), 812);
        assert_eq!(parse_softirq_ticks("garbage"), 0);
    }
}
