//! `xentrace` binary records and per-domain attribution of hypercalls.
//!
//! A record (little-endian 32-bit words): a header `event:28 | extra_words:3 << 28 | has_tsc:1 << 31`,
//! then the TSC as two words (low, high) when `has_tsc`, then `extra_words` data words. xentrace writes
//! each CPU's buffer in turn, each run of records announced by a `TRC_TRACE_CPU_CHANGE` record whose first
//! word holds the CPU number.
//!
//! PV hypercall records carry no domain id. The domain is the one running on that CPU: the last
//! `TRC_SCHED_SWITCH` record of the CPU names it (third word: the next domain). Hypercalls on a CPU
//! before its first switch record are attributed to [`Domain::Unknown`].
//!
//! Counted: `TRC_PV_HYPERCALL_V2` (operation in the low 20 bits of the first word), the old
//! `TRC_PV_HYPERCALL` (operation in the last word), `TRC_PV_HYPERCALL_SUBCALL` (calls inside multicalls,
//! kept apart as `subcall`) and `TRC_HVM_VMMCALL` (HVM/PVH hypercalls, operation in the first word). Such
//! HVM records carry no TSC: the CPU's last TSC stands in for windows.

use std::collections::BTreeMap;

use crate::TelemetryError;
use crate::xen::hypercall_name;

pub const TRC_LOST_RECORDS: u32 = 0x0001_f002;
pub const TRC_TRACE_CPU_CHANGE: u32 = 0x0001_f003;
pub const TRC_SCHED_SWITCH: u32 = 0x0002_800a;
pub const TRC_HVM_VMMCALL: u32 = 0x0008_2012;
pub const TRC_PV_HYPERCALL: u32 = 0x0020_1001;
pub const TRC_PV_HYPERCALL_V2: u32 = 0x0020_100d;
pub const TRC_PV_HYPERCALL_SUBCALL: u32 = 0x0020_200e;
/// Set in PV events whose guest is 64-bit.
pub const TRC_64_FLAG: u32 = 0x100;
/// The idle domain's id.
pub const DOMID_IDLE: u32 = 0x7fff;

/// One trace record, borrowing its data words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub event: u32,
    pub tsc: Option<u64>,
    extra: &'a [u8],
}

impl Record<'_> {
    pub fn words(&self) -> usize {
        self.extra.len() / 4
    }

    pub fn word(&self, i: usize) -> Option<u32> {
        let b = self.extra.get(i * 4..i * 4 + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// The record at the start of `data` and its length in bytes; `None` if `data` ends inside it.
pub fn parse_record(data: &[u8]) -> Option<(Record<'_>, usize)> {
    let le = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let header = le(data.get(0..4)?);
    let n = ((header >> 28) & 7) as usize;
    let has_tsc = header >> 31 == 1;
    let mut off = 4;
    let tsc = if has_tsc {
        let lo = le(data.get(4..8)?);
        let hi = le(data.get(8..12)?);
        off = 12;
        Some(u64::from(hi) << 32 | u64::from(lo))
    } else {
        None
    };
    let extra = data.get(off..off + 4 * n)?;
    Some((Record { event: header & 0x0fff_ffff, tsc, extra }, off + 4 * n))
}

/// The records of a whole trace; a record cut short at the end is an error (then the iteration ends).
pub fn records(data: &[u8]) -> impl Iterator<Item = Result<Record<'_>, TelemetryError>> {
    let mut off = 0usize;
    std::iter::from_fn(move || {
        if off >= data.len() {
            return None;
        }
        match parse_record(&data[off..]) {
            Some((rec, len)) => {
                off += len;
                Some(Ok(rec))
            }
            None => {
                let at = off as u64;
                off = data.len();
                Some(Err(TelemetryError::Xentrace { offset: at, detail: "record cut short (truncated trace)".into() }))
            }
        }
    })
}

/// Who made a hypercall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Domain {
    Id(u32),
    Idle,
    /// No scheduler record had yet told which domain runs on that CPU.
    Unknown,
}

impl std::fmt::Display for Domain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Domain::Id(d) => write!(f, "{d}"),
            Domain::Idle => f.write_str("idle"),
            Domain::Unknown => f.write_str("unk"),
        }
    }
}

