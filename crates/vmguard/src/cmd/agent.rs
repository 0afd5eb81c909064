//! `vmguard agent`: collect every guest's counters each second, score a sliding window per guest with
//! Part B's model, and raise / clear alerts naming the guest, its role, the score and the evidence.
//!
//! Alerts go to the log, a JSON-lines file, the OpenMetrics endpoint (`vmguard_guest_score`,
//! `vmguard_guest_alert` gauges per guest) and, optionally, a webhook (HTTP POST of the same JSON).
//!
//! Collection is `telemetry::pipeline` (as in `vmguard collect` and `record`): its per-round deltas feed
//! the detector, and its exporter serves every guest counter with the detector's gauges beside them.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use detect::online::{AlertEvent, AlertState, DetectorModel, Tick, WindowExtractor, base_index};
use serde::Serialize;
use telemetry::export::{Exporter, ExtraFamily, FamilyKind, MetricsServer};
use telemetry::pipeline::RoundReport;

use crate::Cli;
use crate::config::Config;

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The detector (from `vmguard detect train`).
    #[arg(long, default_value = "vmguard-model.json")]
    pub model: PathBuf,
    /// Also append the samples to this store.
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// Append alerts as JSON lines to this file.
    #[arg(long, default_value = "vmguard-alerts.jsonl")]
    pub alerts: PathBuf,
    /// POST every alert (JSON) to this http:// URL.
    #[arg(long)]
    pub webhook: Option<String>,
    /// Serve OpenMetrics on this address (`/metrics`); `off` to disable.
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub listen: String,
    #[arg(long, default_value = "1s", value_parser = super::detect::parse_duration_ms)]
    pub interval: u64,
    /// Stop after this long (default: until Ctrl-C).
    #[arg(long, value_parser = super::detect::parse_duration_ms)]
    pub duration: Option<u64>,
}

/// The detector's families on the exporter.
#[derive(Clone)]
struct Gauges {
    score: ExtraFamily,
    alert: ExtraFamily,
    alerts: ExtraFamily,
}

impl Gauges {
    fn new(e: &Exporter) -> Self {
        Gauges {
            score: e.family(
                "vmguard_guest_score",
                "Detector score of the guest's latest window (0 normal .. 1 attack).",
                FamilyKind::Gauge,
            ),
            alert: e.family(
                "vmguard_guest_alert",
                "1 while an alert is raised for the guest, with its role.",
                FamilyKind::Gauge,
            ),
            alerts: e.family("vmguard_guest_alerts", "Alerts raised for the guest.", FamilyKind::Counter),
        }
    }
}

/// One alert line (JSON lines file, webhook body, log).
#[derive(Debug, Serialize)]
struct AlertLine<'a> {
    #[serde(flatten)]
    event: &'a AlertEvent,
    kind: &'a str,
    threshold: f64,
}

/// Per-guest online state.
struct GuestScorer {
    kind: String,
    extractor: WindowExtractor,
    alert: AlertState,
    alerts_total: u64,
}

