//! `xentrace` binary records and per-domain attribution of hypercalls, from a whole file or from a
//! live stream in arbitrary chunks: one decoder ([`parse_record`]), one framer ([`TraceParser`]) and one
//! attribution ([`Attribution`]) serve both.
//!
//! A record (little-endian 32-bit words): a header `event:28 | extra_words:3 << 28 | has_tsc:1 << 31`,
//! then the TSC as two words (low, high) when `has_tsc`, then `extra_words` data words.
//!
//! **Framing.** xentrace writes each CPU's new trace data as a *window*: a `TRC_TRACE_CPU_CHANGE` record
//! (two words: the CPU number in the low 16 bits, the window's byte count) followed by exactly that many
//! bytes of whole records. [`TraceParser`] follows the windows. Where they do not add up (a stream that
//! starts mid-record because the reader connected late, bytes lost on a reconnect, garbage), it
//! resynchronises: it scans byte by byte for the next plausible window header and counts what it skipped.
//! Xen itself never writes a CPU-change record into its buffers, so one met inside a window means the
//! previous window was cut short (xentrace restarted): a new window starts there.
//!
//! **Attribution.** PV hypercall records carry no domain id. The domain is the one running on that CPU:
//! the last `TRC_SCHED_SWITCH` record of the CPU names it (third word: the next domain). Hypercalls on a
//! CPU before its first switch record are attributed to [`Domain::Unknown`].
//!
//! Counted: `TRC_PV_HYPERCALL_V2` (operation in the low 20 bits of the first word), the old
//! `TRC_PV_HYPERCALL` (operation in the last word), `TRC_PV_HYPERCALL_SUBCALL` (calls inside multicalls,
//! kept apart as `subcall`) and `TRC_HVM_VMMCALL` (HVM/PVH hypercalls, operation in the first word). Such
//! HVM records carry no TSC: the CPU's last TSC stands in for windows. `TRC_LOST_RECORDS`, which Xen
//! writes (whatever the event mask) when a full buffer made it drop records, adds its first word (how
//! many were dropped) to [`Attribution::lost_records`].
//!
//! **Bounded state.** Between chunks the parser keeps at most one partial record or window header
//! ([`MAX_RECORD`] bytes); per-domain counts are kept for at most [`MAX_DOMAINS`] domains and
//! [`MAX_OPS`] operation numbers (the rest is counted, not kept apart); CPU numbers are below
//! [`MAX_CPUS`]. Only the per-time-window counts of a whole file ([`Attribution::with_windows`]) grow
//! with the trace's length.

use std::collections::BTreeMap;

use crate::TelemetryError;
use crate::xen::hypercall_name;

pub const TRC_LOST_RECORDS: u32 = 0x0001_f001;
/// Padding Xen writes where a record would not fit before its buffer wraps.
pub const TRC_TRACE_WRAP_BUFFER: u32 = 0x0001_f002;
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

