//! The latest readings as OpenMetrics, for Prometheus to scrape.
//!
//! Metric families:
//!
//! | family                                    | type      | labels                          |
//! |-------------------------------------------|-----------|---------------------------------|
//! | `vmguard_counter_total`                   | counter   | guest, kind, source, counter    |
//! | `vmguard_gauge`                           | gauge     | guest, kind, source, counter    |
//! | `vmguard_collector_rounds_total`          | counter   |                                 |
//! | `vmguard_collector_samples_total`         | counter   |                                 |
//! | `vmguard_collector_round_duration_seconds`| histogram |                                 |
//! | `vmguard_collector_source_failures_total` | counter   | guest, source                   |
//! | `vmguard_collector_guests`                | gauge     |                                 |
//! | `vmguard_collector_sources`               | gauge     |                                 |
//!
//! One family per kind of value, with the counter's name as a label, rather than one family per
//! counter: the set of counters differs per source and per host (KVM statistics, kernel SNMP fields,
//! thread names), and a label keeps every one of them queryable with the same PromQL
//! (`rate(vmguard_counter_total{guest="vm",counter="vcpu.exits"}[1m])`).
//!
//! `vmguard_counter_total` is the sum of the per-interval deltas ([`crate::DeltaTracker`]) on top of the
//! first reading, not the raw value: it never goes down, so a 32-bit wraparound (Xen) or a counter reset
//! (a guest restarted) does not look like a reset to Prometheus and no increment is lost. A guest that
//! goes away takes its series with it.
//!
//! Programs built on the pipeline can serve families of their own beside these ([`Exporter::family`]):
//! `vmguard agent` adds its detector's per-guest score and alert gauges.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use prometheus_client::collector::Collector as PromCollector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::collect::SourceFailure;
use crate::sample::{Kind, Name, Sample, SourceId};
use crate::{Delta, GuestKind};

/// Why metrics cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The listen address could not be bound (in use, not local, no permission).
    #[error("cannot listen on {addr}: {source} (is another process using the port? choose another with --listen)")]
    Listen { addr: SocketAddr, source: std::io::Error },
}

/// The OpenMetrics content type served.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Copy)]
enum Value {
    /// Monotonic total (first reading + every delta since).
    Counter(u64),
    Gauge(u64),
}

#[derive(Debug)]
struct GuestSeries {
    kind: &'static str,
    values: BTreeMap<(SourceId, Name), Value>,
}

#[derive(Debug, Default)]
struct Series {
    guests: BTreeMap<Arc<str>, GuestSeries>,
}

/// The per-guest families, encoded from the latest readings at every scrape.
#[derive(Debug, Clone, Default)]
struct SeriesCollector(Arc<Mutex<Series>>);

/// A label value with OpenMetrics escaping (`\`, `"` and newlines), which the encoder leaves to us.
struct Escaped<'a>(&'a str);

impl EncodeLabelValue for Escaped<'_> {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        use std::fmt::Write;
        let s = self.0;
        if !s.contains(['\\', '"', '\n']) {
            return encoder.write_str(s);
        }
        for c in s.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
    }
}

impl PromCollector for SeriesCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let series = lock(&self.0);
        for (family, help, want_counter) in [
            (
                "vmguard_counter",
                "Cumulative per-guest counters (monotonic: resets and 32-bit wraparound are folded in).",
                true,
            ),
            ("vmguard_gauge", "Per-guest levels (thread counts, established connections, flags).", false),
        ] {
            let metric_type = if want_counter { MetricType::Counter } else { MetricType::Gauge };
            let mut metric = encoder.encode_descriptor(family, help, None, metric_type)?;
            for (guest, g) in &series.guests {
                for ((source, counter), value) in &g.values {
                    let labels = [
                        ("guest", Escaped(guest)),
                        ("kind", Escaped(g.kind)),
                        ("source", Escaped(source.as_str())),
                        ("counter", Escaped(counter)),
                    ];
                    match (value, want_counter) {
                        (Value::Counter(v), true) => {
                            metric
                                .encode_family(&labels)?
                                .encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(v, None)?
                        }
                        (Value::Gauge(v), false) => metric.encode_family(&labels)?.encode_gauge(v)?,
                        _ => {}
                    }
                }
            }
        }
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The collector's own health.
#[derive(Debug, Clone)]
struct SelfMetrics {
    rounds: Counter,
    samples: Counter,
    round_duration: Histogram,
    failures: Family<Vec<(String, String)>, Counter>,
    guests: Gauge,
    sources: Gauge,
}

/// Whether an extra family is a gauge or a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FamilyKind {
    Gauge,
    /// Exposed as `NAME_total`; values must not go down.
    Counter,
}

