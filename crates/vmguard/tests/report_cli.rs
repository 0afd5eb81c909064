//! `vmguard report` through the real binary on a store the test makes itself (synthetic recorded
//! samples with ground truth, a few benchmark cells, a small model trained here): no lab, no root.
//! The report is rendered by headless Chromium and its DOM checked for every section and plot.
//!
//! `VMGUARD_REPORT_SHOT=/tmp/report.png` also takes a screenshot of the rendered report, to look at
//! (and keeps the report beside it, `/tmp/report.html`).

use std::path::{Path, PathBuf};

use bench::{Benchmark, CellRecord, MatrixSpec, Phase};

mod common;
use common::{headless, record, temp_dir, text, vmguard};

/// A benchmark run: the quick matrix's idle-CPU and web cells, the qemu victim hit hardest.
fn bench_run(st: &mut store::Store, started_ns: i64) {
    let m = MatrixSpec::quick(lab::Rate::BitsPerSec(10_000_000));
    let meta = serde_json::json!({"kind": "bench", "lab": "vmg", "matrix": m, "host_cpus": 2, "accelerators": {"qemu": "tcg"}});
    st.add_run("bench-1", started_ns, &meta).unwrap();
    for (i, cell) in
        m.cells().into_iter().filter(|c| matches!(c.benchmark, Benchmark::IdleCpu | Benchmark::Web)).enumerate()
    {
        let attack = cell.phase == Phase::Attack;
        let hit = match (attack, cell.victim) {
            (false, _) => 1.0,
            (true, lab::VictimKind::Qemu) => 0.4,
            (true, _) => 0.9,
        };
        let host = bench::matrix::HostFigures {
            secs: 10.0,
            busy_pct: if attack { 70.0 } else { 4.0 },
            softirq_pct: if attack { 35.0 } else { 0.3 },
            system_pct: if attack { 30.0 } else { 2.0 },
            user_pct: 1.0,
            ctxt_per_sec: if attack { 9000.0 } else { 2500.0 },
            intr_per_sec: if attack { 20000.0 } else { 900.0 },
            net_rx_per_sec: if attack { 16000.0 } else { 12.0 },
            victim_cpu_pct: if attack { 45.0 } else { 1.0 },
            victim_ctxt_per_sec: if attack { 800.0 } else { 50.0 },
            victim_threads_pct: [("httpd".to_string(), 40.0)].into(),
            ..Default::default()
        };
        let value = if cell.benchmark == Benchmark::IdleCpu { host.busy_pct } else { 2000.0 * hit };
        let rec = CellRecord {
            cell,
            ok: true,
            error: None,
            metric: cell.benchmark.metric().0.into(),
            value: Some(value),
            figures: Default::default(),
            host: Some(host),
            flood: None,
            accelerator: None,
            elapsed_secs: 10.0,
            runs: 1,
        };
        st.add_bench_result(&store::BenchResult {
            run_id: "bench-1".into(),
            cell: cell.key(),
            time_ns: started_ns + i as i64 * 10_000_000_000,
            raw_output: String::new(),
            figures: serde_json::to_value(&rec).unwrap(),
        })
        .unwrap();
    }
}

const T0: i64 = 1_796_155_700_000_000_000; // 2026-12-01 20:08:20 UTC

/// A store with a training and a held-out recording and a benchmark run, and a model trained on the
/// training recording (through the library, as `detect train` does).
fn full_store(dir: &Path) -> (PathBuf, PathBuf) {
    let db = dir.join("s.db");
    let mut st = store::Store::open(&db).unwrap();
    record(&mut st, "train-syn", 5000, T0);
    record(&mut st, "heldout-syn", 900, T0 + 1_000_000_000_000);
    bench_run(&mut st, T0 - 3_600_000_000_000);
    let sel = orchestrate::dataset::Selection { include: vec!["train-*".into()], exclude: vec![] };
    let data = orchestrate::dataset::load(&st, &sel).unwrap();
    let training =
        orchestrate::evaluate::train(&data, 10_000, detect::online::AlertParams { raise_after: 2, clear_after: 3 })
            .unwrap();
    let model = dir.join("model.json");
    std::fs::write(&model, serde_json::to_string(&training.model).unwrap()).unwrap();
    (db, model)
}