/// The longest record: header, TSC, seven data words.
pub const MAX_RECORD: usize = 4 + 8 + 7 * 4;
/// CPU numbers a window header may name (Xen's own limit is lower on every real machine).
pub const MAX_CPUS: u32 = 4096;
/// The largest window accepted as plausible: a CPU's whole trace buffer (xentrace `-S` pages) is far
/// smaller on any sane setting.
pub const MAX_WINDOW_BYTES: u32 = 64 << 20;
/// Domains whose counts are kept apart; hypercalls of further domains count in
/// [`Attribution::overflow_domains`].
pub const MAX_DOMAINS: usize = 256;
/// Operation numbers kept apart (hypercall numbers are below 64); larger ones count as [`OTHER_OP`].
pub const MAX_OPS: u32 = 64;
/// Where operation numbers of [`MAX_OPS`] and more are counted.
pub const OTHER_OP: u32 = MAX_OPS;
/// A window header's first word: a CPU-change record with two data words and no TSC.
const WINDOW_HEADER: u32 = TRC_TRACE_CPU_CHANGE | 2 << 28;
const WINDOW_HEADER_LEN: usize = 12;

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
    /// Records taken in (window headers included).
    pub records: u64,
    pub sched_switches: u64,
    /// Records Xen dropped because a trace buffer was full: the sum of its `TRC_LOST_RECORDS` counts.
    pub lost_records: u64,
    /// How many `TRC_LOST_RECORDS` reports there were.
    pub lost_reports: u64,
    /// Hypercalls on a CPU whose running domain no scheduler record had named yet.
    pub unknown_domain: u64,
    /// Hypercalls of domains beyond the first [`MAX_DOMAINS`] (counted, not kept apart).
    pub overflow_domains: u64,
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

    /// Attribute a whole trace file; a trace that ends inside a record or window is an error (giving the
    /// byte where the unfinished part starts).
    pub fn of_trace(data: &[u8], windows: Option<(f64, f64)>) -> Result<Self, TelemetryError> {
        let a = match windows {
            Some((mhz, s)) => Self::with_windows(mhz, s),
            None => Self::new(),
        };
        let mut p = TraceParser::with_attribution(a);
        p.feed(data);
        p.finish()?;
        Ok(p.attribution)
    }

    /// Take one record into account (records in stream order).
    pub fn feed(&mut self, rec: &Record<'_>) {
        self.records += 1;
        if let Some(tsc) = rec.tsc {
            self.last_tsc.insert(self.cpu, tsc);
        }
        let (key, tsc) = match rec.event {
            TRC_TRACE_CPU_CHANGE => {
                // Only plausible CPUs: bounds the per-CPU maps whatever the input.
                if let Some(cpu) = rec.word(0).map(|w| w & 0xffff).filter(|&c| c < MAX_CPUS) {
                    self.cpu = cpu;
                }
                return;
            }
            TRC_LOST_RECORDS => {
                // Xen dropped records of this CPU, switches among them: its running domain is unknown.
                self.running.remove(&self.cpu);
                self.lost_reports += 1;
                self.lost_records += u64::from(rec.word(0).unwrap_or(0));
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
                let op = if op < MAX_OPS { op } else { OTHER_OP };
                (HypercallKey { op, subcall }, rec.tsc.or_else(|| self.last_tsc.get(&self.cpu).copied()))
            }
        };
        let dom = match self.running.get(&self.cpu) {
            None => Domain::Unknown,
            Some(&DOMID_IDLE) => Domain::Idle,
            Some(&d) => Domain::Id(d),
        };
        if dom == Domain::Unknown {
            self.unknown_domain += 1;
        }
        if !self.counts.contains_key(&dom) && self.counts.len() >= MAX_DOMAINS {
            self.overflow_domains += 1;
            return;
        }
        *self.counts.entry(dom).or_default().entry(key).or_default() += 1;
        if let (Some(w), Some(tsc)) = (self.windows, tsc) {
            let t0 = *self.t0.get_or_insert(tsc);
            let secs = tsc.saturating_sub(t0) as f64 / w.tsc_hz;
            let index = (secs / w.seconds) as u64;
            *self.window_counts.entry((dom, index)).or_default().entry(key).or_default() += 1;
        }
    }

    /// Forget which domain runs where (a stream that lost bytes may have lost switch records too); the
    /// counts stay.
    pub fn forget_cpus(&mut self) {
        self.running.clear();
        self.last_tsc.clear();
        self.cpu = 0;
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

/// Where the framer is in the byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sync {
    /// Looking for a window header, byte by byte.
    Searching,
    /// Inside a window: this many bytes of records to go.
    Window { remaining: u32 },
    /// A window just ended: the next bytes must be a window header.
    Between,
}

/// How the stream went so far (beside the [`Attribution`]'s own counts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Bytes fed in.
    pub bytes: u64,
    /// Bytes skipped while looking for a window header (a start mid-record, a gap, garbage).
    pub skipped_bytes: u64,
    /// Times the framing was lost after it had been found (a window that did not add up).
    pub resyncs: u64,
    /// Windows followed.
    pub windows: u64,
}

/// An incremental xentrace parser: feed it chunks of any size, in order; it never panics, keeps at most
/// [`MAX_RECORD`] bytes between chunks, and gives the same counts however the bytes are split.
#[derive(Debug, Clone)]
pub struct TraceParser {
    pub attribution: Attribution,
    stats: StreamStats,
    sync: Sync,
    /// An unfinished record or header from the end of the last chunk.
    carry: [u8; MAX_RECORD],
    carry_len: usize,
}

impl Default for TraceParser {
    fn default() -> Self {
        Self::with_attribution(Attribution::new())
    }
}

