//! `vmguard record SCENARIO`: run a scenario on the lab while collecting every guest's counters into
//! the store, and write timed ground-truth labels beside them.
//!
//! A scenario is a TOML file (the default set is in `scenarios/`): phases run one after the other, each
//! for its duration, with benign workloads and floods. Every guest gets one label per phase:
//! `attack-victim` if a flood of that phase targets it, `attack-zombie` if a flood of that phase comes
//! from it, else `normal`. Every workload and flood is bounded by its phase's duration (an external
//! command's own timeout, plus `exec`'s), so nothing outlives the run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use serde::{Deserialize, Serialize};

use telemetry::export::Exporter;
use telemetry::pipeline::{Pipeline, RoundReport, RunOptions};

use crate::Cli;
use crate::config::Config;
use crate::output;

#[derive(Debug, Args)]
pub struct RecordArgs {
    /// Scenario: a TOML file, or the name of one in --scenario-dir (e.g. `flood-container-5k`).
    pub scenario: String,
    /// Where named scenarios live.
    #[arg(long, default_value = "scenarios")]
    pub scenario_dir: PathBuf,
    /// The store to append samples and labels to.
    #[arg(long, env = "VMGUARD_STORE", default_value = "vmguard.db")]
    pub store: PathBuf,
    /// Sampling period of the collector.
    #[arg(long, default_value = "1s", value_parser = super::detect::parse_duration_ms)]
    pub interval: u64,
    /// Scale every phase's duration (e.g. 0.5 for a quick run).
    #[arg(long, default_value_t = 1.0)]
    pub time_scale: f64,
}

/// A scenario file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(rename = "phase")]
    pub phases: Vec<Phase>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    pub name: String,
    /// "20s", "1m", ...
    pub duration: String,
    #[serde(default, rename = "workload")]
    pub workloads: Vec<Workload>,
    #[serde(default, rename = "flood")]
    pub floods: Vec<Flood>,
}

/// A benign workload aimed at (or run inside) a victim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// `web` (wrk from the client host), `bulk` (iperf3 between the client host and the victim's
    /// namespace), `connections` (short HTTP/1.0 requests in a loop), `cpu` (a busy loop inside the
    /// victim), `fileio` (writes and reads of a file inside the victim).
    pub kind: String,
    pub target: String,
    /// web: open connections; connections: parallel clients; bulk: parallel streams; cpu: threads.
    #[serde(default = "one")]
    pub parallel: u32,
    /// bulk: the victim sends instead of receiving.
    #[serde(default)]
    pub reverse: bool,
}

fn one() -> u32 {
    1
}

/// A flood in a phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flood {
    pub target: String,
    /// `attacker`, or a victim acting as a zombie.
    #[serde(default = "attacker")]
    pub from: String,
    /// Packets/s ("5000", "5kpps") or bits/s ("10mbit").
    pub rate: String,
    /// `vmguard` (the project's flood engine) or `hping3` (from the attacker host only).
    #[serde(default = "vmguard_tool")]
    pub tool: String,
    /// `syn` (port 80, a listener), `syn-closed` (a closed port), `ack` (ACKs of no connection at port
    /// 80) or `udp` (datagrams at a closed port).
    #[serde(default = "syn")]
    pub kind: String,
}

/// Flood kinds a scenario may use (as `vmguard flood --kind`).
pub const FLOOD_KINDS: [&str; 4] = ["syn", "syn-closed", "ack", "udp"];

fn attacker() -> String {
    "attacker".into()
}
fn vmguard_tool() -> String {
    "vmguard".into()
}
fn syn() -> String {
    "syn".into()
}

