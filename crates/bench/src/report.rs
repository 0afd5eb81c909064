//! The HTML report: the run's tables and hand-built inline SVG plots (no script, no external file), so
//! it opens anywhere, offline: degradation per victim kind and benchmark, host CPU under attack, and
//! profiling counters under attack vs idle.

use std::fmt::Write as _;

use crate::matrix::{Benchmark, CellRecord, Phase};
use crate::summary::{self, Row};

/// A plot's series colors (color-blind safe palette). The one plotting helper set of vmguard's
/// reports: the `report` crate's timelines use these too.
pub const COLORS: [&str; 6] = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00"];

/// The reports' style sheet: readable on screen and in print, no element wider than the page.
pub const STYLE: &str = "body{font-family:sans-serif;margin:2em auto;max-width:1100px;padding:0 1em}\
table{border-collapse:collapse;margin:1em 0;display:block;overflow-x:auto;max-width:100%}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}\
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}table.facts td{text-align:left}.bad{color:#b00}.note{background:#fff8e0;border-left:4px solid #e69f00;padding:.5em 1em}\
svg.plot{display:block;margin:1em 0;border:1px solid #eee;box-sizing:border-box;max-width:100%;height:auto}code{overflow-wrap:anywhere}\
@media print{body{margin:0;padding:0;max-width:none;font-size:10pt}table{font-size:8pt;display:table;overflow:visible}td,th{padding:1px 4px;overflow-wrap:break-word}svg.plot,table,figure{break-inside:avoid;page-break-inside:avoid}h2{break-after:avoid}\
th{background:#eee;-webkit-print-color-adjust:exact;print-color-adjust:exact}svg.plot{print-color-adjust:exact;-webkit-print-color-adjust:exact}}";

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Roughly how wide `text` is in a sans-serif font of `size` px (for layout without a renderer: on
/// the wide side, so what is laid out never collides).
pub fn text_width(text: &str, size: f64) -> f64 {
    text.chars().count() as f64 * size * 0.6
}

/// `text` cut to `max` characters with an ellipsis.
pub fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    text.chars().take(max.saturating_sub(1)).collect::<String>() + "…"
}

/// A legend row by row: each entry `(x, y)` of its swatch, wrapping before `max_x`. Returns the
/// positions and the height used.
pub fn legend_layout(names: &[String], x0: f64, y0: f64, max_x: f64, size: f64) -> (Vec<(f64, f64)>, f64) {
    let (mut x, mut y) = (x0, y0);
    let mut out = Vec::new();
    for n in names {
        let w = 16.0 + text_width(n, size) + 18.0;
        if x > x0 && x + w > max_x {
            x = x0;
            y += size + 8.0;
        }
        out.push((x, y));
        x += w;
    }
    let used = if names.is_empty() { 0.0 } else { y - y0 + size + 8.0 };
    (out, used)
}

/// A horizontal grid line across a plot from `x1` to `x2` at `y`, with its value `label` left of it.
pub fn y_gridline(s: &mut String, x1: f64, x2: f64, y: f64, label: &str, font_size: u32) {
    let _ = write!(
        s,
        r##"<line x1="{x1}" x2="{x2}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{tx}" y="{ty:.1}" text-anchor="end" font-size="{font_size}" font-family="sans-serif">{label}</text>"##,
        tx = x1 - 6.0,
        ty = y + f64::from(font_size) * 0.35,
    );
}