/// Scores each collection round: pure logic apart from the sinks it is handed.
struct Scorer {
    model: DetectorModel,
    guests: HashMap<String, GuestScorer>,
    gauges: Option<Gauges>,
    sink: Box<dyn FnMut(&AlertLine<'_>) + Send>,
}

impl Scorer {
    /// One pipeline round: its deltas → one tick per guest → window → verdict → alert state.
    fn round(&mut self, round: &RoundReport<'_>) {
        let mut ticks: HashMap<&str, Tick> = HashMap::new();
        for (s, d) in round.samples.iter().zip(round.deltas) {
            let (Some(idx), Some(d)) = (base_index(s.source.as_str(), &s.counter), d) else { continue };
            let t = ticks.entry(&s.guest).or_default();
            t.time_ms = t.time_ms.max(d.time_ns.div_euclid(1_000_000));
            t.deltas.push((idx, d.delta as f64, d.interval_ns as f64 / 1e6));
        }
        for (guest, tick) in ticks {
            let Some(g) = self.guests.get_mut(guest) else { continue };
            let Some(w) = g.extractor.push(tick) else { continue };
            let Some(km) = self.model.for_kind(&g.kind) else { continue };
            let v = km.verdict(&w.values(), 3);
            let ev = g.alert.update(guest, w.end_ms, &v, km.clear_threshold, &self.model.alert);
            if matches!(ev, Some(AlertEvent::Raised { .. })) {
                g.alerts_total += 1;
            }
            if let Some(gg) = &self.gauges {
                let role = g.alert.active().map_or("none", |(_, r)| r.as_str());
                gg.score.set(&[("guest", guest), ("kind", &g.kind)], v.score);
                gg.alert.remove_where("guest", guest);
                gg.alert.set(
                    &[("guest", guest), ("kind", &g.kind), ("role", role)],
                    f64::from(u8::from(g.alert.active().is_some())),
                );
                gg.alerts.set(&[("guest", guest)], g.alerts_total as f64);
            }
            if let Some(ev) = ev {
                (self.sink)(&AlertLine { event: &ev, kind: &g.kind, threshold: km.threshold });
            }
        }
    }
}

/// The alert's one-line text for the log.
fn describe(ev: &AlertEvent) -> String {
    match ev {
        AlertEvent::Raised { guest, role, score, evidence, .. } => {
            let ev: Vec<String> = evidence
                .iter()
                .map(|e| format!("{} {:.0} {} (normal {:.0})", e.feature, e.value, e.unit, e.normal))
                .collect();
            format!(
                "ALERT guest {guest} is {} a SYN flood ({}), score {score:.2}: {}",
                match role {
                    detect::online::Role::Victim => "the victim of",
                    detect::online::Role::Attacker => "the source of",
                },
                role.as_str(),
                ev.join("; ")
            )
        }
        AlertEvent::Cleared { guest, role, since_ms, time_ms, peak_score } => format!(
            "CLEARED guest {guest} ({}) after {:.0} s, peak score {peak_score:.2}",
            role.as_str(),
            (time_ms - since_ms) as f64 / 1000.0
        ),
    }
}

/// POST `body` to an http:// URL (no TLS: a local receiver such as Alertmanager's webhook or a relay).
fn post(url: &str, body: &str) -> anyhow::Result<()> {
    let rest = url.strip_prefix("http://").ok_or_else(|| anyhow::anyhow!("webhook {url}: only http:// URLs"))?;
    let (host, path) = rest.split_once('/').map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let addr = if host.contains(':') { host.to_string() } else { format!("{host}:80") };
    let sa: SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(&addr)?
        .next()
        .ok_or_else(|| anyhow::anyhow!("webhook {url}: cannot resolve {host}"))?;
    let mut s = TcpStream::connect_timeout(&sa, Duration::from_secs(2))?;
    s.set_write_timeout(Some(Duration::from_secs(2)))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    // One buffer, one write: `write!` on the stream would send every piece as its own segment.
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes())?;
    // Read until the status line is complete (or the receiver closes).
    let mut reply = Vec::new();
    let mut chunk = [0u8; 256];
    while !reply.windows(2).any(|w| w == b"\r\n") && reply.len() < 4096 {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => reply.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&reply);
    if !head.starts_with("HTTP/1.1 2") && !head.starts_with("HTTP/1.0 2") {
        bail!("webhook {url} answered {}", head.lines().next().unwrap_or("nothing"));
    }
    Ok(())
}