/// A hypercall number, and whether it was issued inside a multicall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HypercallKey {
    pub op: u32,
    pub subcall: bool,
}

impl std::fmt::Display for HypercallKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match hypercall_name(self.op) {
            Some(n) => f.write_str(n)?,
            None => write!(f, "hc{}", self.op)?,
        }
        if self.subcall { f.write_str("(sub)") } else { Ok(()) }
    }
}

pub type Counts = BTreeMap<HypercallKey, u64>;

/// Fixed-length time windows over the trace, from its first hypercall.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Windows {
    tsc_hz: f64,
    seconds: f64,
}

/// Follows the scheduler records and counts hypercalls per domain (and per window).
#[derive(Debug, Clone, Default)]
pub struct Attribution {
    cpu: u32,
    running: BTreeMap<u32, u32>,
    last_tsc: BTreeMap<u32, u64>,
    pub records: u64,
    pub sched_switches: u64,
    pub lost_records: u64,
    counts: BTreeMap<Domain, Counts>,
    windows: Option<Windows>,
    t0: Option<u64>,
    window_counts: BTreeMap<(Domain, u64), Counts>,
}

impl Attribution {
    pub fn new() -> Self {
        Self::default()
    }

    /// Also count per window of `seconds`, converting TSC ticks with the host's TSC frequency.
    pub fn with_windows(tsc_mhz: f64, seconds: f64) -> Self {
        let ok = tsc_mhz.is_finite() && tsc_mhz > 0.0 && seconds.is_finite() && seconds > 0.0;
        Attribution { windows: ok.then_some(Windows { tsc_hz: tsc_mhz * 1e6, seconds }), ..Self::default() }
    }

    /// Attribute a whole trace.
    pub fn of_trace(data: &[u8], windows: Option<(f64, f64)>) -> Result<Self, TelemetryError> {
        let mut a = match windows {
            Some((mhz, s)) => Self::with_windows(mhz, s),
            None => Self::new(),
        };
        for rec in records(data) {
            a.feed(&rec?);
        }
        Ok(a)
    }

    /// Take one record into account (records in file order).
    pub fn feed(&mut self, rec: &Record<'_>) {
        self.records += 1;
        if let Some(tsc) = rec.tsc {
            self.last_tsc.insert(self.cpu, tsc);
        }
        let (key, tsc) = match rec.event {
            TRC_TRACE_CPU_CHANGE => {
                if let Some(w) = rec.word(0) {
                    self.cpu = w & 0xffff;
                }
                return;
            }
            TRC_LOST_RECORDS => {
                self.lost_records += 1;
                return;
            }
            TRC_SCHED_SWITCH => {
                if let Some(next) = rec.word(2) {
                    self.running.insert(self.cpu, next);
                    self.sched_switches += 1;
                }
                return;
            }
            ev => {
                let base = ev & !TRC_64_FLAG;
                let (op, subcall) = match base {
                    TRC_PV_HYPERCALL_V2 | TRC_HVM_VMMCALL => (rec.word(0).map(|w| w & 0xfffff), false),
                    TRC_PV_HYPERCALL_SUBCALL => (rec.word(0).map(|w| w & 0xfffff), true),
                    TRC_PV_HYPERCALL => (rec.words().checked_sub(1).and_then(|i| rec.word(i)), false),
                    _ => return,
                };
                let Some(op) = op else { return };
                (HypercallKey { op, subcall }, rec.tsc.or_else(|| self.last_tsc.get(&self.cpu).copied()))
            }
        };
        let dom = match self.running.get(&self.cpu) {
            None => Domain::Unknown,
            Some(&DOMID_IDLE) => Domain::Idle,
            Some(&d) => Domain::Id(d),
        };
        *self.counts.entry(dom).or_default().entry(key).or_default() += 1;
        if let (Some(w), Some(tsc)) = (self.windows, tsc) {
            let t0 = *self.t0.get_or_insert(tsc);
            let secs = tsc.saturating_sub(t0) as f64 / w.tsc_hz;
            let index = (secs / w.seconds) as u64;
            *self.window_counts.entry((dom, index)).or_default().entry(key).or_default() += 1;
        }
    }

    /// Hypercall counts per domain.
    pub fn counts(&self) -> &BTreeMap<Domain, Counts> {
        &self.counts
    }