/// A grouped bar chart: one group per category, one bar per series. `None` values leave a gap.
/// Category labels that do not fit their group are turned (and cut past 28 characters, the whole
/// name in the tooltip), and the legend wraps, so no two labels overlap.
pub fn bar_chart(
    id: &str,
    title: &str,
    unit: &str,
    categories: &[String],
    series: &[(String, Vec<Option<f64>>)],
) -> String {
    let w = 760.0;
    let (mut left, right, top) = (70.0, 20.0, 40.0);
    let plot_h = 230.0;
    let n_cat = categories.len().max(1) as f64;
    let mut group_w = (w - left - right) / n_cat;
    let labels: Vec<String> = categories.iter().map(|c| shorten(c, 28)).collect();
    let widest = labels.iter().map(|l| text_width(l, 11.0)).fold(0.0, f64::max);
    // Horizontal if every label fits its group; else turned by 35° (lines 13 px apart need groups
    // of 13 / sin 35° = 23 px), or upright for narrower groups.
    let angle: f64 = if widest <= group_w * 0.95 {
        0.0
    } else if group_w * 35f64.to_radians().sin() >= 14.0 {
        35.0
    } else {
        90.0
    };
    if angle == 35.0 {
        // The first turned label reaches left of its group: make room so it is not cut off.
        let reach = widest * angle.to_radians().cos() + 6.0 - group_w * 0.5;
        if reach > left {
            left = reach.min(w / 2.0);
            group_w = (w - left - right) / n_cat;
        }
    }
    let label_h = if angle == 0.0 { 22.0 } else { widest * angle.to_radians().sin() + 20.0 };
    let names: Vec<String> = series.iter().map(|(n, _)| n.clone()).collect();
    let legend_top = top + plot_h + label_h + 8.0;
    let (legend, legend_h) = legend_layout(&names, left, legend_top, w - right, 12.0);
    let h = (legend_top + legend_h + 6.0).ceil();
    let values = series.iter().flat_map(|(_, v)| v.iter().flatten().copied()).filter(|v| v.is_finite());
    let (mut lo, mut hi) = values.fold((0.0f64, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if hi - lo < 1e-9 {
        hi = lo + 1.0;
    }
    let pad = (hi - lo) * 0.08;
    hi += pad;
    if lo < 0.0 {
        lo -= pad;
    }
    let y = |v: f64| top + plot_h * (hi - v) / (hi - lo);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg id="{id}" class="plot" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="{t}"><title>{t}</title><rect x="0" y="0" width="{w}" height="{h}" fill="white"/><text x="{cx}" y="22" text-anchor="middle" font-size="15" font-family="sans-serif">{t}</text>"#,
        t = escape(title),
        cx = w / 2.0
    );
    // Axis with five ticks.
    for i in 0..=5 {
        let v = lo + (hi - lo) * f64::from(i) / 5.0;
        y_gridline(&mut s, left, w - right, y(v), &fmt_num(v), 11);
    }
    let _ = write!(
        s,
        r##"<line x1="{left}" x2="{x2}" y1="{z:.1}" y2="{z:.1}" stroke="#333"/><text x="14" y="{my}" font-size="11" font-family="sans-serif" transform="rotate(-90 14 {my})" text-anchor="middle">{u}</text>"##,
        x2 = w - right,
        z = y(0.0),
        my = top + plot_h / 2.0,
        u = escape(unit)
    );
    let bar_w = (group_w * 0.8) / series.len().max(1) as f64;
    for (ci, cat) in categories.iter().enumerate() {
        let gx = left + group_w * ci as f64 + group_w * 0.1;
        for (si, (name, vals)) in series.iter().enumerate() {
            let Some(Some(v)) = vals.get(ci) else { continue };
            if !v.is_finite() {
                continue;
            }
            let (y0, y1) = (y(0.0), y(*v));
            let _ = write!(
                s,
                r#"<rect class="bar" x="{x:.1}" y="{top:.1}" width="{bw:.1}" height="{ht:.1}" fill="{c}"><title>{cat} / {name}: {val} {u}</title></rect>"#,
                x = gx + bar_w * si as f64,
                top = y0.min(y1),
                bw = (bar_w - 2.0).max(1.0),
                ht = (y0 - y1).abs().max(0.5),
                c = COLORS[si % COLORS.len()],
                cat = escape(cat),
                name = escape(name),
                val = fmt_num(*v),
                u = escape(unit)
            );
        }
        let (lx, ly) = (gx + group_w * 0.4, top + plot_h + 16.0);
        if angle == 0.0 {
            let _ = write!(
                s,
                r#"<text class="xlabel" x="{lx:.1}" y="{ly}" text-anchor="middle" font-size="11" font-family="sans-serif"><title>{c}</title>{l}</text>"#,
                c = escape(cat),
                l = escape(&labels[ci])
            );
        } else {
            let _ = write!(
                s,
                r#"<text class="xlabel" x="{lx:.1}" y="{ly}" text-anchor="end" font-size="11" font-family="sans-serif" transform="rotate(-{angle} {lx:.1} {ly})"><title>{c}</title>{l}</text>"#,
                c = escape(cat),
                l = escape(&labels[ci])
            );
        }
    }
    for (si, (name, _)) in series.iter().enumerate() {
        let (lx, ly) = legend[si];
        let _ = write!(
            s,
            r#"<rect x="{lx:.1}" y="{ly:.1}" width="12" height="12" fill="{c}"/><text x="{tx:.1}" y="{ty:.1}" font-size="12" font-family="sans-serif">{n}</text>"#,
            c = COLORS[si % COLORS.len()],
            tx = lx + 16.0,
            ty = ly + 10.0,
            n = escape(name)
        );
    }
    s.push_str("</svg>");
    s
}

/// A number for people: no decimals from 1000 up, one from 10, two below.
pub fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn opt(v: Option<f64>) -> String {
    v.map(fmt_num).unwrap_or_else(|| "–".into())
}

/// Everything the report shows about the run besides the records.
#[derive(Debug, Clone, Default)]
pub struct RunInfo {
    pub run_id: String,
    pub started: String,
    /// `key: value` lines (host, accelerator, matrix, elapsed time).
    pub facts: Vec<(String, String)>,
}

/// The whole report as one HTML document.
pub fn html(info: &RunInfo, records: &[CellRecord]) -> String {
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>vmguard bench {id}</title><style>{STYLE}</style></head><body><h1>vmguard benchmark report</h1>{body}</body></html>\n",
        id = escape(&info.run_id),
        body = section(info, records)
    )
}

