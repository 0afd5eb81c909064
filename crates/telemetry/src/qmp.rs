//! KVM statistics through QMP `query-stats` (targets `vm` and `vcpu`), and the small QMP client it uses.
//!
//! On hosts where debugfs is locked down and `KVM_GET_STATS_FD` cannot be used from another process,
//! asking qemu itself is the route that works; under TCG qemu has no KVM statistics and replies with an
//! empty list, which yields no samples (not an error).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::sample::{Emit, Kind, Sample, SourceId};
use crate::{Source, TelemetryError};

/// How long a QMP reply may take before the connection is declared dead.
pub const QMP_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest line accepted from qemu (a query-stats reply of a big VM is a few hundred KiB).
const MAX_LINE: usize = 16 << 20;

/// A QMP connection past the capabilities handshake.
#[derive(Debug)]
pub struct QmpClient {
    socket: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_id: u64,
    line: String,
}

/// Connect within `timeout`. qemu's monitor serves one client at a time and leaves others in its listen
/// backlog; once the backlog is full a plain `connect` blocks for as long as the other client stays (an
/// agent and a recording watching the same guest), and with it the whole sampling round.
pub(crate) fn connect_with_timeout(socket: &Path, timeout: std::time::Duration) -> std::io::Result<UnixStream> {
    let s = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)?;
    s.connect_timeout(&socket2::SockAddr::unix(socket)?, timeout)?;
    Ok(UnixStream::from(std::os::fd::OwnedFd::from(s)))
}

impl QmpClient {
    /// Connect, read the greeting and negotiate capabilities.
    pub fn connect(socket: &Path) -> Result<Self, TelemetryError> {
        let stream = connect_with_timeout(socket, QMP_TIMEOUT)
            .map_err(|source| TelemetryError::QmpConnect { socket: socket.to_path_buf(), source })?;
        let io = |source| TelemetryError::QmpIo { socket: socket.to_path_buf(), source };
        stream.set_read_timeout(Some(QMP_TIMEOUT)).map_err(io)?;
        stream.set_write_timeout(Some(QMP_TIMEOUT)).map_err(io)?;
        let writer = stream.try_clone().map_err(io)?;
        let mut client = QmpClient {
            socket: socket.to_path_buf(),
            reader: BufReader::new(stream),
            writer,
            next_id: 1,
            line: String::new(),
        };
        let greeting = client.read_message()?;
        if greeting.get("QMP").is_none() {
            return Err(client.protocol(format!("expected the QMP greeting, got {}", short(&greeting))));
        }
        client.execute("qmp_capabilities", None)?;
        Ok(client)
    }

    /// Run one command and return its `return` value. Asynchronous events that arrive meanwhile are skipped.
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, TelemetryError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = serde_json::json!({ "execute": command, "id": id });
        if let Some(args) = arguments {
            msg["arguments"] = args;
        }
        let mut bytes = serde_json::to_vec(&msg).map_err(|e| self.protocol(e.to_string()))?;
        bytes.push(b'\n');
        self.writer
            .write_all(&bytes)
            .map_err(|source| TelemetryError::QmpIo { socket: self.socket.clone(), source })?;
        loop {
            let reply = self.read_message()?;
            if reply.get("event").is_some() {
                continue;
            }
            // Replies to other ids cannot happen on our own connection; skip them defensively.
            if reply.get("id").is_some_and(|v| v.as_u64() != Some(id)) {
                continue;
            }
            if let Some(ret) = reply.get("return") {
                return Ok(ret.clone());
            }
            if let Some(err) = reply.get("error") {
                let field = |k: &str| err.get(k).and_then(Value::as_str).unwrap_or("?").to_string();
                return Err(TelemetryError::QmpCommand {
                    command: command.to_string(),
                    class: field("class"),
                    desc: field("desc"),
                });
            }
            return Err(self.protocol(format!("unexpected reply to `{command}`: {}", short(&reply))));
        }
    }

    fn read_message(&mut self) -> Result<Value, TelemetryError> {
        self.line.clear();
        let n = std::io::Read::take(&mut self.reader, MAX_LINE as u64).read_line(&mut self.line).map_err(|source| {
            match source.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                    TelemetryError::QmpTimeout { socket: self.socket.clone(), after: QMP_TIMEOUT }
                }
                _ => TelemetryError::QmpIo { socket: self.socket.clone(), source },
            }
        })?;
        if n == 0 {
            return Err(TelemetryError::QmpIo {
                socket: self.socket.clone(),
                source: std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "qemu closed the connection"),
            });
        }
        serde_json::from_str(&self.line).map_err(|e| self.protocol(format!("not JSON ({e})")))
    }

    fn protocol(&self, detail: String) -> TelemetryError {
        TelemetryError::QmpProtocol { socket: self.socket.clone(), detail }
    }
}

