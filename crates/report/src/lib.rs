//! `vmguard report`: one self-contained HTML file from the store (inline SVG, no script, no network,
//! a print style sheet), with
//!
//! - the benchmark run (seed 000): [`bench::report::section`], the one plotting helper set;
//! - the seed-004 table: window length x method → accuracy ([`orchestrate::evaluate::part_a`]);
//! - Part B: accuracy, false positives and time to alert per scenario
//!   ([`orchestrate::evaluate::evaluate`]), when a model is given;
//! - a timeline per guest and scenario: the counters that matter, the detector's score per window and
//!   its alerts ([`detect::online::timeline`]), the ground truth shaded ([`timeline`]).
//!
//! A store with only benchmark results or only recordings gives a report with a note where the other
//! part would be; an empty store is an error ([`ReportError::Empty`]).
//!
//! Element ids (for tests and links): `benchmark`, `seed-004`, `part-b`, `timelines`,
//! `timeline-N` (one per guest and scenario), `cpu-under-attack`, `profiling`, `degradation-N`,
//! `part-a-N`, `part-b-scenarios`, `part-b-detections`, `no-model`, `no-bench`, `no-recordings`.

use std::fmt::Write as _;

use bench::CellRecord;
use bench::report::{RunInfo, STYLE, escape, fmt_num};
use detect::online::DetectorModel;
use detect::{FitConfig, Method};
use orchestrate::dataset::{self, DatasetError, GuestData, Selection};
use store::Store;

pub mod timeline;

/// What to put in the report.
#[derive(Debug, Clone)]
pub struct Options {
    /// The benchmark run (default: the latest).
    pub run: Option<String>,
    /// vmguard's detector, for Part B and the score lines: where it came from, and the model.
    pub model: Option<(String, DetectorModel)>,
    /// Which recorded scenarios.
    pub selection: Selection,
    /// Window lengths of the seed-004 table, in ms.
    pub windows_ms: Vec<u64>,
    pub methods: Vec<Method>,
    pub fit: FitConfig,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            run: None,
            model: None,
            selection: Selection::default(),
            windows_ms: vec![5_000, 10_000, 30_000, 120_000],
            methods: vec![Method::KMeans, Method::Em(detect::CovarianceType::Full)],
            fit: FitConfig { n_init: 4, ..FitConfig::default() },
        }
    }
}

/// The rendered report and what is in it.
#[derive(Debug, Clone)]
pub struct Report {
    pub html: String,
    pub run_id: Option<String>,
    pub cells: usize,
    pub scenarios: Vec<String>,
    pub timelines: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("reading the store {path}")]
    Store {
        path: String,
        #[source]
        source: Box<store::StoreError>,
    },
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error("no benchmark run `{run}` in {path}")]
    NoSuchRun { run: String, path: String },
    #[error("benchmark run {run} has no readable results ({unreadable} unreadable)")]
    Unreadable { run: String, unreadable: usize },
    #[error(
        "the store {0} has no benchmark run and no recorded scenario: run `vmguard bench` or `vmguard record SCENARIO` first"
    )]
    Empty(String),
    #[error("evaluating the seed's method")]
    PartA(#[source] detect::PipelineError),
}

/// A time in ns since the epoch as a UTC date and time, `2026-12-01 20:10:05`.
pub fn utc(ns: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns)) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => format!("{ns} ns since 1970"),
    }
}