    /// Hypercall counts per (domain, window index).
    pub fn window_counts(&self) -> &BTreeMap<(Domain, u64), Counts> {
        &self.window_counts
    }

    /// Count of one hypercall by name (direct calls, not subcalls) in a set of counts.
    pub fn direct(counts: &Counts, name: &str) -> u64 {
        crate::xen::hypercall_number(name)
            .and_then(|op| counts.get(&HypercallKey { op, subcall: false }).copied())
            .unwrap_or(0)
    }
}

/// Per-domain hypercall counts from a trace file that xentrace keeps appending to.
///
/// Every round reads what was appended since the last one, attributes it, and emits for each domain with
/// a guest name `hypercalls.<name>` (direct calls) and `multicall.<name>` (calls inside multicalls),
/// cumulative since the source started.
#[cfg(feature = "sources")]
pub struct XentraceFile {
    label: String,
    path: std::path::PathBuf,
    offset: u64,
    pending: Vec<u8>,
    attribution: Attribution,
    guests: BTreeMap<u32, std::sync::Arc<str>>,
}

#[cfg(feature = "sources")]
impl XentraceFile {
    /// `guests`: domain id to guest name; domains not listed are counted but not emitted.
    pub fn new(label: &str, path: impl Into<std::path::PathBuf>, guests: &[(u32, &str)]) -> Self {
        XentraceFile {
            label: label.to_string(),
            path: path.into(),
            offset: 0,
            pending: Vec::new(),
            attribution: Attribution::new(),
            guests: guests.iter().map(|(d, g)| (*d, std::sync::Arc::from(*g))).collect(),
        }
    }
}

#[cfg(feature = "sources")]
impl crate::Source for XentraceFile {
    fn id(&self) -> crate::SourceId {
        crate::SourceId::Xentrace
    }

    fn guest(&self) -> &str {
        &self.label
    }

