//! The one lab-aware flood launch, used by `vmguard flood`, `record`, `demo` and the benchmark: from
//! the attacker host, or from inside a victim acting as a zombie (the same engine runs there), or with
//! hping3 as the peer tool; the target policy is built here only; the victim's side is measured.
//!
//! Safety: [`prepare`] resolves the target through [`flood::TargetPolicy`] before anything else
//! happens (only the running lab's victims, spoofed sources only from the lab's spoof range), and a
//! zombie's vmguard checks the target again inside the victim ([`ZombieRequest::run`]). Every flood
//! is bounded by its duration (and count); hping3, which has no duration flag, runs under `timeout`.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use flood::{FloodConfig, FloodKind, SourceChoice, Summary, TargetPolicy};
use lab::{LabState, VictimKind, VictimState};
use serde::{Deserialize, Serialize};
use telemetry::Source;

use crate::scenario::FloodTool;

/// Where a flood comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Sender {
    /// The attacker host, over its shaped link.
    Attacker,
    /// A victim of the lab acting as a zombie.
    Guest(String),
}

impl Sender {
    pub fn guest(&self) -> Option<&str> {
        match self {
            Sender::Attacker => None,
            Sender::Guest(g) => Some(g),
        }
    }
}

impl std::fmt::Display for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.guest().unwrap_or("attacker"))
    }
}

impl std::str::FromStr for Sender {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "" => Err("empty flood source: `attacker` or a victim's name".into()),
            "attacker" => Ok(Sender::Attacker),
            g => Ok(Sender::Guest(g.to_string())),
        }
    }
}

impl TryFrom<String> for Sender {
    type Error = String;
    fn try_from(s: String) -> Result<Sender, String> {
        s.parse()
    }
}

impl From<Sender> for String {
    fn from(s: Sender) -> String {
        s.to_string()
    }
}

