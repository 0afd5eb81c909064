//! The agent: collect every guest's counters each round, score a sliding window per guest with Part
//! B's model, and raise and clear alerts naming the guest, its role, the score and the evidence.
//!
//! Alerts go to the log, a JSON-lines file, the OpenMetrics endpoint (`vmguard_guest_score`,
//! `vmguard_guest_alert`, `vmguard_guest_alerts_total` per guest) and optionally a webhook, which
//! posts from its own thread through a bounded queue ([`crate::webhook`]), so a slow receiver never
//! stalls sampling. Ticks come from [`crate::ticks::ticks_of_round`], the same function training uses.
//!
//! A guest whose kind has a model of its own is scored by it; one whose kind has none (a kind the lab
//! recordings never had) by the generic model's benign-only novelty check alone
//! ([`DetectorModel::scorer_for`]): the agent says which, per guest, when it starts watching it.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use detect::online::{AlertEvent, AlertState, DetectorModel, Role, ScoreMode, WindowExtractor};
use serde::Serialize;
use telemetry::export::{Exporter, ExtraFamily, FamilyKind};
use telemetry::pipeline::RoundReport;
use telemetry::{GuestInfo, GuestKind};

use crate::collect::{CollectError, CollectLoop};
use crate::webhook::Webhook;

/// Why the agent did not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot read the model {path} (train one with `vmguard detect train`)")]
    ReadModel {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the model {path} is not a vmguard detector model")]
    Model {
        path: PathBuf,
        #[source]
        source: detect::online::ModelLoadError,
    },
    #[error("cannot open the alerts file {path}")]
    AlertsFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Webhook(#[from] crate::webhook::WebhookError),
    #[error(transparent)]
    Collect(#[from] CollectError),
}

/// Reads a model file written by `vmguard detect train`.
pub fn load_model(path: &Path) -> Result<DetectorModel, AgentError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| AgentError::ReadModel { path: path.to_path_buf(), source })?;
    DetectorModel::from_json(&text).map_err(|source| AgentError::Model { path: path.to_path_buf(), source })
}

/// The detector's families on the exporter.
#[derive(Clone)]
pub struct Gauges {
    score: ExtraFamily,
    alert: ExtraFamily,
    alerts: ExtraFamily,
}