impl TraceParser {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_attribution(attribution: Attribution) -> Self {
        TraceParser {
            attribution,
            stats: StreamStats::default(),
            sync: Sync::Searching,
            carry: [0; MAX_RECORD],
            carry_len: 0,
        }
    }

    pub fn stats(&self) -> StreamStats {
        self.stats
    }

    /// Bytes held back between chunks (an unfinished record or header): always below [`MAX_RECORD`].
    pub fn held_back(&self) -> usize {
        self.carry_len
    }

    /// The stream broke (a reconnect): what follows need not continue what came before. The bytes held
    /// back are skipped, and so is everything up to the next window header.
    pub fn restart(&mut self) {
        self.stats.skipped_bytes += self.carry_len as u64;
        self.carry_len = 0;
        if !matches!(self.sync, Sync::Searching) {
            self.sync = Sync::Searching;
        }
        self.attribution.forget_cpus();
    }

    /// Take in the next bytes of the stream.
    pub fn feed(&mut self, mut data: &[u8]) {
        self.stats.bytes += data.len() as u64;
        // First finish what the last chunk left unfinished, a byte at a time (it is at most one record).
        while self.carry_len > 0 && !data.is_empty() {
            if self.carry_len == MAX_RECORD {
                // Cannot happen (any MAX_RECORD bytes hold a whole unit); stay bounded if it does.
                self.stats.skipped_bytes += 1;
                self.carry.copy_within(1.., 0);
                self.carry_len -= 1;
            }
            self.carry[self.carry_len] = data[0];
            self.carry_len += 1;
            data = &data[1..];
            let buf = self.carry;
            let n = self.carry_len;
            let used = self.step_all(&buf[..n]);
            // `used` is all of it or nothing: the carry holds less than one unit.
            if used > 0 {
                let rest = n - used;
                self.carry.copy_within(used..n, 0);
                self.carry_len = rest;
                // What is left in the carry came before `data`: go on with it first.
            }
        }
        if data.is_empty() {
            return;
        }
        let used = self.step_all(data);
        let rest = &data[used..];
        debug_assert!(rest.len() < MAX_RECORD);
        let n = rest.len().min(MAX_RECORD - 1);
        // `step_all` leaves less than one unit; the bound holds whatever it does.
        self.stats.skipped_bytes += (rest.len() - n) as u64;
        self.carry[..n].copy_from_slice(&rest[rest.len() - n..]);
        self.carry_len = n;
    }

    /// The stream ended: an error if it ended inside a record or a window.
    pub fn finish(&self) -> Result<(), TelemetryError> {
        // Bytes held back while searching are not a record: only a window or record begun is unfinished.
        let unfinished = match self.sync {
            Sync::Window { .. } if self.carry_len > 0 => Some("record cut short (truncated trace)"),
            Sync::Window { remaining } if remaining > 0 => Some("window cut short (truncated trace)"),
            Sync::Between if self.carry_len > 0 => Some("window header cut short (truncated trace)"),
            _ => None,
        };
        match unfinished {
            Some(detail) => Err(TelemetryError::Xentrace {
                offset: self.stats.bytes - self.carry_len as u64,
                detail: detail.into(),
            }),
            None => Ok(()),
        }
    }

    /// Process as many whole units (headers, records, skipped bytes) of `buf` as it holds; returns the
    /// bytes used. What is left is shorter than the unit it begins.
    fn step_all(&mut self, buf: &[u8]) -> usize {
        let mut at = 0;
        loop {
            match self.step(&buf[at..]) {
                0 => return at,
                n => at += n,
            }
        }
    }

