//! `vmguard detect eval --leave-one-family-out`: Part B trained without each scenario family and scored
//! on it, beside the model trained on everything (`orchestrate::heldout`); this file only prints.

use anyhow::Context;
use detect::online::AlertParams;
use orchestrate::dataset::Selection;
use orchestrate::heldout::{self, Confusion, HeldOutReport, Summary};
use serde::Serialize;

use super::EvalArgs;
use crate::Cli;
use crate::output;

#[derive(Serialize)]
struct Report {
    store: String,
    scenarios: Vec<String>,
    /// Scenarios whose phases' families were read from the scenario files (stores recorded before
    /// `record` kept phase records).
    families_from_files: Vec<String>,
    scenario_dir: String,
    /// One evaluation per window length.
    runs: Vec<HeldOutReport>,
}

pub fn run(cli: &Cli, a: &EvalArgs) -> anyhow::Result<()> {
    let store = store::Store::open(&a.store).with_context(|| format!("opening store {}", a.store.display()))?;
    let sel = Selection { include: a.scenarios.clone(), exclude: a.exclude.clone() };
    let loaded = heldout::load(&store, &sel, &a.scenario_dir)?;
    let windows_ms: Vec<u64> = match &a.windows {
        Some(w) => w.iter().map(|w| w.as_millis() as u64).collect(),
        None => vec![5_000],
    };
    let alert = AlertParams { raise_after: a.raise_after, clear_after: a.clear_after };
    let mut runs = Vec::new();
    for &w in &windows_ms {
        let guests = heldout::tag(&loaded.data, &loaded.index, w);
        runs.push(
            heldout::leave_one_family_out(&guests, w, alert)
                .with_context(|| format!("leave-one-family-out with windows of {} s", w as f64 / 1000.0))?,
        );
    }
    let mut scenarios: Vec<String> = loaded.data.iter().flat_map(|g| g.scenarios()).collect();
    scenarios.sort();
    scenarios.dedup();
    let mut from_files = loaded.index.from_files.clone();
    from_files.retain(|s| scenarios.contains(s));
    let report = Report {
        store: a.store.display().to_string(),
        scenarios,
        families_from_files: from_files,
        scenario_dir: a.scenario_dir.display().to_string(),
        runs,
    };
    if cli.json {
        return output::json(&report);
    }
    println!("store {}: scenarios {}", report.store, report.scenarios.join(", "));
    if report.families_from_files.is_empty() {
        println!("phase families from the store's phase records");
    } else {
        println!(
            "phase families of {} from the scenario files in {} (recorded before the store kept phase records; \
             the files were checked against the labels)",
            report.families_from_files.join(", "),
            report.scenario_dir
        );
    }
    for r in &report.runs {
        print_run(r);
    }
    Ok(())
}

fn frac(n: usize, of: usize) -> String {
    if of == 0 { "-".into() } else { format!("{n}/{of}") }
}

fn times(s: &Summary) -> String {
    match (s.median_alert_s, s.max_alert_s) {
        (Some(m), Some(x)) => format!("{m:.1} / {x:.1} s"),
        _ => "-".into(),
    }
}

fn windows(c: &Confusion) -> String {
    format!("{} {} {} {}", c.tp, c.fp, c.tn, c.fn_)
}

fn cells(s: Option<&Summary>) -> Vec<String> {
    match s {
        Some(s) => vec![
            frac(s.alerted, s.attacks),
            frac(s.role_right, s.attacks),
            times(s),
            s.false_alerts.to_string(),
            windows(&s.windows),
        ],
        None => vec!["no model".into(), "-".into(), "-".into(), "-".into(), "-".into()],
    }
}

fn print_run(r: &HeldOutReport) {
    println!(
        "\nPart B, leave one scenario family out, sliding windows of {} s ({} families). Each family's row: the \
         model trained without any phase of it, scored on its phases; in-family: the model trained on every \
         family ({} windows of {}), on the same phases.",
        r.window_secs,
        r.families.len(),
        r.in_family_training_windows,
        r.in_family_trained_on.join(", ")
    );
    let rows = r
        .families
        .iter()
        .map(|f| {
            let mut row = vec![f.family.clone(), f.in_family_summary.phases.to_string()];
            row.extend(cells(f.held_out_summary.as_ref()));
            row.extend(cells(Some(&f.in_family_summary)));
            row
        })
        .chain(std::iter::once({
            let mut row = vec!["overall".to_string(), r.overall_in_family.phases.to_string()];
            row.extend(cells(Some(&r.overall_held_out)));
            row.extend(cells(Some(&r.overall_in_family)));
            row
        }));
    let header = [
        "family",
        "phases",
        "held out: alerted",
        "role right",
        "to alert median / max",
        "false alerts",
        "windows TP FP TN FN",
        "in-family: alerted",
        "role right",
        "to alert median / max",
        "false alerts",
        "windows TP FP TN FN",
    ];
    println!("{}", output::table(&header, rows));
    println!(
        "alerted = attacks (phase x guest with an attack label) alerted during the phase; time from the phase \
         start; false alerts = alerts raised on guests labelled normal in the family's phases."
    );
    let all: Vec<&str> = r.families.iter().map(|f| f.family.as_str()).collect();
    println!("\nfamilies: {}", all.join(", "));
    println!("trained on, per held-out model (the in-family model: every family above):");
    for f in &r.families {
        let others = f.trained_on_families.len();
        let scenarios = if f.trained_on_scenarios == r.in_family_trained_on {
            "of every scenario".to_string()
        } else {
            let gone: Vec<&str> = r
                .in_family_trained_on
                .iter()
                .filter(|s| !f.trained_on_scenarios.contains(s))
                .map(String::as_str)
                .collect();
            format!("of every scenario but {}", gone.join(", "))
        };
        match &f.error {
            Some(e) => println!("  without {}: no model ({e})", f.family),
            None if others + 1 == all.len() => println!(
                "  without {}: {} windows of the {others} other families, {scenarios}",
                f.family, f.training_windows
            ),
            None => println!(
                "  without {}: {} windows of {}, {scenarios}",
                f.family,
                f.training_windows,
                f.trained_on_families.join(", ")
            ),
        }
    }
    let misses: Vec<String> = r
        .families
        .iter()
        .filter_map(|f| f.held_out.as_ref().map(|h| (f, h)))
        .flat_map(|(f, h)| {
            h.attacks.iter().filter(|a| !a.role_right()).map(move |a| {
                format!(
                    "  {} {}/{} {} ({}): {}",
                    f.family,
                    a.scenario,
                    a.phase,
                    a.guest,
                    a.truth.as_str(),
                    match (a.alert_after_s, a.role) {
                        (Some(t), Some(role)) => format!("alerted after {t:.1} s as {}", role.as_str()),
                        _ => "missed".into(),
                    }
                )
            })
        })
        .collect();
    if !misses.is_empty() {
        println!("\nheld-out attacks missed or named with the wrong role:\n{}", misses.join("\n"));
    }
    let false_alerts: Vec<String> = r
        .families
        .iter()
        .filter_map(|f| f.held_out.as_ref().map(|h| (f, h)))
        .flat_map(|(f, h)| {
            h.false_alerts
                .iter()
                .map(move |x| format!("  {} {}/{} {} after {:.1} s", f.family, x.scenario, x.phase, x.guest, x.after_s))
        })
        .collect();
    if !false_alerts.is_empty() {
        println!("\nheld-out false alerts:\n{}", false_alerts.join("\n"));
    }
}
