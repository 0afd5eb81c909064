//! `vmguard demo` (what `make demo` runs): the main job end to end on embedded defaults: the lab
//! up with every victim answering (the Xen domU too, where qemu can run it: under TCG here), a
//! bounded SYN flood at each victim over the seed's 10 Mbit/s attacker link with its effect
//! measured, then detection: Part B trained on the spot on a short recorded run
//! (`scenarios/demo-train.toml`: benign load, SYN floods at a listener of each victim and SYN floods
//! from the Xen domU as a zombie), and scored on the recorded `demo` scenario (a SYN flood, a UDP
//! flood it never saw, and the domU flooding out at a rate it never saw), with the result as a
//! table; the time of each part; and the lab torn down, also when a step fails or on Ctrl-C (a
//! second Ctrl-C still tears down).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use detect::online::AlertParams;
use flood::{FloodConfig, Rate};
use lab::spec::VictimKind;
use orchestrate::dataset::{self, Selection};
use orchestrate::family::PhaseRecord;
use orchestrate::flood::{LabFlood, Sender};
use orchestrate::record::RecordOptions;
use orchestrate::scenario::Scenario;

use crate::Cli;

/// The demo's scenarios, embedded so the demo runs from any directory.
const DEMO_TRAIN: &str = include_str!("../../../../scenarios/demo-train.toml");
const DEMO: &str = include_str!("../../../../scenarios/demo.toml");

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Leave the Xen victim out. Under TCG it adds about 1 to 2 minutes of boot, and the first run
    /// on a machine builds its images (a debootstrap of dom0's root: about 4 to 7 minutes).
    #[arg(long)]
    pub no_xen: bool,
}

/// How long each part of the demo took, for the closing table.
#[derive(Default)]
struct Parts(Vec<(String, Duration)>);

impl Parts {
    fn time<T>(&mut self, name: &str, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
        let started = Instant::now();
        let r = f();
        self.0.push((name.to_string(), started.elapsed()));
        r
    }
}

