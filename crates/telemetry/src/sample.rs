//! The one sample type every source yields.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// How a counter's successive values relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Cumulative, 64 bits wide: only grows, except when its owner restarts (a reset).
    Counter,
    /// Cumulative, 32 bits wide: wraps around at 2^32 (Xen perf counters).
    Counter32,
    /// An instantaneous level (queue length, pages in use, a boolean as 0/1): no deltas.
    Gauge,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Counter32 => "counter32",
            Kind::Gauge => "gauge",
        }
    }

    pub fn is_cumulative(self) -> bool {
        !matches!(self, Kind::Gauge)
    }
}

impl FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "counter" => Kind::Counter,
            "counter32" => Kind::Counter32,
            "gauge" => Kind::Gauge,
            other => return Err(format!("unknown counter kind `{other}` (expected counter, counter32 or gauge)")),
        })
    }
}

/// Where a sample came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceId {
    /// KVM per-VM and per-vCPU statistics through QMP `query-stats`.
    Kvm,
    /// KVM tracepoint counts of the qemu process (perf_event_open, counting only).
    Tracepoint,
    /// The guest's tap or veth as the host sees it (/proc/net/dev in its namespace).
    Netdev,
    /// The guest's network namespace SNMP/netstat counters (Tcp, TcpExt, Ip, ...).
    Snmp,
    /// The guest's cgroup CPU use and throttling.
    Cgroup,
    /// The guest's host process (qemu, container init, server): CPU per thread, context switches.
    Process,
    /// Xen perf counters (xenperf).
    Xenperf,
    /// Xen hypercalls per domain from xentrace records.
    Xentrace,
    /// Handshake and flow accounting of the guest's link (a packet socket with a header-only filter).
    Flow,
}

impl SourceId {
    pub const ALL: [SourceId; 9] = [
        SourceId::Kvm,
        SourceId::Tracepoint,
        SourceId::Netdev,
        SourceId::Snmp,
        SourceId::Cgroup,
        SourceId::Process,
        SourceId::Xenperf,
        SourceId::Xentrace,
        SourceId::Flow,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SourceId::Kvm => "kvm",
            SourceId::Tracepoint => "tracepoint",
            SourceId::Netdev => "netdev",
            SourceId::Snmp => "snmp",
            SourceId::Cgroup => "cgroup",
            SourceId::Process => "process",
            SourceId::Xenperf => "xenperf",
            SourceId::Xentrace => "xentrace",
            SourceId::Flow => "flow",
        }
    }
}

impl fmt::Display for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SourceId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        SourceId::ALL.into_iter().find(|id| id.as_str() == s).ok_or_else(|| {
            let names: Vec<&str> = SourceId::ALL.iter().map(|id| id.as_str()).collect();
            format!("unknown telemetry source `{s}` (known: {})", names.join(", "))
        })
    }
}

/// A counter name, shared: a source hands out the same allocation round after round (see [`NameCache`]),
/// so a sample costs a reference count, not a string. Compares, hashes and orders as the `str` it holds.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Name(Arc<str>);

impl Name {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The shared allocation (e.g. to key a map without copying the text).
    pub fn as_arc(&self) -> &Arc<str> {
        &self.0
    }
}

impl std::ops::Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Name {
    fn from(s: &str) -> Self {
        Name(s.into())
    }
}

impl From<String> for Name {
    fn from(s: String) -> Self {
        Name(s.into())
    }
}

impl From<Arc<str>> for Name {
    fn from(s: Arc<str>) -> Self {
        Name(s)
    }
}

impl From<&Name> for Name {
    fn from(s: &Name) -> Self {
        s.clone()
    }
}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<String> for Name {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<Name> for String {
    fn eq(&self, other: &Name) -> bool {
        **self == *other.0
    }
}

impl PartialEq<Name> for &str {
    fn eq(&self, other: &Name) -> bool {
        **self == *other.0
    }
}

/// The counter names a source yields, remembered by position: sources emit their counters in the same
/// order every round, so the name at position `i` is checked (one comparison) and shared, and replaced
/// only when it differs (a counter appeared or disappeared).
#[derive(Debug, Default)]
pub struct NameCache {
    names: Vec<Name>,
}

impl NameCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// The shared name `prefix + sep + name` at position `i` (`sep` may be empty).
    pub fn get(&mut self, i: usize, prefix: &str, sep: &str, name: &str) -> Name {
        if let Some(n) = self.names.get(i) {
            if prefix.is_empty() && sep.is_empty() {
                if n.as_str() == name {
                    return n.clone();
                }
            } else {
                let s = n.as_bytes();
                let (p, q) = (prefix.len(), prefix.len() + sep.len());
                if s.len() == q + name.len()
                    && &s[..p] == prefix.as_bytes()
                    && &s[p..q] == sep.as_bytes()
                    && &s[q..] == name.as_bytes()
                {
                    return n.clone();
                }
            }
        }
        let mut text = String::with_capacity(prefix.len() + sep.len() + name.len());
        text.push_str(prefix);
        text.push_str(sep);
        text.push_str(name);
        let n = Name::from(text);
        if i < self.names.len() {
            self.names[i] = n.clone();
        } else {
            self.names.resize(i, Name::from(""));
            self.names.push(n.clone());
        }
        n
    }
}