impl Scenario {
    /// Parses and checks a scenario (durations, kinds, tools).
    pub fn parse(text: &str, origin: &str) -> anyhow::Result<Scenario> {
        let s: Scenario = toml::from_str(text).with_context(|| format!("scenario {origin} is not valid"))?;
        if s.phases.is_empty() {
            bail!("scenario {origin} has no [[phase]]");
        }
        for p in &s.phases {
            super::detect::parse_duration_ms(&p.duration)
                .map_err(|e| anyhow::anyhow!("scenario {origin}, phase {}: {e}", p.name))?;
            for w in &p.workloads {
                if !["web", "bulk", "connections", "cpu", "fileio"].contains(&w.kind.as_str()) {
                    bail!(
                        "scenario {origin}, phase {}: unknown workload kind '{}' (web, bulk, connections, cpu, fileio)",
                        p.name,
                        w.kind
                    );
                }
            }
            for f in &p.floods {
                if !["vmguard", "hping3"].contains(&f.tool.as_str()) {
                    bail!("scenario {origin}, phase {}: unknown flood tool '{}' (vmguard, hping3)", p.name, f.tool);
                }
                if f.tool == "hping3" && f.from != "attacker" {
                    bail!("scenario {origin}, phase {}: hping3 floods run from the attacker host only", p.name);
                }
                if f.target == f.from {
                    bail!("scenario {origin}, phase {}: a guest cannot flood itself", p.name);
                }
                if !FLOOD_KINDS.contains(&f.kind.as_str()) {
                    bail!(
                        "scenario {origin}, phase {}: flood kind '{}' is not one of {}",
                        p.name,
                        f.kind,
                        FLOOD_KINDS.join(", ")
                    );
                }
                pps_of(&f.rate).map_err(|e| anyhow::anyhow!("scenario {origin}, phase {}: {e}", p.name))?;
            }
        }
        Ok(s)
    }

    /// Reads a scenario file, or `dir/NAME.toml`.
    pub fn load(name: &str, dir: &Path) -> anyhow::Result<Scenario> {
        let path = if name.ends_with(".toml") || name.contains('/') {
            PathBuf::from(name)
        } else {
            dir.join(format!("{name}.toml"))
        };
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!("cannot read scenario {} (known: {})", path.display(), known_scenarios(dir).join(", "))
        })?;
        Scenario::parse(&text, &path.display().to_string())
    }

    /// The label of `guest` in a phase.
    pub fn label(phase: &Phase, guest: &str) -> &'static str {
        if phase.floods.iter().any(|f| f.target == guest) {
            "attack-victim"
        } else if phase.floods.iter().any(|f| f.from == guest) {
            "attack-zombie"
        } else {
            "normal"
        }
    }
}

