//! Per-domain hypercall counts as telemetry samples: from xentrace streamed live over a unix socket
//! ([`XentraceStream`], the lab's Xen machine: dom0 runs xentrace into a virtio-serial port whose host
//! end is that socket) or from a trace file xentrace keeps appending to ([`XentraceFile`]). Both parse
//! with the one [`TraceParser`] and name their counters with [`emit_domain`].
//!
//! **Counters** (source `xentrace`, cumulative since the source started): for the watched domain,
//! `<hypercall>` for direct calls (`event_channel_op`, ..., the names of the seed-004 feature set, the
//! five of [`SEED_FEATURES`] always, zero included, the others once seen) and `multicall.<hypercall>` for
//! calls inside multicalls; for dom0, the same under `dom0.`, on the same guest. Why dom0 is not a guest
//! of its own: the lab's victim is the whole Xen machine (its tap, qemu's CPU, the one trace stream), its
//! scenarios' labels name that victim only, and an unlabelled `xen-dom0` guest would be scored by the
//! detector like a domain of its own, though its hypercalls mostly serve the domU (netback, blkback).
//! Under `dom0.` its counts are there as features of the domU's machine.
//!
//! The stream's health, every round: `trace.connected` (gauge 0/1), `trace.connects`, `trace.bytes`,
//! `trace.windows`, `trace.records`, `trace.skipped_bytes` and `trace.resyncs` (framing found again after
//! a late join, a reconnect or damage), `trace.lost_records` (what Xen dropped on full trace buffers, its
//! own count) and `trace.lost_reports`, `trace.unknown_domain` (hypercalls on a CPU whose domain was not
//! yet known), `trace.other_domains` (hypercalls of the idle or other domains), `trace.stream_lost`.
//!
//! With dom0's network counters (a second socket, `/proc/net/dev` blocks every second): the domU's
//! `vif<domid>.0` as netback counts it, `vif.rx_bytes`, `vif.rx_packets`, `vif.rx_drop` (from the domU)
//! and `vif.tx_*` (to the domU), and `vif.stream_lost`.
//!
//! **A lost stream is not zeros**: while the socket is closed, or no byte came for [`STALL_AFTER`], the
//! round emits only the health counters, counts a `trace.stream_lost`, logs a warning (once per loss) and
//! fails, so the hypercall series has a gap, never a run of zeros. Dropped records are counted and
//! logged as they are reported.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::sample::Emit;
use crate::xen::xentrace::{Attribution, Counts, Domain, HypercallKey, TraceParser};
use crate::xen::{SEED_FEATURES, hypercall_name, hypercall_number};
use crate::{Kind, NameCache, Sample, SourceId, TelemetryError};

/// No byte for this long while connected: the stream is lost (xentrace in dom0 stopped, or the port
/// stalled). An idle Xen still traces scheduler switches and dom0's timer hypercalls many times a second.
pub const STALL_AFTER: Duration = Duration::from_secs(5);
/// Between connection attempts.
const RECONNECT_EVERY: Duration = Duration::from_millis(500);
/// How long a read waits before the reader looks at its stop flag again.
const READ_WAKE: Duration = Duration::from_millis(200);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Append one domain's counts: the seed's five hypercalls always (zero when not seen), then every other
/// hypercall seen, each direct one as `<prefix><name>` and each inside a multicall as
/// `<prefix>multicall.<name>` (`hc<N>` for numbers without a name).
pub(crate) fn emit_domain(emit: &mut Emit<'_>, prefix: &str, counts: Option<&Counts>) {
    let get = |key: &HypercallKey| counts.and_then(|c| c.get(key)).copied().unwrap_or(0);
    let seed: Vec<u32> = SEED_FEATURES.iter().filter_map(|f| hypercall_number(f)).collect();
    for (&op, name) in seed.iter().zip(SEED_FEATURES) {
        emit.push_joined(prefix, "", name, get(&HypercallKey { op, subcall: false }), Kind::Counter);
    }
    let Some(counts) = counts else { return };
    for (key, &n) in counts {
        if !key.subcall && seed.contains(&key.op) {
            continue;
        }
        let name = match hypercall_name(key.op) {
            Some(h) => std::borrow::Cow::Borrowed(h),
            None => std::borrow::Cow::Owned(format!("hc{}", key.op)),
        };
        let sub = if key.subcall { "multicall." } else { "" };
        emit.push_joined(&format!("{prefix}{sub}"), "", &name, n, Kind::Counter);
    }
}

