//! One guest's timeline over one recorded scenario, as an inline SVG: the counters that matter as lines
//! (packets per second both ways and SYN cookies per second on a log scale, CPU in % of a core), the
//! detector's score per window with its thresholds, the alerts raised and cleared (vertical markers),
//! and the ground truth behind everything (attacks shaded, unknown phases hatched grey).

use std::fmt::Write as _;

use bench::report::{COLORS, escape, legend_layout, y_gridline};
use detect::online::{AlertEvent, Timeline, base_index};
use detect::truth::{Span, Truth};
use telemetry::Sample;

/// A line of the timeline: name, color, points `(time_ms, value)`.
#[derive(Debug, Clone)]
pub struct Line {
    pub name: String,
    pub color: &'static str,
    pub points: Vec<(i64, f64)>,
}

/// What one timeline plot shows.
#[derive(Debug, Clone)]
pub struct GuestTimeline {
    pub guest: String,
    pub kind: String,
    pub scenario: String,
    pub start_ms: i64,
    pub end_ms: i64,
    /// Rates per second (log panel).
    pub rates: Vec<Line>,
    /// CPU in % of one core.
    pub cpu: Vec<Line>,
    /// This scenario's ground truth of the guest.
    pub spans: Vec<Span>,
    /// The detector's replay over the same time, when a model was given.
    pub score: Option<Timeline>,
}

/// The counters the timeline draws: (base counter, name in the legend, color: the same in every
/// plot, none of them the attack shading's or the alert markers').
const RATE_LINES: [(&str, &str, &str, &str); 4] = [
    ("netdev", "rx_packets", "packets/s from the guest", COLORS[0]),
    ("netdev", "tx_packets", "packets/s to the guest", COLORS[1]),
    ("snmp", "TcpExt.SyncookiesSent", "SYN cookies sent/s", COLORS[2]),
    ("snmp", "TcpExt.ListenDrops", "listen drops/s", COLORS[3]),
];
const CPU_LINES: [(&str, &str, &str, &str); 2] = [
    ("process", "cpu_ns", "CPU of its processes", COLORS[4]),
    ("cgroup", "cpu.usage_ns", "CPU of its cgroup", "#6A3D9A"),
];
const ATTACK: &str = "#D55E00";
const RAISED: &str = "#B00000";
const CLEARED: &str = "#1B7837";

