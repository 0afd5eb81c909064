//! `vmguard bench`: the seed-000 matrix on the running lab, stored cell by cell, with tables of
//! medians and spread, degradation per victim kind, and the seed's Tables 1 and 2.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use bench::summary::{self, Spread};
use bench::{Benchmark, CellRecord, Event, MatrixSpec, NetBackend};
use indicatif::{ProgressBar, ProgressStyle};
use lab::{Rate, VictimKind};
use serde::Serialize;

use crate::Cli;
use crate::output;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// One repetition of 2 s per cell and 64 MiB of files (for CI): `--profile quick`.
    #[arg(long, conflicts_with = "profile")]
    pub quick: bool,
    /// The matrix's parameters: `quick`; `default` (3 repetitions of 6 s, the seed's 2 GB of files
    /// with direct I/O); `seed` (the seed's 2 GB in 128 files, 3 repetitions of 30 s).
    #[arg(long)]
    pub profile: Option<bench::Profile>,
    /// Repetitions of every cell (idle and attack each).
    #[arg(long)]
    pub reps: Option<u32>,
    /// Seconds each benchmark runs.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Victim kinds (default: every victim of the lab).
    #[arg(long, value_delimiter = ',')]
    pub victims: Vec<VictimKind>,
    /// Benchmarks: cpu, memory, fileio, network, web, idle-cpu (default: all).
    #[arg(long, value_delimiter = ',')]
    pub benchmarks: Vec<Benchmark>,
    /// Flood rates, e.g. `10mbit,unlimited` (default: the lab's attacker link rate).
    #[arg(long = "attack-rate", value_delimiter = ',')]
    pub attack_rates: Vec<Rate>,
    /// SYN cookies in the victim: `on`, `off` or `on,off` (default: the lab's setting).
    #[arg(long, value_delimiter = ',', value_parser = parse_on_off)]
    pub syncookies: Vec<bool>,
    /// qemu network backends: virtio (qemu's own virtio-net), vhost-user (vmguard-vhost-net),
    /// vhost-net. Default: the lab's `[lab.qemu] net_backend`; a backend other than the lab's is
    /// reported unavailable (it is chosen at `lab up`).
    #[arg(long = "net-backend", value_delimiter = ',')]
    pub backends: Vec<NetBackend>,
    /// Defences the victims run with, each a dimension: none, syncookies-off, synproxy,
    /// syn-ratelimit, ingress-filter, coalesce-fixed, coalesce-adaptive (a cell whose defence
    /// cannot run on its victim says why).
    #[arg(long, value_delimiter = ',')]
    pub mitigations: Vec<bench::Mitigation>,
    /// The store that keeps every cell's raw output and figures.
    #[arg(long, default_value = "vmguard.db")]
    pub db: PathBuf,
}

fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" | "true" | "1" => Ok(true),
        "off" | "false" | "0" => Ok(false),
        _ => Err(format!("`{s}`: expected on or off")),
    }
}

#[derive(Serialize)]
struct BenchReport<'a> {
    run_id: String,
    db: String,
    elapsed_secs: f64,
    cells: usize,
    failed: usize,
    rows: Vec<summary::Row>,
    table1_cpu: Vec<summary::CpuRow>,
    table2_profile: Vec<summary::ProfileRow>,
    web_tiers: Vec<summary::WebTierRow>,
    defences: Vec<summary::DefenceRow>,
    records: &'a [CellRecord],
}

