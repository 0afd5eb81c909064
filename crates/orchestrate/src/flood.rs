//! The one lab-aware flood launch, used by `vmguard flood`, `record`, `demo` and the benchmark: from
//! the attacker host, or from inside a victim acting as a zombie (the same engine runs there), or with
//! hping3 as the peer tool; the target policy is built here only; the victim's side is measured.
//!
//! Safety: [`prepare`] resolves the target through [`flood::TargetPolicy`] before anything else
//! happens (only the running lab's victims, spoofed sources only from the lab's spoof range), and a
//! zombie's vmguard checks the target again inside the victim ([`ZombieRequest::run`]). Every flood
//! is bounded by its duration (and count); the peer tools (hping3, trafgen, nping) run under `timeout`
//! with a packet count, and only with a checked [`flood::Target`] (their command lines are built
//! from one, [`tool_command`]), spoofing only inside the lab's spoof range.

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
        "flood source `{0}`: the vanilla victim is a bare server process; floods come from the attacker, a container, the qemu guest or the Xen domU"
    )]
    NotASender(String),
    /// A peer tool a virtual machine's image (the qemu guest's, the Xen domU's) does not have.
    #[error(
        "the guest `{from}` has no {tool} in its image: use hping3 or the vmguard zombie flood (tool = \"vmguard\") from it"
    )]
    NotInGuest { from: String, tool: &'static str },
    /// A peer tool asked for an unlimited rate.
    #[error("{0} floods need a rate (e.g. 500, 5kpps, 10mbit), not unlimited")]
    ToolRate(&'static str),
    /// A peer tool asked for random sources it can only draw from all of IPv4.
    #[error(
        "{0}'s random sources cover all of IPv4, outside the lab's spoof range: give it one lab source (a /32 of the spoof range), or use trafgen or vmguard"
    )]
    ToolRandomSource(&'static str),
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
    /// A peer tool (hping3, trafgen, nping) ended with an error.
    #[error("{tool} failed (status {status:?}): {stderr}")]
    Tool { tool: &'static str, status: Option<i32>, stderr: String },
    /// The next hop's MAC address for trafgen's Ethernet header is unknown.
    #[error("trafgen from {ns}: {source}")]
    NextHop {
        ns: String,
        #[source]
        source: flood::FloodError,
    },
    /// trafgen's packet configuration cannot be written.
    #[error("cannot write trafgen's packet configuration")]
    TrafgenConfig(#[source] std::io::Error),
    /// Entering a namespace failed.
    #[error(transparent)]
    Netns(#[from] netns::NetnsError),
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
    /// The vmguard engine's summary (sent, errors, achieved rate, ...); the peer tools have none.
    pub summary: Option<Summary>,
    /// Packets the peer tool (hping3, trafgen, nping) says it sent.
    #[serde(alias = "hping3_sent")]
    pub tool_sent: Option<u64>,
    pub victim: Option<VictimEffects>,
}

impl FloodReport {
    /// Packets sent, by whichever tool sent them.
    pub fn sent(&self) -> Option<u64> {
        self.summary.as_ref().map(|s| s.sent).or(self.tool_sent)
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
    /// A peer tool in a namespace (the attacker's, a victim's) or inside the qemu guest.
    Tool { tool: FloodTool, site: ToolSite, command: ToolCommand, bound: Duration },
}

/// Where a peer tool runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolSite {
    /// The host's binary in this network namespace (the attacker, vanilla, the container's).
    Netns(String),
    /// Inside this virtual machine (the qemu guest, the Xen domU), over its command channel.
    Guest(String),
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
        (Sender::Attacker, tool) => {
            let site = ToolSite::Netns(state.plan.attacker.ns.clone());
            let command = tool_in(tool, &site, &checked, state.plan.attacker.address, &config)?;
            Engine::Tool { tool, site, command, bound: config.duration }
        }
        (Sender::Guest(g), tool @ (FloodTool::Hping3 | FloodTool::Trafgen | FloodTool::Nping)) => {
            let sender = state.victim(g).ok_or_else(|| LaunchError::UnknownSender {
                from: g.clone(),
                victims: state.victims.iter().map(|v| v.name.as_str()).collect::<Vec<_>>().join(", "),
            })?;
            let site = match sender.kind {
                VictimKind::Vanilla | VictimKind::Container => ToolSite::Netns(sender.ns.clone()),
                VictimKind::Qemu | VictimKind::Xen if tool.in_guest() => ToolSite::Guest(g.clone()),
                VictimKind::Qemu | VictimKind::Xen => {
                    return Err(LaunchError::NotInGuest { from: g.clone(), tool: tool.as_str() });
                }
            };
            let command = tool_in(tool, &site, &checked, sender.address, &config)?;
            Engine::Tool { tool, site, command, bound: config.duration }
        }
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
        let (summary, tool_sent) = match engine {
            Engine::Local(f) => (Some(f.run(|p| progress(p))?), None),
            Engine::Zombie { from, request } => (Some(run_zombie(&state, &from, request)?), None),
            Engine::Tool { tool, site, command, bound } => {
                (None, run_tool(&state, tool, &site, &command, bound, &stopper)?)
            }
        };
        let effects = match (&victim, before) {
            (Some(v), Some(before)) => Some(VictimProbe::take(&state, v)?.effects_since(&before, &v.name)),
            _ => None,
        };
        Ok(FloodReport { from, target, tool: tool.as_str().to_string(), summary, tool_sent, victim: effects })
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

/// A peer tool's command, built from a guard-checked target only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCommand {
    /// `timeout -s INT SECS tool ...`.
    pub argv: Vec<String>,
    /// trafgen's packet configuration (written to the file its `--conf` names).
    pub trafgen_config: Option<String>,
    /// The source addresses: one lab address, or a random part of the spoof range (trafgen).
    pub source: flood::CheckedSource,
    /// The packet bound passed to the tool.
    pub count: u64,
}

/// trafgen's Ethernet link: egress interface, its MAC and the next hop's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafgenLink {
    pub dev: String,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
}

/// The IP packet length a peer tool sends for `kind` (TCP without options, UDP with the
/// configuration's payload for trafgen, none for hping3 and nping).
fn tool_ip_len(tool: FloodTool, kind: FloodKind, udp_payload: u16) -> usize {
    match (kind, tool) {
        (FloodKind::Udp, FloodTool::Trafgen) => 28 + udp_payload as usize,
        (FloodKind::Udp, _) => 28,
        _ => 40,
    }
}

/// Whole seconds for `timeout` (busybox's in the guest takes whole seconds), at least 1.
fn timeout_secs(d: Duration) -> String {
    d.as_secs_f64().ceil().max(1.0).to_string()
}

/// The command line of a peer tool flood toward `target` (guard-checked: a lab victim, sources in
/// the lab's spoof range). `own` is the sender's own address (for `--source own`); `seed` picks the
/// one fixed source of hping3 and nping inside the checked range; `link` is trafgen's Ethernet link
/// and `conf` the path of its packet configuration. Bounded by `cfg.duration` (`timeout`) and a
/// packet count (`cfg.count`, else the rate times the duration).
pub fn tool_command(
    tool: FloodTool,
    target: &flood::Target,
    own: Ipv4Addr,
    cfg: &FloodConfig,
    seed: u32,
    link: Option<(&TrafgenLink, &str)>,
) -> Result<ToolCommand, LaunchError> {
    cfg.check()?;
    let name = tool.as_str();
    let ip_len = tool_ip_len(tool, cfg.kind, cfg.udp_payload_len);
    let pps = cfg.rate.pps(ip_len).ok_or(LaunchError::ToolRate(name))?.max(1.0);
    let count =
        cfg.count.unwrap_or_else(|| (pps * cfg.duration.as_secs_f64()).ceil() as u64).clamp(1, flood::MAX_COUNT);
    let fixed = |source: flood::CheckedSource| match source {
        flood::CheckedSource::Random(net) if net.prefix_len() == 32 => net.addr(),
        flood::CheckedSource::Random(net) => wire::pick_in_subnet(net, seed.wrapping_mul(2_654_435_761)),
        flood::CheckedSource::Own => own,
    };
    let dst = target.addr().to_string();
    let port = cfg.dst_port().to_string();
    let mut argv: Vec<String> =
        ["timeout", "-s", "INT", &timeout_secs(cfg.duration)].iter().map(|s| s.to_string()).collect();
    let mut trafgen_config = None;
    let mut source = target.source();
    match tool {
        FloodTool::Vmguard => unreachable!("the vmguard engine is not a peer tool"),
        FloodTool::Hping3 => {
            let src = fixed(target.source());
            source = flood::CheckedSource::Random(ipnet::Ipv4Net::from(src));
            let mode = match cfg.kind {
                FloodKind::Syn | FloodKind::SynClosed => "-S",
                FloodKind::Ack => "-A",
                FloodKind::Udp => "--udp",
            };
            let gap = format!("u{}", ((1e6 / pps) as u64).max(1));
            argv.extend(
                ["hping3", "-q", mode, "-p", &port, "-i", &gap, "-c", &count.to_string(), "-a", &src.to_string(), &dst]
                    .map(String::from),
            );
        }
        FloodTool::Nping => {
            let src = fixed(target.source());
            source = flood::CheckedSource::Random(ipnet::Ipv4Net::from(src));
            argv.push("nping".into());
            match cfg.kind {
                FloodKind::Syn | FloodKind::SynClosed => argv.extend(["--tcp", "--flags", "syn"].map(String::from)),
                FloodKind::Ack => argv.extend(["--tcp", "--flags", "ack"].map(String::from)),
                FloodKind::Udp => argv.push("--udp".into()),
            }
            argv.extend(
                [
                    "-p",
                    &port,
                    "--rate",
                    &format!("{}", pps.round() as u64),
                    "-c",
                    &count.to_string(),
                    "-S",
                    &src.to_string(),
                ]
                .map(String::from),
            );
            // Raw IP sockets (the kernel routes and resolves), no capture of replies, no per-packet lines.
            argv.extend(["--send-ip", "-N", "-H", "-q", &dst].map(String::from));
        }
        FloodTool::Trafgen => {
            let (link, conf) = link.expect("trafgen needs its link");
            trafgen_config = Some(trafgen_config_text(target, own, cfg, link));
            argv.extend(
                [
                    "trafgen",
                    "--dev",
                    &link.dev,
                    "--conf",
                    conf,
                    "--cpus",
                    "1",
                    "--no-sock-mem",
                    "-n",
                    &count.to_string(),
                    "-b",
                    &format!("{}pps", pps.round() as u64),
                ]
                .map(String::from),
            );
        }
    }
    Ok(ToolCommand { argv, trafgen_config, source, count })
}

fn mac_text(m: &[u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// trafgen's packet configuration: one packet, its source drawn per packet from the checked range
/// (byte by byte: the network's bytes fixed, the host bytes `drnd`), checksums computed by trafgen.
fn trafgen_config_text(target: &flood::Target, own: Ipv4Addr, cfg: &FloodConfig, link: &TrafgenLink) -> String {
    let mut ip = format!("ipv4(da={}, ttl={}", target.addr(), cfg.ttl);
    match target.source() {
        flood::CheckedSource::Own => ip.push_str(&format!(", sa={own}")),
        flood::CheckedSource::Random(net) => {
            let net = net.trunc();
            ip.push_str(&format!(", sa={}", net.network()));
            let base = net.network().octets();
            let mask = net.netmask().octets();
            for i in 0..4 {
                match mask[i] {
                    0xff => {}
                    0 => ip.push_str(&format!(", sa[{i}]=drnd()")),
                    m => ip.push_str(&format!(", sa[{i}]=drnd({}, {})", base[i], base[i] | !m)),
                }
            }
        }
    }
    ip.push(')');
    let port = cfg.dst_port();
    let l4 = match cfg.kind {
        FloodKind::Syn | FloodKind::SynClosed => format!("tcp(sp=drnd(), dp={port}, seq=drnd(), syn, window=64240)"),
        FloodKind::Ack => format!("tcp(sp=drnd(), dp={port}, seq=drnd(), aseq=drnd(), ack, window=502)"),
        FloodKind::Udp => format!("udp(sp=drnd(), dp={port}), fill(0x00, {})", cfg.udp_payload_len),
    };
    format!(
        "# vmguard: {} flood at {} (lab victim), generated\n{{\n  eth(da={}, sa={}),\n  {ip},\n  {l4}\n}}\n",
        cfg.kind,
        target.addr(),
        mac_text(&link.dst_mac),
        mac_text(&link.src_mac)
    )
}

/// trafgen's link from `ns` toward the checked target: the route's device and MAC, and the next
/// hop's MAC from the neighbour table (after one datagram to the target's discard port if needed).
fn trafgen_link(ns: &str, target: Ipv4Addr) -> Result<TrafgenLink, LaunchError> {
    let hop = |source| LaunchError::NextHop { ns: ns.to_string(), source };
    let route = flood::route::lookup(Some(ns), target).map_err(hop)?;
    let dev = route.dev.clone();
    let src_mac = route.mac.ok_or_else(|| {
        hop(flood::FloodError::Neighbor { next_hop: route.next_hop, dev: format!("{dev} (not an Ethernet link)") })
    })?;
    let dst_mac = netns::run_in(ns, move || flood::route::resolve_neighbor(&route, target))?.map_err(hop)?;
    Ok(TrafgenLink { dev, src_mac, dst_mac })
}

/// Builds a peer tool's command for `site` (trafgen: its link looked up there).
fn tool_in(
    tool: FloodTool,
    site: &ToolSite,
    checked: &flood::Target,
    own: Ipv4Addr,
    config: &FloodConfig,
) -> Result<ToolCommand, LaunchError> {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    if tool != FloodTool::Trafgen {
        return tool_command(tool, checked, own, config, nanos, None);
    }
    let ns = match site {
        ToolSite::Netns(ns) => ns,
        ToolSite::Guest(g) => return Err(LaunchError::NotInGuest { from: g.clone(), tool: tool.as_str() }),
    };
    let link = trafgen_link(ns, checked.addr())?;
    // The path is filled in when the flood runs (the file lives as long as trafgen).
    tool_command(tool, checked, own, config, nanos, Some((&link, TRAFGEN_CONF_PLACEHOLDER)))
}

const TRAFGEN_CONF_PLACEHOLDER: &str = "{trafgen-conf}";

fn run_tool(
    state: &LabState,
    tool: FloodTool,
    site: &ToolSite,
    command: &ToolCommand,
    bound: Duration,
    stopper: &Stopper,
) -> Result<Option<u64>, LaunchError> {
    if stopper.flag.load(Ordering::SeqCst) {
        return Ok(Some(0));
    }
    let name = tool.as_str();
    let mut argv = command.argv.clone();
    // trafgen's configuration, in a file removed when this function returns.
    let conf = match &command.trafgen_config {
        Some(text) => {
            let mut f = tempfile::Builder::new()
                .prefix("vmguard-trafgen-")
                .suffix(".cfg")
                .tempfile()
                .map_err(LaunchError::TrafgenConfig)?;
            std::io::Write::write_all(&mut f, text.as_bytes()).map_err(LaunchError::TrafgenConfig)?;
            let path = f.into_temp_path();
            for a in &mut argv {
                if a == TRAFGEN_CONF_PLACEHOLDER {
                    *a = path.display().to_string();
                }
            }
            Some(path)
        }
        None => None,
    };
    // `timeout` bounds the tool (its count too), and exec's timeout, a little later, bounds that.
    let grace = bound + Duration::from_secs(10);
    let (status, output) = match site {
        ToolSite::Netns(ns) => {
            let out = exec::Cmd::new(&argv[0]).args(&argv[1..]).netns(ns).timeout(grace).run_unchecked()?;
            (out.status.code(), format!("{}\n{}", out.stdout, out.stderr))
        }
        ToolSite::Guest(g) => {
            let out = lab::victim::run_in(state, g, &argv, grace)?;
            (Some(out.status), out.output)
        }
    };
    drop(conf);
    // timeout's 124 (or the tool's exit on SIGINT) is the normal end.
    if !matches!(status, Some(0 | 1 | 124 | 130)) {
        return Err(LaunchError::Tool { tool: name, status, stderr: output.trim().into() });
    }
    Ok(tool_sent(&output))
}

/// Packets sent, from the peer tools' statistics: hping3's `N packets transmitted, ...`, trafgen's
/// `N packets outgoing`, nping's `Raw packets sent: N (...)`.
pub fn tool_sent(output: &str) -> Option<u64> {
    output.lines().find_map(|l| {
        let l = l.trim();
        if let Some(rest) = l.strip_prefix("Raw packets sent:") {
            return rest.split_whitespace().next()?.parse().ok();
        }
        let (n, rest) = l.split_once(' ')?;
        let rest = rest.trim_start();
        (rest.starts_with("packets transmitted") || rest.starts_with("packets outgoing")).then(|| n.parse().ok())?
    })
}

/// Packets sent, from hping3's statistics line (`N packets transmitted, M packets received, ...`).
pub fn hping3_sent(output: &str) -> Option<u64> {
    tool_sent(output)
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
            // A machine's TCP counters are in its own kernel; the host's process is qemu.
            k if k.has_own_kernel() => {
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
        let iface = v.guest_info().iface.expect("a lab victim has a link");
        telemetry::netdev::NetDev::new(&v.name, &iface).sample(now, &mut netdev).map_err(probe)?;
        // Counted as on the host side of the victim's link: what it transmits goes to the victim.
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

    fn lab() -> TargetPolicy {
        TargetPolicy {
            lab_targets: vec![
                ("vanilla".into(), Ipv4Addr::new(10, 213, 10, 2)),
                ("qemu".into(), Ipv4Addr::new(10, 213, 12, 2)),
            ],
            spoof_subnet: "10.213.128.0/17".parse().unwrap(),
            lab_network: "10.213.0.0/16".parse().unwrap(),
            allow_loopback: false,
        }
    }

    fn cfg(kind: FloodKind, rate: &str, secs: u64, count: Option<u64>) -> FloodConfig {
        FloodConfig {
            kind,
            rate: rate.parse().unwrap(),
            duration: Duration::from_secs(secs),
            count,
            ..FloodConfig::default()
        }
    }

    fn arg_after<'a>(argv: &'a [String], flag: &str) -> &'a str {
        let i = argv.iter().position(|a| a == flag).unwrap_or_else(|| panic!("{flag} in {argv:?}"));
        &argv[i + 1]
    }

    const OWN: Ipv4Addr = Ipv4Addr::new(10, 213, 1, 2);

    #[test]
    fn hping3_and_nping_command_lines_are_bounded_and_spoof_one_lab_address() {
        let spoof: ipnet::Ipv4Net = "10.213.128.0/17".parse().unwrap();
        let t = lab().resolve("qemu", SourceChoice::Spoof).unwrap();
        let c = tool_command(FloodTool::Hping3, &t, OWN, &cfg(FloodKind::Ack, "500", 20, None), 7, None).unwrap();
        assert_eq!(&c.argv[..4], ["timeout", "-s", "INT", "20"]);
        assert_eq!(c.argv[4], "hping3");
        assert!(c.argv.contains(&"-A".to_string()), "{:?}", c.argv);
        assert_eq!(arg_after(&c.argv, "-i"), "u2000");
        assert_eq!(arg_after(&c.argv, "-c"), "10000", "500/s for 20 s");
        assert_eq!(arg_after(&c.argv, "-p"), "80");
        let src: Ipv4Addr = arg_after(&c.argv, "-a").parse().unwrap();
        assert!(spoof.contains(&src), "{src}");
        assert_eq!(c.argv.last().unwrap(), "10.213.12.2");
        assert_eq!(c.count, 10_000);

        // A fixed source (a /32 of the spoof range) is used as it is; an explicit count wins.
        let fixed = lab().resolve("vanilla", SourceChoice::SpoofIn("10.213.200.9/32".parse().unwrap())).unwrap();
        let c = tool_command(FloodTool::Nping, &fixed, OWN, &cfg(FloodKind::Syn, "5kpps", 15, Some(1234)), 7, None)
            .unwrap();
        assert_eq!(c.argv[4], "nping");
        assert_eq!(arg_after(&c.argv, "--flags"), "syn");
        assert_eq!(arg_after(&c.argv, "--rate"), "5000");
        assert_eq!(arg_after(&c.argv, "-c"), "1234");
        assert_eq!(arg_after(&c.argv, "-S"), "10.213.200.9");
        assert_eq!(arg_after(&c.argv, "-p"), "80");
        assert_eq!(c.argv.last().unwrap(), "10.213.10.2");
        let c = tool_command(FloodTool::Nping, &fixed, OWN, &cfg(FloodKind::Udp, "500", 15, None), 7, None).unwrap();
        assert!(c.argv.contains(&"--udp".to_string()) && !c.argv.contains(&"--flags".to_string()), "{:?}", c.argv);
        assert_eq!(arg_after(&c.argv, "-p"), "9");
        // Bits per second become packets per second of the tool's own packet size (40-byte SYNs).
        let c = tool_command(FloodTool::Hping3, &fixed, OWN, &cfg(FloodKind::Syn, "1mbit", 10, None), 7, None).unwrap();
        assert_eq!(arg_after(&c.argv, "-c"), "23149", "1e6 / (54 * 8) packets/s for 10 s, rounded up");
        // Own source: the sender's address.
        let own = lab().resolve("qemu", SourceChoice::Own).unwrap();
        let c = tool_command(FloodTool::Hping3, &own, OWN, &cfg(FloodKind::Syn, "500", 10, None), 7, None).unwrap();
        assert_eq!(arg_after(&c.argv, "-a"), "10.213.1.2");
        // No unlimited rate, no unbounded or absurd configuration.
        assert!(matches!(
            tool_command(FloodTool::Nping, &fixed, OWN, &cfg(FloodKind::Syn, "unlimited", 10, None), 7, None),
            Err(LaunchError::ToolRate("nping"))
        ));
        assert!(matches!(
            tool_command(FloodTool::Nping, &fixed, OWN, &cfg(FloodKind::Syn, "500", 0, None), 7, None),
            Err(LaunchError::Flood(_))
        ));
        assert!(matches!(
            tool_command(FloodTool::Nping, &fixed, OWN, &cfg(FloodKind::Syn, "500", 10, Some(0)), 7, None),
            Err(LaunchError::Flood(_))
        ));
    }

    #[test]
    fn trafgen_config_draws_sources_inside_the_checked_range_only() {
        let link = TrafgenLink { dev: "vmg-att0".into(), src_mac: [2, 0, 0, 0, 0, 1], dst_mac: [2, 0, 0, 0, 0, 0xfe] };
        let t = lab().resolve("qemu", SourceChoice::Spoof).unwrap();
        let c = tool_command(
            FloodTool::Trafgen,
            &t,
            OWN,
            &cfg(FloodKind::Syn, "3000", 20, None),
            1,
            Some((&link, "/tmp/x.cfg")),
        )
        .unwrap();
        let conf = c.trafgen_config.as_deref().unwrap();
        assert!(conf.contains("eth(da=02:00:00:00:00:fe, sa=02:00:00:00:00:01)"), "{conf}");
        // 10.213.128.0/17: the first two bytes fixed, the third 128..255, the fourth any.
        assert!(
            conf.contains("ipv4(da=10.213.12.2, ttl=64, sa=10.213.128.0, sa[2]=drnd(128, 255), sa[3]=drnd())"),
            "{conf}"
        );
        assert!(conf.contains("tcp(sp=drnd(), dp=80, seq=drnd(), syn, window=64240)"), "{conf}");
        assert_eq!(arg_after(&c.argv, "--conf"), "/tmp/x.cfg");
        assert_eq!(arg_after(&c.argv, "--dev"), "vmg-att0");
        assert_eq!(arg_after(&c.argv, "-b"), "3000pps");
        assert_eq!(arg_after(&c.argv, "-n"), "60000");
        assert_eq!(arg_after(&c.argv, "--cpus"), "1");
        assert_eq!(&c.argv[..4], ["timeout", "-s", "INT", "20"]);
        // A part of the spoof range, a fixed source, ACK and UDP kinds.
        let part = lab().resolve("qemu", SourceChoice::SpoofIn("10.213.200.0/22".parse().unwrap())).unwrap();
        let c =
            tool_command(FloodTool::Trafgen, &part, OWN, &cfg(FloodKind::Ack, "500", 5, None), 1, Some((&link, "f")))
                .unwrap();
        let conf = c.trafgen_config.unwrap();
        assert!(conf.contains("sa=10.213.200.0, sa[2]=drnd(200, 203), sa[3]=drnd())"), "{conf}");
        assert!(conf.contains("aseq=drnd(), ack,"), "{conf}");
        let one = lab().resolve("qemu", SourceChoice::SpoofIn("10.213.130.7/32".parse().unwrap())).unwrap();
        let c =
            tool_command(FloodTool::Trafgen, &one, OWN, &cfg(FloodKind::Udp, "500", 5, None), 1, Some((&link, "f")))
                .unwrap();
        let conf = c.trafgen_config.unwrap();
        assert!(conf.contains("sa=10.213.130.7)") && !conf.contains("drnd(1") && !conf.contains("sa["), "{conf}");
        assert!(conf.contains("udp(sp=drnd(), dp=9), fill(0x00, 64)"), "{conf}");
    }

    #[test]
    fn peer_tools_get_no_target_or_source_outside_the_lab() {
        // The command builders take only a guard-checked target; the guard refuses the rest.
        for bad in ["8.8.8.8", "192.168.1.1", "10.213.1.2", "10.213.255.255", "224.0.0.1", "example.com"] {
            assert!(lab().resolve(bad, SourceChoice::Spoof).is_err(), "{bad}");
        }
        for outside in ["10.213.1.0/24", "10.214.128.0/17", "8.8.8.8/32", "10.213.0.0/16"] {
            let e = lab().resolve("qemu", SourceChoice::SpoofIn(outside.parse().unwrap()));
            assert!(matches!(e, Err(flood::GuardError::SpoofOutsideSubnet { .. })), "{outside}: {e:?}");
        }
    }

    #[test]
    fn peer_tool_statistics() {
        assert_eq!(tool_sent("\n         200 packets outgoing\n       10800 bytes outgoing\n"), Some(200));
        assert_eq!(tool_sent("Raw packets sent: 300 (12.000KB) | Rcvd: 0 (0B) | Lost: 300 (100.00%)"), Some(300));
        assert_eq!(tool_sent("12 packets transmitted, 0 packets received, 100% packet loss"), Some(12));
        assert_eq!(tool_sent("nothing"), None);
    }

    /// A lab state with the vanilla and xen victims recorded (nothing runs: `prepare` only checks).
    fn lab_with_xen() -> LabState {
        let spec = lab::LabSpec { victims: vec![VictimKind::Vanilla, VictimKind::Xen], ..Default::default() };
        let mut state = LabState::new(&spec);
        for kind in [VictimKind::Vanilla, VictimKind::Xen] {
            let host = state.plan.victim(kind).unwrap().clone();
            state.victims.push(VictimState::new(kind, &host, vec![1], "/dev/null".into()));
        }
        state
    }

    #[test]
    fn the_xen_domu_floods_as_a_zombie_with_what_its_image_has_and_only_at_lab_victims() {
        let state = lab_with_xen();
        let from_xen = |target: &str, tool: FloodTool| LabFlood {
            tool,
            source: if tool.random_sources() { SourceChoice::Spoof } else { SourceChoice::SpoofIn(spoof_one(&state)) },
            ..LabFlood::new(Sender::Guest("xen".into()), target, cfg(FloodKind::Syn, "500", 5, None))
        };
        for tool in [FloodTool::Vmguard, FloodTool::Hping3] {
            let p = prepare(&state, from_xen("vanilla", tool)).unwrap_or_else(|e| panic!("{tool}: {e}"));
            assert_eq!((p.from.guest(), p.target.as_str()), (Some("xen"), "vanilla"));
            match (&p.engine, tool) {
                (Engine::Zombie { from, request }, FloodTool::Vmguard) => {
                    assert_eq!(from, "xen");
                    // The domU checks again against the same lab: every victim but itself.
                    assert_eq!(request.lab_targets, [("vanilla".to_string(), state.victims[0].address)]);
                }
                (Engine::Tool { site: ToolSite::Guest(g), command, .. }, FloodTool::Hping3) => {
                    assert_eq!(g, "xen");
                    assert_eq!(command.argv[4], "hping3");
                }
                _ => panic!("{tool}: not run inside the domU"),
            }
        }
        for tool in [FloodTool::Trafgen, FloodTool::Nping] {
            let e = prepare(&state, from_xen("vanilla", tool)).err().unwrap();
            assert!(matches!(&e, LaunchError::NotInGuest { from, .. } if from == "xen"), "{tool}: {e}");
            assert!(e.to_string().contains("use hping3 or the vmguard zombie flood"), "{e}");
        }
        // Not itself, nothing outside the lab.
        for bad in ["xen", "8.8.8.8", "10.0.0.1"] {
            let e = prepare(&state, from_xen(bad, FloodTool::Vmguard)).err().unwrap();
            assert!(matches!(e, LaunchError::Guard(_)), "{bad}: {e}");
        }
    }

    fn spoof_one(state: &LabState) -> ipnet::Ipv4Net {
        ipnet::Ipv4Net::from(wire::pick_in_subnet(state.plan.spoof_subnet, 7))
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
