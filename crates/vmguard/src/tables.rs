//! Terminal tables of the library reports that more than one command prints (a flood's effect, a
//! recording, Part A and Part B figures, the lab's status), so commands never import each other.

use detect::online::PartBReport;
use orchestrate::evaluate::PartATable;
use orchestrate::flood::FloodReport;
use orchestrate::record::RecordReport;

use crate::output;

pub fn flood_report(r: &FloodReport) {
    match &r.summary {
        Some(s) => println!(
            "flood from {} to {} ({}:{}): {} packets sent in {:.2} s, {:.0} pps, {:.2} Mbit/s, {} errors, stopped by {:?}",
            r.from,
            r.target,
            s.kind,
            s.dst_port,
            s.sent,
            s.elapsed_secs,
            s.achieved_pps,
            s.achieved_bps / 1e6,
            s.errors,
            s.stopped_by,
        ),
        None => println!(
            "{} flood from {} to {}: {} packets sent",
            r.tool,
            r.from,
            r.target,
            r.sent().map_or("?".into(), |n| n.to_string())
        ),
    }
    if let Some(v) = &r.victim {
        let rows = [vec![
            v.name.clone(),
            v.rx_packets.to_string(),
            v.syncookies_sent.to_string(),
            v.listen_drops.to_string(),
            format!("{:.1}", v.victim_cpu_percent),
            format!("{:.1}", v.host_softirq_percent),
        ]];
        println!(
            "{}",
            output::table(
                &["victim", "rx packets", "SYN cookies sent", "listen drops", "victim CPU %", "host softirq %"],
                rows
            )
        );
    }
}

pub fn record_report(r: &RecordReport) {
    println!(
        "recorded scenario {} into {}: {} samples, {} labels over {:.0} s{}",
        r.scenario,
        r.store,
        r.samples,
        r.labels.len(),
        (r.end_ns - r.start_ns) as f64 / 1e9,
        if r.interrupted { " (interrupted: the phases that ran are labelled)" } else { "" }
    );
    for f in &r.failures {
        println!("  warning: {f} (phase labelled unknown)");
    }
}

/// Metrics rows of an accuracy report, for people.
pub fn report_details(r: &detect::AccuracyReport) -> comfy_table::Table {
    output::table(
        &[
            "window",
            "overlap",
            "method",
            "scored/fitted windows",
            "accuracy",
            "precision",
            "recall",
            "F1",
            "TP",
            "FP",
            "TN",
            "FN",
        ],
        r.rows.iter().map(|row| {
            let m = &row.metrics;
            let c = &m.confusion;
            vec![
                row.window_label(),
                match row.step_secs {
                    Some(s) if s < row.window_secs => detect::eval::window_name(row.window_secs - s),
                    _ => "none".to_string(),
                },
                row.method.clone(),
                format!("{}/{}", c.total(), row.fitted_windows),
                format!("{:.1}%", 100.0 * m.accuracy),
                format!("{:.1}%", 100.0 * m.precision),
                format!("{:.1}%", 100.0 * m.recall),
                format!("{:.3}", m.f1),
                c.true_positive.to_string(),
                c.false_positive.to_string(),
                c.true_negative.to_string(),
                c.false_negative.to_string(),
            ]
        }),
    )
}

pub fn part_a(tables: &[PartATable]) {
    for t in tables {
        println!(
            "\nPart A (seed's method), feature set {} ({}) on guests {}:",
            t.feature_set,
            t.features.join(", "),
            t.guests.join(", ")
        );
        if t.report.rows.is_empty() {
            println!("  (no window length had labelled windows)");
            continue;
        }
        print!("{}", t.report.to_table());
        println!("{}", report_details(&t.report));
        if t.report.rows.iter().any(|r| r.step_secs.is_some()) {
            println!(
                "rows \"W every S\": windows of W starting every S, overlapping by W - S (not independent); \
                 the others are back to back, none overlapping"
            );
        } else {
            println!("windows back to back (tumbling), none overlapping");
        }
    }
}

pub fn part_b(b: &PartBReport) {
    println!(
        "\nPart B (vmguard detector), sliding windows of {} s, trained on {}:",
        b.window_secs,
        b.trained_on.join(", ")
    );
    if b.metrics.is_some() {
        print!("{}", b.report.to_table());
        println!("{}", report_details(&b.report));
    } else {
        println!("  (no labelled windows)");
    }
    if let Some(f) = b.false_positive_rate {
        println!("false positives on benign windows: {:.2}%; alerts outside attacks: {}", 100.0 * f, b.false_alerts);
    }
    let per = b.per_scenario.iter().map(|(k, m)| {
        vec![
            k.clone(),
            m.confusion.total().to_string(),
            format!("{:.1}%", 100.0 * m.accuracy),
            m.confusion.false_positive.to_string(),
            m.confusion.false_negative.to_string(),
        ]
    });
    println!("{}", output::table(&["scenario", "windows", "accuracy", "FP", "FN"], per));
    println!("{}", detections(b));
    if let Some(r) = b.role_accuracy {
        println!("role named correctly in {:.0}% of alerted attacks", 100.0 * r);
    }
    if let Some(m) = &b.metrics {
        println!(
            "attack windows caught by the benign-only novelty check alone: {} of {}",
            b.attack_windows_by_novelty,
            m.confusion.true_positive + m.confusion.false_negative
        );
    }
}