/// One reading of one counter of one guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// When it was read, in nanoseconds since the Unix epoch.
    pub time_ns: i64,
    /// The guest's name (shared between a round's samples of that guest).
    pub guest: Arc<str>,
    pub source: SourceId,
    /// Counter name, unique within (guest, source): e.g. `vcpu.exits`, `TcpExt.SyncookiesSent`, `rx_packets`.
    pub counter: Name,
    /// Raw value: cumulative count or gauge level, in the unit the counter name says.
    pub value: u64,
    pub kind: Kind,
}

/// Now, in nanoseconds since the Unix epoch.
pub fn unix_now_ns() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

/// Appends samples of one (guest, source, time): the shared part written once. With a [`NameCache`]
/// ([`Emit::with_names`]) the names of successive pushes are shared across rounds.
pub(crate) struct Emit<'a> {
    pub out: &'a mut Vec<Sample>,
    pub guest: &'a Arc<str>,
    pub source: SourceId,
    pub time_ns: i64,
    names: Option<&'a mut NameCache>,
    next: usize,
}

impl<'a> Emit<'a> {
    pub fn new(out: &'a mut Vec<Sample>, guest: &'a Arc<str>, source: SourceId, time_ns: i64) -> Self {
        Emit { out, guest, source, time_ns, names: None, next: 0 }
    }

    pub fn with_names(mut self, names: &'a mut NameCache) -> Self {
        self.names = Some(names);
        self
    }

    pub fn push(&mut self, counter: impl Into<Name> + AsRef<str>, value: u64, kind: Kind) {
        let counter = match self.names.as_deref_mut() {
            Some(cache) => {
                self.next += 1;
                cache.get(self.next - 1, "", "", counter.as_ref())
            }
            None => counter.into(),
        };
        self.push_name(counter, value, kind);
    }

    /// Push `prefix + sep + name`, built only when the cache does not hold it already.
    pub fn push_joined(&mut self, prefix: &str, sep: &str, name: &str, value: u64, kind: Kind) {
        let counter = match self.names.as_deref_mut() {
            Some(cache) => {
                self.next += 1;
                cache.get(self.next - 1, prefix, sep, name)
            }
            None => Name::from(format!("{prefix}{sep}{name}")),
        };
        self.push_name(counter, value, kind);
    }

    pub fn push_name(&mut self, counter: Name, value: u64, kind: Kind) {
        self.out.push(Sample {
            time_ns: self.time_ns,
            guest: Arc::clone(self.guest),
            source: self.source,
            counter,
            value,
            kind,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for id in SourceId::ALL {
            assert_eq!(id.as_str().parse::<SourceId>().unwrap(), id);
        }
        for k in [Kind::Counter, Kind::Counter32, Kind::Gauge] {
            assert_eq!(k.as_str().parse::<Kind>().unwrap(), k);
        }
        assert!("nope".parse::<SourceId>().unwrap_err().contains("known:"));
    }

    #[test]
    fn names_are_shared_by_position() {
        let mut c = NameCache::new();
        let a = c.get(0, "Tcp", ".", "InSegs");
        let b = c.get(0, "Tcp", ".", "InSegs");
        assert!(Arc::ptr_eq(a.as_arc(), b.as_arc()));
        assert_eq!(a, "Tcp.InSegs");
        let d = c.get(0, "Tcp.", "", "InSegs");
        assert!(Arc::ptr_eq(a.as_arc(), d.as_arc()), "same text, other split");
        assert_eq!(c.get(0, "Tcp", ".", "OutSegs"), "Tcp.OutSegs", "changed: replaced");
        assert_eq!(c.get(3, "x", "", ""), "x");
        assert_eq!(c.get(2, "y", "", ""), "y");
        let n: Name = "q".into();
        assert_eq!(serde_json::to_string(&n).unwrap(), "\"q\"");
        assert_eq!(format!("{n} {n:?}"), "q \"q\"");
    }
}