pub fn run(cli: &Cli, a: &AgentArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&a.model)
        .with_context(|| format!("reading model {} (train one with `vmguard detect train`)", a.model.display()))?;
    let model = DetectorModel::from_json(&text).with_context(|| format!("loading model {}", a.model.display()))?;
    let spec = Config::load(&cli.config)?.lab;
    let (_state, guests) = crate::guests::lab_guests(&spec)?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let s = Arc::clone(&stop);
        crate::signals::on_interrupt(move || s.store(true, Ordering::SeqCst));
    }
    let exporter = Exporter::new();
    let server = if a.listen != "off" {
        let addr: SocketAddr = a
            .listen
            .parse()
            .with_context(|| format!("--listen {}: not an address such as 127.0.0.1:9464", a.listen))?;
        let server = MetricsServer::bind(addr, exporter.clone())?;
        tracing::info!("OpenMetrics on http://{}/metrics", server.local_addr());
        Some(server)
    } else {
        None
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&a.alerts)
        .with_context(|| format!("opening alerts file {}", a.alerts.display()))?;
    let webhook = a.webhook.clone();
    let sink = Box::new(move |line: &AlertLine<'_>| {
        let text = describe(line.event);
        match line.event {
            AlertEvent::Raised { .. } => tracing::warn!("{text}"),
            AlertEvent::Cleared { .. } => tracing::info!("{text}"),
        }
        let json = serde_json::to_string(line).unwrap_or_default();
        if let Err(e) = writeln!(file, "{json}").and_then(|()| file.flush()) {
            tracing::error!("cannot write the alerts file: {e}");
        }
        if let Some(url) = &webhook
            && let Err(e) = post(url, &json)
        {
            tracing::warn!("webhook: {e:#}");
        }
    });
    let mut per_guest = HashMap::new();
    for g in &guests {
        per_guest.insert(
            g.name.clone(),
            GuestScorer {
                kind: super::train::kind_str(g.kind).to_string(),
                extractor: WindowExtractor::new(model.window_ms),
                alert: AlertState::new(),
                alerts_total: 0,
            },
        );
        if model.for_kind(super::train::kind_str(g.kind)).is_none() {
            tracing::warn!(guest = %g.name, "the model has no entry for this kind of guest: not scored");
        }
    }
    let mut scorer =
        Scorer { model, guests: per_guest, gauges: server.is_some().then(|| Gauges::new(&exporter)), sink };
    let collect = super::record::CollectLoop::start(
        &spec,
        a.store.as_deref(),
        guests.clone(),
        Duration::from_millis(a.interval),
        server.is_some().then(|| exporter.clone()),
        Box::new(move |round| scorer.round(round)),
    )?;
    tracing::info!(
        "agent watching {} guests: {}",
        guests.len(),
        guests.iter().map(|g| g.name.as_str()).collect::<Vec<_>>().join(", ")
    );
    let end = a.duration.map(|d| Instant::now() + Duration::from_millis(d));
    while !stop.load(Ordering::SeqCst) && end.is_none_or(|e| Instant::now() < e) {
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::SeqCst);
    collect.finish()?;
    drop(server);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_rounds_and_serves_gauges() {
        use detect::online::{Class, KindModel, TrainParams};
        use telemetry::{Delta, Kind, Sample, SourceId};
        // A toy model on rx/tx packet rates: flooded = many packets in.
        let mut data = Vec::new();
        for i in 0..40 {
            let mut v = vec![None; detect::online::FEATURES.len()];
            v[0] = Some(10.0 + i as f64);
            v[1] = Some(10.0);
            data.push((v.clone(), Class::Normal));
            v[0] = Some(5000.0 + i as f64);
            data.push((v, Class::Victim));
        }
        let km = KindModel::train("vanilla", &data, &TrainParams::default()).unwrap();
        let model = DetectorModel {
            version: detect::online::MODEL_VERSION,
            window_ms: 2000,
            alert: detect::online::AlertParams { raise_after: 2, clear_after: 2 },
            models: vec![km],
            trained_on: vec![],
        };
        let exporter = Exporter::new();
        let events = Arc::new(std::sync::Mutex::new(Vec::new()));
        let ev2 = Arc::clone(&events);
        let mut guests = HashMap::new();
        guests.insert(
            "v".to_string(),
            GuestScorer {
                kind: "vanilla".into(),
                extractor: WindowExtractor::new(2000),
                alert: AlertState::new(),
                alerts_total: 0,
            },
        );
        let mut sc = Scorer {
            model,
            guests,
            gauges: Some(Gauges::new(&exporter)),
            sink: Box::new(move |l| ev2.lock().unwrap().push(serde_json::to_string(l).unwrap())),
        };
        for t in 1..=6i64 {
            let sample = |c: &str, v: u64| Sample {
                time_ns: t * 1_000_000_000,
                guest: "v".into(),
                source: SourceId::Netdev,
                counter: c.into(),
                value: v,
                kind: Kind::Counter,
            };
            let samples = [sample("tx_packets", 0), sample("rx_packets", 0)];
            let delta = |d: u64| Some(Delta { time_ns: t * 1_000_000_000, delta: d, interval_ns: 1_000_000_000 });
            let deltas = [delta(6000), delta(10)];
            sc.round(&RoundReport {
                index: t as u64,
                time_ns: t * 1_000_000_000,
                samples: &samples,
                deltas: &deltas,
                failures: &[],
                new_guests: &[],
                duration: Duration::ZERO,
                guests: 1,
            });
        }
        let ev = events.lock().unwrap();
        assert!(ev.iter().any(|e| e.contains("\"raised\"") && e.contains("\"victim\"")), "{ev:?}");
        let t = exporter.encode();
        assert!(t.contains("vmguard_guest_alert{guest=\"v\",kind=\"vanilla\",role=\"victim\"} 1.0\n"), "{t}");
        assert!(t.contains("vmguard_guest_alerts_total{guest=\"v\"} 1\n"), "{t}");
        assert!(t.contains("vmguard_guest_score{guest=\"v\",kind=\"vanilla\"}"), "{t}");
    }

    #[test]
    fn webhook_posts_json() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", l.local_addr().unwrap());
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
            // Head and body may arrive in separate segments: read until the announced body is in.
            let mut req = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let n = s.read(&mut chunk).unwrap();
                req.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&req).into_owned();
                let complete = text.split_once("\r\n\r\n").is_some_and(|(head, body)| {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string())
                        })
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    body.len() >= len
                });
                if n == 0 || complete {
                    break;
                }
            }
            s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
            String::from_utf8_lossy(&req).into_owned()
        });
        post(&url, "{\"a\":1}").unwrap();
        let req = h.join().unwrap();
        assert!(req.starts_with("POST /hook HTTP/1.1") && req.ends_with("{\"a\":1}"), "{req}");
        assert!(post("https://example.invalid/", "{}").is_err());
    }
}