/// One row per attack: when it was alerted, with which role, when the alert cleared.
pub fn detections(b: &PartBReport) -> comfy_table::Table {
    let rows = b.detections.iter().map(|d| {
        vec![
            d.scenario.clone(),
            d.guest.clone(),
            d.truth.as_str().to_string(),
            d.alert_after_s.map_or("missed".into(), |s| format!("{s:.1} s")),
            d.role.map_or("-".into(), |r| r.as_str().to_string()),
            d.cleared_after_s.map_or("-".into(), |s| format!("{s:.1} s")),
        ]
    });
    output::table(&["scenario", "guest", "truth", "alert after", "role", "cleared after"], rows)
}

pub fn lab_status(report: &lab::StatusReport) {
    println!("lab `{}`: {}", report.prefix, report.phase);
    if let (Some(rate), Some(drop)) = (&report.attacker_rate, report.gateway_drop) {
        println!("attacker link: {rate}; gateway: {}", if drop { "DROPS forwarded packets" } else { "forwards" });
    }
    if !report.victims.is_empty() {
        let rows = report.victims.iter().map(|v| {
            vec![
                v.name.clone(),
                v.address.to_string(),
                if v.http_ok { "ok".into() } else { "NO ANSWER".into() },
                v.accelerator.clone().unwrap_or_else(|| "-".into()),
                v.pids.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(","),
                format!("{:.1}", v.start_secs),
                format!("{:.1}", v.rss_kib as f64 / 1024.0),
                v.database.as_ref().map_or("-".into(), |d| format!("mariadb {} ({:.1} s)", d.pid, d.start_secs)),
            ]
        });
        let head = ["victim", "address", "http", "accel", "pids", "start s", "RSS MiB", "database tier"];
        println!("{}", output::table(&head, rows));
    }
    for v in &report.victims {
        let Some(x) = &v.xen else { continue };
        let secs = |s: Option<f64>| s.map_or("-".into(), |s| format!("{s:.1} s"));
        println!(
            "{}: Xen {}, kernel {}; dom0 up at {}, domU `{}` up at {} (from qemu's start)",
            v.name,
            x.info.xen_version,
            x.info.kernel_version,
            secs(x.info.dom0_up_secs),
            x.info.domu_name,
            secs(x.info.domu_up_secs)
        );
        if let Some(e) = &x.domains_error {
            println!("  domains: dom0 did not answer ({e})");
        }
        if let Some(r) = &x.relay {
            let alive = if r.alive { "running" } else { "NOT RUNNING" };
            println!("  stream relay: pid {} ({alive})", r.pid);
            for c in r.status.iter().flat_map(|s| &s.channels) {
                println!(
                    "    {}: qemu {} ({} connects){}, {} readers ({} in all, {} refused), {} bytes in, {} dropped with no reader, {} dropped for slow readers ({} overflowed)",
                    c.name,
                    if c.upstream_connected { "connected" } else { "NOT CONNECTED" },
                    c.upstream_connects,
                    if c.held { ", held until a reader connects (dom0's writer waits)" } else { "" },
                    c.readers,
                    c.readers_total,
                    c.readers_refused,
                    c.upstream_bytes,
                    c.unread_bytes,
                    c.reader_dropped_bytes,
                    c.readers_overflowed
                );
            }
        }
        let rows = x.domains.iter().map(|d| {
            vec![
                d.name.clone(),
                d.id.to_string(),
                d.mem_mib.to_string(),
                d.vcpus.to_string(),
                d.state.clone(),
                d.cpu_secs.clone(),
            ]
        });
        if !x.domains.is_empty() {
            println!("{}", output::table(&["domain", "id", "MiB", "vcpus", "state", "cpu s"], rows));
        }
    }
    if report.phase == "leftover" {
        println!("namespaces left over: {} (run `vmguard lab down`)", report.namespaces.join(" "));
    }
}

/// The applied defences (`mitigate status`, `lab status`).
pub fn mitigations(all: &[mitigate::Status]) {
    if all.is_empty() {
        println!("no defence applied (`vmguard mitigate apply DEFENCE --victim V`)");
        return;
    }
    let rows = all.iter().map(|s| {
        vec![
            s.applied.defence.kind().to_string(),
            s.applied.victim.clone(),
            s.applied.place.as_str().to_string(),
            s.description.clone(),
            match s.table_present {
                Some(true) => s.applied.table.clone().unwrap_or_default(),
                Some(false) => "MISSING".into(),
                None => "-".into(),
            },
            match (s.counted_packets, s.notifications()) {
                (Some(n), _) => n.to_string(),
                (None, Some((sent, held, suppressed))) => {
                    format!("RX notifications: {sent} sent, {held} held back, {suppressed} suppressed by the guest")
                }
                (None, None) => "-".into(),
            },
        ]
    });
    println!("{}", output::table(&["defence", "victim", "at", "what", "nft table", "acted on"], rows));
}