fn known_scenarios(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str()?.strip_suffix(".toml").map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Packets/s of a rate written as "5000", "5kpps", "10mbit" (60-byte frames + 24 bytes of overhead).
pub fn pps_of(rate: &str) -> Result<u64, String> {
    let r = rate.trim().to_ascii_lowercase();
    let num = |s: &str| s.trim().parse::<f64>().map_err(|_| format!("rate '{rate}' is not e.g. 5000, 5kpps or 10mbit"));
    let pps = if let Some(k) = r.strip_suffix("kpps") {
        num(k)? * 1e3
    } else if let Some(p) = r.strip_suffix("pps") {
        num(p)?
    } else if let Some(m) = r.strip_suffix("mbit") {
        num(m)? * 1e6 / (84.0 * 8.0)
    } else {
        num(&r)?
    };
    if !(1.0..=10e6).contains(&pps) {
        return Err(format!("rate '{rate}' must be between 1 and 10 M packets/s"));
    }
    Ok(pps as u64)
}

/// `telemetry::pipeline::run` on a thread of its own (what `collect` runs in the foreground), storing
/// every round and handing it to a callback, until [`CollectLoop::finish`] or drop.
pub struct CollectLoop {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<anyhow::Result<u64>>>,
}

/// A per-round callback of [`CollectLoop`].
pub type OnRound = Box<dyn FnMut(&RoundReport<'_>) + Send>;

impl CollectLoop {
    /// Starts collecting from `guests` (the lab's state is read again every few seconds, so a restarted
    /// victim is picked up), appending to the store at `store_path` if given and updating `exporter`.
    pub fn start(
        spec: &lab::LabSpec,
        store_path: Option<&Path>,
        guests: Vec<telemetry::GuestInfo>,
        interval: Duration,
        exporter: Option<Exporter>,
        mut on_round: OnRound,
    ) -> anyhow::Result<CollectLoop> {
        let mut store = match store_path {
            Some(p) => Some(store::Store::open(p).with_context(|| format!("opening store {}", p.display()))?),
            None => None,
        };
        let spec = spec.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let handle = std::thread::spawn(move || -> anyhow::Result<u64> {
            let mut pipeline = Pipeline::new(exporter);
            let opts = RunOptions { interval, ..RunOptions::default() };
            let mut first = Some(guests);
            telemetry::pipeline::run(
                &mut pipeline,
                &opts,
                &stop2,
                || match first.take() {
                    Some(g) => Ok(g),
                    None => super::collect::current_guests(&spec),
                },
                |round| {
                    if let Some(store) = store.as_mut() {
                        super::collect::store_round(store, round)?;
                    }
                    on_round(round);
                    Ok(())
                },
            )
            .context("collecting")?;
            Ok(if store.is_some() { pipeline.stats().samples } else { 0 })
        });
        Ok(CollectLoop { stop, handle: Some(handle) })
    }

    /// Stops the loop and returns the number of samples stored.
    pub fn finish(mut self) -> anyhow::Result<u64> {
        self.stop.store(true, Ordering::SeqCst);
        match self.handle.take().map(|h| h.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => bail!("the collector thread panicked"),
            None => Ok(0),
        }
    }
}

impl Drop for CollectLoop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[derive(Debug, Serialize)]
struct RecordReport {
    scenario: String,
    store: String,
    start_ns: i64,
    end_ns: i64,
    samples: u64,
    labels: Vec<(String, String, String)>,
    failures: Vec<String>,
}

pub fn run(cli: &Cli, a: &RecordArgs) -> anyhow::Result<()> {
    let sc = Scenario::load(&a.scenario, &a.scenario_dir)?;
    if !(a.time_scale > 0.0 && a.time_scale <= 10.0) {
        bail!("--time-scale must be in (0, 10]");
    }
    let spec = Config::load(&cli.config)?.lab;
    let (state, guests) = crate::guests::lab_guests(&spec)?;
    let names: Vec<&str> = guests.iter().map(|g| g.name.as_str()).collect();
    for p in &sc.phases {
        for f in &p.floods {
            for who in [&f.target, &f.from] {
                if who != "attacker" && !names.contains(&who.as_str()) {
                    bail!("scenario {}: '{who}' is not a victim of this lab (victims: {})", sc.name, names.join(", "));
                }
            }
        }
        for w in &p.workloads {
            if !names.contains(&w.target.as_str()) {
                bail!(
                    "scenario {}: '{}' is not a victim of this lab (victims: {})",
                    sc.name,
                    w.target,
                    names.join(", ")
                );
            }
        }
    }
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let i = Arc::clone(&interrupted);
        crate::signals::on_interrupt(move || i.store(true, Ordering::SeqCst));
    }
    let collect = CollectLoop::start(
        &spec,
        Some(&a.store),
        guests.clone(),
        Duration::from_millis(a.interval),
        None,
        Box::new(|_| {}),
    )?;
    // Two rounds before the first phase, so its first deltas exist.
    std::thread::sleep(Duration::from_millis(2 * a.interval + 100));
    let start_ns = telemetry::unix_now_ns();
    let mut labels = Vec::new();
    let mut failures = Vec::new();
    let bar = crate::progress::spinner(cli.json);
    for p in &sc.phases {
        if interrupted.load(Ordering::SeqCst) {
            break;
        }
        let dur = Duration::from_millis(
            ((super::detect::parse_duration_ms(&p.duration).expect("checked") as f64) * a.time_scale) as u64,
        );
        bar.set_message(format!("{}: phase {} ({} s)", sc.name, p.name, dur.as_secs()));
        let phase_start = telemetry::unix_now_ns();
        let mut jobs = Vec::new();
        for w in &p.workloads {
            jobs.push(
                start_workload(&state, w, dur).with_context(|| format!("phase {}: workload {}", p.name, w.kind))?,
            );
        }
        for f in &p.floods {
            jobs.push(start_flood(cli, &state, f, dur).with_context(|| format!("phase {}: flood", p.name))?);
        }
        let deadline = Instant::now() + dur;
        while Instant::now() < deadline && !interrupted.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(100).min(deadline.saturating_duration_since(Instant::now())));
        }
        let phase_end = telemetry::unix_now_ns();
        let mut failed = false;
        for j in jobs {
            if let Err(e) = j.join() {
                failures.push(format!("phase {}: {e:#}", p.name));
                failed = true;
            }
        }
        for g in &guests {
            // A phase whose workload or flood failed has no reliable ground truth: `unknown`, which
            // evaluation and training leave out.
            let label = if failed { "unknown" } else { Scenario::label(p, &g.name) };
            labels.push(store::Label {
                guest: g.name.clone(),
                start_ns: phase_start,
                end_ns: phase_end,
                label: label.into(),
                scenario: sc.name.clone(),
            });
        }
    }
    bar.finish_and_clear();
    let end_ns = telemetry::unix_now_ns();
    // One more round after the last phase, then stop.
    std::thread::sleep(Duration::from_millis(a.interval + 100));
    let samples = collect.finish()?;
    let mut st = store::Store::open(&a.store)?;
    st.add_labels(&labels).context("storing labels")?;
    for f in &failures {
        tracing::warn!("{f}");
    }
    let report = RecordReport {
        scenario: sc.name.clone(),
        store: a.store.display().to_string(),
        start_ns,
        end_ns,
        samples,
        labels: labels
            .iter()
            .map(|l| (l.guest.clone(), l.label.clone(), format!("{:.1}s", (l.end_ns - l.start_ns) as f64 / 1e9)))
            .collect(),
        failures,
    };
    if interrupted.load(Ordering::SeqCst) {
        tracing::warn!("interrupted: the phases that ran are labelled, the rest is not");
    }
    if cli.json {
        return output::json(&report);
    }
    println!(
        "recorded scenario {} into {}: {} samples, {} labels over {:.0} s",
        report.scenario,
        report.store,
        report.samples,
        report.labels.len(),
        (end_ns - start_ns) as f64 / 1e9
    );
    for f in &report.failures {
        println!("  warning: {f}");
    }
    Ok(())
}