#[derive(Debug)]
struct ExtraFamilyData {
    name: &'static str,
    help: &'static str,
    kind: FamilyKind,
    /// Label pairs → value.
    series: BTreeMap<Vec<(String, String)>, f64>,
}

/// A family added with [`Exporter::family`]: set a series by its labels. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ExtraFamily(Arc<Mutex<ExtraFamilyData>>);

impl ExtraFamily {
    /// Set the series with these labels (created if new).
    pub fn set(&self, labels: &[(&str, &str)], value: f64) {
        let key = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        lock(&self.0).series.insert(key, value);
    }

    /// Drop every series whose labels include `label = value` (e.g. a guest that went away).
    pub fn remove_where(&self, label: &str, value: &str) {
        lock(&self.0).series.retain(|k, _| !k.iter().any(|(a, b)| a == label && b == value));
    }
}

/// The extra families, encoded after the built-in ones.
#[derive(Debug, Clone, Default)]
struct ExtraCollector(Arc<Mutex<Vec<ExtraFamily>>>);

impl PromCollector for ExtraCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let families = lock(&self.0).clone();
        for f in families {
            let f = lock(&f.0);
            let t = match f.kind {
                FamilyKind::Gauge => MetricType::Gauge,
                FamilyKind::Counter => MetricType::Counter,
            };
            let mut metric = encoder.encode_descriptor(f.name, f.help, None, t)?;
            for (labels, v) in &f.series {
                let labels: Vec<(&str, Escaped<'_>)> = labels.iter().map(|(k, v)| (k.as_str(), Escaped(v))).collect();
                let mut m = metric.encode_family(&labels)?;
                match f.kind {
                    FamilyKind::Gauge => m.encode_gauge(v)?,
                    FamilyKind::Counter => {
                        m.encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(&(v.max(0.0) as u64), None)?
                    }
                }
            }
        }
        Ok(())
    }
}

/// The latest readings of every guest and the collector's own metrics, encoded as OpenMetrics on
/// demand. Cheap to clone (shared): the collection loop updates it, the HTTP server encodes it.
#[derive(Clone)]
pub struct Exporter {
    series: SeriesCollector,
    metrics: SelfMetrics,
    extra: ExtraCollector,
    registry: Arc<Registry>,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter").finish_non_exhaustive()
    }
}

impl Default for Exporter {
    fn default() -> Self {
        Self::new()
    }
}

impl Exporter {
    pub fn new() -> Self {
        let metrics = SelfMetrics {
            rounds: Counter::default(),
            samples: Counter::default(),
            round_duration: Histogram::new([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0]),
            failures: Family::default(),
            guests: Gauge::default(),
            sources: Gauge::default(),
        };
        let series = SeriesCollector::default();
        let mut registry = Registry::default();
        registry.register_collector(Box::new(series.clone()));
        registry.register("vmguard_collector_rounds", "Sampling rounds done", metrics.rounds.clone());
        registry.register("vmguard_collector_samples", "Samples read, all guests and sources", metrics.samples.clone());
        registry.register(
            "vmguard_collector_round_duration_seconds",
            "Time one sampling round of every source took",
            metrics.round_duration.clone(),
        );
        registry.register(
            "vmguard_collector_source_failures",
            "Rounds in which a guest's source failed (a missing source counts every round)",
            metrics.failures.clone(),
        );
        registry.register("vmguard_collector_guests", "Guests watched", metrics.guests.clone());
        registry.register("vmguard_collector_sources", "Sources read, all guests", metrics.sources.clone());
        let extra = ExtraCollector::default();
        registry.register_collector(Box::new(extra.clone()));
        Exporter { series, metrics, extra, registry: Arc::new(registry) }
    }

    /// Add a family of the caller's own (name without `_total`), served after the built-in ones; asking
    /// again for the same name returns the same family.
    pub fn family(&self, name: &'static str, help: &'static str, kind: FamilyKind) -> ExtraFamily {
        let mut all = lock(&self.extra.0);
        if let Some(f) = all.iter().find(|f| lock(&f.0).name == name) {
            return f.clone();
        }
        let f = ExtraFamily(Arc::new(Mutex::new(ExtraFamilyData { name, help, kind, series: BTreeMap::new() })));
        all.push(f.clone());
        f
    }

    /// Start (or keep) exporting a guest, labelled with its kind.
    pub fn add_guest(&self, name: &str, kind: GuestKind) {
        let mut s = lock(&self.series.0);
        let kind = kind.as_str();
        s.guests.entry(name.into()).or_insert_with(|| GuestSeries { kind, values: BTreeMap::new() }).kind = kind;
    }