/// The benchmark run's records, matrix order, and what the report says about the run.
fn bench_run(store: &Store, run: Option<&str>) -> Result<Option<(RunInfo, Vec<CellRecord>)>, ReportError> {
    let path = store.path().display().to_string();
    let err = |source| ReportError::Store { path: path.clone(), source: Box::new(source) };
    let runs: Vec<_> = store.runs().map_err(err)?.into_iter().filter(|(_, _, meta)| meta["kind"] == "bench").collect();
    let (run_id, started_ns, meta) = match run {
        Some(id) => runs
            .into_iter()
            .find(|(r, _, _)| r == id)
            .ok_or_else(|| ReportError::NoSuchRun { run: id.into(), path: path.clone() })?,
        None => match runs.into_iter().next_back() {
            Some(r) => r,
            None => return Ok(None),
        },
    };
    let results = store.bench_results(&run_id).map_err(err)?;
    let mut records: Vec<CellRecord> = Vec::new();
    let mut unreadable = 0;
    for r in &results {
        match serde_json::from_value::<CellRecord>(r.figures.clone()) {
            Ok(rec) => records.push(rec),
            Err(_) => unreadable += 1,
        }
    }
    if records.is_empty() {
        return Err(ReportError::Unreadable { run: run_id, unreadable });
    }
    // The store returns cells by name; show them in matrix order.
    records.sort_by_key(|r| {
        (r.cell.victim, r.cell.backend, !r.cell.syncookies, r.cell.benchmark, r.cell.rep, r.cell.phase)
    });
    let elapsed = records.iter().map(|r| r.elapsed_secs).sum::<f64>();
    let mut facts = vec![
        ("cells".to_string(), format!("{} ({} failed)", records.len(), records.iter().filter(|r| !r.ok).count())),
        ("time in cells".to_string(), format!("{elapsed:.0} s")),
    ];
    if unreadable > 0 {
        facts.push(("unreadable cells".into(), unreadable.to_string()));
    }
    for key in ["lab", "host_kernel", "host_cpus", "accelerators", "vhost_net"] {
        if let Some(v) = meta.get(key) {
            facts.push((key.replace('_', " "), readable(v)));
        }
    }
    if let Some(serde_json::Value::Object(m)) = meta.get("matrix") {
        for (k, v) in m {
            facts.push((format!("matrix: {}", k.replace('_', " ")), readable(v)));
        }
    }
    let info = RunInfo { run_id, started: format!("{} UTC", utc(started_ns)), facts };
    Ok(Some((info, records)))
}

/// A JSON value for people: lists joined, durations in seconds, maps as `key: value`.
fn readable(v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "–".into(),
        Value::Bool(b) => if *b { "on" } else { "off" }.into(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) if a.is_empty() => "none".into(),
        Value::Array(a) => a.iter().map(readable).collect::<Vec<_>>().join(", "),
        Value::Object(o) => match (o.get("secs").and_then(Value::as_u64), o.get("nanos").and_then(Value::as_u64)) {
            (Some(s), Some(n)) if o.len() == 2 => format!("{} s", fmt_num(s as f64 + n as f64 / 1e9)),
            _ if o.is_empty() => "none".into(),
            _ => o.iter().map(|(k, v)| format!("{k}: {}", readable(v))).collect::<Vec<_>>().join("; "),
        },
    }
}

fn pct(v: f64) -> String {
    format!("{:.1}%", 100.0 * v)
}