pub fn run(cli: &Cli, args: &BenchArgs) -> anyhow::Result<()> {
    lab::require_root()?;
    let config = cli.load_config()?;
    let spec = &config.lab;
    let state = lab::LabState::running(spec)?;
    let profile = if args.quick { bench::Profile::Quick } else { args.profile.unwrap_or(bench::Profile::Default) };
    let mut m = MatrixSpec::profile(profile, spec.attacker_rate);
    let present: Vec<VictimKind> = state.victims.iter().map(|v| v.kind).collect();
    m.victims = if args.victims.is_empty() { present.clone() } else { args.victims.clone() };
    if let Some(missing) = m.victims.iter().find(|v| !present.contains(v)) {
        anyhow::bail!(
            "the lab `{}` has no {missing} victim (it has: {present:?}); add it to [lab] victims and run `vmguard lab up`",
            spec.prefix
        );
    }
    if !args.benchmarks.is_empty() {
        m.benchmarks = args.benchmarks.clone();
    }
    if let Some(r) = args.reps {
        anyhow::ensure!(r >= 1, "--reps must be at least 1");
        m.reps = r;
    }
    if let Some(d) = args.duration {
        anyhow::ensure!((1.0..=600.0).contains(&d), "--duration must be between 1 and 600 seconds");
        m.duration = Duration::from_secs_f64(d);
    }
    if !args.attack_rates.is_empty() {
        m.attack_rates = args.attack_rates.clone();
    }
    m.syncookies = if args.syncookies.is_empty() { vec![spec.syncookies] } else { args.syncookies.clone() };
    // What the running lab was brought up with, not what the config says now.
    m.backends = vec![NetBackend::of_lab(state.spec.qemu.net_backend)];
    if !args.backends.is_empty() {
        m.backends = args.backends.clone();
    }
    if !args.mitigations.is_empty() {
        m.mitigations = args.mitigations.clone();
    }
    let cells = m.cells().len();

    let mut store = store::Store::open(&args.db).with_context(|| format!("opening the store {}", args.db.display()))?;
    let started_ns = telemetry::unix_now_ns();
    let run_id = format!("bench-{}", started_ns / 1_000_000);
    let meta = serde_json::json!({
        "kind": "bench",
        "lab": spec.prefix,
        "matrix": m,
        "host_kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "host_cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "accelerators": state.victims.iter().filter_map(|v| v.accelerator.clone().map(|a| (v.name.clone(), a))).collect::<std::collections::BTreeMap<_, _>>(),
        "vhost_net": NetBackend::VhostNet.unavailable_reason(state.spec.qemu.net_backend).unwrap_or_else(|| "available".into()),
        "qemu_net_backend": state.spec.qemu.net_backend,
    });
    store.add_run(&run_id, started_ns, &meta)?;

    let pb = if cli.json { ProgressBar::hidden() } else { ProgressBar::new(cells as u64) };
    pb.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} cells [{elapsed_precise}, ETA {eta}] {msg}")
            .expect("valid template"),
    );
    pb.enable_steady_tick(Duration::from_millis(500));
    let opts = bench::RunOptions {
        host_tool: std::env::current_exe().context("finding the vmguard binary")?,
        victim_tool: lab::image::TOOL_PATH.to_string(),
        webapp_subcommand: vec!["webapp".into()],
        web_threads: webapp::SeedSize::default().threads,
        web_users: webapp::SeedSize::default().users,
    };
    // Ctrl-C: the runner stops the running flood, starts no further cell and undoes each victim's
    // services and settings before it returns.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    crate::signals::on_interrupt(move || flag.store(true, std::sync::atomic::Ordering::SeqCst));
    let t0 = Instant::now();
    let mut store_errors = Vec::new();
    let records = bench::run_matrix(&state, &m, &opts, &stop, &mut |ev| match ev {
        Event::Started(c) => pb.set_message(c.key()),
        Event::Done(r, raw) => {
            let runs = if r.runs > 1 { format!(" (in {} runs)", r.runs) } else { String::new() };
            if let Some(e) = &r.error {
                pb.println(format!("cell {} failed{runs}: {e}", r.cell.key()));
            } else if r.runs > 1 {
                pb.println(format!("cell {} measured{runs}: the first run's error is in its raw output", r.cell.key()));
            }
            let result = store::BenchResult {
                run_id: run_id.clone(),
                cell: r.cell.key(),
                time_ns: telemetry::unix_now_ns(),
                raw_output: raw.to_string(),
                figures: serde_json::to_value(r).unwrap_or_default(),
            };
            if let Err(e) = store.add_bench_result(&result) {
                store_errors.push(e.to_string());
            }
            pb.inc(1);
        }
        Event::Note(n) => pb.println(n),
    });
    pb.finish_and_clear();
    let elapsed = t0.elapsed().as_secs_f64();
    if let Some(e) = store_errors.first() {
        anyhow::bail!("{} results could not be stored in {} (first: {e})", store_errors.len(), args.db.display());
    }
    let report = BenchReport {
        run_id: run_id.clone(),
        db: args.db.display().to_string(),
        elapsed_secs: elapsed,
        cells: records.len(),
        failed: records.iter().filter(|r| !r.ok).count(),
        rows: summary::rows(&records),
        table1_cpu: summary::cpu_table(&records),
        table2_profile: summary::profile_table(&records),
        web_tiers: summary::web_tiers(&records),
        defences: summary::defence_table(&records),
        records: &records,
    };
    if cli.json {
        return output::json(&report);
    }
    print_tables(&report);
    println!(
        "run {run_id}: {} cells ({} failed) in {:.0} s, stored in {}; `vmguard report --db {}` writes the HTML report",
        report.cells,
        report.failed,
        elapsed,
        args.db.display(),
        args.db.display()
    );
    Ok(())
}