    /// Drop a guest and its series (its counters, its source failures, and its rows in the callers'
    /// families): a guest that is gone leaves nothing behind in /metrics.
    pub fn remove_guest(&self, name: &str) {
        lock(&self.series.0).guests.remove(name);
        for source in crate::SourceId::ALL {
            self.metrics
                .failures
                .remove(&vec![("guest".into(), name.to_string()), ("source".into(), source.as_str().into())]);
        }
        for f in lock(&self.extra.0).iter() {
            f.remove_where("guest", name);
        }
    }

    /// Take one round's samples; `deltas[i]` is what [`crate::DeltaTracker`] made of `samples[i]`.
    /// Samples of guests not added are ignored.
    pub fn update(&self, samples: &[Sample], deltas: &[Option<Delta>]) {
        let mut s = lock(&self.series.0);
        for (i, sample) in samples.iter().enumerate() {
            let Some(g) = s.guests.get_mut(&*sample.guest) else { continue };
            let key = (sample.source, sample.counter.clone());
            match sample.kind {
                Kind::Gauge => {
                    g.values.insert(key, Value::Gauge(sample.value));
                }
                Kind::Counter | Kind::Counter32 => {
                    let d = deltas.get(i).copied().flatten();
                    match g.values.get_mut(&key) {
                        Some(Value::Counter(total)) => {
                            if let Some(d) = d {
                                *total = total.saturating_add(d.delta);
                            }
                        }
                        _ => {
                            g.values.insert(key, Value::Counter(sample.value));
                        }
                    }
                }
            }
        }
    }

    /// Account one round: its duration, sample count, failing sources, and the guests and sources
    /// watched.
    pub fn record_round(
        &self,
        duration: Duration,
        samples: usize,
        failures: &[SourceFailure],
        guests: usize,
        sources: usize,
    ) {
        self.metrics.rounds.inc();
        self.metrics.samples.inc_by(samples as u64);
        self.metrics.round_duration.observe(duration.as_secs_f64());
        for f in failures {
            self.metrics
                .failures
                .get_or_create(&vec![("guest".into(), f.guest.clone()), ("source".into(), f.source.as_str().into())])
                .inc();
        }
        self.metrics.guests.set(guests as i64);
        self.metrics.sources.set(sources as i64);
    }

    /// Everything, as an OpenMetrics text exposition (ends with `# EOF`).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(64 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The HTTP server for `GET /metrics`: hyper (HTTP/1.1) on a single-threaded tokio runtime of its own
/// thread, one task per connection, so scrapes are served concurrently and a client that connects and
/// sends nothing holds only its own task (closed after [`HEADER_READ_TIMEOUT`]), never the others.
/// Stops when dropped: the runtime goes down with its thread, closing the listener and every open
/// connection.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How long a connection may take to send a request's headers, idle keep-alive time included.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

impl MetricsServer {
    /// Listen on `addr` (port 0: any free port, see [`MetricsServer::local_addr`]).
    pub fn bind(addr: SocketAddr, exporter: Exporter) -> Result<Self, ExportError> {
        let listen_err = |source| ExportError::Listen { addr, source };
        let listener = std::net::TcpListener::bind(addr).map_err(listen_err)?;
        let local = listener.local_addr().map_err(listen_err)?;
        listener.set_nonblocking(true).map_err(listen_err)?;
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build().map_err(listen_err)?;
        let listener = {
            let _in_runtime = runtime.enter();
            tokio::net::TcpListener::from_std(listener).map_err(listen_err)?
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("metrics-http".into())
            .spawn(move || {
                runtime.block_on(async move {
                    tokio::spawn(accept_loop(listener, exporter));
                    // Sent or dropped: either way, stop.
                    let _ = stopped.await;
                });
                // Dropping the runtime cancels the accept loop and every connection task.
                drop(runtime);
            })
            .map_err(listen_err)?;
        Ok(MetricsServer { addr: local, stop: Some(stop), thread: Some(thread) })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, exporter: Exporter) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::debug!("metrics: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let exporter = exporter.clone();
        let service = hyper::service::service_fn(move |req| {
            let reply = respond(&req, &exporter);
            async move { Ok::<_, std::convert::Infallible>(reply) }
        });
        let conn = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("metrics: connection from {peer}: {e}");
            }
        });
    }
}