#[test]
fn report_renders_in_headless_chromium_with_every_section_and_plot() {
    let d = temp_dir("full");
    let (db, model) = full_store(d.path());
    let out = d.path().join("report.html");
    let o = vmguard(
        d.path(),
        &["report", "--db", db.to_str().unwrap(), "--out", out.to_str().unwrap(), "--model", model.to_str().unwrap()],
    );
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    assert!(stdout.contains("run bench-1") && stdout.contains("4 timelines"), "{stdout}");
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(!html.contains("<script") && !html.contains("src=") && !html.contains("href=\"http"), "self-contained");
    assert!(html.contains("@media print"));

    let dom = headless(d.path(), &out, &["--dump-dom"]);
    let has_id = |id: &str| dom.contains(&format!("id=\"{id}\""));
    for id in [
        "benchmark",
        "degradation-0",
        "cpu-under-attack",
        "profiling",
        "bench-cells",
        "seed-004",
        "part-a-0",
        "part-b",
        "part-b-summary",
        "part-b-scenarios",
        "part-b-detections",
        "timelines",
        "timeline-0",
        "timeline-1",
        "timeline-2",
        "timeline-3",
        "timeline-0-score",
        "timeline-0-rate-0",
        "timeline-0-cpu-0",
    ] {
        assert!(has_id(id), "no element #{id} in the DOM Chromium rendered");
    }
    assert!(!has_id("timeline-4") && !has_id("no-model") && !has_id("no-bench") && !has_id("no-recordings"));
    // The flooded container: attacks shaded, the failed phase hatched, an alert raised and cleared.
    for class in ["truth-attack", "truth-unknown", "alert-raised", "alert-cleared", "threshold"] {
        assert!(dom.contains(&format!("class=\"{class}\"")), "no .{class} in the DOM");
    }
    // Readable start and matrix, not unix milliseconds and JSON.
    assert!(dom.contains("2026-12-01 19:08:20 UTC"), "the run's start as a UTC date");
    assert!(dom.contains("matrix: victims") && dom.contains("vanilla, container, qemu"), "the matrix as a table");
    assert!(!dom.contains("(unix ms)") && !dom.contains("{\"victims\""));
    // Part B on both scenarios, the held-out flood alerted.
    assert!(dom.contains("heldout-syn") && dom.contains("train-syn"));
    assert!(dom.contains("not held-out figures"), "the report says which scenarios the model was trained on");
    // The profiling plot's labels do not fit their groups: they are turned.
    let prof = &dom[dom.find("id=\"profiling\"").unwrap()..];
    let prof = &prof[..prof.find("</svg>").unwrap()];
    assert!(prof.contains("class=\"xlabel\"") && prof.contains("rotate(-35"), "profiling labels are turned");

    if let Ok(shot) = std::env::var("VMGUARD_REPORT_SHOT") {
        headless(d.path(), &out, &[&format!("--screenshot={shot}"), "--window-size=1280,4000"]);
        std::fs::copy(&out, Path::new(&shot).with_extension("html")).unwrap();
    }
}

#[test]
fn bench_only_recordings_only_and_empty_stores() {
    let d = temp_dir("parts");
    // Only a benchmark run: the detection sections say nothing was recorded.
    let db = d.path().join("bench.db");
    bench_run(&mut store::Store::open(&db).unwrap(), T0);
    let out = d.path().join("b.html");
    let o = vmguard(d.path(), &["report", "--db", db.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o).1);
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(html.contains("id=\"profiling\"") && html.contains("id=\"no-recordings\""), "bench only");
    assert!(
        html.contains("id=\"seed-004\"") && html.contains("id=\"timelines\"") && !html.contains("id=\"timeline-0\"")
    );

    // Only recordings, no model: the benchmark section says nothing was recorded, Part B how to train.
    let db = d.path().join("rec.db");
    record(&mut store::Store::open(&db).unwrap(), "demo", 5000, T0);
    let out = d.path().join("r.html");
    let o = vmguard(d.path(), &["--json", "report", "--db", db.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!((v["timelines"].as_u64(), v["cells"].as_u64(), v["run_id"].is_null()), (Some(2), Some(0), true), "{v}");
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(html.contains("id=\"no-bench\"") && html.contains("id=\"no-model\"") && html.contains("detect train"));
    assert!(html.contains("id=\"timeline-1\"") && html.contains("id=\"part-a-0\"") && !html.contains("-score\""));
    // A selection: only that scenario, or none (an error naming the way out).
    let o = vmguard(
        d.path(),
        &["report", "--db", db.to_str().unwrap(), "--out", out.to_str().unwrap(), "--scenarios", "nope"],
    );
    assert!(!o.status.success() && text(&o).1.contains("record some first"), "{}", text(&o).1);
    // A benchmark run that is not there.
    let o = vmguard(
        d.path(),
        &["report", "--db", db.to_str().unwrap(), "--out", out.to_str().unwrap(), "--run", "bench-x"],
    );
    assert!(!o.status.success() && text(&o).1.contains("no benchmark run `bench-x`"), "{}", text(&o).1);

    // An empty store: a clear error.
    let db = d.path().join("empty.db");
    drop(store::Store::open(&db).unwrap());
    let o = vmguard(d.path(), &["report", "--db", db.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let (_, stderr) = text(&o);
    assert!(!o.status.success() && stderr.contains("no benchmark run and no recorded scenario"), "{stderr}");
    assert!(stderr.contains("vmguard record"), "{stderr}");
}
