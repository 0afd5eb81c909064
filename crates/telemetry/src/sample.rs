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
}

impl SourceId {
    pub const ALL: [SourceId; 8] = [
        SourceId::Kvm,
        SourceId::Tracepoint,
        SourceId::Netdev,
        SourceId::Snmp,
        SourceId::Cgroup,
        SourceId::Process,
        SourceId::Xenperf,
        SourceId::Xentrace,
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

/// One reading of one counter of one guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// When it was read, in nanoseconds since the Unix epoch.
    pub time_ns: i64,
    /// The guest's name (shared between a round's samples of that guest).
    pub guest: Arc<str>,
    pub source: SourceId,
    /// Counter name, unique within (guest, source): e.g. `vcpu.exits`, `TcpExt.SyncookiesSent`, `rx_packets`.
    pub counter: String,
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

/// Appends samples of one (guest, source, time): the shared part written once.
pub(crate) struct Emit<'a> {
    pub out: &'a mut Vec<Sample>,
    pub guest: &'a Arc<str>,
    pub source: SourceId,
    pub time_ns: i64,
}

impl Emit<'_> {
    pub fn push(&mut self, counter: impl Into<String>, value: u64, kind: Kind) {
        self.out.push(Sample {
            time_ns: self.time_ns,
            guest: Arc::clone(self.guest),
            source: self.source,
            counter: counter.into(),
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
}