/// The lines of one guest's samples between `start_ms` and `end_ms`, from the detector's own ticks
/// (the deltas it scores), so what is drawn is what was scored.
pub fn lines(samples: &[Sample], start_ms: i64, end_ms: i64) -> (Vec<Line>, Vec<Line>) {
    let ticks = orchestrate::ticks::ticks_of_samples(samples);
    let pick = |defs: &[(&str, &str, &str, &'static str)], scale: f64| -> Vec<Line> {
        defs.iter()
            .filter_map(|&(src, c, name, color)| {
                let i = base_index(src, c)?;
                let points: Vec<(i64, f64)> = ticks
                    .iter()
                    .filter(|t| t.time_ms >= start_ms && t.time_ms <= end_ms)
                    .filter_map(|t| {
                        let (_, d, iv) = t.deltas.iter().find(|(k, _, _)| *k == i)?;
                        (*iv > 0.0).then(|| (t.time_ms, d / iv * 1000.0 * scale))
                    })
                    .collect();
                (!points.is_empty()).then(|| Line { name: name.to_string(), color, points })
            })
            .collect()
    };
    // cpu_ns per second of time → % of one core: ns/s / 1e9 * 100.
    (pick(&RATE_LINES, 1.0), pick(&CPU_LINES, 1e-7))
}

const W: f64 = 1000.0;
const LEFT: f64 = 78.0;
const RIGHT: f64 = 20.0;

/// The timeline as an SVG with `id`.
pub fn svg(id: &str, t: &GuestTimeline) -> String {
    let span_ms = (t.end_ms - t.start_ms).max(1) as f64;
    let x = |ms: i64| LEFT + (W - LEFT - RIGHT) * (ms - t.start_ms) as f64 / span_ms;
    let clamp = |ms: i64| ms.clamp(t.start_ms, t.end_ms);
    // Panels: (top, height).
    let top0 = 58.0;
    let rate_p = (top0, 180.0);
    let cpu_p = (rate_p.0 + rate_p.1 + 22.0, 90.0);
    let score_p = if t.score.is_some() { Some((cpu_p.0 + cpu_p.1 + 22.0, 110.0)) } else { None };
    let plot_bottom = score_p.map_or(cpu_p.0 + cpu_p.1, |p| p.0 + p.1);
    let axis_y = plot_bottom + 16.0;
    let colors: Vec<&str> = t.rates.iter().chain(&t.cpu).map(|l| l.color).collect();
    let mut names: Vec<String> = t.rates.iter().chain(&t.cpu).map(|l| l.name.clone()).collect();
    let n_lines = names.len();
    // Legend entries for what this plot shows only.
    let in_range = |ms: i64| ms >= t.start_ms && ms <= t.end_ms;
    if t.spans.iter().any(|s| s.truth.is_attack()) {
        names.push("attack (ground truth)".into());
    }
    if t.spans.iter().any(|s| s.truth == Truth::Unknown) {
        names.push("unknown phase".into());
    }
    if let Some(tl) = &t.score {
        names.push("detector score".into());
        if tl.events.iter().any(|e| matches!(e, AlertEvent::Raised { time_ms, .. } if in_range(*time_ms))) {
            names.push("alert raised".into());
        }
        if tl.events.iter().any(|e| matches!(e, AlertEvent::Cleared { time_ms, .. } if in_range(*time_ms))) {
            names.push("alert cleared".into());
        }
    }
    let legend_top = axis_y + 26.0;
    let (legend, legend_h) = legend_layout(&names, LEFT, legend_top, W - RIGHT, 12.0);
    let h = (legend_top + legend_h + 4.0).ceil();
    let title = format!("{} ({}) in scenario {}", t.guest, t.kind, t.scenario);
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg id="{id}" class="plot timeline" xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" role="img" aria-label="{tt}"><title>{tt}</title><defs><pattern id="{id}-hatch" width="8" height="8" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="8" height="8" fill="#eeeeee"/><line x1="0" y1="0" x2="0" y2="8" stroke="#999" stroke-width="3"/></pattern></defs><rect x="0" y="0" width="{W}" height="{h}" fill="white"/><text x="{cx}" y="20" text-anchor="middle" font-size="15" font-family="sans-serif">{tt}</text><text x="{cx}" y="38" text-anchor="middle" font-size="11" font-family="sans-serif" fill="#555">from {from} UTC, seconds since then</text>"##,
        tt = escape(&title),
        cx = W / 2.0,
        from = crate::utc(t.start_ms * 1_000_000)
    );
    // Ground truth behind every panel.
    for sp in &t.spans {
        let (a, b) = (clamp(sp.start_ns / 1_000_000), clamp(sp.end_ns / 1_000_000));
        if b <= a {
            continue;
        }
        let (class, fill) = match sp.truth {
            Truth::AttackVictim | Truth::AttackZombie => ("truth-attack", ATTACK.to_string()),
            Truth::Unknown => ("truth-unknown", format!("url(#{id}-hatch)")),
            Truth::Normal => continue,
        };
        let opacity = if sp.truth == Truth::Unknown { 0.8 } else { 0.16 };
        let _ = write!(
            s,
            r#"<rect class="{class}" x="{x0:.1}" y="{top0}" width="{w:.1}" height="{hh}" fill="{fill}" fill-opacity="{opacity}"><title>{what} ({sc}): {d:.0} s</title></rect>"#,
            x0 = x(a),
            w = x(b) - x(a),
            hh = plot_bottom - top0,
            what = sp.truth.as_str(),
            sc = escape(&sp.scenario),
            d = (b - a) as f64 / 1000.0
        );
    }
    // Rates, log scale.
    let max_rate = t.rates.iter().flat_map(|l| l.points.iter().map(|p| p.1)).fold(1.0f64, f64::max);
    let decades = max_rate.log10().ceil().max(1.0);
    // log10(v + 1), so 0 has a place; the top decade sits on the panel's top.
    let top_log = (10f64.powf(decades) + 1.0).log10();
    let ry = |v: f64| rate_p.0 + rate_p.1 * (1.0 - (v.max(0.0) + 1.0).log10() / top_log);
    panel_frame(&mut s, rate_p, "per second (log)");
    // 0 and every decade from 10 up (1 would sit on top of 0).
    for d in std::iter::once(-1).chain(1..=decades as i32) {
        let v = if d < 0 { 0.0 } else { 10f64.powi(d) };
        y_gridline(&mut s, LEFT, W - RIGHT, ry(v), &si(v), 10);
    }
    for (i, l) in t.rates.iter().enumerate() {
        polyline(&mut s, &format!("{id}-rate-{i}"), l, &x, &ry);
    }
    // CPU.
    let max_cpu = t.cpu.iter().flat_map(|l| l.points.iter().map(|p| p.1)).fold(10.0f64, f64::max);
    let cpu_hi = (max_cpu / 50.0).ceil() * 50.0;
    let cy = |v: f64| cpu_p.0 + cpu_p.1 * (1.0 - v.clamp(0.0, cpu_hi) / cpu_hi);
    panel_frame(&mut s, cpu_p, "CPU % of a core");
    for f in [0.0, 0.5, 1.0] {
        let v = cpu_hi * f;
        y_gridline(&mut s, LEFT, W - RIGHT, cy(v), &v.to_string(), 10);
    }
    for (i, l) in t.cpu.iter().enumerate() {
        polyline(&mut s, &format!("{id}-cpu-{i}"), l, &x, &cy);
    }
    // Score and alerts.
    if let (Some(tl), Some(p)) = (&t.score, score_p) {
        let sy = |v: f64| p.0 + p.1 * (1.0 - v.clamp(0.0, 1.0));
        panel_frame(&mut s, p, "detector score");
        for v in [0.0, 0.5, 1.0] {
            y_gridline(&mut s, LEFT, W - RIGHT, sy(v), &v.to_string(), 10);
        }
        for (cls, v, dash, label) in
            [("threshold", tl.threshold, "6 3", "alarm"), ("clear-threshold", tl.clear_threshold, "2 3", "calm")]
        {
            let _ = write!(
                s,
                r##"<line class="{cls}" x1="{LEFT}" x2="{x2}" y1="{yy:.1}" y2="{yy:.1}" stroke="#333" stroke-dasharray="{dash}"><title>{label} threshold {v:.2}</title></line>"##,
                x2 = W - RIGHT,
                yy = sy(v),
            );
        }
        let pts: Vec<(i64, f64)> = tl
            .points
            .iter()
            .filter(|q| q.end_ms >= t.start_ms && q.end_ms <= t.end_ms)
            .map(|q| (q.end_ms, q.score))
            .collect();
        let line = Line { name: "detector score".into(), color: "#000000", points: pts };
        polyline(&mut s, &format!("{id}-score"), &line, &x, &sy);
        for q in tl.points.iter().filter(|q| q.alarm && q.end_ms >= t.start_ms && q.end_ms <= t.end_ms) {
            let _ = write!(s, r#"<circle cx="{:.1}" cy="{:.1}" r="2.2" fill="{ATTACK}"/>"#, x(q.end_ms), sy(q.score));
        }
        for ev in &tl.events {
            let (cls, tm, color, dash, what) = match ev {
                AlertEvent::Raised { time_ms, role, score, .. } => {
                    ("alert-raised", *time_ms, RAISED, "", format!("alert raised ({role:?}, score {score:.2})"))
                }
                AlertEvent::Cleared { time_ms, .. } => {
                    ("alert-cleared", *time_ms, CLEARED, r#" stroke-dasharray="6 3""#, "alert cleared".into())
                }
            };
            if tm < t.start_ms || tm > t.end_ms {
                continue;
            }
            let _ = write!(
                s,
                r##"<line class="{cls}" x1="{xx:.1}" x2="{xx:.1}" y1="{top0}" y2="{plot_bottom}" stroke="{color}" stroke-width="2"{dash}><title>{what} at {sec:.0} s</title></line><path d="M{xx:.1} {top0} l-5 -8 h10 z" fill="{color}"/>"##,
                xx = x(tm),
                sec = (tm - t.start_ms) as f64 / 1000.0,
            );
        }
    }
    // An alert still raised at the right edge: when it cleared.
    if let (Some(tl), Some(p)) = (&t.score, score_p) {
        let last = tl.events.iter().rev().find(|e| event_ms(e) <= t.end_ms);
        if let Some(AlertEvent::Raised { .. }) = last {
            let cleared = tl.events.iter().find_map(|e| match e {
                AlertEvent::Cleared { time_ms, .. } if *time_ms > t.end_ms => Some(*time_ms),
                _ => None,
            });
            let what = match cleared {
                Some(c) => {
                    format!("alert still raised at the end: cleared {:.0} s later", (c - t.end_ms) as f64 / 1000.0)
                }
                None => "alert still raised at the end of the recording".to_string(),
            };
            let _ = write!(
                s,
                r#"<text class="still-raised" x="{x}" y="{y}" text-anchor="end" font-size="11" font-family="sans-serif" fill="{RAISED}">{what}</text>"#,
                x = W - RIGHT - 4.0,
                y = p.0 - 4.0,
            );
        }
    }
    // Time axis: ticks at a round step, at most 10.
    let secs = span_ms / 1000.0;
    let step = [1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0]
        .into_iter()
        .find(|st| secs / st <= 10.0)
        .unwrap_or(7200.0);
    let mut k = 0.0;
    while k <= secs + 1e-9 {
        let xx = LEFT + (W - LEFT - RIGHT) * k / secs.max(1e-9);
        let _ = write!(
            s,
            r##"<line x1="{xx:.1}" x2="{xx:.1}" y1="{plot_bottom}" y2="{y2}" stroke="#333"/><text x="{xx:.1}" y="{ty}" text-anchor="middle" font-size="10" font-family="sans-serif">{k}</text>"##,
            y2 = plot_bottom + 4.0,
            ty = axis_y,
        );
        k += step;
    }
    let _ = write!(
        s,
        r#"<text x="{cx}" y="{ty}" text-anchor="middle" font-size="11" font-family="sans-serif">seconds</text>"#,
        cx = LEFT + (W - LEFT - RIGHT) / 2.0,
        ty = axis_y + 14.0
    );
    // Legend.
    for (i, n) in names.iter().enumerate() {
        let (lx, ly) = legend[i];
        let swatch = if i < n_lines {
            format!(r#"<rect x="{lx:.1}" y="{:.1}" width="12" height="3" fill="{}"/>"#, ly + 5.0, colors[i])
        } else {
            match n.as_str() {
                "attack (ground truth)" => {
                    format!(
                        r##"<rect x="{lx:.1}" y="{ly:.1}" width="12" height="12" fill="{ATTACK}" fill-opacity="0.3"/>"##
                    )
                }
                "unknown phase" => {
                    format!(r#"<rect x="{lx:.1}" y="{ly:.1}" width="12" height="12" fill="url(#{id}-hatch)"/>"#)
                }
                "detector score" => {
                    format!(r##"<rect x="{lx:.1}" y="{:.1}" width="12" height="3" fill="#000"/>"##, ly + 5.0)
                }
                "alert raised" => {
                    format!(r#"<rect x="{:.1}" y="{ly:.1}" width="3" height="12" fill="{RAISED}"/>"#, lx + 4.0)
                }
                _ => format!(
                    r#"<line x1="{x:.1}" x2="{x:.1}" y1="{ly:.1}" y2="{:.1}" stroke="{CLEARED}" stroke-width="2" stroke-dasharray="4 2"/>"#,
                    ly + 12.0,
                    x = lx + 5.5
                ),
            }
        };
        let _ = write!(
            s,
            r#"{swatch}<text x="{tx:.1}" y="{ty:.1}" font-size="12" font-family="sans-serif">{n}</text>"#,
            tx = lx + 16.0,
            ty = ly + 10.0,
            n = escape(n)
        );
    }
    s.push_str("</svg>");
    s
}

fn panel_frame(s: &mut String, (top, h): (f64, f64), label: &str) {
    let my = top + h / 2.0;
    let _ = write!(
        s,
        r##"<rect x="{LEFT}" y="{top}" width="{w}" height="{h}" fill="none" stroke="#bbb"/><text x="14" y="{my}" font-size="11" font-family="sans-serif" transform="rotate(-90 14 {my})" text-anchor="middle">{l}</text>"##,
        w = W - LEFT - RIGHT,
        l = escape(label)
    );
}

/// A polyline broken where the data has gaps longer than 5 s.
fn polyline(s: &mut String, id: &str, l: &Line, x: &dyn Fn(i64) -> f64, y: &dyn Fn(f64) -> f64) {
    let color = l.color;
    let _ = write!(s, r#"<g id="{id}" class="line"><title>{}</title>"#, escape(&l.name));
    let mut seg: Vec<String> = Vec::new();
    let mut last: Option<i64> = None;
    let flush = |s: &mut String, seg: &mut Vec<String>| {
        if !seg.is_empty() {
            let _ =
                write!(s, r#"<polyline fill="none" stroke="{color}" stroke-width="1.6" points="{}"/>"#, seg.join(" "));
            seg.clear();
        }
    };
    for &(t, v) in &l.points {
        if !v.is_finite() {
            continue;
        }
        if last.is_some_and(|p| t - p > 5_000) {
            flush(s, &mut seg);
        }
        seg.push(format!("{:.1},{:.1}", x(t), y(v)));
        last = Some(t);
    }
    flush(s, &mut seg);
    s.push_str("</g>");
}

/// 0, 1, 10, 100, 1k, 10k, 100k, 1M, ...
fn si(v: f64) -> String {
    match v {
        v if v >= 1e9 => format!("{}G", v / 1e9),
        v if v >= 1e6 => format!("{}M", v / 1e6),
        v if v >= 1e3 => format!("{}k", v / 1e3),
        v => format!("{v}"),
    }
}

fn event_ms(e: &AlertEvent) -> i64 {
    match e {
        AlertEvent::Raised { time_ms, .. } | AlertEvent::Cleared { time_ms, .. } => *time_ms,
    }
}