/// A running workload or flood: a thread that runs bounded commands.
struct Job {
    what: String,
    handle: std::thread::JoinHandle<anyhow::Result<()>>,
}

impl Job {
    fn spawn(what: String, f: impl FnOnce() -> anyhow::Result<()> + Send + 'static) -> Job {
        Job { what, handle: std::thread::spawn(f) }
    }
    fn join(self) -> anyhow::Result<()> {
        match self.handle.join() {
            Ok(r) => r.with_context(|| self.what.clone()),
            Err(_) => bail!("{} panicked", self.what),
        }
    }
}

fn victim<'a>(state: &'a lab::LabState, name: &str) -> anyhow::Result<&'a lab::VictimState> {
    state.victim(name).ok_or_else(|| anyhow::anyhow!("no victim '{name}' in the lab"))
}

fn start_workload(state: &lab::LabState, w: &Workload, dur: Duration) -> anyhow::Result<Job> {
    let v = victim(state, &w.target)?.clone();
    let client = state.plan.client.ns.clone();
    let secs = dur.as_secs().max(1);
    let grace = dur + Duration::from_secs(10);
    let what = format!("{} workload on {}", w.kind, w.target);
    let par = w.parallel.max(1);
    let reverse = w.reverse;
    let st = state.clone();
    Ok(match w.kind.as_str() {
        "web" => Job::spawn(what, move || {
            exec::Cmd::new("wrk")
                .args(["-t1", &format!("-c{par}"), &format!("-d{secs}s"), "--timeout", "2s"])
                .arg(format!("http://{}/", v.address))
                .netns(client)
                .timeout(grace)
                .run()?;
            Ok(())
        }),
        "connections" => Job::spawn(what, move || {
            // Short connections: one HTTP/1.0 request each, `par` clients in parallel.
            let script = format!(
                "end=$(( $(date +%s) + {secs} )); for i in $(seq {par}); do \
                 (while [ $(date +%s) -lt $end ]; do curl -s -o /dev/null -m 2 http://{}/ ; done) & done; wait",
                v.address
            );
            exec::Cmd::new("sh").args(["-c", &script]).netns(client).timeout(grace).run()?;
            Ok(())
        }),
        "bulk" => {
            if v.kind == lab::VictimKind::Qemu {
                bail!("bulk needs iperf3 in the victim's namespace, which the qemu guest lacks: use web");
            }
            Job::spawn(what, move || {
                let port = "5201";
                let log = std::env::temp_dir().join(format!("vmguard-iperf3-{}.log", std::process::id()));
                let server = exec::Cmd::new("iperf3")
                    .args(["-s", "-1", "-p", port])
                    .netns(v.ns.clone())
                    .spawn_detached(&log)
                    .context("starting iperf3 -s in the victim's namespace")?;
                std::thread::sleep(Duration::from_millis(300));
                let mut c = exec::Cmd::new("iperf3")
                    .args(["-c", &v.address.to_string(), "-p", port, "-t", &secs.to_string()])
                    .args(["-P", &par.to_string()])
                    .netns(client)
                    .timeout(grace);
                if reverse {
                    c = c.arg("-R");
                }
                let r = c.run();
                let _ = exec::stop_pid(server, Duration::from_secs(2));
                let _ = std::fs::remove_file(&log);
                r?;
                Ok(())
            })
        }
        "cpu" => Job::spawn(what, move || {
            let script = format!(
                "for i in $(seq {par}); do (end=$(( $(date +%s) + {secs} )); while [ $(date +%s) -lt $end ]; do :; done) & done; wait"
            );
            lab::victim::run_in(&st, &v.name, &["sh".into(), "-c".into(), script], grace)?;
            Ok(())
        }),
        "fileio" => Job::spawn(what, move || {
            let script = format!(
                "end=$(( $(date +%s) + {secs} )); while [ $(date +%s) -lt $end ]; do \
                 dd if=/dev/zero of=/tmp/vmguard-fileio bs=64k count=256 2>/dev/null; \
                 dd if=/tmp/vmguard-fileio of=/dev/null bs=64k 2>/dev/null; done; rm -f /tmp/vmguard-fileio"
            );
            lab::victim::run_in(&st, &v.name, &["sh".into(), "-c".into(), script], grace)?;
            Ok(())
        }),
        other => bail!("unknown workload kind {other}"),
    })
}