fn short(v: &Value) -> String {
    let mut s = v.to_string();
    if s.len() > 200 {
        let mut cut = 200;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// The type of a statistic, from `query-stats-schemas`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StatType {
    Cumulative,
    Instant,
    Peak,
    LinearHistogram,
    Log2Histogram,
}

/// One statistic's description.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StatSchema {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: StatType,
    pub unit: Option<String>,
    pub base: Option<i64>,
    #[serde(default)]
    pub exponent: i64,
    #[serde(rename = "bucket-size")]
    pub bucket_size: Option<u64>,
}

/// The statistics one provider offers for one target.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StatsSchema {
    pub provider: String,
    pub target: String,
    pub stats: Vec<StatSchema>,
}

/// A statistic's value: a number, a boolean or a histogram.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum StatValue {
    Scalar(u64),
    Boolean(bool),
    List(Vec<u64>),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Stat {
    pub name: String,
    pub value: StatValue,
}

/// The statistics of one provider for one object (the VM, or one vCPU named by its QOM path).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StatsResult {
    pub provider: String,
    #[serde(rename = "qom-path")]
    pub qom_path: Option<String>,
    pub stats: Vec<Stat>,
}

/// Accept a full reply `{"return": X}` or the bare `X`.
fn unwrap_return(v: Value) -> Value {
    match v {
        Value::Object(mut m) if m.contains_key("return") => m.remove("return").unwrap_or(Value::Null),
        other => other,
    }
}

/// Parse a `query-stats` reply (full reply or its `return` value).
pub fn parse_query_stats(json: &str) -> Result<Vec<StatsResult>, TelemetryError> {
    let v: Value = serde_json::from_str(json).map_err(|e| TelemetryError::parse("query-stats reply", e.to_string()))?;
    stats_from_value(v)
}

pub fn stats_from_value(v: Value) -> Result<Vec<StatsResult>, TelemetryError> {
    serde_json::from_value(unwrap_return(v)).map_err(|e| TelemetryError::parse("query-stats reply", e.to_string()))
}

/// Parse a `query-stats-schemas` reply (full reply or its `return` value).
pub fn parse_stats_schemas(json: &str) -> Result<Vec<StatsSchema>, TelemetryError> {
    let v: Value =
        serde_json::from_str(json).map_err(|e| TelemetryError::parse("query-stats-schemas reply", e.to_string()))?;
    schemas_from_value(v)
}

pub fn schemas_from_value(v: Value) -> Result<Vec<StatsSchema>, TelemetryError> {
    serde_json::from_value(unwrap_return(v))
        .map_err(|e| TelemetryError::parse("query-stats-schemas reply", e.to_string()))
}

/// The sample kind of each statistic of one target, from the schemas: cumulative statistics are counters,
/// instant and peak values gauges; histograms are left out (`None`).
pub fn kinds_for(schemas: &[StatsSchema], target: &str) -> HashMap<String, Option<Kind>> {
    schemas
        .iter()
        .filter(|s| s.target == target)
        .flat_map(|s| s.stats.iter())
        .map(|st| {
            let kind = match st.ty {
                StatType::Cumulative => Some(Kind::Counter),
                StatType::Instant | StatType::Peak => Some(Kind::Gauge),
                StatType::LinearHistogram | StatType::Log2Histogram => None,
            };
            (st.name.clone(), kind)
        })
        .collect()
}

/// Turn one target's results into samples named `<prefix>.<stat>`: for the `vcpu` target every vCPU's
/// value is summed (the per-VM figure detection wants); with `per_vcpu`, each vCPU's own value is also
/// emitted as `vcpu<N>.<stat>` (N = position in the reply, which follows the vCPU index).
///
/// Without a schema entry a scalar is taken as a counter and a boolean as a gauge; histograms are skipped.
pub(crate) fn emit_results(
    results: &[StatsResult],
    prefix: &str,
    kinds: &HashMap<String, Option<Kind>>,
    per_vcpu: bool,
    emit: &mut Emit<'_>,
) {
    // name -> (sum, kind), in first-seen order.
    let mut order: Vec<(&str, u64, Kind)> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (n, r) in results.iter().enumerate() {
        let vcpu_prefix = if per_vcpu { format!("vcpu{n}") } else { String::new() };
        for st in &r.stats {
            let (value, default_kind) = match st.value {
                StatValue::Scalar(v) => (v, Kind::Counter),
                StatValue::Boolean(b) => (u64::from(b), Kind::Gauge),
                StatValue::List(_) => continue,
            };
            let kind = match kinds.get(&st.name) {
                Some(Some(k)) => *k,
                Some(None) => continue,
                None => default_kind,
            };
            if per_vcpu {
                emit.push_joined(&vcpu_prefix, ".", &st.name, value, kind);
            }
            match index.get(st.name.as_str()) {
                Some(&i) => order[i].1 = order[i].1.saturating_add(value),
                None => {
                    index.insert(&st.name, order.len());
                    order.push((&st.name, value, kind));
                }
            }
        }
    }
    for (name, value, kind) in order {
        emit.push_joined(prefix, ".", name, value, kind);
    }
}