/// The domain the guest stands for: the one given, else the one domain other than dom0 that made
/// hypercalls (the lowest id if several).
fn guest_domain(counts: &BTreeMap<Domain, Counts>, domid: Option<u32>) -> Option<u32> {
    domid.or_else(|| {
        counts.keys().find_map(|d| match d {
            Domain::Id(id) if *id != 0 => Some(*id),
            _ => None,
        })
    })
}

/// Hypercalls neither of the guest's domain nor of dom0 (idle, unknown excluded, other domains).
fn other_domains(counts: &BTreeMap<Domain, Counts>, domu: Option<u32>) -> u64 {
    counts
        .iter()
        .filter(|(d, _)| match d {
            Domain::Id(id) => *id != 0 && Some(*id) != domu,
            Domain::Idle => true,
            Domain::Unknown => false,
        })
        .map(|(_, c)| c.values().sum::<u64>())
        .sum()
}

/// The attribution's counts (when `hypercalls`) and the stream's health as samples.
fn emit_all(emit: &mut Emit<'_>, parser: &TraceParser, domid: Option<u32>, hypercalls: bool) {
    let a: &Attribution = &parser.attribution;
    let st = parser.stats();
    let domu = guest_domain(a.counts(), domid);
    for (name, v) in [
        ("trace.bytes", st.bytes),
        ("trace.windows", st.windows),
        ("trace.records", a.records),
        ("trace.skipped_bytes", st.skipped_bytes),
        ("trace.resyncs", st.resyncs),
        ("trace.lost_records", a.lost_records),
        ("trace.lost_reports", a.lost_reports),
        ("trace.unknown_domain", a.unknown_domain),
        ("trace.other_domains", other_domains(a.counts(), domu) + a.overflow_domains),
    ] {
        emit.push(name, v, Kind::Counter);
    }
    if hypercalls {
        emit_domain(emit, "", domu.and_then(|d| a.counts().get(&Domain::Id(d))));
        emit_domain(emit, "dom0.", a.counts().get(&Domain::Id(0)));
    }
}

/// What a reader thread feeds: the bytes of one connection, in order; `restart` when a new one begins.
trait Sink: Default + Send + 'static {
    fn restart(&mut self);
    fn feed(&mut self, data: &[u8]);
}

impl Sink for TraceParser {
    fn restart(&mut self) {
        TraceParser::restart(self);
    }

    fn feed(&mut self, data: &[u8]) {
        TraceParser::feed(self, data);
    }
}

/// dom0's `/proc/net/dev` blocks, each ended by a marker line: the last whole one is kept.
#[derive(Default)]
struct NetdevBlocks {
    line: Vec<u8>,
    block: String,
    last: Option<(String, Instant)>,
}

/// Longer lines and blocks are not dom0's `/proc/net/dev`: dropped, which bounds the state.
const MAX_LINE: usize = 4096;
const MAX_BLOCK: usize = 256 << 10;
const NETDEV_END: &str = "@@VMGUARD-NETDEV-END";

impl Sink for NetdevBlocks {
    fn restart(&mut self) {
        self.line.clear();
        self.block.clear();
    }

    fn feed(&mut self, data: &[u8]) {
        for &b in data {
            if b != b'\n' {
                if self.line.len() < MAX_LINE {
                    self.line.push(b);
                }
                continue;
            }
            let line = String::from_utf8_lossy(&self.line).into_owned();
            self.line.clear();
            if line.starts_with(NETDEV_END) {
                self.last = Some((std::mem::take(&mut self.block), Instant::now()));
            } else if self.block.len() + line.len() < MAX_BLOCK {
                self.block.push_str(&line);
                self.block.push('\n');
            }
        }
    }
}