    /// One unit at the start of `buf`: its length, 0 if `buf` does not hold it whole.
    fn step(&mut self, buf: &[u8]) -> usize {
        match self.sync {
            Sync::Searching => {
                // Anything before a plausible window header is skipped.
                let first = WINDOW_HEADER.to_le_bytes();
                let mut i = 0;
                while i + 4 <= buf.len() {
                    if buf[i..i + 4] == first {
                        if i + WINDOW_HEADER_LEN > buf.len() {
                            break; // a header, perhaps: wait for the rest of it
                        }
                        if window_len(&buf[i..]).is_some() {
                            self.stats.skipped_bytes += i as u64;
                            self.sync = Sync::Between;
                            return i + self.step(&buf[i..]);
                        }
                    }
                    i += 1;
                }
                // Up to `i` nothing can begin a header; the (at most 11) bytes after it may.
                self.stats.skipped_bytes += i as u64;
                i
            }
            Sync::Between => {
                if buf.len() < WINDOW_HEADER_LEN {
                    // A header needs 12 bytes; a non-header is known at its first word.
                    if buf.len() >= 4 && buf[..4] != WINDOW_HEADER.to_le_bytes() {
                        self.lose_sync();
                        return self.step(buf);
                    }
                    return 0;
                }
                match window_len(buf) {
                    Some(remaining) => {
                        self.take_header(buf, remaining);
                        WINDOW_HEADER_LEN
                    }
                    None => {
                        self.lose_sync();
                        self.step(buf)
                    }
                }
            }
            Sync::Window { remaining } => {
                if remaining == 0 {
                    self.sync = Sync::Between;
                    return self.step(buf);
                }
                let Some((rec, len)) = parse_record(buf) else { return 0 };
                if rec.event == TRC_TRACE_CPU_CHANGE && rec.words() == 2 {
                    // xentrace began a new window before this one ended (it restarted): follow the new one.
                    if let Some(next) = window_len(buf) {
                        self.stats.resyncs += 1;
                        self.take_header(buf, next);
                        return WINDOW_HEADER_LEN;
                    }
                }
                if len as u64 > u64::from(remaining) {
                    // The window does not add up: its records were not what we took them for.
                    self.lose_sync();
                    return self.step(buf);
                }
                self.attribution.feed(&rec);
                self.sync = Sync::Window { remaining: remaining - len as u32 };
                len
            }
        }
    }

    fn take_header(&mut self, buf: &[u8], remaining: u32) {
        if let Some((rec, _)) = parse_record(buf) {
            self.attribution.feed(&rec);
        }
        self.stats.windows += 1;
        self.sync = Sync::Window { remaining };
    }

    fn lose_sync(&mut self) {
        self.stats.resyncs += 1;
        self.sync = Sync::Searching;
        // Switch records may have been among the lost bytes.
        self.attribution.forget_cpus();
    }
}