/// The benchmark part of a report (no document around it): the run's facts, the plots and tables.
/// Element ids: `degradation-N`, `cpu-under-attack`, `profiling`, `bench-cells`.
pub fn section(info: &RunInfo, records: &[CellRecord]) -> String {
    let rows = summary::rows(records);
    let cpu = summary::cpu_table(records);
    let prof = summary::profile_table(records);
    let mut h = String::new();
    let _ = write!(h, "<p>run <code>{}</code>, started {}</p>", escape(&info.run_id), escape(&info.started));
    if !info.facts.is_empty() {
        h.push_str("<table class=\"facts\">");
        for (k, v) in &info.facts {
            let _ = write!(h, "<tr><th>{}</th><td>{}</td></tr>", escape(k), escape(v));
        }
        h.push_str("</table>");
    }

    // Degradation per victim kind and benchmark.
    let benches: Vec<Benchmark> = {
        let mut b: Vec<Benchmark> = rows.iter().map(|r| r.benchmark).filter(|b| b.higher_is_better()).collect();
        b.dedup();
        b.sort();
        b.dedup();
        b
    };
    let victims: Vec<String> = {
        let mut v: Vec<String> = Vec::new();
        for r in &rows {
            if !v.contains(&r.victim) {
                v.push(r.victim.clone());
            }
        }
        // Matrix order (vanilla, container, qemu), whatever order the store returned.
        v.sort_by_key(|name| lab::VictimKind::ALL.iter().position(|k| k.as_str() == name));
        v
    };
    let settings: Vec<String> = {
        let mut s: Vec<String> = Vec::new();
        for r in &rows {
            let k = setting_label(r);
            if !s.contains(&k) {
                s.push(k);
            }
        }
        s
    };
    h.push_str("<h2>Degradation under attack</h2><p>Throughput lost under the SYN flood, in % of the idle median (positive is worse), per victim kind and benchmark.</p>");
    for (si, setting) in settings.iter().enumerate() {
        let series: Vec<(String, Vec<Option<f64>>)> = victims
            .iter()
            .map(|v| {
                let vals = benches
                    .iter()
                    .map(|b| {
                        rows.iter()
                            .find(|r| &r.victim == v && r.benchmark == *b && &setting_label(r) == setting)
                            .and_then(|r| r.degradation)
                    })
                    .collect();
                (v.clone(), vals)
            })
            .collect();
        let cats: Vec<String> = benches.iter().map(|b| b.to_string()).collect();
        h.push_str(&bar_chart(
            &format!("degradation-{si}"),
            &format!("Degradation under attack ({setting})"),
            "% lost",
            &cats,
            &series,
        ));
    }

    // Host CPU under attack (Table 1).
    h.push_str("<h2>CPU use of the idle victim under attack (Table 1)</h2>");
    let cats: Vec<String> = victims.clone();
    let pick = |phase: Phase, f: fn(&summary::CpuRow) -> f64| -> Vec<Option<f64>> {
        victims.iter().map(|v| cpu.iter().find(|c| &c.victim == v && c.phase == phase).map(f)).collect()
    };
    h.push_str(&bar_chart(
        "cpu-under-attack",
        "Host CPU with the victim idle: no attack vs SYN flood",
        "% of all host CPUs",
        &cats,
        &[
            ("busy, no attack".into(), pick(Phase::Idle, |c| c.host_busy_pct)),
            ("busy, attack".into(), pick(Phase::Attack, |c| c.host_busy_pct)),
            ("softirq, attack".into(), pick(Phase::Attack, |c| c.softirq_pct)),
            ("victim processes, attack (% of a core)".into(), pick(Phase::Attack, |c| c.victim_cpu_pct)),
        ],
    ));
    h.push_str("<table><tr><th>victim</th><th>phase</th><th>host busy %</th><th>softirq %</th><th>system %</th><th>user %</th><th>victim processes % core</th><th>busiest threads</th><th>flood pps</th></tr>");
    for c in &cpu {
        let threads: Vec<String> = c.top_threads.iter().map(|(t, p)| format!("{t} {}", fmt_num(*p))).collect();
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&c.victim),
            c.phase.as_str(),
            fmt_num(c.host_busy_pct),
            fmt_num(c.softirq_pct),
            fmt_num(c.system_pct),
            fmt_num(c.user_pct),
            fmt_num(c.victim_cpu_pct),
            escape(&threads.join(", ")),
            opt(c.flood_pps)
        );
    }
    h.push_str("</table>");

    // Defences: does any of them keep the web service up under attack, per victim kind?
    let defences = summary::defence_table(records);
    if !defences.is_empty() {
        h.push_str("<h2 id=\"defences\">Defences: web loss under attack</h2><p>Requests/s of the two-tier web benchmark idle and under the SYN flood, each with the same defence applied (the nftables defences on the gateway, SYN cookies in the victim). The seed concluded that these defences do not protect VMs adequately.</p>");
        h.push_str(
            "<table><tr><th>victim</th><th>defence</th><th>idle req/s</th><th>attack req/s</th><th>web loss</th></tr>",
        );
        for d in &defences {
            let loss = match (&d.unavailable, d.web_loss_pct) {
                (Some(why), _) => format!("<span class=\"bad\">not run: {}</span>", escape(why)),
                (None, Some(l)) => format!("{}%", fmt_num(l)),
                (None, None) => "–".into(),
            };
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{loss}</td></tr>",
                escape(&d.victim),
                escape(&d.mitigation),
                opt(d.idle_rps),
                opt(d.attack_rps)
            );
        }
        h.push_str("</table>");
    }

    // The two tiers of the web benchmark.
    let tiers = summary::web_tiers(records);
    if !tiers.is_empty() {
        h.push_str("<h2 id=\"web-tiers\">Two-tier web benchmark</h2><p>The web application and its MariaDB server are separate processes in every victim, talking over a unix socket as in the seed's Apache + MySQL setup. CPU is % of one core, as the victim's own <code>/proc</code> counts it (medians over repetitions).</p>");
        h.push_str("<table><tr><th>victim</th><th>phase</th><th>requests/s</th><th>p50 ms</th><th>p99 ms</th><th>web tier CPU %</th><th>database tier CPU %</th></tr>");
        for t in &tiers {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&t.victim),
                t.phase.as_str(),
                opt(t.requests_per_sec),
                opt(t.p50_ms),
                opt(t.p99_ms),
                opt(t.web_tier_cpu_pct),
                opt(t.db_tier_cpu_pct)
            );
        }
        h.push_str("</table>");
    }

    // Profiling (Table 2).
    h.push_str("<h2>Profiling under attack vs idle (Table 2)</h2>");
    let prof_counters: Vec<String> = {
        let mut c: Vec<String> = Vec::new();
        for p in &prof {
            if !c.contains(&p.counter) && !p.counter.starts_with("kvm.") && !p.counter.starts_with("netdev") {
                c.push(p.counter.clone());
            }
        }
        c.truncate(6);
        c
    };
    let series: Vec<(String, Vec<Option<f64>>)> = victims
        .iter()
        .map(|v| {
            let vals = prof_counters
                .iter()
                .map(|k| {
                    prof.iter().find(|p| &p.victim == v && &p.counter == k).and_then(|p| p.ratio).map(|r| r.log10())
                })
                .collect();
            (v.clone(), vals)
        })
        .collect();
    let short: Vec<String> = prof_counters
        .iter()
        .map(|c| c.split(" (").next().unwrap_or(c).replace("victim processes: ", "victim "))
        .collect();
    h.push_str(&bar_chart(
        "profiling",
        "Profiling counters: attack / idle (log10 of the ratio)",
        "log10(attack/idle)",
        &short,
        &series,
    ));
    h.push_str("<table><tr><th>victim</th><th>counter</th><th>idle</th><th>attack</th><th>attack/idle</th></tr>");
    for p in &prof {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&p.victim),
            escape(&p.counter),
            opt(p.idle),
            opt(p.attack),
            opt(p.ratio)
        );
    }
    h.push_str("</table>");

    // Every cell group.
    h.push_str("<h2>All cells</h2><table id=\"bench-cells\"><tr><th>victim</th><th>benchmark</th><th>settings</th><th>metric</th><th>idle median [min–max]</th><th>attack median [min–max]</th><th>degradation</th><th>failed</th></tr>");
    for r in &rows {
        let spread = |s: Option<summary::Spread>| {
            s.map(|s| format!("{} [{}–{}] n={}", fmt_num(s.median), fmt_num(s.min), fmt_num(s.max), s.n))
                .unwrap_or_else(|| "–".into())
        };
        let deg = match (r.degradation, r.benchmark.higher_is_better()) {
            (Some(d), true) => format!("{}%", fmt_num(d)),
            (Some(d), false) => format!("+{} pts CPU", fmt_num(d)),
            (None, _) => "–".into(),
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} ({})</td><td>{}</td><td>{}</td><td>{}</td><td{}>{}</td></tr>",
            escape(&r.victim),
            r.benchmark,
            escape(&setting_label(r)),
            escape(&r.metric),
            escape(&r.unit),
            spread(r.idle),
            spread(r.attack),
            deg,
            if r.failed > 0 { " class=\"bad\"" } else { "" },
            r.failed
        );
    }
    h.push_str("</table>");
    let failures: Vec<&Row> = rows.iter().filter(|r| !r.errors.is_empty()).collect();
    if !failures.is_empty() {
        h.push_str("<h2>Failed cells</h2><ul>");
        for r in failures {
            for e in &r.errors {
                let _ = write!(h, "<li><code>{}</code>: {}</li>", escape(&r.group), escape(e));
            }
        }
        h.push_str("</ul>");
    }
    h
}