impl Gauges {
    pub fn new(e: &Exporter) -> Self {
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
pub struct AlertLine<'a> {
    #[serde(flatten)]
    pub event: &'a AlertEvent,
    pub kind: &'a str,
    /// How the guest's kind is scored: its own model, or the benign-only novelty check alone.
    pub mode: ScoreMode,
    pub threshold: f64,
}

/// Where alerts go.
pub type Sink = Box<dyn FnMut(&AlertLine<'_>) + Send>;

struct GuestScorer {
    kind: String,
    extractor: WindowExtractor,
    alert: AlertState,
    alerts_total: u64,
}

/// Scores each collection round: pure logic apart from the sink it is handed.
pub struct Scorer {
    model: DetectorModel,
    guests: HashMap<String, GuestScorer>,
    gauges: Option<Gauges>,
    sink: Sink,
    /// Guests whose scoring mode has been logged.
    announced: std::collections::BTreeSet<String>,
}

impl Scorer {
    pub fn new(model: DetectorModel, gauges: Option<Gauges>, sink: Sink) -> Scorer {
        Scorer { model, guests: HashMap::new(), gauges, sink, announced: Default::default() }
    }

    /// How the model scores guests of `kind`: by their kind's own model, by the generic model's
    /// benign-only novelty check, or not at all (`None`).
    pub fn mode(&self, kind: GuestKind) -> Option<ScoreMode> {
        self.model.scorer_for(kind.as_str()).map(|(_, mode)| mode)
    }

    /// Whether the model scores guests of `kind` at all.
    pub fn scores(&self, kind: GuestKind) -> bool {
        self.mode(kind).is_some()
    }

    /// What the agent says about a guest when it starts watching it: which mode scores it.
    pub fn scoring_note(&self, g: &GuestInfo) -> String {
        let (name, kind) = (&g.name, g.kind.as_str());
        match self.mode(g.kind) {
            Some(ScoreMode::Own) => format!("guest {name} ({kind}): scored by the model for kind {kind}"),
            Some(ScoreMode::NoveltyOnly) => format!(
                "guest {name} ({kind}): no model of its own for kind {kind}, scored by the benign-only novelty check"
            ),
            None => format!(
                "guest {name} ({kind}): no model of its own for kind {kind}, and the model has no benign-only novelty \
                 check to fall back on (retrain it with this version's `vmguard detect train`): not scored"
            ),
        }
    }

    /// One pipeline round: its deltas → ticks per guest → window → verdict → alert state.
    pub fn round(&mut self, round: &RoundReport<'_>) {
        for g in round.new_guests {
            self.watch(g);
        }
        for (guest, ticks) in crate::ticks::ticks_of_round(round) {
            let Some(g) = self.guests.get_mut(&guest) else { continue };
            for tick in ticks {
                let Some(w) = g.extractor.push(tick) else { continue };
                // Guests of a kind the model cannot score were named when watched.
                let Some((km, mode)) = self.model.scorer_for(&g.kind) else { continue };
                let v = km.verdict_as(mode, &w.values(), 3);
                let ev = g.alert.update(&guest, w.end_ms, &v, km.clear_threshold, &self.model.alert);
                if matches!(ev, Some(AlertEvent::Raised { .. })) {
                    g.alerts_total += 1;
                }
                if let Some(gg) = &self.gauges {
                    let role = g.alert.active().map_or("none", |(_, r)| r.as_str());
                    gg.score.set(&[("guest", &guest), ("kind", &g.kind)], v.score);
                    gg.alert.remove_where("guest", &guest);
                    gg.alert.set(
                        &[("guest", &guest), ("kind", &g.kind), ("role", role)],
                        f64::from(u8::from(g.alert.active().is_some())),
                    );
                    gg.alerts.set(&[("guest", &guest)], g.alerts_total as f64);
                }
                if let Some(ev) = ev {
                    (self.sink)(&AlertLine { event: &ev, kind: &g.kind, mode, threshold: km.threshold });
                }
            }
        }
    }

    /// Starts scoring a guest (a new one, or a restarted one: its window starts afresh). The first
    /// time a guest is watched, logs how it is scored ([`Scorer::scoring_note`]).
    pub fn watch(&mut self, g: &GuestInfo) {
        if self.announced.insert(g.name.clone()) {
            let note = self.scoring_note(g);
            match self.mode(g.kind) {
                Some(ScoreMode::Own) => tracing::info!("{note}"),
                _ => tracing::warn!("{note}"),
            }
        }
        self.guests.insert(
            g.name.clone(),
            GuestScorer {
                kind: g.kind.as_str().to_string(),
                extractor: WindowExtractor::new(self.model.window_ms),
                alert: AlertState::new(),
                alerts_total: 0,
            },
        );
    }
}

/// The alert's one-line text for the log.
pub fn describe(ev: &AlertEvent) -> String {
    match ev {
        AlertEvent::Raised { guest, role, score, evidence, .. } => {
            let ev: Vec<String> = evidence
                .iter()
                .map(|e| format!("{} {:.0} {} (normal {:.0})", e.feature, e.value, e.unit, e.normal))
                .collect();
            format!(
                "ALERT guest {guest} is {} a flood ({}), score {score:.2}: {}",
                match role {
                    Role::Victim => "the target of",
                    Role::Attacker => "the source of",
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

/// The agent's settings.
pub struct AgentOptions {
    pub model: DetectorModel,
    /// Also append the samples to this store.
    pub store: Option<PathBuf>,
    /// Append alerts as JSON lines here.
    pub alerts: PathBuf,
    /// POST every alert (JSON) to this http:// URL.
    pub webhook: Option<String>,
    /// Serve the detector's gauges beside every guest counter on this exporter.
    pub exporter: Option<Exporter>,
    pub interval: Duration,
    /// How often the guest list is asked again.
    pub refresh: Duration,
    /// Stop after this long (default: until `stop`).
    pub duration: Option<Duration>,
}

/// The log, the JSON-lines file and the webhook, as one sink.
pub fn standard_sink(alerts: &Path, webhook: Option<Webhook>) -> Result<Sink, AgentError> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(alerts)
        .map_err(|source| AgentError::AlertsFile { path: alerts.to_path_buf(), source })?;
    Ok(Box::new(move |line: &AlertLine<'_>| {
        let text = describe(line.event);
        match line.event {
            AlertEvent::Raised { .. } => tracing::warn!("{text}"),
            AlertEvent::Cleared { .. } => tracing::info!("{text}"),
        }
        let json = serde_json::to_string(line).unwrap_or_default();
        if let Err(e) = writeln!(file, "{json}").and_then(|()| file.flush()) {
            tracing::error!("cannot write the alerts file: {e}");
        }
        if let Some(w) = &webhook {
            w.send(json);
        }
    }))
}

/// Runs the agent on `guests`, then on what `source` finds every refresh, until `stop` is set or the
/// duration ends.
pub fn run(
    source: crate::collect::GuestSource,
    guests: Vec<GuestInfo>,
    opts: AgentOptions,
    stop: &AtomicBool,
) -> Result<(), AgentError> {
    let webhook = opts.webhook.as_deref().map(|url| Webhook::start(url, 64)).transpose()?;
    let sink = standard_sink(&opts.alerts, webhook)?;
    let gauges = opts.exporter.as_ref().map(Gauges::new);
    let mut scorer = Scorer::new(opts.model, gauges, sink);
    // Each guest's scoring mode is logged as it is watched.
    for g in &guests {
        scorer.watch(g);
    }
    tracing::info!(
        "agent watching {} guests: {}",
        guests.len(),
        guests.iter().map(|g| g.name.as_str()).collect::<Vec<_>>().join(", ")
    );
    let collect = CollectLoop::start(
        source,
        opts.store.as_deref(),
        guests,
        (opts.interval, opts.refresh),
        opts.exporter.clone(),
        Box::new(move |round| scorer.round(round)),
    )?;
    let end = opts.duration.map(|d| Instant::now() + d);
    while !stop.load(Ordering::SeqCst) && end.is_none_or(|e| Instant::now() < e) {
        std::thread::sleep(Duration::from_millis(100));
    }
    collect.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use detect::online::{Class, KindModel, TrainParams};
    use std::sync::{Arc, Mutex};
    use telemetry::{Delta, Kind, Sample, SourceId};

    fn toy_model() -> DetectorModel {
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
        DetectorModel {
            version: detect::online::MODEL_VERSION,
            window_ms: 2000,
            alert: detect::online::AlertParams { raise_after: 2, clear_after: 2 },
            models: vec![km],
            trained_on: vec![],
        }
    }

    fn guest() -> GuestInfo {
        GuestInfo::new("v", GuestKind::Vanilla)
    }

    /// Feeds `secs` rounds of a flood (6000 packets/s into the guest) to `round`.
    fn flood_rounds(secs: i64, round: impl FnMut(&RoundReport<'_>)) {
        rounds("v", secs, &[(SourceId::Netdev, "tx_packets", 6000), (SourceId::Netdev, "rx_packets", 10)], round);
    }

    /// Feeds `secs` rounds of one guest's counters, each growing by its delta every second.
    fn rounds(guest: &str, secs: i64, counters: &[(SourceId, &str, u64)], mut round: impl FnMut(&RoundReport<'_>)) {
        for t in 1..=secs {
            let samples: Vec<Sample> = counters
                .iter()
                .map(|&(source, c, _)| Sample {
                    time_ns: t * 1_000_000_000,
                    guest: guest.into(),
                    source,
                    counter: c.into(),
                    value: 0,
                    kind: Kind::Counter,
                })
                .collect();
            let deltas: Vec<Option<Delta>> = counters
                .iter()
                .map(|&(_, _, d)| Some(Delta { time_ns: t * 1_000_000_000, delta: d, interval_ns: 1_000_000_000 }))
                .collect();
            round(&RoundReport {
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
    }

    #[test]
    fn scores_rounds_and_serves_gauges() {
        let exporter = Exporter::new();
        let events = Arc::new(Mutex::new(Vec::new()));
        let ev2 = Arc::clone(&events);
        let mut sc = Scorer::new(
            toy_model(),
            Some(Gauges::new(&exporter)),
            Box::new(move |l| ev2.lock().unwrap().push(serde_json::to_string(l).unwrap())),
        );
        sc.watch(&guest());
        flood_rounds(6, |r| sc.round(r));
        let ev = events.lock().unwrap();
        assert!(ev.iter().any(|e| e.contains("\"raised\"") && e.contains("\"victim\"")), "{ev:?}");
        let t = exporter.encode();
        assert!(t.contains("vmguard_guest_alert{guest=\"v\",kind=\"vanilla\",role=\"victim\"} 1.0\n"), "{t}");
        assert!(t.contains("vmguard_guest_alerts_total{guest=\"v\"} 1\n"), "{t}");
        assert!(t.contains("vmguard_guest_score{guest=\"v\",kind=\"vanilla\"}"), "{t}");
    }

    /// A webhook receiver that accepts connections and never answers: every round is still scored
    /// at once (the alert is queued, not posted in the sampling thread).
    #[test]
    fn a_receiver_that_never_answers_does_not_stall_scoring() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let held = Arc::new(Mutex::new(Vec::new()));
        let held2 = Arc::clone(&held);
        std::thread::spawn(move || {
            for c in listener.incoming().flatten() {
                held2.lock().unwrap().push(c); // read nothing, answer nothing
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let webhook = Webhook::start(&url, 4).unwrap();
        let sink = standard_sink(&dir.path().join("alerts.jsonl"), Some(webhook)).unwrap();
        let mut sc = Scorer::new(toy_model(), None, sink);
        sc.watch(&guest());
        // Many raise/clear cycles: a flood, calm, a flood, ... every round timed.
        let mut slowest = Duration::ZERO;
        for _ in 0..10 {
            flood_rounds(6, |r| {
                let t = Instant::now();
                sc.round(r);
                slowest = slowest.max(t.elapsed());
            });
            sc.watch(&guest()); // restart the guest's state so the next flood raises again
        }
        let alerts = std::fs::read_to_string(dir.path().join("alerts.jsonl")).unwrap();
        assert!(alerts.lines().count() >= 10, "{alerts}");
        assert!(slowest < Duration::from_millis(200), "a round took {slowest:?} with a silent webhook receiver");
    }

    /// [`toy_model`] plus a generic `*` model trained on floods that refused nothing (so its
    /// supervised half calls any 5000 packets/s a flood), whose novelty check watches refused packets.
    fn toy_model_with_generic() -> DetectorModel {
        let refused = detect::online::FEATURES.iter().position(|f| f.name == "refused_ps").unwrap();
        let mut data = Vec::new();
        for i in 0..40 {
            let mut v = vec![None; detect::online::FEATURES.len()];
            v[0] = Some(10.0 + i as f64);
            v[1] = Some(10.0);
            v[refused] = Some(1.0);
            data.push((v.clone(), Class::Normal));
            v[0] = Some(5000.0 + i as f64);
            data.push((v, Class::Victim));
        }
        let mut m = toy_model();
        m.models.push(KindModel::train("*", &data, &TrainParams::default()).unwrap());
        m
    }

    #[test]
    fn a_kind_without_its_own_model_is_scored_by_the_novelty_check_only() {
        let container = GuestInfo::new("c", GuestKind::Container);
        let none: Sink = Box::new(|_| {});
        let toy = Scorer::new(toy_model(), None, none);
        assert_eq!(toy.mode(GuestKind::Container), None);
        assert!(!toy.scores(GuestKind::Container));
        assert!(toy.scoring_note(&container).ends_with("not scored"), "{}", toy.scoring_note(&container));

        let events = Arc::new(Mutex::new(Vec::new()));
        let ev2 = Arc::clone(&events);
        let mut sc = Scorer::new(
            toy_model_with_generic(),
            None,
            Box::new(move |l| ev2.lock().unwrap().push(serde_json::to_string(l).unwrap())),
        );
        assert_eq!(sc.mode(GuestKind::Vanilla), Some(ScoreMode::Own));
        assert_eq!(sc.mode(GuestKind::Container), Some(ScoreMode::NoveltyOnly));
        assert_eq!(sc.scoring_note(&guest()), "guest v (vanilla): scored by the model for kind vanilla");
        assert_eq!(
            sc.scoring_note(&container),
            "guest c (container): no model of its own for kind container, scored by the benign-only novelty check"
        );
        sc.watch(&container);
        // Heavy traffic with nothing refused: the generic supervised half would call it a flood, the
        // novelty check does not.
        let netdev = [(SourceId::Netdev, "tx_packets", 6000), (SourceId::Netdev, "rx_packets", 10)];
        rounds("c", 8, &[netdev[0], netdev[1], (SourceId::Snmp, "Tcp.OutRsts", 1)], |r| sc.round(r));
        assert!(events.lock().unwrap().is_empty(), "{:?}", events.lock().unwrap());
        // Thousands of resets a second: far above anything benign.
        sc.watch(&container);
        rounds("c", 8, &[netdev[0], netdev[1], (SourceId::Snmp, "Tcp.OutRsts", 3000)], |r| sc.round(r));
        let ev = events.lock().unwrap();
        assert!(
            ev.iter().any(|e| e.contains("\"raised\"")
                && e.contains("\"victim\"")
                && e.contains("\"mode\":\"novelty_only\"")
                && e.contains("refused_ps")),
            "{ev:?}"
        );
    }

    #[test]
    fn alert_text_names_the_role_not_a_flood_kind() {
        let ev =
            AlertEvent::Raised { guest: "qemu".into(), time_ms: 0, role: Role::Attacker, score: 0.9, evidence: vec![] };
        let t = describe(&ev);
        assert!(t.contains("source of a flood") && !t.contains("SYN"), "{t}");
    }
}