pub fn run(cli: &Cli, args: &DemoArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut spec = cli.load_config()?.lab;
    if !args.no_xen && !spec.victims.contains(&VictimKind::Xen) {
        match lab::victim::qemu::qemu_binary() {
            Ok(_) => spec.victims.push(VictimKind::Xen),
            Err(e) => println!("(the Xen victim is left out: {e})"),
        }
    }
    // A lab left over by an earlier crash would make `lab up` refuse: clear it first.
    let leftover = lab::down(&spec)?;
    if !leftover.removed.is_empty() {
        tracing::info!("removed a lab left over from an earlier run");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let s = Arc::clone(&stop);
    crate::signals::on_interrupt(move || s.store(true, Ordering::SeqCst));
    crate::signals::finish_cleanup_on_second_interrupt();
    let mut parts = Parts::default();
    let result = steps(cli, &spec, &stop, &mut parts);
    println!("\n== tearing the lab down");
    let down = parts.time("lab down", || Ok(lab::down(&spec)?));
    result?;
    let down = down?;
    println!("removed {} items; nothing of the lab is left", down.removed.len());
    let mut rows: Vec<Vec<String>> =
        parts.0.iter().map(|(name, d)| vec![name.clone(), format!("{:.0} s", d.as_secs_f64())]).collect();
    rows.push(vec!["the whole demo".into(), format!("{:.0} s", started.elapsed().as_secs_f64())]);
    println!("\n{}", crate::output::table(&["part", "time"], rows));
    Ok(())
}

fn interrupted(stop: &AtomicBool) -> anyhow::Result<()> {
    anyhow::ensure!(!stop.load(Ordering::SeqCst), "interrupted");
    Ok(())
}

fn steps(cli: &Cli, spec: &lab::LabSpec, stop: &AtomicBool, parts: &mut Parts) -> anyhow::Result<()> {
    println!("== lab up: attacker, gateway, client and victims {:?}", spec.victims);
    let state = parts.time("lab up", || crate::labui::up(cli, spec))?;
    interrupted(stop)?;
    parts.time("a SYN flood at each victim", || floods(&state, spec, stop))?;
    detection(cli, &state, stop, parts)
}

/// A bounded SYN flood from the attacker at each victim, with what it did there.
fn floods(state: &lab::LabState, spec: &lab::LabSpec, stop: &AtomicBool) -> anyhow::Result<()> {
    println!("\n== SYN flood from the attacker over its {} link, 5 s at each victim", spec.attacker_rate);
    let mut rows = Vec::new();
    for v in &state.victims {
        let config = FloodConfig { rate: Rate::Unlimited, duration: Duration::from_secs(5), ..FloodConfig::default() };
        let prepared = orchestrate::flood::prepare(state, LabFlood::new(Sender::Attacker, &v.name, config))?;
        let stopper = prepared.stopper();
        crate::signals::on_interrupt(move || stopper.stop());
        let report = prepared.run(&mut |_| {})?;
        interrupted(stop)?;
        let s = report.summary.as_ref().context("a vmguard flood has a summary")?;
        let e = report.victim.as_ref().context("a lab victim has effects")?;
        rows.push(vec![
            v.name.clone(),
            s.sent.to_string(),
            format!("{:.0}", s.achieved_pps),
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

/// Record the training run and the demo run, train Part B on the first, score the second.
fn detection(cli: &Cli, state: &lab::LabState, stop: &AtomicBool, parts: &mut Parts) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new().prefix("vmguard-demo-").tempdir().context("creating the demo's directory")?;
    // Kept for the user to look at (store and model), as the last line says.
    let dir = dir.keep();
    let names: Vec<&str> = state.victims.iter().map(|v| v.name.as_str()).collect();
    let train = Scenario::parse(DEMO_TRAIN, "embedded demo-train.toml")?.restricted_to(&names);
    let demo = Scenario::parse(DEMO, "embedded demo.toml")?.restricted_to(&names);
    let opts = RecordOptions { store: dir.join("demo.db"), interval: Duration::from_secs(1), time_scale: 1.0 };
    let model_path = dir.join("model.json");
    let record = |sc: &Scenario| -> anyhow::Result<orchestrate::record::RecordReport> {
        println!("\n== recording scenario {} ({:.0} s): {}", sc.name, sc.duration(1.0).as_secs_f64(), sc.description);
        let bar = crate::progress::spinner(cli.json);
        let r = orchestrate::record::record(state, sc, &opts, stop, &mut |m| bar.set_message(m.to_string()));
        bar.finish_and_clear();
        let r = r?;
        crate::tables::record_report(&r);
        interrupted(stop)?;
        Ok(r)
    };
    parts.time(&format!("recording {}", train.name), || record(&train))?;
    println!(
        "\n== training the detector on {} only (benign load, SYN floods at a listener of each victim and from the Xen domU)",
        train.name
    );
    let st = store::Store::open(&opts.store)?;
    let training = parts.time("training", || {
        let train_data = dataset::load(&st, &Selection { include: vec![train.name.clone()], exclude: vec![] })?;
        Ok(orchestrate::evaluate::train(&train_data, 5000, AlertParams { raise_after: 2, clear_after: 5 })?)
    })?;
    std::fs::write(&model_path, serde_json::to_string_pretty(&training.model)?)
        .with_context(|| format!("writing {}", model_path.display()))?;
    println!("trained on {} windows -> {}", training.windows, model_path.display());
    let demo_run = parts.time(&format!("recording {}", demo.name), || record(&demo))?;
    let data = dataset::load(&st, &Selection { include: vec![demo.name.clone()], exclude: vec![] })?;
    let b = orchestrate::evaluate::evaluate(&training.model, &data);
    println!(
        "\n== detection result on the recorded `{}` run (model trained on this machine a minute ago on `{}`, not on this run)",
        demo.name, train.name
    );
    let rows = b.detections.iter().map(|d| {
        let what = attack_of(&demo_run.phases, &d.guest, d.start_ns);
        vec![
            d.guest.clone(),
            what,
            d.truth.role().map_or("-", |r| r.as_str()).to_string(),
            d.alert_after_s.map_or("missed".into(), |s| format!("{s:.1} s")),
            d.role.map_or("-".into(), |r| r.as_str().to_string()),
            d.cleared_after_s.map_or("-".into(), |s| format!("{s:.1} s")),
        ]
    });
    println!(
        "{}",
        crate::output::table(&["guest", "attack", "true role", "alert after", "role named", "cleared after"], rows)
    );
    if let Some(mm) = &b.metrics {
        let c = &mm.confusion;
        println!(
            "window accuracy {:.1}% ({} windows of {} s: {} attack windows caught of {}, {} of them by the novelty check alone; {} false alarms in {} benign windows); alerts outside attacks: {}",
            100.0 * mm.accuracy,
            c.total(),
            b.window_secs,
            c.true_positive,
            c.true_positive + c.false_negative,
            b.attack_windows_by_novelty,
            c.false_positive,
            c.false_positive + c.true_negative,
            b.false_alerts
        );
    }
    println!("(store and model kept in {})", dir.display());
    Ok(())
}

/// What the attack on or from `guest` that began at `start_ns` was, from the phase that ran it.
fn attack_of(phases: &[PhaseRecord], guest: &str, start_ns: i64) -> String {
    let Some(phase) = phases.iter().find(|p| p.start_ns <= start_ns && start_ns < p.end_ns) else {
        return "-".into();
    };
    let what: Vec<String> = phase
        .floods
        .iter()
        .filter_map(|f| {
            if f.target == guest {
                Some(format!("{} flood from {}, {}", f.kind, f.from, f.rate))
            } else if f.from == guest {
                Some(format!("{} flood out at {} (zombie), {}", f.kind, f.target, f.rate))
            } else {
                None
            }
        })
        .collect();
    if what.is_empty() { "-".into() } else { what.join("; ") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrate::family::FloodRecord;

    fn flood(from: &str, target: &str) -> FloodRecord {
        FloodRecord {
            tool: "vmguard".into(),
            kind: "syn".into(),
            direction: if from == "attacker" { "attacker" } else { "zombie" }.into(),
            from: from.into(),
            target: target.into(),
            rate: "400/s".into(),
        }
    }

    #[test]
    fn an_attack_is_named_by_the_phase_it_began_in_for_victim_and_zombie() {
        let phases = vec![
            PhaseRecord {
                name: "a".into(),
                start_ns: 0,
                end_ns: 10,
                floods: vec![flood("attacker", "vanilla")],
                workloads: vec![],
            },
            PhaseRecord {
                name: "b".into(),
                start_ns: 10,
                end_ns: 20,
                floods: vec![flood("xen", "vanilla")],
                workloads: vec![],
            },
        ];
        assert_eq!(attack_of(&phases, "vanilla", 0), "syn flood from attacker, 400/s");
        assert_eq!(attack_of(&phases, "vanilla", 10), "syn flood from xen, 400/s");
        assert_eq!(attack_of(&phases, "xen", 12), "syn flood out at vanilla (zombie), 400/s");
        assert_eq!(attack_of(&phases, "xen", 3), "-");
        assert_eq!(attack_of(&phases, "xen", 25), "-");
    }
}
