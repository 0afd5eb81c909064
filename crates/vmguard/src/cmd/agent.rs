//! `vmguard agent`: collect every guest's counters each second, score a sliding window per guest with
//! Part B's model, and raise / clear alerts naming the guest, its role, the score and the evidence.
//!
//! Alerts go to the log, a JSON-lines file, the OpenMetrics endpoint (`vmguard_guest_score`,
//! `vmguard_guest_alert` gauges per guest) and, optionally, a webhook (HTTP POST of the same JSON).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use detect::online::{AlertEvent, AlertState, DetectorModel, Tick, WindowExtractor, base_index};
use serde::Serialize;
use telemetry::{DeltaTracker, Sample};

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

/// What the exporter shows per guest.
#[derive(Debug, Clone, Default, Serialize)]
struct GuestGauge {
    kind: String,
    score: f64,
    alert: bool,
    role: String,
    alerts_total: u64,
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
}

/// Scores each collection round: pure logic apart from the sinks it is handed.
struct Scorer {
    model: DetectorModel,
    deltas: DeltaTracker,
    guests: HashMap<String, GuestScorer>,
    gauges: Arc<Mutex<HashMap<String, GuestGauge>>>,
    sink: Box<dyn FnMut(&AlertLine<'_>) + Send>,
}

impl Scorer {
    fn round(&mut self, samples: &[Sample]) {
        let mut ticks: HashMap<&str, Tick> = HashMap::new();
        for s in samples {
            let Some(idx) = base_index(s.source.as_str(), &s.counter) else { continue };
            if let Some(d) = self.deltas.observe(s) {
                let t = ticks.entry(&s.guest).or_default();
                t.time_ms = t.time_ms.max(d.time_ns.div_euclid(1_000_000));
                t.deltas.push((idx, d.delta as f64, d.interval_ns as f64 / 1e6));
            }
        }
        for (guest, tick) in ticks {
            let Some(g) = self.guests.get_mut(guest) else { continue };
            let Some(w) = g.extractor.push(tick) else { continue };
            let Some(km) = self.model.for_kind(&g.kind) else { continue };
            let v = km.verdict(&w.values(), 3);
            let ev = g.alert.update(guest, w.end_ms, &v, km.clear_threshold, &self.model.alert);
            {
                let mut gauges = self.gauges.lock().unwrap_or_else(|e| e.into_inner());
                let gg = gauges.entry(guest.to_string()).or_default();
                gg.kind = g.kind.clone();
                gg.score = v.score;
                gg.alert = g.alert.active().is_some();
                gg.role = g.alert.active().map_or(String::new(), |(_, r)| r.as_str().into());
                if matches!(ev, Some(AlertEvent::Raised { .. })) {
                    gg.alerts_total += 1;
                }
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

/// OpenMetrics text of the gauges.
fn render_metrics(gauges: &HashMap<String, GuestGauge>) -> String {
    let mut names: Vec<&String> = gauges.keys().collect();
    names.sort();
    let mut out = String::new();
    out.push_str("# TYPE vmguard_guest_score gauge\n# HELP vmguard_guest_score Detector score of the guest's latest window (0 normal .. 1 attack).\n");
    for n in &names {
        let g = &gauges[*n];
        out.push_str(&format!("vmguard_guest_score{{guest=\"{n}\",kind=\"{}\"}} {}\n", g.kind, g.score));
    }
    out.push_str("# TYPE vmguard_guest_alert gauge\n# HELP vmguard_guest_alert 1 while an alert is raised for the guest, with its role.\n");
    for n in &names {
        let g = &gauges[*n];
        let role = if g.role.is_empty() { "none" } else { &g.role };
        out.push_str(&format!(
            "vmguard_guest_alert{{guest=\"{n}\",kind=\"{}\",role=\"{role}\"}} {}\n",
            g.kind,
            u8::from(g.alert)
        ));
    }
    out.push_str("# TYPE vmguard_guest_alerts counter\n# HELP vmguard_guest_alerts Alerts raised for the guest.\n");
    for n in &names {
        out.push_str(&format!("vmguard_guest_alerts_total{{guest=\"{n}\"}} {}\n", gauges[*n].alerts_total));
    }
    out.push_str("# EOF\n");
    out
}

fn serve_metrics(listener: TcpListener, gauges: Arc<Mutex<HashMap<String, GuestGauge>>>, stop: Arc<AtomicBool>) {
    listener.set_nonblocking(true).ok();
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((mut s, _)) => {
                s.set_nonblocking(false).ok();
                s.set_read_timeout(Some(Duration::from_secs(2))).ok();
                let mut buf = [0u8; 2048];
                let n = s.read(&mut buf).unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]);
                let (status, body) = if req.starts_with("GET /metrics") {
                    ("200 OK", render_metrics(&gauges.lock().unwrap_or_else(|e| e.into_inner())))
                } else {
                    ("404 Not Found", "only /metrics here\n".to_string())
                };
                let _ = write!(
                    s,
                    "HTTP/1.1 {status}\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
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
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut reply = [0u8; 64];
    let n = s.read(&mut reply).unwrap_or(0);
    let head = String::from_utf8_lossy(&reply[..n]);
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
    let gauges: Arc<Mutex<HashMap<String, GuestGauge>>> = Arc::default();
    let server = if a.listen != "off" {
        let listener = TcpListener::bind(&a.listen).with_context(|| format!("listening on {}", a.listen))?;
        tracing::info!("OpenMetrics on http://{}/metrics", listener.local_addr()?);
        let (g, s) = (Arc::clone(&gauges), Arc::clone(&stop));
        Some(std::thread::spawn(move || serve_metrics(listener, g, s)))
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
            },
        );
        if model.for_kind(super::train::kind_str(g.kind)).is_none() {
            tracing::warn!(guest = %g.name, "the model has no entry for this kind of guest: not scored");
        }
    }
    let scorer = Arc::new(Mutex::new(Scorer {
        model,
        deltas: DeltaTracker::new(),
        guests: per_guest,
        gauges: Arc::clone(&gauges),
        sink,
    }));
    let sc = Arc::clone(&scorer);
    let on_round = move |samples: &[Sample]| sc.lock().unwrap_or_else(|e| e.into_inner()).round(samples);
    let collect =
        super::record::CollectLoop::start(a.store.as_deref(), &guests, Duration::from_millis(a.interval), on_round)?;
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
    if let Some(h) = server {
        let _ = h.join();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_text() {
        let mut g = HashMap::new();
        g.insert(
            "qemu".to_string(),
            GuestGauge { kind: "qemu".into(), score: 0.75, alert: true, role: "victim".into(), alerts_total: 2 },
        );
        let t = render_metrics(&g);
        assert!(t.contains("vmguard_guest_score{guest=\"qemu\",kind=\"qemu\"} 0.75\n"), "{t}");
        assert!(t.contains("vmguard_guest_alert{guest=\"qemu\",kind=\"qemu\",role=\"victim\"} 1\n"), "{t}");
        assert!(t.ends_with("# EOF\n"));
    }

    #[test]
    fn webhook_posts_json() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", l.local_addr().unwrap());
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).unwrap();
            s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        post(&url, "{\"a\":1}").unwrap();
        let req = h.join().unwrap();
        assert!(req.starts_with("POST /hook HTTP/1.1") && req.ends_with("{\"a\":1}"), "{req}");
        assert!(post("https://example.invalid/", "{}").is_err());
    }
}