fn note(h: &mut String, id: &str, text: &str) {
    let _ = write!(h, r#"<p id="{id}" class="note">{text}</p>"#);
}

/// The whole report.
pub fn render(store: &Store, opts: &Options) -> Result<Report, ReportError> {
    let path = store.path().display().to_string();
    let bench = bench_run(store, opts.run.as_deref())?;
    let data = match dataset::load(store, &opts.selection) {
        Ok(d) => Some(d),
        Err(DatasetError::NoLabels(_)) => None,
        Err(e) => return Err(e.into()),
    };
    if bench.is_none() && data.is_none() {
        let any_labels = store
            .labels(None, i64::MIN, i64::MAX)
            .map_err(|source| ReportError::Store { path: path.clone(), source: Box::new(source) })?;
        if any_labels.is_empty() {
            return Err(ReportError::Empty(path));
        }
        // Recordings exist, the selection matched none of them.
        return Err(DatasetError::NoLabels(path).into());
    }
    let mut scenarios: Vec<String> = data.iter().flatten().flat_map(GuestData::scenarios).collect();
    scenarios.sort();
    scenarios.dedup();

    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>vmguard report</title><style>{STYLE}</style></head><body><h1>vmguard report</h1><p>store <code>{}</code></p><ul><li><a href=\"#benchmark\">Benchmark (seed 000)</a></li><li><a href=\"#seed-004\">Seed 004: window length x method</a></li><li><a href=\"#part-b\">vmguard's detector (Part B)</a></li><li><a href=\"#timelines\">Timelines per guest</a></li></ul>",
        escape(&path)
    );

    // Benchmark.
    h.push_str(r#"<section id="benchmark"><h2>Benchmark (seed 000)</h2>"#);
    let cells = match &bench {
        Some((info, records)) => {
            h.push_str(&bench::report::section(info, records));
            records.len()
        }
        None => {
            note(
                &mut h,
                "no-bench",
                "Nothing recorded: the store has no benchmark run. <code>vmguard bench --db STORE</code> runs the matrix.",
            );
            0
        }
    };
    h.push_str("</section>");

    let mut timelines = 0;
    match &data {
        None => {
            for (id, title) in
                [("seed-004", "Seed 004: window length x method"), ("part-b", "vmguard's detector (Part B)")]
            {
                let _ = write!(h, r#"<section id="{id}"><h2>{title}</h2></section>"#);
            }
            h.push_str(r#"<section id="timelines"><h2>Timelines per guest</h2>"#);
            note(
                &mut h,
                "no-recordings",
                "Nothing recorded: the store has no recorded scenario with ground truth. <code>vmguard record SCENARIO --db STORE</code> records one.",
            );
            h.push_str("</section>");
        }
        Some(data) => {
            let _ = write!(h, "<p>scenarios: {}</p>", escape(&scenarios.join(", ")));
            seed_004(&mut h, data, opts)?;
            part_b(&mut h, data, opts);
            timelines = timeline_section(&mut h, data, opts);
        }
    }
    h.push_str("</body></html>\n");
    Ok(Report { html: h, run_id: bench.map(|(i, _)| i.run_id), cells, scenarios, timelines })
}

fn seed_004(h: &mut String, data: &[GuestData], opts: &Options) -> Result<(), ReportError> {
    h.push_str(r#"<section id="seed-004"><h2>Seed 004: window length x method</h2><p>Accuracy of the seed's clustering of windows (DoS vs normal) against the ground truth, per feature set.</p>"#);
    let tables = orchestrate::evaluate::part_a(data, &opts.windows_ms, None, &opts.methods, &opts.fit)
        .map_err(ReportError::PartA)?;
    if tables.is_empty() {
        h.push_str("<p class=\"note\">None of the feature sets' counters were collected.</p>");
    }
    for (i, t) in tables.iter().enumerate() {
        let _ = write!(
            h,
            "<h3>Feature set {} on {}</h3><p>features: {}</p>",
            escape(t.feature_set),
            escape(&t.guests.join(", ")),
            escape(&t.features.join(", "))
        );
        accuracy_table(h, &format!("part-a-{i}"), &t.report);
    }
    h.push_str("</section>");
    Ok(())
}

/// An [`detect::AccuracyReport`] as a table: one row per window length, one column per method.
fn accuracy_table(h: &mut String, id: &str, r: &detect::AccuracyReport) {
    if r.rows.is_empty() {
        let _ = write!(h, r#"<p id="{id}" class="note">No window length had labelled windows.</p>"#);
        return;
    }
    let mut windows: Vec<u64> = r.rows.iter().map(|r| r.window_secs).collect();
    windows.sort_unstable();
    windows.dedup();
    let mut methods: Vec<&str> = Vec::new();
    for row in &r.rows {
        if !methods.contains(&row.method.as_str()) {
            methods.push(&row.method);
        }
    }
    let _ = write!(h, r#"<table id="{id}" class="accuracy"><tr><th>window</th>"#);
    for m in &methods {
        let _ = write!(h, "<th>{}</th>", escape(m));
    }
    h.push_str("</tr>");
    for w in windows {
        let _ = write!(h, "<tr><td>{}</td>", detect::eval::window_name(w));
        for m in &methods {
            match r.rows.iter().find(|row| row.window_secs == w && row.method == *m) {
                Some(row) => {
                    let c = &row.metrics.confusion;
                    let _ = write!(
                        h,
                        "<td title=\"TP {} FP {} TN {} FN {}\">{}</td>",
                        c.true_positive,
                        c.false_positive,
                        c.true_negative,
                        c.false_negative,
                        pct(row.metrics.accuracy)
                    );
                }
                None => h.push_str("<td>–</td>"),
            }
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>");
}

fn part_b(h: &mut String, data: &[GuestData], opts: &Options) {
    h.push_str(r#"<section id="part-b"><h2>vmguard's detector (Part B)</h2>"#);
    let Some((from, model)) = &opts.model else {
        note(
            h,
            "no-model",
            "No model was given, so this report has no Part B figures and no score lines. Train one with <code>vmguard detect train --store STORE --out model.json --scenarios 'train-*'</code>, then run <code>vmguard report --model model.json</code>.",
        );
        h.push_str("</section>");
        return;
    };
    let b = orchestrate::evaluate::evaluate(model, data);
    let held: Vec<&String> = b.trained_on.iter().filter(|s| data.iter().any(|g| g.scenarios().contains(*s))).collect();
    let _ = write!(
        h,
        "<p>model <code>{}</code>: sliding windows of {} s, trained on {}.</p>",
        escape(from),
        fmt_num(b.window_secs),
        escape(&b.trained_on.join(", "))
    );
    if !held.is_empty() {
        let _ = write!(
            h,
            "<p class=\"note\">The report includes scenarios the model was trained on ({}): their figures are not held-out figures (<code>--exclude</code> leaves them out).</p>",
            escape(&held.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "))
        );
    }
    h.push_str("<table id=\"part-b-summary\"><tr><th>figure</th><th>value</th></tr>");
    let row = |h: &mut String, k: &str, v: String| {
        let _ = write!(h, "<tr><td>{}</td><td>{}</td></tr>", escape(k), escape(&v));
    };
    row(h, "window accuracy", b.metrics.map(|m| pct(m.accuracy)).unwrap_or_else(|| "–".into()));
    row(h, "false positives on benign windows", b.false_positive_rate.map(pct).unwrap_or_else(|| "–".into()));
    row(h, "alerts outside attacks", b.false_alerts.to_string());
    row(h, "role right among alerted attacks", b.role_accuracy.map(pct).unwrap_or_else(|| "–".into()));
    row(h, "attack windows caught by the novelty check alone", b.attack_windows_by_novelty.to_string());
    let modes: Vec<String> = b.modes.iter().map(|(k, m)| format!("{k}: {m:?}")).collect();
    row(h, "scoring per guest kind", modes.join(", "));
    h.push_str("</table>");
    h.push_str("<h3>Per scenario</h3><table id=\"part-b-scenarios\"><tr><th>scenario</th><th>windows</th><th>accuracy</th><th>false positives</th><th>false negatives</th><th>attacks</th><th>alerted</th><th>median time to alert</th></tr>");
    for (scn, m) in &b.per_scenario {
        let dets: Vec<&detect::online::Detection> = b.detections.iter().filter(|d| &d.scenario == scn).collect();
        let mut after: Vec<f64> = dets.iter().filter_map(|d| d.alert_after_s).collect();
        after.sort_by(f64::total_cmp);
        let median =
            if after.is_empty() { "–".to_string() } else { format!("{} s", fmt_num(after[after.len() / 2])) };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(scn),
            m.confusion.total(),
            pct(m.accuracy),
            m.confusion.false_positive,
            m.confusion.false_negative,
            dets.len(),
            after.len(),
            median
        );
    }
    h.push_str("</table><h3>Attacks: time to alert</h3><table id=\"part-b-detections\"><tr><th>scenario</th><th>guest</th><th>truth</th><th>start (UTC)</th><th>alert after</th><th>role named</th><th>cleared after the end</th></tr>");
    for d in &b.detections {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td{}>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&d.scenario),
            escape(&d.guest),
            d.truth.as_str(),
            utc(d.start_ns),
            if d.alert_after_s.is_none() { " class=\"bad\"" } else { "" },
            d.alert_after_s.map(|s| format!("{} s", fmt_num(s))).unwrap_or_else(|| "never".into()),
            d.role.map(|r| format!("{r:?}").to_lowercase()).unwrap_or_else(|| "–".into()),
            d.cleared_after_s.map(|s| format!("{} s", fmt_num(s))).unwrap_or_else(|| "still raised".into()),
        );
    }
    h.push_str("</table></section>");
}

/// One timeline per guest and scenario; returns how many.
fn timeline_section(h: &mut String, data: &[GuestData], opts: &Options) -> usize {
    h.push_str(r#"<section id="timelines"><h2>Timelines per guest</h2><p>Per guest and scenario: its traffic and CPU as the detector's ticks saw them, the ground truth behind (attacks shaded, unknown phases hatched grey)"#);
    h.push_str(if opts.model.is_some() {
        ", the detector's score per window (dots: windows that alarm on their own; dashed: the alarm and calm thresholds) and the alerts raised and cleared.</p>"
    } else {
        ". No model was given, so there are no score lines (see above).</p>"
    });
    let mut n = 0;
    let mut scenarios: Vec<String> = data.iter().flat_map(GuestData::scenarios).collect();
    scenarios.sort();
    scenarios.dedup();
    // Scenarios in the order they were recorded.
    let first = |scn: &str| {
        data.iter().flat_map(|g| g.spans.iter()).filter(|s| s.scenario == scn).map(|s| s.start_ns).min().unwrap_or(0)
    };
    scenarios.sort_by_key(|s| first(s));
    let scored: Vec<Option<detect::online::Timeline>> = data
        .iter()
        .map(|g| opts.model.as_ref().and_then(|(_, m)| detect::online::timeline(m, &g.labelled(m.window_ms))))
        .collect();
    for scn in &scenarios {
        let _ = write!(h, "<h3>Scenario {}</h3>", escape(scn));
        for (g, score) in data.iter().zip(&scored) {
            let spans: Vec<detect::truth::Span> = g.spans.iter().filter(|s| &s.scenario == scn).cloned().collect();
            let (Some(start), Some(end)) =
                (spans.iter().map(|s| s.start_ns).min(), spans.iter().map(|s| s.end_ns).max())
            else {
                continue;
            };
            let (start_ms, end_ms) = (start / 1_000_000, end / 1_000_000);
            let (rates, cpu) = timeline::lines(&g.samples, start_ms, end_ms);
            let t = timeline::GuestTimeline {
                guest: g.name.clone(),
                kind: g.kind.as_str().to_string(),
                scenario: scn.clone(),
                start_ms,
                end_ms,
                rates,
                cpu,
                spans,
                score: score.clone(),
            };
            h.push_str(&timeline::svg(&format!("timeline-{n}"), &t));
            n += 1;
        }
    }
    h.push_str("</section>");
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_and_readable() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_796_155_705_769_338_857), "2026-12-01 20:08:25");
        assert_eq!(utc(951_782_400_000_000_000), "2000-02-29 00:00:00");
        let m = serde_json::json!({"victims": ["vanilla", "qemu"], "duration": {"secs": 10, "nanos": 0}, "reps": 3, "backends": []});
        let r: Vec<String> = m.as_object().unwrap().values().map(readable).collect();
        assert!(r.contains(&"vanilla, qemu".to_string()) && r.contains(&"10.0 s".to_string()), "{r:?}");
        assert!(r.contains(&"none".to_string()) && r.contains(&"3".to_string()));
    }

    #[test]
    fn an_empty_store_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let st = Store::open(d.path().join("e.db")).unwrap();
        let e = render(&st, &Options::default()).unwrap_err();
        assert!(matches!(e, ReportError::Empty(_)), "{e}");
        assert!(e.to_string().contains("vmguard bench") && e.to_string().contains("vmguard record"));
    }
}