/// A figure that may be missing: `–` then.
fn opt(v: Option<f64>) -> String {
    v.map(fmt).unwrap_or_else(|| "–".into())
}

fn fmt(v: f64) -> String {
    if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn spread(s: Option<Spread>) -> String {
    s.map(|s| format!("{} [{}–{}]", fmt(s.median), fmt(s.min), fmt(s.max))).unwrap_or_else(|| "–".into())
}

fn print_tables(r: &BenchReport<'_>) {
    let rows = r.rows.iter().map(|row| {
        let deg = match (row.degradation, row.benchmark.higher_is_better()) {
            (Some(d), true) => format!("{}%", fmt(d)),
            (Some(d), false) => format!("+{} pts", fmt(d)),
            (None, _) => "–".into(),
        };
        vec![
            row.victim.clone(),
            row.benchmark.to_string(),
            format!("cookies {}, {}, {}", if row.syncookies { "on" } else { "off" }, row.attack_rate, row.backend),
            row.unit.clone(),
            spread(row.idle),
            spread(row.attack),
            deg,
            if row.failed > 0 { format!("{} failed", row.failed) } else { String::new() },
        ]
    });
    println!(
        "{}",
        output::table(
            &[
                "victim",
                "benchmark",
                "settings",
                "unit",
                "idle median [min–max]",
                "attack median [min–max]",
                "degradation",
                ""
            ],
            rows
        )
    );
    if !r.table1_cpu.is_empty() {
        println!(
            "Table 1: CPU use while the victim is idle (host CPU in % of all CPUs; victim processes in % of one core)"
        );
        let rows = r.table1_cpu.iter().map(|c| {
            vec![
                c.victim.clone(),
                c.phase.as_str().to_string(),
                fmt(c.host_busy_pct),
                fmt(c.softirq_pct),
                fmt(c.system_pct),
                fmt(c.victim_cpu_pct),
                c.top_threads.iter().map(|(t, p)| format!("{t} {}", fmt(*p))).collect::<Vec<_>>().join(", "),
                c.flood_pps.map(fmt).unwrap_or_default(),
            ]
        });
        println!(
            "{}",
            output::table(
                &[
                    "victim",
                    "phase",
                    "host busy %",
                    "softirq %",
                    "system %",
                    "victim procs %",
                    "busiest threads",
                    "flood pps"
                ],
                rows
            )
        );
    }
    if !r.defences.is_empty() {
        println!("Defences: web loss under attack against idle, each with the same defence");
        let rows = r.defences.iter().map(|d| {
            vec![
                d.victim.clone(),
                d.mitigation.clone(),
                opt(d.idle_rps),
                opt(d.attack_rps),
                match (&d.unavailable, d.web_loss_pct) {
                    (Some(why), _) => format!("not run: {why}"),
                    (None, l) => l.map(|l| format!("{}%", fmt(l))).unwrap_or_else(|| "–".into()),
                },
            ]
        });
        println!("{}", output::table(&["victim", "defence", "idle req/s", "attack req/s", "web loss"], rows));
    }
    if !r.web_tiers.is_empty() {
        println!("Two-tier web benchmark (medians; CPU in % of one core, as the victim counts it)");
        let rows = r.web_tiers.iter().map(|t| {
            vec![
                t.victim.clone(),
                t.phase.as_str().to_string(),
                opt(t.requests_per_sec),
                opt(t.p50_ms),
                opt(t.p99_ms),
                opt(t.web_tier_cpu_pct),
                opt(t.db_tier_cpu_pct),
            ]
        });
        let head = ["victim", "phase", "requests/s", "p50 ms", "p99 ms", "web tier CPU %", "db tier CPU %"];
        println!("{}", output::table(&head, rows));
    }
    if !r.table2_profile.is_empty() {
        println!("Table 2: profiling, victim idle, attack vs no attack (per second)");
        let rows = r.table2_profile.iter().map(|p| {
            vec![
                p.victim.clone(),
                p.counter.clone(),
                opt(p.idle),
                opt(p.attack),
                p.ratio.map(|x| format!("x{}", fmt(x))).unwrap_or_else(|| "–".into()),
            ]
        });
        println!("{}", output::table(&["victim", "counter", "no attack", "attack", "ratio"], rows));
    }
}