/// KVM statistics of one qemu guest, read through its QMP socket every round.
///
/// The connection stays open between rounds, and qemu serves one client per QMP socket at a time: give
/// qemu a second `-qmp` socket for other users (or drop this source while they talk).
///
/// Samples: `vm.<stat>` (per-VM statistics) and `vcpu.<stat>` (summed over vCPUs), e.g. `vcpu.exits`,
/// `vcpu.io_exits`, `vcpu.mmio_exits`, `vcpu.halt_exits`, `vcpu.hypercalls`, `vcpu.irq_injections`.
pub struct QmpStats {
    guest: Arc<str>,
    socket: PathBuf,
    per_vcpu: bool,
    client: Option<QmpClient>,
    vm_kinds: HashMap<String, Option<Kind>>,
    vcpu_kinds: HashMap<String, Option<Kind>>,
    names: crate::sample::NameCache,
}

impl QmpStats {
    /// Nothing is connected yet: the first round connects (and every round after a failure reconnects).
    pub fn new(guest: &str, socket: impl Into<PathBuf>) -> Self {
        QmpStats {
            guest: guest.into(),
            socket: socket.into(),
            per_vcpu: false,
            client: None,
            vm_kinds: HashMap::new(),
            vcpu_kinds: HashMap::new(),
            names: crate::sample::NameCache::new(),
        }
    }

    /// Also emit each vCPU's own values as `vcpu<N>.<stat>`.
    pub fn per_vcpu(mut self, yes: bool) -> Self {
        self.per_vcpu = yes;
        self
    }

    fn connected(&mut self) -> Result<&mut QmpClient, TelemetryError> {
        if self.client.is_none() {
            let mut client = QmpClient::connect(&self.socket)?;
            let schemas = schemas_from_value(client.execute("query-stats-schemas", None)?)?;
            self.vm_kinds = kinds_for(&schemas, "vm");
            self.vcpu_kinds = kinds_for(&schemas, "vcpu");
            self.client = Some(client);
        }
        Ok(self.client.as_mut().expect("client was just set"))
    }

    fn read(&mut self, time_ns: i64, out: &mut Vec<Sample>) -> Result<(), TelemetryError> {
        let client = self.connected()?;
        let vm = stats_from_value(client.execute("query-stats", Some(serde_json::json!({"target": "vm"})))?)?;
        let vcpu = stats_from_value(client.execute("query-stats", Some(serde_json::json!({"target": "vcpu"})))?)?;
        let mut emit = Emit::new(out, &self.guest, SourceId::Kvm, time_ns).with_names(&mut self.names);
        emit_results(&vm, "vm", &self.vm_kinds, false, &mut emit);
        emit_results(&vcpu, "vcpu", &self.vcpu_kinds, self.per_vcpu, &mut emit);
        Ok(())
    }
}

impl Source for QmpStats {
    fn id(&self) -> SourceId {
        SourceId::Kvm
    }

    fn guest(&self) -> &str {
        &self.guest
    }

    fn sample(&mut self, time_ns: i64, out: &mut Vec<Sample>) -> Result<(), TelemetryError> {
        let result = self.read(time_ns, out);
        if result.is_err() {
            // A broken connection is reopened next round.
            self.client = None;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/docs/fixtures");

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!("{FIXTURES}/{name}")).unwrap()
    }