fn start_flood(cli: &Cli, state: &lab::LabState, f: &Flood, dur: Duration) -> anyhow::Result<Job> {
    let target = victim(state, &f.target)?.clone();
    let pps = pps_of(&f.rate).map_err(anyhow::Error::msg)?;
    let secs = dur.as_secs_f64();
    let what = format!("{} flood {} -> {} at {} pps", f.tool, f.from, f.target, pps);
    let port = if matches!(f.kind.as_str(), "syn" | "ack") { "80" } else { "9" };
    // hping3's mode for the kind.
    let mode = match f.kind.as_str() {
        "ack" => "-A",
        "udp" => "--udp",
        _ => "-S",
    };
    match f.tool.as_str() {
        "hping3" => {
            let ns = state.plan.attacker.ns.clone();
            // hping3's --rand-source draws from all of IPv4; vmguard spoofs only inside the lab's
            // spoof range, so hping3 gets one source address drawn from that range.
            let nanos =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
            let spoofed = wire::pick_in_subnet(state.plan.spoof_subnet, nanos.wrapping_mul(2_654_435_761));
            let interval_us = (1_000_000 / pps).max(1);
            let grace = dur + Duration::from_secs(5);
            Ok(Job::spawn(what, move || {
                // hping3 has no duration flag: `timeout` bounds it (and exec's timeout bounds that).
                let out = exec::Cmd::new("timeout")
                    .args(["-s", "INT", &format!("{secs:.1}"), "hping3", "-q", mode, "-p", port])
                    .args(["-i", &format!("u{interval_us}"), "-a", &spoofed.to_string()])
                    .arg(target.address.to_string())
                    .netns(ns)
                    .timeout(grace)
                    .run_unchecked()?;
                // timeout's 124 (or hping3's exit on SIGINT) is the normal end.
                if !matches!(out.status.code(), Some(0 | 1 | 124 | 130)) {
                    bail!("hping3 failed: {}", out.stderr.trim());
                }
                Ok(())
            }))
        }
        _ => {
            let exe = std::env::current_exe().context("locating the vmguard binary")?;
            let config = cli.config.clone();
            let from = f.from.clone();
            let kind = f.kind.clone();
            let grace = dur + Duration::from_secs(30);
            Ok(Job::spawn(what, move || {
                exec::Cmd::new(exe)
                    .arg("--config")
                    .arg(config)
                    .args(["flood", "--target", &target.name, "--from", &from, "--kind", &kind])
                    .args(["--rate", &pps.to_string(), "--duration", &format!("{secs:.1}s")])
                    .timeout(grace)
                    .run()?;
                Ok(())
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_scenarios_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios");
        let names = known_scenarios(&dir);
        assert!(names.len() >= 6, "{names:?}");
        for n in names {
            let s = Scenario::load(&n, &dir).unwrap();
            assert_eq!(s.name, n, "scenario name matches its file");
        }
    }

    #[test]
    fn labels_and_errors() {
        let s = Scenario::parse(
            "name = \"x\"\n[[phase]]\nname = \"a\"\nduration = \"5s\"\n[[phase.flood]]\ntarget = \"qemu\"\nfrom = \"container\"\nrate = \"2kpps\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(Scenario::label(&s.phases[0], "qemu"), "attack-victim");
        assert_eq!(Scenario::label(&s.phases[0], "container"), "attack-zombie");
        assert_eq!(Scenario::label(&s.phases[0], "vanilla"), "normal");
        let bad = Scenario::parse("name = \"x\"\n[[phase]]\nname = \"a\"\nduration = \"soon\"\n", "t");
        assert!(format!("{:#}", bad.unwrap_err()).contains("phase a"));
        assert_eq!(pps_of("5kpps"), Ok(5000));
        assert_eq!(pps_of("10mbit"), Ok(14880));
        assert!(pps_of("fast").is_err());
    }
}
