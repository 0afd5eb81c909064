//! `vmguard demo` (what `make demo` runs): the main job end to end on embedded defaults: the lab
//! up with every victim answering, a bounded SYN flood at each victim over the seed's 10 Mbit/s
//! attacker link with its effect measured, then detection: Part B trained on the spot on a short
//! recorded run (`scenarios/demo-train.toml`: benign load and SYN floods only), and scored on the
//! recorded `demo` scenario (a SYN flood, then a UDP flood it never saw), with the result as a table;
//! and the lab torn down, also when a step fails or on Ctrl-C (a second Ctrl-C still tears down).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use detect::online::AlertParams;
use flood::{FloodConfig, Rate};
use orchestrate::dataset::{self, Selection};
use orchestrate::flood::{LabFlood, Sender};
use orchestrate::record::RecordOptions;
use orchestrate::scenario::Scenario;

use crate::Cli;

/// The demo's scenarios, embedded so the demo runs from any directory.
const DEMO_TRAIN: &str = include_str!("../../../../scenarios/demo-train.toml");
const DEMO: &str = include_str!("../../../../scenarios/demo.toml");

pub fn run(cli: &Cli) -> anyhow::Result<()> {
    let spec = cli.load_config()?.lab;
    // A lab left over by an earlier crash would make `lab up` refuse: clear it first.
    let leftover = lab::down(&spec)?;
    if !leftover.removed.is_empty() {
        tracing::info!("removed a lab left over from an earlier run");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let s = Arc::clone(&stop);
    crate::signals::on_interrupt(move || s.store(true, Ordering::SeqCst));
    crate::signals::finish_cleanup_on_second_interrupt();
    let result = steps(cli, &spec, &stop);
    println!("\n== tearing the lab down");
    let down = lab::down(&spec);
    result?;
    let down = down?;
    println!("removed {} items; nothing of the lab is left", down.removed.len());
    Ok(())
}

fn interrupted(stop: &AtomicBool) -> anyhow::Result<()> {
    anyhow::ensure!(!stop.load(Ordering::SeqCst), "interrupted");
    Ok(())
}

fn steps(cli: &Cli, spec: &lab::LabSpec, stop: &AtomicBool) -> anyhow::Result<()> {
    println!("== lab up: attacker, gateway, client and victims {:?}", spec.victims);
    let state = crate::labui::up(cli, spec)?;
    interrupted(stop)?;

    println!("\n== SYN flood from the attacker over its {} link, 5 s at each victim", spec.attacker_rate);
    let mut rows = Vec::new();
    for v in &state.victims {
        let config = FloodConfig { rate: Rate::Unlimited, duration: Duration::from_secs(5), ..FloodConfig::default() };
        let prepared = orchestrate::flood::prepare(&state, LabFlood::new(Sender::Attacker, &v.name, config))?;
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
    detection(cli, &state, stop)
}

/// Record the training run and the demo run, train Part B on the first, score the second.
fn detection(cli: &Cli, state: &lab::LabState, stop: &AtomicBool) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new().prefix("vmguard-demo-").tempdir().context("creating the demo's directory")?;
    // Kept for the user to look at (store and model), as the last line says.
    let dir = dir.keep();
    let names: Vec<&str> = state.victims.iter().map(|v| v.name.as_str()).collect();
    let train = Scenario::parse(DEMO_TRAIN, "embedded demo-train.toml")?.restricted_to(&names);
    let demo = Scenario::parse(DEMO, "embedded demo.toml")?.restricted_to(&names);
    let opts = RecordOptions { store: dir.join("demo.db"), interval: Duration::from_secs(1), time_scale: 1.0 };
    let model_path = dir.join("model.json");
    let record = |sc: &Scenario| -> anyhow::Result<()> {
        println!("\n== recording scenario {} ({:.0} s): {}", sc.name, sc.duration(1.0).as_secs_f64(), sc.description);
        let bar = crate::progress::spinner(cli.json);
        let r = orchestrate::record::record(state, sc, &opts, stop, &mut |m| bar.set_message(m.to_string()));
        bar.finish_and_clear();
        let r = r?;
        crate::tables::record_report(&r);
        interrupted(stop)
    };
    record(&train)?;
    println!("\n== training the detector on {} only (SYN floods at a listener, benign load)", train.name);
    let st = store::Store::open(&opts.store)?;
    let train_data = dataset::load(&st, &Selection { include: vec![train.name.clone()], exclude: vec![] })?;
    let training = orchestrate::evaluate::train(&train_data, 5000, AlertParams { raise_after: 2, clear_after: 5 })?;
    std::fs::write(&model_path, serde_json::to_string_pretty(&training.model)?)
        .with_context(|| format!("writing {}", model_path.display()))?;
    println!("trained on {} windows -> {}", training.windows, model_path.display());
    record(&demo)?;
    let data = dataset::load(&st, &Selection { include: vec![demo.name.clone()], exclude: vec![] })?;
    let b = orchestrate::evaluate::evaluate(&training.model, &data);
    println!(
        "\n== detection result on the recorded `{}` run (model trained on this machine a minute ago on `{}`, not on this run)",
        demo.name, train.name
    );
    let floods: Vec<(String, String)> = demo
        .phases
        .iter()
        .flat_map(|p| p.floods.iter().map(|f| (f.target.clone(), format!("{} flood, {}", f.kind, f.rate))))
        .collect();
    let rows = b.detections.iter().map(|d| {
        let what = floods.iter().find(|(t, _)| *t == d.guest).map_or("-".to_string(), |(_, w)| w.clone());
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
