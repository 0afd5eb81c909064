//! Per-guest counters sampled from the host.
//!
//! Every source turns what it reads into the same [`Sample`]: a timestamp, the guest it belongs to, the
//! source it came from, a counter name and an integer value, marked cumulative ([`Kind::Counter`],
//! [`Kind::Counter32`]) or instantaneous ([`Kind::Gauge`]). Detection works on per-interval deltas of the
//! cumulative counters ([`delta`]) and on the gauges as they are.
//!
//! The lab describes each guest to this crate with a [`GuestInfo`]; [`sources_for`] builds the sources
//! that apply to it and a [`Collector`] runs one sampling round over all of them, where a failing source is
//! a warning for that source, never the end of the round.
//!
//! [`pipeline`] is the collection loop on top (rounds at an interval over a changing set of guests,
//! deltas, a per-round callback) and [`export`] serves the latest readings as OpenMetrics (feature
//! `export`, on by default).
//!
//! [`discover`] finds the guests already running on a host (libvirt, qemu, containers, Xen, a static list)
//! and describes each by the same [`GuestInfo`] (feature `sources`).
//!
//! Parsers are pure functions of text or bytes (`parse_*`), so they test and fuzz without root; the live
//! parts (`perf_event_open`, network namespaces) are behind the default feature `sources`.

// Without the live sources some helpers only serve the parsers' tests.
#![cfg_attr(not(feature = "sources"), allow(dead_code, unused_imports))]

pub mod cgroup;
pub mod delta;
#[cfg(feature = "sources")]
pub mod discover;
mod error;
mod file;
pub mod flow;
pub mod guest;
pub mod netdev;
#[cfg(feature = "sources")]
pub mod perf;
pub mod procfs;
pub mod qmp;
pub mod sample;
pub mod snmp;
pub mod xen;

#[cfg(feature = "sources")]
mod collect;
#[cfg(feature = "export")]
pub mod export;
#[cfg(feature = "export")]
pub mod pipeline;

#[cfg(feature = "sources")]
pub use collect::{Collector, SourceFailure, sources_for};
pub use delta::{Delta, DeltaTracker, delta};
#[cfg(feature = "sources")]
pub use discover::{DiscoverKind, DiscoverOptions, Discovered, Discoverer, DiscoveryProblem, StaticGuest};
pub use error::{ParseError, TelemetryError};
pub use guest::{GuestInfo, GuestKind, Iface, UnknownGuestKind};
pub use sample::{Kind, Name, NameCache, Sample, SourceId, unix_now_ns};

/// One place a guest's counters come from. `sample` appends this round's readings to `out`.
///
/// A source keeps what it can reuse between rounds (open files, a QMP connection, perf counters) and
/// reconnects or reopens by itself after a failure; an `Err` means this round produced nothing usable
/// from it (samples it appended before failing are kept).
pub trait Source: Send {
    /// Which kind of source this is (also the `source` of every sample it yields).
    fn id(&self) -> SourceId;
    /// The guest this source watches.
    fn guest(&self) -> &str;
    /// Read once; every sample gets `time_ns` (unix nanoseconds) as its time.
    fn sample(&mut self, time_ns: i64, out: &mut Vec<Sample>) -> Result<(), TelemetryError>;
}