fn setting_label(r: &Row) -> String {
    format!(
        "SYN cookies {}, flood {}{}{}",
        if r.syncookies { "on" } else { "off" },
        r.attack_rate,
        if r.backend == "-" { String::new() } else { format!(", qemu {}", r.backend) },
        if r.mitigation == "none" { String::new() } else { format!(", defence {}", r.mitigation) }
    )
    .replace(", qemu virtio", "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::tests::fake_records;

    #[test]
    fn report_has_plots_and_tables() {
        let info = RunInfo { run_id: "r1".into(), started: "now".into(), facts: vec![("host".into(), "<x>".into())] };
        let h = html(&info, &fake_records());
        assert!(h.starts_with("<!DOCTYPE html>"));
        assert_eq!(h.matches("<svg").count(), 3, "degradation, CPU, profiling");
        assert!(h.matches("class=\"bar\"").count() >= 10);
        assert!(h.contains("&lt;x&gt;"), "escaped");
        assert!(h.contains("Failed cells") && h.contains("no space"));
    }

    #[test]
    fn long_labels_are_turned_and_the_legend_wraps() {
        let cats: Vec<String> = (0..6).map(|i| format!("victim processes: a long counter name {i} (host)")).collect();
        let series: Vec<(String, Vec<Option<f64>>)> =
            (0..4).map(|i| (format!("a long series name number {i}"), vec![Some(1.0); 6])).collect();
        let s = bar_chart("x", "t", "u", &cats, &series);
        assert_eq!(s.matches("rotate(-35").count(), 6, "every category label is turned");
        assert!(s.contains("…"), "labels past 28 characters are cut");
        let (pos, h) =
            legend_layout(&series.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(), 70.0, 0.0, 740.0, 12.0);
        assert!(h > 20.0 && pos.iter().any(|p| p.1 > 0.0), "the legend wraps: {pos:?}");
        for w in pos.windows(2).filter(|w| w[0].1 == w[1].1) {
            assert!(w[1].0 - w[0].0 >= 16.0 + text_width("a long series name number 0", 12.0), "{pos:?}");
        }
        // Short labels stay horizontal.
        let s = bar_chart("x", "t", "u", &["a".into(), "b".into()], &series);
        assert!(!s.contains("rotate(-35") && s.contains("class=\"xlabel\""));
    }

    #[test]
    fn empty_and_odd_values_do_not_break_the_chart() {
        let s = bar_chart("x", "t", "u", &[], &[]);
        assert!(s.starts_with("<svg") && s.ends_with("</svg>"));
        let s = bar_chart(
            "x",
            "t",
            "u",
            &["a".into()],
            &[("s".into(), vec![Some(f64::NAN)]), ("n".into(), vec![Some(-5.0)])],
        );
        assert!(!s.contains("NaN"));
        assert_eq!(s.matches("class=\"bar\"").count(), 1);
        assert!(html(&RunInfo::default(), &[]).contains("</html>"));
    }
}