fn respond(
    req: &hyper::Request<hyper::body::Incoming>,
    exporter: &Exporter,
) -> hyper::Response<http_body_util::Full<hyper::body::Bytes>> {
    use hyper::{Method, StatusCode};
    const TEXT: &str = "text/plain; charset=utf-8";
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/metrics") => (StatusCode::OK, CONTENT_TYPE, exporter.encode()),
        (&Method::GET | &Method::HEAD, "/") => {
            (StatusCode::OK, TEXT, "vmguard collector: metrics at /metrics\n".to_string())
        }
        (&Method::GET | &Method::HEAD, _) => (StatusCode::NOT_FOUND, TEXT, "not found: try /metrics\n".to_string()),
        _ => (StatusCode::METHOD_NOT_ALLOWED, TEXT, "only GET\n".to_string()),
    };
    let mut reply = hyper::Response::new(http_body_util::Full::new(hyper::body::Bytes::from(body)));
    *reply.status_mut() = status;
    reply.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(content_type));
    if status == StatusCode::METHOD_NOT_ALLOWED {
        reply.headers_mut().insert(hyper::header::ALLOW, hyper::header::HeaderValue::from_static("GET, HEAD"));
    }
    reply
}

/// Fetch `path` from a metrics server (tests and `--check` style tooling): the body of a 200 response.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .proxy(None)
        .timeout_connect(Some(Duration::from_secs(5)))
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let url = format!("http://{addr}{path}");
    let fail = |e: ureq::Error| std::io::Error::other(format!("GET {url}: {e}"));
    agent.get(&url).header("Accept", CONTENT_TYPE).call().map_err(fail)?.body_mut().read_to_string().map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TelemetryError;

    fn s(guest: &str, source: SourceId, counter: &str, value: u64, kind: Kind) -> Sample {
        Sample { time_ns: 0, guest: guest.into(), source, counter: counter.into(), value, kind }
    }

    #[test]
    fn counters_stay_monotonic_and_gauges_follow() {
        let e = Exporter::new();
        e.add_guest("vm", GuestKind::Qemu);
        let d = |x: u64| Some(Delta { time_ns: 0, interval_ns: 1, delta: x });
        e.update(
            &[
                s("vm", SourceId::Kvm, "vcpu.exits", 100, Kind::Counter),
                s("vm", SourceId::Process, "threads", 5, Kind::Gauge),
                s("other", SourceId::Kvm, "vcpu.exits", 7, Kind::Counter),
            ],
            &[None, None, None],
        );
        // A 32-bit wrap reported as a delta of 20: the exported total goes on growing.
        e.update(
            &[
                s("vm", SourceId::Kvm, "vcpu.exits", 3, Kind::Counter),
                s("vm", SourceId::Process, "threads", 4, Kind::Gauge),
            ],
            &[d(20), None],
        );
        e.record_round(
            Duration::from_millis(2),
            5,
            &[SourceFailure {
                guest: "vm".into(),
                source: SourceId::Tracepoint,
                error: TelemetryError::parse("x", "y"),
            }],
            1,
            3,
        );
        let text = e.encode();
        assert!(
            text.contains(r#"vmguard_counter_total{guest="vm",kind="qemu",source="kvm",counter="vcpu.exits"} 120"#),
            "{text}"
        );
        assert!(text.contains(r#"vmguard_gauge{guest="vm",kind="qemu",source="process",counter="threads"} 4"#));
        assert!(!text.contains("other"), "guests not added are not exported");
        assert!(text.contains(r#"vmguard_collector_source_failures_total{guest="vm",source="tracepoint"} 1"#));
        assert!(text.contains("vmguard_collector_rounds_total 1"));
        assert!(text.contains("vmguard_collector_round_duration_seconds_count 1"));
        assert!(text.trim_end().ends_with("# EOF"));
        let score = e.family("vmguard_guest_score", "score", FamilyKind::Gauge);
        score.set(&[("guest", "vm")], 0.5);
        e.remove_guest("vm");
        let text = e.encode();
        assert!(!text.contains("guest=\"vm\""), "a removed guest leaves nothing behind: {text}");
    }

    #[test]
    fn extra_families_are_served() {
        let e = Exporter::new();
        let g = e.family("vmguard_guest_score", "Detector score.", FamilyKind::Gauge);
        g.set(&[("guest", "vm\"1"), ("kind", "qemu")], 0.75);
        let c = e.family("vmguard_guest_alerts", "Alerts raised.", FamilyKind::Counter);
        c.set(&[("guest", "vm")], 2.0);
        let t = e.encode();
        assert!(t.contains("# TYPE vmguard_guest_score gauge\n"), "{t}");
        assert!(t.contains("vmguard_guest_score{guest=\"vm\\\"1\",kind=\"qemu\"} 0.75\n"), "{t}");
        assert!(t.contains("vmguard_guest_alerts_total{guest=\"vm\"} 2\n"), "{t}");
        assert!(t.ends_with("# EOF\n"));
        e.family("vmguard_guest_score", "again", FamilyKind::Gauge).remove_where("kind", "qemu");
        assert!(!e.encode().contains("vmguard_guest_score{"));
    }

    #[test]
    fn label_values_are_escaped() {
        let e = Exporter::new();
        e.add_guest("g", GuestKind::Vanilla);
        e.update(&[s("g", SourceId::Process, "thread.a\"b\\c\nd.cpu_ns", 1, Kind::Counter)], &[None]);
        assert!(e.encode().contains(r#"counter="thread.a\"b\\c\nd.cpu_ns"} 1"#), "{}", e.encode());
    }

    #[test]
    fn serves_metrics_over_http() {
        let e = Exporter::new();
        e.add_guest("vm", GuestKind::Qemu);
        e.update(&[s("vm", SourceId::Netdev, "rx_packets", 42, Kind::Counter)], &[None]);
        let server = MetricsServer::bind("127.0.0.1:0".parse().unwrap(), e.clone()).unwrap();
        let body = http_get(server.local_addr(), "/metrics").unwrap();
        assert!(body.contains(r#"counter="rx_packets"} 42"#), "{body}");
        assert!(http_get(server.local_addr(), "/nope").unwrap_err().to_string().contains("404"));
        // The port is taken while the server runs: binding it again is a clear error.
        let err = MetricsServer::bind(server.local_addr(), e.clone()).err().expect("port in use");
        assert!(err.to_string().contains("cannot listen on"), "{err}");
        let addr = server.local_addr();
        drop(server);
        assert!(http_get(addr, "/metrics").is_err(), "stopped");
    }

    fn served() -> (Exporter, MetricsServer) {
        let e = Exporter::new();
        e.add_guest("vm", GuestKind::Qemu);
        e.update(&[s("vm", SourceId::Netdev, "rx_packets", 42, Kind::Counter)], &[None]);
        let server = MetricsServer::bind("127.0.0.1:0".parse().unwrap(), e.clone()).unwrap();
        (e, server)
    }

    /// The raw exchange, to check the head a scraper sees.
    fn raw_get(addr: SocketAddr, path: &str) -> String {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(c, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut text = String::new();
        c.read_to_string(&mut text).unwrap();
        text
    }

    #[test]
    fn serves_the_openmetrics_content_type_and_404_elsewhere() {
        let (_e, server) = served();
        let reply = raw_get(server.local_addr(), "/metrics?x=1");
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert!(reply.to_ascii_lowercase().contains(&format!("content-type: {CONTENT_TYPE}")), "{reply}");
        assert!(reply.trim_end().ends_with("# EOF"), "{reply}");
        assert!(raw_get(server.local_addr(), "/metricsx").starts_with("HTTP/1.1 404"));
    }

    #[test]
    fn an_idle_client_does_not_block_a_scrape() {
        let (_e, server) = served();
        let addr = server.local_addr();
        // One client connects and sends nothing; another sends half a request line and stalls.
        let _idle = std::net::TcpStream::connect(addr).unwrap();
        let mut half = std::net::TcpStream::connect(addr).unwrap();
        std::io::Write::write_all(&mut half, b"GET /met").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let t = std::time::Instant::now();
        let body = http_get(addr, "/metrics").unwrap();
        assert!(t.elapsed() < Duration::from_secs(1), "scrape took {:?}", t.elapsed());
        assert!(body.contains(r#"counter="rx_packets"} 42"#), "{body}");
    }

    #[test]
    fn concurrent_scrapes_all_succeed() {
        let (_e, server) = served();
        let addr = server.local_addr();
        let scrapers: Vec<_> = (0..8)
            .map(|_| {
                std::thread::spawn(move || {
                    (0..5).map(|_| http_get(addr, "/metrics").map(|b| b.contains("# EOF"))).collect::<Vec<_>>()
                })
            })
            .collect();
        for s in scrapers {
            for r in s.join().unwrap() {
                assert!(r.unwrap(), "a full exposition");
            }
        }
    }

    #[test]
    fn drop_stops_promptly_and_frees_the_port() {
        let (_e, server) = served();
        let addr = server.local_addr();
        // Connections still open at drop time do not hold it up.
        let _idle = std::net::TcpStream::connect(addr).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let t = std::time::Instant::now();
        drop(server);
        assert!(t.elapsed() < Duration::from_secs(1), "drop took {:?}", t.elapsed());
        let again = std::net::TcpListener::bind(addr).expect("port freed");
        drop(again);
    }
}