    #[test]
    fn a_monitor_busy_with_another_client_fails_the_connect_instead_of_hanging() {
        let dir = tempfile::Builder::new().prefix("vmgt-qmp-busy-").tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        // A listener that never accepts, with the smallest backlog: filled by the first two clients.
        let l = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).unwrap();
        l.bind(&socket2::SockAddr::unix(&path).unwrap()).unwrap();
        l.listen(0).unwrap();
        let _queued: Vec<_> = (0..2).filter_map(|_| connect_with_timeout(&path, QMP_TIMEOUT).ok()).collect();
        let t = std::time::Instant::now();
        let third = connect_with_timeout(&path, std::time::Duration::from_millis(300));
        assert!(third.is_err(), "connected to a full backlog");
        assert!(t.elapsed() < std::time::Duration::from_secs(2), "{:?}", t.elapsed());
    }

    #[test]
    fn parses_the_recorded_schemas() {
        let schemas = parse_stats_schemas(&fixture("qmp-query-stats-schemas.json")).unwrap();
        let targets: Vec<&str> = schemas.iter().map(|s| s.target.as_str()).collect();
        assert_eq!(targets, ["vcpu", "vm"]);
        let vcpu = kinds_for(&schemas, "vcpu");
        assert_eq!(vcpu["exits"], Some(Kind::Counter));
        assert_eq!(vcpu["guest_mode"], Some(Kind::Gauge));
        assert_eq!(vcpu["halt_wait_hist"], None);
        let vm = kinds_for(&schemas, "vm");
        assert_eq!(vm["max_mmu_rmap_size"], Some(Kind::Gauge), "peak");
        assert_eq!(vm["mmu_cache_miss"], Some(Kind::Counter));
        let halt = schemas[0].stats.iter().find(|s| s.name == "halt_wait_ns").unwrap();
        assert_eq!((halt.base, halt.exponent, halt.unit.as_deref()), (Some(10), -9, Some("seconds")));
    }

    #[test]
    fn recorded_vcpu_and_vm_stats_become_samples() {
        let schemas = parse_stats_schemas(&fixture("qmp-query-stats-schemas.json")).unwrap();
        let vcpu = parse_query_stats(&fixture("qmp-query-stats-vcpu.json")).unwrap();
        let vm = parse_query_stats(&fixture("qmp-query-stats-vm.json")).unwrap();
        assert_eq!(vcpu[0].qom_path.as_deref(), Some("/machine/unattached/device[0]"));
        let guest: Arc<str> = "vm1".into();
        let mut out = Vec::new();
        let mut emit = Emit::new(&mut out, &guest, SourceId::Kvm, 7);
        emit_results(&vm, "vm", &kinds_for(&schemas, "vm"), false, &mut emit);
        emit_results(&vcpu, "vcpu", &kinds_for(&schemas, "vcpu"), true, &mut emit);
        let get = |name: &str| out.iter().find(|s| s.counter == name).map(|s| (s.value, s.kind));
        assert_eq!(get("vcpu.exits"), Some((7357, Kind::Counter)));
        assert_eq!(get("vcpu0.exits"), Some((7357, Kind::Counter)));
        assert_eq!(get("vcpu.insn_emulation"), Some((5566961, Kind::Counter)));
        assert_eq!(get("vcpu.irq_injections"), Some((63, Kind::Counter)));
        assert_eq!(get("vcpu.halt_exits"), Some((63, Kind::Counter)));
        assert_eq!(get("vcpu.guest_mode"), Some((0, Kind::Gauge)));
        assert_eq!(get("vm.mmu_shadow_zapped"), Some((32, Kind::Counter)));
        assert_eq!(get("vm.pages_4k"), Some((0, Kind::Gauge)));
        assert_eq!(get("vcpu.halt_wait_hist"), None, "histograms are skipped");
        for name in ["io_exits", "mmio_exits", "irq_exits", "hypercalls", "signal_exits", "irq_window_exits"] {
            assert!(get(&format!("vcpu.{name}")).is_some(), "{name}");
        }
        assert!(out.iter().all(|s| s.time_ns == 7 && &*s.guest == "vm1"));
    }

    #[test]
    fn vcpus_are_summed() {
        let json = r#"{"return": [
            {"provider": "kvm", "qom-path": "/a", "stats": [{"name": "exits", "value": 5}, {"name": "blocking", "value": true}]},
            {"provider": "kvm", "qom-path": "/b", "stats": [{"name": "exits", "value": 7}, {"name": "blocking", "value": true}]}]}"#;
        let r = parse_query_stats(json).unwrap();
        let guest: Arc<str> = "g".into();
        let mut out = Vec::new();
        emit_results(&r, "vcpu", &HashMap::new(), false, &mut Emit::new(&mut out, &guest, SourceId::Kvm, 0));
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].counter.as_str(), out[0].value), ("vcpu.exits", 12));
        assert_eq!((out[1].counter.as_str(), out[1].value, out[1].kind), ("vcpu.blocking", 2, Kind::Gauge));
    }

    #[test]
    fn tcg_reply_is_empty_not_an_error() {
        assert!(parse_query_stats(r#"{"return": []}"#).unwrap().is_empty());
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC*") {
            let _ = parse_query_stats(&s);
            let _ = parse_stats_schemas(&s);
        }

        #[test]
        fn json_shaped_garbage_never_panics(name in "[a-z_]{0,12}", v in proptest::num::i64::ANY, b: bool) {
            let json = format!(r#"{{"return":[{{"provider":"kvm","stats":[{{"name":"{name}","value":{v}}},{{"name":"x","value":{b}}}]}}]}}"#);
            let _ = parse_query_stats(&json);
        }
    }
}