/// The byte count of the window whose header starts `buf`, if it is a plausible header.
fn window_len(buf: &[u8]) -> Option<u32> {
    let word = |i: usize| buf.get(i * 4..i * 4 + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    if word(0)? != WINDOW_HEADER {
        return None;
    }
    let (cpu, len) = (word(1)?, word(2)?);
    // cpu:16 and a reserved 16 bits that xentrace sets to 0.
    let plausible = cpu < MAX_CPUS && len > 0 && len % 4 == 0 && len <= MAX_WINDOW_BYTES;
    plausible.then_some(len)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn rec(event: u32, tsc: Option<u64>, words: &[u32]) -> Vec<u8> {
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

    /// A window as xentrace writes it: the CPU-change header with the byte count, then the records.
    pub(crate) fn window(cpu: u32, records: &[Vec<u8>]) -> Vec<u8> {
        let body: Vec<u8> = records.concat();
        let mut v = rec(TRC_TRACE_CPU_CHANGE, None, &[cpu, body.len() as u32]);
        v.extend(body);
        v
    }

    fn key(op: u32, subcall: bool) -> HypercallKey {
        HypercallKey { op, subcall }
    }

    /// What a parser counted, in a comparable form.
    fn summary(p: &TraceParser) -> (StreamStats, u64, u64, u64, u64, BTreeMap<Domain, Counts>) {
        let a = &p.attribution;
        (p.stats(), a.records, a.lost_records, a.lost_reports, a.unknown_domain, a.counts().clone())
    }

    fn sample_trace() -> Vec<u8> {
        let mut t = Vec::new();
        t.extend(window(
            0,
            &[
                rec(TRC_PV_HYPERCALL_V2 | TRC_64_FLAG, Some(10), &[32]),
                rec(TRC_SCHED_SWITCH, Some(11), &[DOMID_IDLE, 0, 1, 0]),
                rec(TRC_PV_HYPERCALL_V2, Some(12), &[0x0030_0020]),
                rec(TRC_PV_HYPERCALL_SUBCALL, Some(13), &[26]),
            ],
        ));
        t.extend(window(
            1,
            &[
                rec(TRC_SCHED_SWITCH, Some(14), &[1, 0, 0, 0]),
                rec(TRC_PV_HYPERCALL | TRC_64_FLAG, Some(15), &[0xdead, 0xbeef, 24]),
                rec(TRC_HVM_VMMCALL, None, &[34]),
            ],
        ));
        t.extend(window(
            0,
            &[rec(TRC_SCHED_SWITCH, Some(16), &[1, 0, DOMID_IDLE, 0]), rec(TRC_PV_HYPERCALL_V2, Some(17), &[29])],
        ));
        t
    }

    #[test]
    fn attributes_through_switches_per_cpu() {
        let a = Attribution::of_trace(&sample_trace(), None).unwrap();
        assert_eq!(a.records, 12, "window headers are records too");
        assert_eq!(a.sched_switches, 3);
        assert_eq!(a.unknown_domain, 1);
        let c = a.counts();
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
        let mut t = window(0, &[rec(TRC_PV_HYPERCALL_V2, Some(1), &[32]), rec(TRC_PV_HYPERCALL_V2, Some(2), &[32])]);
        t.truncate(t.len() - 9);
        let err = Attribution::of_trace(&t, None).unwrap_err();
        assert!(err.to_string().contains("byte 28: record cut short"), "{err}");
        let t = window(0, &[rec(TRC_PV_HYPERCALL_V2, Some(1), &[32]), rec(TRC_PV_HYPERCALL_V2, Some(2), &[32])]);
        let err = Attribution::of_trace(&t[..28], None).unwrap_err();
        assert!(err.to_string().contains("window cut short"), "{err}");
    }

    #[test]
    fn windows_follow_the_tsc() {
        let mut recs = vec![rec(TRC_SCHED_SWITCH, Some(0), &[0, 0, 3, 0])];
        for tsc in [1_000_000u64, 1_500_000, 2_500_000, 9_000_000] {
            recs.push(rec(TRC_PV_HYPERCALL_V2, Some(tsc), &[32]));
        }
        // 1 MHz TSC, 1 s windows: t0 = 1 s.
        let a = Attribution::of_trace(&window(0, &recs), Some((1.0, 1.0))).unwrap();
        let w: Vec<(u64, u64)> = a.window_counts().iter().map(|((_, i), c)| (*i, c.values().sum())).collect();
        assert_eq!(w, [(0, 2), (1, 1), (8, 1)]);
    }

    #[test]
    fn lost_records_add_xens_count_and_forget_the_cpus_domain() {
        let t = window(
            0,
            &[
                rec(TRC_SCHED_SWITCH, Some(1), &[0, 0, 1, 0]),
                rec(TRC_PV_HYPERCALL_V2, Some(2), &[32]),
                // u32 lost, u16 domain | u16 vcpu, u64 first TSC.
                rec(TRC_LOST_RECORDS, Some(3), &[1234, 1, 5, 0]),
                rec(TRC_TRACE_WRAP_BUFFER, None, &[7, 7]),
                rec(TRC_PV_HYPERCALL_V2, Some(4), &[32]),
            ],
        );
        let a = Attribution::of_trace(&t, None).unwrap();
        assert_eq!((a.lost_records, a.lost_reports), (1234, 1));
        assert_eq!(a.counts()[&Domain::Id(1)][&key(32, false)], 1);
        assert_eq!(a.counts()[&Domain::Unknown][&key(32, false)], 1, "after the loss, until the next switch");
    }

    #[test]
    fn a_stream_joined_mid_record_resynchronises_at_the_next_window() {
        let t = sample_trace();
        let first = window(
            0,
            &[
                rec(TRC_PV_HYPERCALL_V2 | TRC_64_FLAG, Some(10), &[32]),
                rec(TRC_SCHED_SWITCH, Some(11), &[DOMID_IDLE, 0, 1, 0]),
                rec(TRC_PV_HYPERCALL_V2, Some(12), &[0x0030_0020]),
                rec(TRC_PV_HYPERCALL_SUBCALL, Some(13), &[26]),
            ],
        )
        .len();
        for cut in [1, 5, 13, first - 1] {
            let mut p = TraceParser::new();
            p.feed(&t[cut..]);
            assert!(p.finish().is_ok());
            assert_eq!(p.stats().skipped_bytes, (first - cut) as u64, "cut at {cut}");
            assert_eq!(p.stats().windows, 2);
            assert_eq!(p.attribution.records, 7);
        }
        // Garbage between windows: skipped, counted, and the framing found again.
        let mut g = t.clone();
        g.splice(first..first, [0xffu8; 7]);
        let mut p = TraceParser::new();
        p.feed(&g);
        assert_eq!((p.stats().skipped_bytes, p.stats().resyncs, p.stats().windows), (7, 1, 3));
        assert_eq!(p.attribution.records, 12);
        // A window cut short at a record by a restarted xentrace: the new header inside it starts the
        // next window.
        let one = rec(TRC_PV_HYPERCALL_V2, Some(1), &[32]);
        let mut r = window(0, &[one.clone(), one.clone()]);
        r.truncate(r.len() - one.len());
        r.extend(window(0, std::slice::from_ref(&one)));
        let mut p = TraceParser::new();
        p.feed(&r);
        assert_eq!((p.stats().skipped_bytes, p.stats().resyncs, p.stats().windows), (0, 1, 2));
        assert_eq!(p.attribution.records, 4);
        assert!(p.finish().is_ok());
        // Cut inside a record: the framing is lost and found again at a later window.
        let mut r = window(0, &[one.clone(), one.clone()]);
        r.truncate(r.len() - 7);
        r.extend(window(0, std::slice::from_ref(&one)));
        r.extend(window(1, std::slice::from_ref(&one)));
        r.extend(window(1, std::slice::from_ref(&one)));
        let mut p = TraceParser::new();
        p.feed(&r);
        assert!(p.stats().resyncs >= 1 && p.stats().windows >= 3, "{:?}", p.stats());
        assert!(p.finish().is_ok());
    }

    #[test]
    fn restart_drops_the_partial_record_and_waits_for_a_window() {
        let t = sample_trace();
        let mut p = TraceParser::new();
        p.feed(&t[..20]);
        p.restart();
        p.feed(&t[5..]);
        let mut whole = TraceParser::new();
        whole.feed(&t[5..]);
        assert_eq!(p.attribution.counts(), whole.attribution.counts());
        assert_eq!(p.stats().skipped_bytes, whole.stats().skipped_bytes + 8, "the 8 bytes held back");
    }

    #[test]
    fn state_stays_bounded_on_hostile_input() {
        let mut p = TraceParser::new();
        // Many domains and operation numbers.
        let mut recs = Vec::new();
        for d in 0..1000u32 {
            recs.push(rec(TRC_SCHED_SWITCH, None, &[0, 0, d, 0]));
            recs.push(rec(TRC_PV_HYPERCALL_V2, None, &[0xfffff - d]));
        }
        p.feed(&window(MAX_CPUS - 1, &recs));
        assert_eq!(p.attribution.counts().len(), MAX_DOMAINS);
        assert_eq!(p.attribution.overflow_domains, 1000 - MAX_DOMAINS as u64);
        assert!(p.attribution.counts().values().all(|c| c.keys().all(|k| k.op <= OTHER_OP)));
        // Implausible headers are skipped: a CPU out of range, a length not of whole words.
        let mut bad = rec(TRC_TRACE_CPU_CHANGE, None, &[MAX_CPUS, 4]);
        bad.extend(rec(TRC_TRACE_CPU_CHANGE, None, &[0, 6]));
        let mut q = TraceParser::new();
        q.feed(&bad);
        assert_eq!(q.stats().windows, 0);
        assert!(q.stats().skipped_bytes >= 13);
    }

    /// Split `data` at the given points (each taken modulo the length, sorted).
    fn split<'a>(data: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
        let mut at: Vec<usize> = cuts.iter().map(|c| if data.is_empty() { 0 } else { c % (data.len() + 1) }).collect();
        at.sort_unstable();
        let mut out = Vec::new();
        let mut last = 0;
        for c in at {
            out.push(&data[last..c]);
            last = c;
        }
        out.push(&data[last..]);
        out
    }

    fn events() -> impl Strategy<Value = Vec<u8>> {
        let event = prop_oneof![
            Just(TRC_SCHED_SWITCH),
            Just(TRC_PV_HYPERCALL_V2),
            Just(TRC_PV_HYPERCALL_V2 | TRC_64_FLAG),
            Just(TRC_PV_HYPERCALL_SUBCALL),
            Just(TRC_PV_HYPERCALL),
            Just(TRC_HVM_VMMCALL),
            Just(TRC_LOST_RECORDS),
            Just(TRC_TRACE_WRAP_BUFFER),
            Just(0x0002_1101u32),
        ];
        (event, any::<bool>(), proptest::collection::vec(0u32..40, 0..8))
            .prop_map(|(e, tsc, words)| rec(e, tsc.then_some(u64::MAX), &words))
    }

    fn trace() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec((0u32..4, proptest::collection::vec(events(), 1..12)), 0..10)
            .prop_map(|ws| ws.iter().flat_map(|(cpu, recs)| window(*cpu, recs)).collect())
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..2048), mhz in -10.0f64..5000.0) {
            let _ = Attribution::of_trace(&data, Some((mhz, 1.0)));
        }

        #[test]
        fn well_formed_traces_parse_whole(t in trace()) {
            let mut p = TraceParser::new();
            p.feed(&t);
            prop_assert!(p.finish().is_ok());
            prop_assert_eq!(p.stats().skipped_bytes, 0);
            prop_assert_eq!(p.stats().resyncs, 0);
        }

        #[test]
        fn any_split_gives_the_same_counts(t in trace(), noise in proptest::collection::vec(any::<u8>(), 0..64), at in any::<usize>(), cuts in proptest::collection::vec(any::<usize>(), 0..16)) {
            // Well-formed windows with some garbage spliced in somewhere.
            let mut data = t.clone();
            let at = if data.is_empty() { 0 } else { at % data.len() };
            data.splice(at..at, noise);
            let mut whole = TraceParser::new();
            whole.feed(&data);
            let mut parts = TraceParser::new();
            for chunk in split(&data, &cuts) {
                parts.feed(chunk);
            }
            prop_assert_eq!(summary(&whole), summary(&parts));
            prop_assert_eq!(whole.finish().is_ok(), parts.finish().is_ok());
            let mut bytes = TraceParser::new();
            for b in &data {
                bytes.feed(std::slice::from_ref(b));
            }
            prop_assert_eq!(summary(&whole), summary(&bytes));
        }

        #[test]
        fn arbitrary_chunks_never_panic_and_account_for_every_byte(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20)) {
            let mut p = TraceParser::new();
            let mut n = 0u64;
            for c in &chunks {
                p.feed(c);
                n += c.len() as u64;
                prop_assert!(p.carry_len < MAX_RECORD);
            }
            prop_assert_eq!(p.stats().bytes, n);
            prop_assert!(p.stats().skipped_bytes <= n);
        }

        #[test]
        fn mutated_traces_resynchronise(t in trace(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8), tail in trace()) {
            // Damage a trace anywhere: no panic, every byte accounted for. After a restart (a
            // reconnect) a clean trace counts exactly as it does alone.
            let mut data = t.clone();
            if !data.is_empty() {
                for (i, b) in &flips {
                    let i = i % data.len();
                    data[i] ^= b | 1;
                }
            }
            let mut p = TraceParser::new();
            p.feed(&data);
            prop_assert_eq!(p.stats().bytes, data.len() as u64);
            let before = summary(&p);
            p.restart();
            p.feed(&tail);
            let mut clean = TraceParser::new();
            clean.feed(&tail);
            prop_assert_eq!(p.stats().windows - before.0.windows, clean.stats().windows);
            prop_assert_eq!(p.attribution.records - before.1, clean.attribution.records);
            for (dom, counts) in clean.attribution.counts() {
                for (k, n) in counts {
                    let had = before.5.get(dom).and_then(|c| c.get(k)).copied().unwrap_or(0);
                    prop_assert_eq!(p.attribution.counts()[dom][k] - had, *n);
                }
            }
        }

        #[test]
        fn a_late_join_finds_every_window_after_it(t in trace(), start in any::<usize>()) {
            prop_assume!(!t.is_empty());
            let start = start % t.len();
            let mut p = TraceParser::new();
            p.feed(&t[start..]);
            // These traces hold no header bytes except at window starts.
            let after = (start..t.len()).filter(|&i| window_len(&t[i..]).is_some()).count() as u64;
            prop_assert_eq!(p.stats().windows, after);
            prop_assert_eq!(p.stats().resyncs, 0);
            prop_assert!(p.finish().is_ok());
        }
    }
}
