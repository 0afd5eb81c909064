//! `vmguard demo` (what `make demo` runs): the main job end to end on embedded defaults: the lab
//! up with every victim answering, a bounded SYN flood at each victim over the seed's 10 Mbit/s
//! attacker link with its effect measured, then detection: Part B trained on the spot on a short
//! recorded run (`scenarios/demo-train.toml`: benign load and SYN floods only), and scored on the
//! recorded `demo` scenario (a SYN flood, then a UDP flood it never saw), with the result as a table;
//! and the lab torn down, also when a step fails.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use flood::{FloodConfig, Rate, SourceChoice};

use super::record::{RecordArgs, Scenario};
use super::train::TrainArgs;
use crate::Cli;
use crate::config::Config;
use crate::dataset::{self, Selection};

/// The demo's scenarios, embedded so the demo runs from any directory.
const DEMO_TRAIN: &str = include_str!("../../../../scenarios/demo-train.toml");
const DEMO: &str = include_str!("../../../../scenarios/demo.toml");

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
    detection(cli, &state)
}

/// Record the training run and the demo run, train Part B on the first, score the second.
fn detection(cli: &Cli, state: &lab::LabState) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("vmguard-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let names: Vec<String> = state.victims.iter().map(|v| v.name.clone()).collect();
    let train = write_scenario(&dir, DEMO_TRAIN, &names)?;
    let demo = write_scenario(&dir, DEMO, &names)?;
    let store = dir.join("demo.db");
    let model = dir.join("model.json");
    let record = |sc: &Scenario| -> anyhow::Result<()> {
        let secs: u64 =
            sc.phases.iter().map(|p| super::detect::parse_duration_ms(&p.duration).unwrap_or(0) / 1000).sum();
        println!("\n== recording scenario {} ({secs} s): {}", sc.name, sc.description);
        let args = RecordArgs {
            scenario: sc.name.clone(),
            scenario_dir: dir.clone(),
            store: store.clone(),
            interval: 1000,
            time_scale: 1.0,
        };
        super::record::run(cli, &args)
    };
    record(&train)?;
    println!("\n== training the detector on {} only (SYN floods at a listener, benign load)", train.name);
    let targs = TrainArgs {
        store: store.clone(),
        out: model.clone(),
        window: 5000,
        scenarios: vec![train.name.clone()],
        exclude: vec![demo.name.clone()],
        raise_after: 2,
        clear_after: 5,
    };
    super::train::run(cli, &targs)?;
    record(&demo)?;
    let st = store::Store::open(&store)?;
    let data = dataset::load(&st, &Selection { include: vec![demo.name.clone()], exclude: vec![] })?;
    let text = std::fs::read_to_string(&model)?;
    let m = detect::online::DetectorModel::from_json(&text)?;
    let b = super::train::evaluate(&m, &data);
    println!(
        "\n== detection result on the recorded `{}` run (model trained on this machine a minute ago on `{}`, not on this run)",
        demo.name, train.name
    );
    let floods: Vec<(String, String)> = demo
        .phases
        .iter()
        .flat_map(|p| p.floods.iter().map(|f| (f.target.clone(), format!("{} flood, {} pps", f.kind, f.rate))))
        .collect();
    let rows = b.detections.iter().map(|d| {
        let what = floods.iter().find(|(t, _)| *t == d.guest).map_or("-".to_string(), |(_, w)| w.clone());
        vec![
            d.guest.clone(),
            what,
            dataset::role_of_label(&d.label).map_or("-", |r| r.as_str()).to_string(),
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
    println!("(store, model and scenarios kept in {})", dir.display());
    Ok(())
}

/// Writes an embedded scenario to `dir`, without workloads and floods on victims this lab lacks.
fn write_scenario(dir: &Path, text: &str, victims: &[String]) -> anyhow::Result<Scenario> {
    let mut sc = Scenario::parse(text, "embedded demo scenario")?;
    let known = |n: &String| n == "attacker" || victims.contains(n);
    for p in &mut sc.phases {
        p.workloads.retain(|w| known(&w.target));
        p.floods.retain(|f| known(&f.target) && known(&f.from));
    }
    let path: PathBuf = dir.join(format!("{}.toml", sc.name));
    std::fs::write(&path, toml::to_string(&sc)?).with_context(|| format!("writing {}", path.display()))?;
    Ok(sc)
}