    fn sample(&mut self, time_ns: i64, out: &mut Vec<crate::Sample>) -> Result<(), TelemetryError> {
        use std::io::{Read, Seek, SeekFrom};
        let err = |e| TelemetryError::read(&self.path, e);
        let mut f = std::fs::File::open(&self.path).map_err(err)?;
        let len = f.metadata().map_err(err)?.len();
        if len < self.offset {
            // The file was truncated or replaced: start over.
            self.offset = 0;
            self.pending.clear();
            self.attribution = Attribution::new();
        }
        f.seek(SeekFrom::Start(self.offset)).map_err(err)?;
        let before = self.pending.len();
        f.take(64 << 20).read_to_end(&mut self.pending).map_err(err)?;
        self.offset += (self.pending.len() - before) as u64;
        let mut used = 0;
        while let Some((rec, n)) = parse_record(&self.pending[used..]) {
            self.attribution.feed(&rec);
            used += n;
        }
        self.pending.drain(..used);
        for (dom, counts) in self.attribution.counts() {
            let Domain::Id(id) = dom else { continue };
            let Some(guest) = self.guests.get(id) else { continue };
            let mut emit = crate::sample::Emit::new(out, guest, crate::SourceId::Xentrace, time_ns);
            for (key, &n) in counts {
                let prefix = if key.subcall { "multicall" } else { "hypercalls" };
                let name = match hypercall_name(key.op) {
                    Some(h) => format!("{prefix}.{h}"),
                    None => format!("{prefix}.{}", key.op),
                };
                emit.push(name, n, crate::Kind::Counter);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rec(event: u32, tsc: Option<u64>, words: &[u32]) -> Vec<u8> {
        let header = event | (words.len() as u32) << 28 | u32::from(tsc.is_some()) << 31;
        let mut v = header.to_le_bytes().to_vec();
        if let Some(t) = tsc {
            v.extend((t as u32).to_le_bytes());
            v.extend(((t >> 32) as u32).to_le_bytes());
        }
        for w in words {
            v.extend(w.to_le_bytes());
        }
        v
    }

    #[test]
    fn attributes_through_switches_per_cpu() {
        let mut t = Vec::new();
        t.extend(rec(TRC_TRACE_CPU_CHANGE, None, &[0, 100]));
        t.extend(rec(TRC_PV_HYPERCALL_V2 | TRC_64_FLAG, Some(10), &[32]));
        t.extend(rec(TRC_SCHED_SWITCH, Some(11), &[DOMID_IDLE, 0, 1, 0]));
        t.extend(rec(TRC_PV_HYPERCALL_V2, Some(12), &[0x0030_0020]));
        t.extend(rec(TRC_PV_HYPERCALL_SUBCALL, Some(13), &[26]));
        t.extend(rec(TRC_TRACE_CPU_CHANGE, None, &[1, 100]));
        t.extend(rec(TRC_SCHED_SWITCH, Some(14), &[1, 0, 0, 0]));
        t.extend(rec(TRC_PV_HYPERCALL | TRC_64_FLAG, Some(15), &[0xdead, 0xbeef, 24]));
        t.extend(rec(TRC_HVM_VMMCALL, None, &[34]));
        t.extend(rec(TRC_TRACE_CPU_CHANGE, None, &[0, 100]));
        t.extend(rec(TRC_SCHED_SWITCH, Some(16), &[1, 0, DOMID_IDLE, 0]));
        t.extend(rec(TRC_PV_HYPERCALL_V2, Some(17), &[29]));
        let a = Attribution::of_trace(&t, None).unwrap();
        assert_eq!(a.records, 12);
        assert_eq!(a.sched_switches, 3);
        let c = a.counts();
        let key = |op, subcall| HypercallKey { op, subcall };
        assert_eq!(c[&Domain::Unknown][&key(32, false)], 1);
        assert_eq!(c[&Domain::Id(1)][&key(32, false)], 1, "low 20 bits hold the operation");
        assert_eq!(c[&Domain::Id(1)][&key(26, true)], 1);
        assert_eq!(c[&Domain::Id(0)][&key(24, false)], 1, "old format: operation in the last word");
        assert_eq!(c[&Domain::Id(0)][&key(34, false)], 1, "HVM vmmcall");
        assert_eq!(c[&Domain::Idle][&key(29, false)], 1);
        assert_eq!(key(26, true).to_string(), "mmuext_op(sub)");
        assert_eq!(key(60, false).to_string(), "hc60");
    }

    #[test]
    fn truncated_trace_is_an_error() {
        let mut t = rec(TRC_PV_HYPERCALL_V2, Some(1), &[32]);
        t.extend(&rec(TRC_PV_HYPERCALL_V2, Some(2), &[32])[..7]);
        let err = Attribution::of_trace(&t, None).unwrap_err();
        assert!(err.to_string().contains("byte 16"), "{err}");
    }

    #[test]
    fn windows_follow_the_tsc() {
        let mut t = Vec::new();
        t.extend(rec(TRC_SCHED_SWITCH, Some(0), &[0, 0, 3, 0]));
        for tsc in [1_000_000u64, 1_500_000, 2_500_000, 9_000_000] {
            t.extend(rec(TRC_PV_HYPERCALL_V2, Some(tsc), &[32]));
        }
        // 1 MHz TSC, 1 s windows: t0 = 1 s.
        let a = Attribution::of_trace(&t, Some((1.0, 1.0))).unwrap();
        let w: Vec<(u64, u64)> = a.window_counts().iter().map(|((_, i), c)| (*i, c.values().sum())).collect();
        assert_eq!(w, [(0, 2), (1, 1), (8, 1)]);
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..2048), mhz in -10.0f64..5000.0) {
            let _ = Attribution::of_trace(&data, Some((mhz, 1.0)));
        }

        #[test]
        fn structured_records_never_panic(recs in proptest::collection::vec((0u32..8, any::<bool>(), proptest::collection::vec(any::<u32>(), 0..8)), 0..64)) {
            let events = [TRC_TRACE_CPU_CHANGE, TRC_SCHED_SWITCH, TRC_PV_HYPERCALL_V2, TRC_PV_HYPERCALL_SUBCALL,
                TRC_PV_HYPERCALL, TRC_HVM_VMMCALL, TRC_LOST_RECORDS, 0x0002_1101];
            let mut t = Vec::new();
            for (e, tsc, words) in &recs {
                t.extend(rec(events[*e as usize], tsc.then_some(u64::MAX), words));
            }
            let a = Attribution::of_trace(&t, Some((2596.149, 5.0))).unwrap();
            prop_assert_eq!(a.records, recs.len() as u64);
        }
    }
}