/// Why a flood did not run (or failed).
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The guard refused the target or the source.
    #[error(transparent)]
    Guard(#[from] flood::GuardError),
    /// The flood engine refused its configuration or failed.
    #[error(transparent)]
    Flood(#[from] flood::FloodError),
    /// The lab cannot do what the flood needs.
    #[error(transparent)]
    Lab(#[from] lab::LabError),
    /// `--from` names neither the attacker nor a victim.
    #[error("flood source `{from}` is neither `attacker` nor a victim of the lab (victims: {victims})")]
    UnknownSender { from: String, victims: String },
    /// A victim that cannot send floods.
    #[error(
        "flood source `{0}`: the vanilla victim is a bare server process; floods come from the attacker, a container or the qemu guest"
    )]
    NotASender(String),
    /// hping3 runs from the attacker only.
    #[error("hping3 floods run from the attacker host only, not from `{0}`")]
    Hping3Sender(String),
    /// The flood inside a zombie victim failed.
    #[error("the flood inside {from} failed (status {status}): {output}")]
    Zombie { from: String, status: i32, output: String },
    /// The zombie printed no summary.
    #[error("no flood summary from inside {from}: {output}")]
    ZombieSummary {
        from: String,
        output: String,
        #[source]
        source: serde_json::Error,
    },
    /// A zombie request that is not one (the hidden `flood-agent` command).
    #[error("malformed zombie flood request")]
    Request(#[source] serde_json::Error),
    /// hping3 ended with an error.
    #[error("hping3 failed (status {status:?}): {stderr}")]
    Hping3 { status: Option<i32>, stderr: String },
    /// An external command failed.
    #[error(transparent)]
    Exec(#[from] exec::ExecError),
    /// The victim's counters could not be read.
    #[error("measuring {victim}: {source}")]
    Probe {
        victim: String,
        #[source]
        source: telemetry::TelemetryError,
    },
    /// A counter text of the victim or the host did not parse.
    #[error("measuring {victim}: {source}")]
    ProbeText {
        victim: String,
        #[source]
        source: telemetry::ParseError,
    },
    /// /proc/stat cannot be read.
    #[error("cannot read /proc/stat: {0}")]
    ProcStat(#[source] std::io::Error),
    /// The flood's thread panicked.
    #[error("the flood thread panicked")]
    Panicked,
}

/// The lab's target policy for floods sent by `sender`: every victim but the sender itself, the
/// lab's spoof range for sources. Built here only.
pub fn lab_policy(state: &LabState, sender: &Sender) -> TargetPolicy {
    TargetPolicy {
        lab_targets: state
            .victims
            .iter()
            .filter(|v| sender.guest() != Some(v.name.as_str()))
            .map(|v| (v.name.clone(), v.address))
            .collect(),
        spoof_subnet: state.plan.spoof_subnet,
        lab_network: state.plan.network,
        allow_loopback: false,
    }
}

/// One flood on the lab.
#[derive(Debug, Clone)]
pub struct LabFlood {
    pub from: Sender,
    /// A victim's name or address.
    pub target: String,
    pub source: SourceChoice,
    pub tool: FloodTool,
    pub config: FloodConfig,
    /// Read the victim's counters before and after (the report's [`VictimEffects`]); callers that
    /// measure the victim themselves (the benchmark) turn it off.
    pub measure_victim: bool,
}

impl LabFlood {
    /// A vmguard flood from `from` to `target` with spoofed sources, its victim measured.
    pub fn new(from: Sender, target: impl Into<String>, config: FloodConfig) -> LabFlood {
        LabFlood {
            from,
            target: target.into(),
            source: SourceChoice::Spoof,
            tool: FloodTool::Vmguard,
            config,
            measure_victim: true,
        }
    }
}

/// What a flood sent and what it did to its victim.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FloodReport {
    pub from: Sender,
    pub target: String,
    pub tool: String,
    /// The vmguard engine's summary (sent, errors, achieved rate, ...); hping3 has none.
    pub summary: Option<Summary>,
    /// Packets hping3 says it sent.
    pub hping3_sent: Option<u64>,
    pub victim: Option<VictimEffects>,
}

impl FloodReport {
    /// Packets sent, by whichever tool sent them.
    pub fn sent(&self) -> Option<u64> {
        self.summary.as_ref().map(|s| s.sent).or(self.hping3_sent)
    }
}

/// The victim's side of a flood: its TCP counters and CPU over the flood.
#[derive(Debug, Clone, Serialize, Deserialize)]
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

/// What the host hands to the vmguard binary inside a zombie victim (`vmguard flood-agent --request
/// JSON`): the checked target and the lab's policy, so the victim checks the target again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ZombieRequest {
    pub target: Ipv4Addr,
    pub own_source: bool,
    /// Spoof only inside this part of the lab's spoof range.
    #[serde(default)]
    pub spoof_in: Option<ipnet::Ipv4Net>,
    pub lab_targets: Vec<(String, Ipv4Addr)>,
    pub spoof_subnet: ipnet::Ipv4Net,
    pub lab_network: ipnet::Ipv4Net,
    pub config: FloodConfig,
}

/// The hidden subcommand of the vmguard binary that runs a [`ZombieRequest`].
pub const ZOMBIE_SUBCOMMAND: &str = "flood-agent";

impl ZombieRequest {
    pub fn from_json(text: &str) -> Result<ZombieRequest, LaunchError> {
        serde_json::from_str(text).map_err(LaunchError::Request)
    }

    /// Runs the flood where this process is (inside the zombie), after checking the target again.
    pub fn run(self) -> Result<Summary, LaunchError> {
        let policy = TargetPolicy {
            lab_targets: self.lab_targets,
            spoof_subnet: self.spoof_subnet,
            lab_network: self.lab_network,
            allow_loopback: false,
        };
        let source = match (self.own_source, self.spoof_in) {
            (true, _) => SourceChoice::Own,
            (false, Some(net)) => SourceChoice::SpoofIn(net),
            (false, None) => SourceChoice::Spoof,
        };
        let target = policy.resolve(&self.target.to_string(), source)?;
        Ok(flood::Flood::new(target, self.config)?.run(|_| {})?)
    }
}

/// Stops a prepared or running flood early (the bound still holds if it is never called). A zombie's
/// flood runs inside the victim and ends at its own bound.
#[derive(Debug, Clone, Default)]
pub struct Stopper {
    engine: Option<flood::StopHandle>,
    flag: Arc<AtomicBool>,
}

impl Stopper {
    pub fn stop(&self) {
        self.flag.store(true, Ordering::SeqCst);
        if let Some(h) = &self.engine {
            h.stop();
        }
    }
}

enum Engine {
    /// The vmguard engine in the attacker's namespace.
    Local(flood::Flood),
    /// The vmguard binary inside a victim.
    Zombie { from: String, request: ZombieRequest },
    /// hping3 in the attacker's namespace.
    Hping3 { target: Ipv4Addr, spoofed: Ipv4Addr, kind: FloodKind, port: u16, rate: units::Rate, bound: Duration },
}

/// A flood whose target and configuration passed every check; nothing has been sent yet.
pub struct PreparedFlood {
    state: LabState,
    from: Sender,
    target: String,
    tool: FloodTool,
    victim: Option<VictimState>,
    engine: Engine,
    stopper: Stopper,
}

/// Checks a flood against the running lab (guard, sender, configuration) and readies its engine.
pub fn prepare(state: &LabState, plan: LabFlood) -> Result<PreparedFlood, LaunchError> {
    let policy = lab_policy(state, &plan.from);
    let checked = policy.resolve(&plan.target, plan.source)?;
    let mut config = plan.config;
    config.check()?;
    let target_victim = state.victims.iter().find(|v| v.address == checked.addr()).cloned();
    let target_name = target_victim.as_ref().map_or(plan.target.clone(), |v| v.name.clone());
    let victim = target_victim.filter(|_| plan.measure_victim);
    let mut stopper = Stopper::default();
    let engine = match (&plan.from, plan.tool) {
        (Sender::Attacker, FloodTool::Vmguard) => {
            config.netns = Some(state.plan.attacker.ns.clone());
            let f = flood::Flood::new(checked, config)?;
            stopper.engine = Some(f.stop_handle());
            Engine::Local(f)
        }
        (Sender::Attacker, FloodTool::Hping3) => {
            // hping3's --rand-source draws from all of IPv4; vmguard spoofs only inside the lab's
            // spoof range, so hping3 gets one source address drawn from that range.
            let nanos =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
            let spoofed = match checked.source() {
                flood::CheckedSource::Random(net) => wire::pick_in_subnet(net, nanos.wrapping_mul(2_654_435_761)),
                flood::CheckedSource::Own => state.plan.attacker.address,
            };
            Engine::Hping3 {
                target: checked.addr(),
                spoofed,
                kind: config.kind,
                port: config.dst_port(),
                rate: config.rate,
                bound: config.duration,
            }
        }
        (Sender::Guest(g), FloodTool::Hping3) => return Err(LaunchError::Hping3Sender(g.clone())),
        (Sender::Guest(g), FloodTool::Vmguard) => {
            let sender = state.victim(g).ok_or_else(|| LaunchError::UnknownSender {
                from: g.clone(),
                victims: state.victims.iter().map(|v| v.name.as_str()).collect::<Vec<_>>().join(", "),
            })?;
            if sender.kind == VictimKind::Vanilla {
                return Err(LaunchError::NotASender(g.clone()));
            }
            let request = ZombieRequest {
                target: checked.addr(),
                own_source: matches!(plan.source, SourceChoice::Own),
                spoof_in: match plan.source {
                    SourceChoice::SpoofIn(net) => Some(net),
                    _ => None,
                },
                lab_targets: policy.lab_targets.clone(),
                spoof_subnet: policy.spoof_subnet,
                lab_network: policy.lab_network,
                config: FloodConfig { netns: None, ..config },
            };
            Engine::Zombie { from: g.clone(), request }
        }
    };
    Ok(PreparedFlood {
        state: state.clone(),
        from: plan.from,
        target: target_name,
        tool: plan.tool,
        victim,
        engine,
        stopper,
    })
}

impl PreparedFlood {
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    /// Sends the flood (until its bound or [`Stopper::stop`]) and measures its victim.
    pub fn run(self, progress: &mut dyn FnMut(&flood::Progress)) -> Result<FloodReport, LaunchError> {
        let PreparedFlood { state, from, target, tool, victim, engine, stopper } = self;
        let before = victim.as_ref().map(|v| VictimProbe::take(&state, v)).transpose()?;
        let (summary, hping3_sent) = match engine {
            Engine::Local(f) => (Some(f.run(|p| progress(p))?), None),
            Engine::Zombie { from, request } => (Some(run_zombie(&state, &from, request)?), None),
            Engine::Hping3 { target, spoofed, kind, port, rate, bound } => {
                (None, run_hping3(&state, target, spoofed, kind, port, rate, bound, &stopper)?)
            }
        };
        let effects = match (&victim, before) {
            (Some(v), Some(before)) => Some(VictimProbe::take(&state, v)?.effects_since(&before, &v.name)),
            _ => None,
        };
        Ok(FloodReport { from, target, tool: tool.as_str().to_string(), summary, hping3_sent, victim: effects })
    }

    /// Runs the flood on a thread of its own.
    pub fn spawn(self) -> RunningFlood {
        let stopper = self.stopper();
        let thread = std::thread::spawn(move || self.run(&mut |_| {}));
        RunningFlood { stopper, thread }
    }
}

/// Checks and runs one flood in the foreground.
pub fn launch(
    state: &LabState,
    plan: LabFlood,
    progress: &mut dyn FnMut(&flood::Progress),
) -> Result<FloodReport, LaunchError> {
    prepare(state, plan)?.run(progress)
}

/// A flood running on its own thread until its bound or [`RunningFlood::stop`].
pub struct RunningFlood {
    stopper: Stopper,
    thread: std::thread::JoinHandle<Result<FloodReport, LaunchError>>,
}

impl RunningFlood {
    pub fn stop(&self) {
        self.stopper.stop();
    }

    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    /// Waits for the flood to end (it ends at its bound; call [`Self::stop`] first to end it now).
    pub fn finish(self) -> Result<FloodReport, LaunchError> {
        self.thread.join().map_err(|_| LaunchError::Panicked)?
    }
}

fn run_zombie(state: &LabState, from: &str, request: ZombieRequest) -> Result<Summary, LaunchError> {
    let timeout = request.config.duration + Duration::from_secs(60);
    let argv: Vec<String> = vec![
        lab::image::TOOL_PATH.into(),
        ZOMBIE_SUBCOMMAND.into(),
        "--request".into(),
        serde_json::to_string(&request).map_err(LaunchError::Request)?,
    ];
    let out = lab::victim::run_in(state, from, &argv, timeout)?;
    if out.status != 0 {
        return Err(LaunchError::Zombie {
            from: from.to_string(),
            status: out.status,
            output: out.output.trim().into(),
        });
    }
    let json = out.output.lines().rev().find(|l| l.starts_with('{')).unwrap_or_default();
    serde_json::from_str(json).map_err(|source| LaunchError::ZombieSummary {
        from: from.to_string(),
        output: out.output.trim().into(),
        source,
    })
}

/// hping3's mode flag and the IP packet length it sends (no TCP options, no UDP payload).
fn hping3_mode(kind: FloodKind) -> (&'static str, usize) {
    match kind {
        FloodKind::Syn | FloodKind::SynClosed => ("-S", 40),
        FloodKind::Ack => ("-A", 40),
        FloodKind::Udp => ("--udp", 28),
    }
}

#[allow(clippy::too_many_arguments)]
fn run_hping3(
    state: &LabState,
    target: Ipv4Addr,
    spoofed: Ipv4Addr,
    kind: FloodKind,
    port: u16,
    rate: units::Rate,
    bound: Duration,
    stopper: &Stopper,
) -> Result<Option<u64>, LaunchError> {
    let (mode, ip_len) = hping3_mode(kind);
    let pace: Vec<String> = match rate.pps(ip_len) {
        Some(pps) => vec!["-i".into(), format!("u{}", ((1e6 / pps.max(1e-3)) as u64).max(1))],
        None => vec!["--flood".into()],
    };
    if stopper.flag.load(Ordering::SeqCst) {
        return Ok(Some(0));
    }
    // hping3 has no duration flag: `timeout` bounds it (and exec's timeout bounds that).
    let out = exec::Cmd::new("timeout")
        .args(["-s", "INT", &format!("{:.1}", bound.as_secs_f64()), "hping3", "-q", mode, "-p", &port.to_string()])
        .args(&pace)
        .args(["-a", &spoofed.to_string(), &target.to_string()])
        .netns(&state.plan.attacker.ns)
        .timeout(bound + Duration::from_secs(5))
        .run_unchecked()?;
    // timeout's 124 (or hping3's exit on SIGINT) is the normal end.
    if !matches!(out.status.code(), Some(0 | 1 | 124 | 130)) {
        return Err(LaunchError::Hping3 { status: out.status.code(), stderr: out.stderr.trim().into() });
    }
    Ok(hping3_sent(&format!("{}\n{}", out.stdout, out.stderr)))
}

/// Packets sent, from hping3's statistics line (`N packets transmitted, M packets received, ...`).
pub fn hping3_sent(output: &str) -> Option<u64> {
    output.lines().find_map(|l| {
        let (n, rest) = l.trim().split_once(' ')?;
        rest.starts_with("packets transmitted").then(|| n.parse().ok()).flatten()
    })
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
    fn take(state: &LabState, v: &VictimState) -> Result<VictimProbe, LaunchError> {
        let probe = |source| LaunchError::Probe { victim: v.name.clone(), source };
        let syn = match v.kind {
            VictimKind::Qemu => {
                let argv = ["cat".to_string(), "/proc/net/netstat".to_string()];
                let out = lab::victim::run_in(state, &v.name, &argv, Duration::from_secs(20))?;
                telemetry::snmp::SynCounters::from_netstat(&out.output)
                    .map_err(|source| LaunchError::ProbeText { victim: v.name.clone(), source })?
            }
            _ => telemetry::snmp::SynCounters::read(v.pids[0]).map_err(probe)?,
        };
        let mut samples = Vec::new();
        let now = telemetry::unix_now_ns();
        let cpu_counter = match (&v.cgroup, v.kind) {
            (Some(cg), VictimKind::Container) => {
                telemetry::cgroup::CgroupCpu::new(&v.name, cg.trim_start_matches('/'))
                    .sample(now, &mut samples)
                    .map_err(probe)?;
                "cpu.usage_ns"
            }
            _ => {
                telemetry::procfs::ProcessCpu::new(&v.name, v.pids[0]).sample(now, &mut samples).map_err(probe)?;
                "cpu_ns"
            }
        };
        let mut netdev = Vec::new();
        let iface = telemetry::Iface::host_side(v.host_iface.clone(), Some(v.host_iface_ns.clone()));
        telemetry::netdev::NetDev::new(&v.name, &iface).sample(now, &mut netdev).map_err(probe)?;
        // The host side of the victim's link: what it transmits goes to the victim.
        let rx_packets = netdev.iter().find(|s| s.counter.ends_with("tx_packets")).map(|s| s.value).unwrap_or(0);
        Ok(VictimProbe {
            at: Instant::now(),
            syn,
            rx_packets,
            victim_cpu_ns: samples.iter().find(|s| s.counter == cpu_counter).map(|s| s.value).unwrap_or(0),
            softirq_ns: host_softirq_ns(&v.name)?,
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

/// Host-wide softirq time from /proc/stat, in nanoseconds (USER_HZ is 100 on every Linux
/// architecture vmguard runs on).
fn host_softirq_ns(victim: &str) -> Result<u64, LaunchError> {
    let text = std::fs::read_to_string("/proc/stat").map_err(LaunchError::ProcStat)?;
    let stat = telemetry::procfs::parse_stat(&text)
        .map_err(|source| LaunchError::ProbeText { victim: victim.to_string(), source })?;
    Ok(stat.cpu.softirq * 10_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders() {
        assert_eq!("attacker".parse::<Sender>(), Ok(Sender::Attacker));
        assert_eq!("qemu".parse::<Sender>(), Ok(Sender::Guest("qemu".into())));
        assert!("".parse::<Sender>().is_err());
        assert_eq!(serde_json::to_string(&Sender::Guest("container".into())).unwrap(), "\"container\"");
    }

    #[test]
    fn hping3_statistics() {
        let out = "--- 10.0.0.1 hping statistic ---\n12345 packets transmitted, 0 packets received, 100% packet loss\n";
        assert_eq!(hping3_sent(out), Some(12345));
        assert_eq!(hping3_sent("garbage"), None);
    }

    #[test]
    fn zombie_requests_round_trip_and_bad_ones_are_refused() {
        let r = ZombieRequest {
            target: Ipv4Addr::new(10, 213, 12, 2),
            own_source: false,
            spoof_in: None,
            lab_targets: vec![("qemu".into(), Ipv4Addr::new(10, 213, 12, 2))],
            spoof_subnet: "10.213.128.0/17".parse().unwrap(),
            lab_network: "10.213.0.0/16".parse().unwrap(),
            config: FloodConfig::default(),
        };
        let back = ZombieRequest::from_json(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back.target, r.target);
        assert!(matches!(ZombieRequest::from_json("{"), Err(LaunchError::Request(_))));
        // A request for an address outside the lab's victims is refused inside the victim too.
        let evil = ZombieRequest { target: Ipv4Addr::new(8, 8, 8, 8), ..back };
        assert!(matches!(evil.run(), Err(LaunchError::Guard(_))));
    }
}