/// One connection's state, shared by its reader thread and the rounds.
#[derive(Default)]
struct Link<S> {
    sink: S,
    connected: bool,
    connects: u64,
    /// The last byte's arrival, and the last connect.
    last_data: Option<Instant>,
    connected_at: Option<Instant>,
    /// Why the last connect or read failed.
    last_error: Option<String>,
}

struct Shared<S> {
    link: Mutex<Link<S>>,
    stop: AtomicBool,
}

impl<S> Shared<S> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Link<S>> {
        // A panic in the other thread leaves counts that are still counts.
        self.link.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The reader: connect, drain into the sink, reconnect after a close, until told to stop. Every wait
/// is bounded, so it notices the stop flag within a second.
fn read_stream<S: Sink>(path: PathBuf, shared: Arc<Shared<S>>) {
    let mut buf = vec![0u8; 64 << 10];
    while !shared.stop.load(Ordering::Relaxed) {
        match crate::qmp::connect_with_timeout(&path, CONNECT_TIMEOUT) {
            Ok(mut sock) => {
                let _ = sock.set_read_timeout(Some(READ_WAKE));
                {
                    let mut st = shared.lock();
                    // A new connection need not continue where the last one stopped.
                    st.sink.restart();
                    st.connected = true;
                    st.connects += 1;
                    st.connected_at = Some(Instant::now());
                    st.last_error = None;
                }
                let why = loop {
                    if shared.stop.load(Ordering::Relaxed) {
                        return;
                    }
                    match sock.read(&mut buf) {
                        Ok(0) => break "the stream's socket was closed (the relay or qemu ended)".to_string(),
                        Ok(n) => {
                            let mut st = shared.lock();
                            st.sink.feed(&buf[..n]);
                            st.last_data = Some(Instant::now());
                        }
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock
                                    | std::io::ErrorKind::TimedOut
                                    | std::io::ErrorKind::Interrupted
                            ) => {}
                        Err(e) => break format!("reading: {e}"),
                    }
                };
                let mut st = shared.lock();
                st.connected = false;
                st.last_error = Some(why);
            }
            Err(e) => shared.lock().last_error = Some(format!("connecting: {e}")),
        }
        let until = Instant::now() + RECONNECT_EVERY;
        while Instant::now() < until && !shared.stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A socket drained by a thread of its own, started at the first round and stopped on drop (not
/// joined: it sees the flag within a second; a round never waits for it).
struct Reader<S: Sink> {
    path: PathBuf,
    shared: Arc<Shared<S>>,
    started: Option<Instant>,
    /// Whether the last round found it lost, and how many losses there were.
    lost_now: bool,
    losses: u64,
}

/// How a stream is doing this round.
struct Health {
    live: bool,
    lost: bool,
    /// Why it is lost.
    why: String,
}

impl<S: Sink> Reader<S> {
    fn new(path: PathBuf) -> Self {
        let shared = Arc::new(Shared { link: Mutex::new(Link::default()), stop: AtomicBool::new(false) });
        Reader { path, shared, started: None, lost_now: false, losses: 0 }
    }

    fn start(&mut self, name: &str) -> Result<(), TelemetryError> {
        if self.started.is_some() {
            return Ok(());
        }
        let (path, shared) = (self.path.clone(), Arc::clone(&self.shared));
        std::thread::Builder::new().name(name.into()).spawn(move || read_stream(path, shared)).map_err(|e| {
            TelemetryError::XentraceStream {
                socket: self.path.clone(),
                detail: format!("cannot start its reader thread: {e}"),
            }
        })?;
        self.started = Some(Instant::now());
        Ok(())
    }

    /// Live: connected and a byte within `stall`. Lost: not live, past the first `stall` after the
    /// reader started (not connected yet or no byte yet is no loss then). Logs a loss once, and the
    /// recovery.
    fn health(&mut self, link: &Link<S>, stall: Duration, guest: &str, what: &str) -> Health {
        let now = Instant::now();
        let started = self.started.unwrap_or(now);
        let quiet = now.duration_since(link.last_data.or(link.connected_at).unwrap_or(started).max(started));
        let live = link.connected && quiet < stall;
        let starting = link.last_data.is_none() && now.duration_since(started) < stall;
        let lost = !live && !starting;
        let why = if link.connected {
            format!("no data for {:.1} s while connected (is it running in dom0?)", quiet.as_secs_f64())
        } else {
            match &link.last_error {
                Some(e) => format!(
                    "not connected: {e} (are the Xen machine's qemu and vmguard-xen-relay running? `vmguard lab status` shows both)"
                ),
                None => "not connected yet".into(),
            }
        };
        if lost && !self.lost_now {
            self.losses += 1;
            tracing::warn!(
                "guest {guest} {what} stream {}: lost: {why}; its counters are left out (not zeros) until it is back",
                self.path.display()
            );
        } else if !lost && self.lost_now && live {
            tracing::info!("guest {guest} {what} stream {}: receiving again", self.path.display());
        }
        self.lost_now = lost;
        Health { live, lost, why }
    }
}

impl<S: Sink> Drop for Reader<S> {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

/// Hypercalls per domain from xentrace records streamed over a unix socket, and optionally the domU's
/// vif counters from dom0's `/proc/net/dev` on a second one (module docs). Reader threads drain the
/// sockets as data comes, so a round only copies counts and never waits on a stream.
pub struct XentraceStream {
    guest: Arc<str>,
    domid: Option<u32>,
    trace: Reader<TraceParser>,
    netdev: Option<Reader<NetdevBlocks>>,
    names: NameCache,
    stall_after: Duration,
    /// Dropped records already logged.
    lost_logged: u64,
}

impl XentraceStream {
    /// `domid`: the guest's domain (`None`: the one domain other than dom0 seen in the trace).
    pub fn new(guest: &str, socket: impl Into<PathBuf>, domid: Option<u32>) -> Self {
        XentraceStream {
            guest: Arc::from(guest),
            domid,
            trace: Reader::new(socket.into()),
            netdev: None,
            names: NameCache::new(),
            stall_after: STALL_AFTER,
            lost_logged: 0,
        }
    }

    /// Also read dom0's `/proc/net/dev` blocks from this socket: the domU's `vif<domid>.0` counters
    /// as `vif.rx_packets`, ... (netback's side: `rx` is what the domU sent).
    pub fn with_netdev(mut self, socket: impl Into<PathBuf>) -> Self {
        self.netdev = Some(Reader::new(socket.into()));
        self
    }

    /// Declare a stream lost after this long without a byte (default [`STALL_AFTER`]).
    pub fn stall_after(mut self, d: Duration) -> Self {
        self.stall_after = d;
        self
    }

    /// The domU's vif counters from the last whole block, if that is recent; the vif is the domain's
    /// first (`vif<domid>.0`), the domain as for the hypercalls.
    fn vif(&mut self, domu: Option<u32>) -> (Option<[u64; 16]>, Option<Health>) {
        let Some(r) = self.netdev.as_mut() else { return (None, None) };
        if let Err(e) = r.start(&format!("xennet-{}", self.guest)) {
            tracing::warn!("{e}");
            return (None, None);
        }
        let shared = Arc::clone(&r.shared);
        let link = shared.lock();
        let h = r.health(&link, self.stall_after, &self.guest, "dom0 netdev");
        let fresh = link.sink.last.as_ref().filter(|(_, at)| at.elapsed() < self.stall_after);
        let vals = fresh.and_then(|(text, _)| {
            let name = match domu {
                Some(d) => format!("vif{d}.0"),
                None => crate::netdev::parse_netdev(text)
                    .into_iter()
                    .map(|(n, _)| n)
                    .find(|n| n.starts_with("vif") && n.ends_with(".0"))?,
            };
            crate::netdev::parse_netdev_iface(text, &name)
        });
        (vals.filter(|_| h.live), Some(h))
    }
}

impl crate::Source for XentraceStream {
    fn id(&self) -> SourceId {
        SourceId::Xentrace
    }

    fn guest(&self) -> &str {
        &self.guest
    }

    fn sample(&mut self, time_ns: i64, out: &mut Vec<Sample>) -> Result<(), TelemetryError> {
        self.trace.start(&format!("xentrace-{}", self.guest))?;
        let shared = Arc::clone(&self.trace.shared);
        let link = shared.lock();
        let h = self.trace.health(&link, self.stall_after, &self.guest, "xentrace");
        let lost_records = link.sink.attribution.lost_records;
        if lost_records > self.lost_logged {
            tracing::warn!(
                "guest {} xentrace: Xen dropped {} trace records (full trace buffers: no reader was draining them, or dom0's xentrace fell behind; {} in all): hypercall counts of that time are too low",
                self.guest,
                lost_records - self.lost_logged,
                lost_records
            );
            self.lost_logged = lost_records;
        }
        let domu = guest_domain(link.sink.attribution.counts(), self.domid);
        let (vif, vif_health) = self.vif(domu);
        let mut emit = Emit::new(out, &self.guest, SourceId::Xentrace, time_ns).with_names(&mut self.names);
        emit.push("trace.connected", u64::from(link.connected), Kind::Gauge);
        emit.push("trace.connects", link.connects, Kind::Counter);
        emit.push("trace.stream_lost", self.trace.losses, Kind::Counter);
        emit_all(&mut emit, &link.sink, self.domid, h.live && link.last_data.is_some());
        if let Some(r) = &self.netdev {
            emit.push("vif.stream_lost", r.losses, Kind::Counter);
        }
        // Bytes, packets and drops each way.
        for i in vif.map_or(&[][..], |_| &[0, 1, 3, 8, 9, 11]) {
            let v = vif.map_or(0, |v| v[*i]);
            emit.push_joined("vif.", "", crate::netdev::NETDEV_FIELDS[*i], v, Kind::Counter);
        }
        if h.lost {
            return Err(TelemetryError::XentraceStream { socket: self.trace.path.clone(), detail: h.why });
        }
        if let (Some(r), Some(vh)) = (&self.netdev, vif_health)
            && vh.lost
        {
            return Err(TelemetryError::XentraceStream { socket: r.path.clone(), detail: vh.why });
        }
        Ok(())
    }
}

/// Per-domain hypercall counts from a trace file that xentrace keeps appending to: every round reads what
/// was appended since the last one. Counters as [`XentraceStream`]'s, for the domain `domid`.
pub struct XentraceFile {
    guest: Arc<str>,
    path: PathBuf,
    domid: Option<u32>,
    offset: u64,
    parser: TraceParser,
    names: NameCache,
}

impl XentraceFile {
    pub fn new(guest: &str, path: impl Into<PathBuf>, domid: Option<u32>) -> Self {
        XentraceFile {
            guest: Arc::from(guest),
            path: path.into(),
            domid,
            offset: 0,
            parser: TraceParser::new(),
            names: NameCache::new(),
        }
    }
}

impl crate::Source for XentraceFile {
    fn id(&self) -> SourceId {
        SourceId::Xentrace
    }

    fn guest(&self) -> &str {
        &self.guest
    }

    fn sample(&mut self, time_ns: i64, out: &mut Vec<Sample>) -> Result<(), TelemetryError> {
        use std::io::{Seek, SeekFrom};
        let err = |e| TelemetryError::read(&self.path, e);
        let mut f = std::fs::File::open(&self.path).map_err(err)?;
        let len = f.metadata().map_err(err)?.len();
        if len < self.offset {
            // The file was truncated or replaced: start over.
            self.offset = 0;
            self.parser = TraceParser::new();
        }
        f.seek(SeekFrom::Start(self.offset)).map_err(err)?;
        let mut buf = vec![0u8; 64 << 10];
        // At most 64 MiB a round, so a huge file does not stall the round.
        let mut budget = 64usize << 20;
        while budget > 0 {
            let n = f.read(&mut buf).map_err(err)?;
            if n == 0 {
                break;
            }
            self.parser.feed(&buf[..n]);
            self.offset += n as u64;
            budget = budget.saturating_sub(n);
        }
        let mut emit = Emit::new(out, &self.guest, SourceId::Xentrace, time_ns).with_names(&mut self.names);
        emit_all(&mut emit, &self.parser, self.domid, true);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Source;
    use crate::xen::xentrace::tests::{rec, window};
    use crate::xen::xentrace::{TRC_LOST_RECORDS, TRC_PV_HYPERCALL_SUBCALL, TRC_PV_HYPERCALL_V2, TRC_SCHED_SWITCH};
    use std::io::Write;
    use std::os::unix::net::UnixListener;

    fn value(out: &[Sample], name: &str) -> Option<u64> {
        out.iter().rev().find(|s| s.counter == name).map(|s| s.value)
    }

    fn trace(domain: u32, calls: u32) -> Vec<u8> {
        let mut recs = vec![rec(TRC_SCHED_SWITCH, Some(1), &[0, 0, domain, 0])];
        for _ in 0..calls {
            recs.push(rec(TRC_PV_HYPERCALL_V2, Some(2), &[32]));
            recs.push(rec(TRC_PV_HYPERCALL_SUBCALL, Some(2), &[26]));
        }
        window(0, &recs)
    }

    #[test]
    fn names_follow_the_seed_feature_set() {
        let mut names = NameCache::new();
        let mut out = Vec::new();
        let mut p = TraceParser::new();
        p.feed(&trace(3, 2));
        p.feed(&trace(0, 1));
        let guest: Arc<str> = Arc::from("xen");
        emit_all(&mut Emit::new(&mut out, &guest, SourceId::Xentrace, 1).with_names(&mut names), &p, None, true);
        assert_eq!(value(&out, "event_channel_op"), Some(2));
        assert_eq!(value(&out, "multicall.mmuext_op"), Some(2));
        assert_eq!(value(&out, "grant_table_op"), Some(0), "the seed's five always");
        assert_eq!(value(&out, "dom0.event_channel_op"), Some(1));
        assert_eq!(value(&out, "dom0.hvm_op"), Some(0));
        assert_eq!(value(&out, "trace.windows"), Some(2));
        assert!(out.iter().all(|s| s.source == SourceId::Xentrace && &*s.guest == "xen"));
        // An explicit domain id wins; another domain's calls are "other".
        let mut out = Vec::new();
        emit_all(&mut Emit::new(&mut out, &guest, SourceId::Xentrace, 1).with_names(&mut names), &p, Some(7), true);
        assert_eq!(value(&out, "event_channel_op"), Some(0));
        assert_eq!(value(&out, "trace.other_domains"), Some(4));
    }

    #[test]
    fn streams_from_a_socket_late_join_reconnect_and_loss() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trace.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let mut src = XentraceStream::new("xen", &path, Some(1)).stall_after(Duration::from_millis(1500));
        let mut out = Vec::new();
        // Connected, nothing yet: health only, no hypercall zeros, no failure.
        src.sample(1, &mut out).unwrap();
        assert_eq!(value(&out, "event_channel_op"), None);
        let (mut conn, _) = listener.accept().unwrap();
        // Joined mid-record: the first 5 bytes are skipped, the rest counted.
        let t = trace(1, 3);
        conn.write_all(&t[5..]).unwrap();
        conn.write_all(&trace(1, 2)).unwrap();
        conn.write_all(&window(0, &[rec(TRC_LOST_RECORDS, Some(9), &[77, 0, 0, 0])])).unwrap();
        let wait = |src: &mut XentraceStream, name: &str, want: u64| {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let mut out = Vec::new();
                let r = src.sample(2, &mut out);
                if value(&out, name) == Some(want) {
                    return (r, out);
                }
                assert!(Instant::now() < deadline, "{name} never became {want}: {out:?}");
                std::thread::sleep(Duration::from_millis(50));
            }
        };
        let (r, out) = wait(&mut src, "event_channel_op", 2);
        assert!(r.is_ok());
        assert_eq!(value(&out, "trace.skipped_bytes"), Some((t.len() - 5) as u64));
        let (_, out) = wait(&mut src, "trace.lost_records", 77);
        assert_eq!(value(&out, "trace.connected"), Some(1));
        // Closed: a loss, reported and counted, the hypercall counters left out.
        drop(conn);
        let (r, out) = wait(&mut src, "trace.stream_lost", 1);
        assert!(r.unwrap_err().to_string().contains("not connected"));
        assert_eq!(value(&out, "event_channel_op"), None);
        // Back: the reconnect starts afresh on framing and goes on counting.
        let (mut conn, _) = listener.accept().unwrap();
        conn.write_all(&trace(1, 1)).unwrap();
        let (r, out) = wait(&mut src, "event_channel_op", 3);
        assert!(r.is_ok());
        assert_eq!(value(&out, "trace.connects"), Some(2));
        // Silent while connected: lost too.
        let (r, _) = wait(&mut src, "trace.stream_lost", 2);
        assert!(r.unwrap_err().to_string().contains("no data"));
        drop(conn);
    }

    #[test]
    fn vif_counters_come_from_dom0s_netdev_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let (tpath, npath) = (dir.path().join("trace.sock"), dir.path().join("stats.sock"));
        let (tl, nl) = (UnixListener::bind(&tpath).unwrap(), UnixListener::bind(&npath).unwrap());
        let mut src = XentraceStream::new("xen", &tpath, Some(2)).with_netdev(&npath);
        let mut out = Vec::new();
        src.sample(1, &mut out).unwrap();
        let (mut t, _) = tl.accept().unwrap();
        let (mut n, _) = nl.accept().unwrap();
        t.write_all(&trace(2, 1)).unwrap();
        // Joined mid-block: the partial first block is not used.
        n.write_all(b"  vif2.0: 9 9 0 9 0 0 0 0 9 9 0 9 0 0 0 0\n@@VMGUARD-NETDEV-END 1.0\n").unwrap();
        let block = "Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes packets errs drop fifo colls carrier compressed\n    lo: 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\nvif2.0: 1000 10 0 2 0 0 0 0 5000 50 0 3 0 0 0 0\n@@VMGUARD-NETDEV-END 2.0\n";
        n.write_all(block.as_bytes()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            out.clear();
            let r = src.sample(2, &mut out);
            if value(&out, "vif.tx_packets") == Some(50) {
                assert!(r.is_ok(), "{r:?}");
                break;
            }
            assert!(Instant::now() < deadline, "{out:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(value(&out, "vif.rx_bytes"), Some(1000));
        assert_eq!(value(&out, "vif.rx_drop"), Some(2));
        assert_eq!(value(&out, "vif.tx_drop"), Some(3));
        assert_eq!(value(&out, "event_channel_op"), Some(1));
    }

    #[test]
    fn a_missing_socket_fails_after_the_grace_period() {
        let mut src = XentraceStream::new("xen", "/nonexistent/vmgt-trace.sock", None).stall_after(Duration::ZERO);
        let mut out = Vec::new();
        std::thread::sleep(Duration::from_millis(20));
        let e = src.sample(1, &mut out).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/vmgt-trace.sock"), "{e}");
        assert_eq!(value(&out, "trace.stream_lost"), Some(1));
    }

    #[test]
    fn a_growing_file_is_read_as_it_grows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trace.bin");
        let t = trace(1, 4);
        std::fs::write(&path, &t[..30]).unwrap();
        let mut src = XentraceFile::new("xen", &path, None);
        let mut out = Vec::new();
        src.sample(1, &mut out).unwrap();
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(&t[30..]).unwrap();
        out.clear();
        src.sample(2, &mut out).unwrap();
        assert_eq!(value(&out, "event_channel_op"), Some(4));
        assert_eq!(value(&out, "trace.skipped_bytes"), Some(0));
    }
}
