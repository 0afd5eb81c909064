//! The Xen machine's stream relay (`vmguard-xen-relay`): the one client of qemu's chardev sockets for
//! dom0's trace and stats ports, serving any number of readers on the paths they already use.
//!
//! ```text
//!  dom0 ══ virtio-serial ══ qemu: trace.qemu.sock ── relay ──┬── trace.sock ── reader 1 (collect)
//!                                                            ├── trace.sock ── reader 2 (agent)
//!                           qemu: stats.qemu.sock ── relay ──┴── stats.sock ── ...
//! ```
//!
//! qemu's `socket,server=on` chardev serves one client: a second reader got nothing. The relay reads
//! each upstream and copies each chunk into every connected reader's queue.
//!
//! - **A joining reader** gets every byte from its connection on. On a byte stream (xentrace) it
//!   joins mid-record and resynchronises (the trace parser does that); on a line stream (dom0's
//!   `/proc/net/dev` blocks) the relay forwards whole lines only ([`LineFramer`]), so every reader
//!   starts at a line boundary and a drop never cuts a line.
//! - **No reader**: each channel does what its [`Unread`] says. dom0's stats lines are read on and
//!   dropped (counted as `unread_bytes`, logged once per stretch without a reader): a line a second
//!   costs nothing, and a reader must get fresh counters. The xentrace stream is *held*: the relay
//!   stops reading, qemu's socket fills, qemu stops taking from the port, and dom0's xentrace waits
//!   in its write while Xen drops (and counts, in `TRC_LOST_RECORDS`) what its buffers cannot hold:
//!   what happens when nothing reads qemu's socket at all. Draining it for nobody kept xentrace
//!   copying in dom0 for no one (see [`Unread::Hold`]). When a reader ends a hold, the bytes waiting in qemu's socket are from before
//!   its join: dropped and counted, like the stats lines no one read.
//! - **A slow reader** has a bounded queue of its own ([`Limits::queue_bytes`]); what does not fit
//!   is dropped for that reader only, counted and logged once per connection. On a byte stream the
//!   reader's connection is then ended once its queue is written: a gap in xentrace records can hide
//!   a scheduler switch, and a reconnect is the break every reader already treats as one (its parser
//!   restarts and forgets which domain ran where). A line stream's reader stays connected.
//! - **qemu's socket closes** (qemu restarted) or is not there yet: the relay connects again every
//!   [`RECONNECT_EVERY`]; readers stay connected (a silent stream is what telemetry calls lost).
//! - **Memory** is bounded: at most [`Limits::max_readers`] readers, each queue at most
//!   `queue_bytes` plus one chunk, one read buffer and one unfinished line per channel.
//!
//! Why std threads and not tokio (which the workspace has for the exporter): a relay of two streams
//! and a handful of readers needs a thread per connection at most; a blocking write to a stalled
//! reader then stalls only that reader's thread, by construction, and the code needs no runtime.
//!
//! The relay's counters go to a JSON status file ([`RelayStatus`]) every second, which `lab status`
//! shows.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The relay's binary, next to the running vmguard binary or on PATH.
pub const RELAY_BIN: &str = "vmguard-xen-relay";
/// Between attempts to connect to qemu's socket.
pub const RECONNECT_EVERY: Duration = Duration::from_millis(200);
/// How long a blocking call waits before its thread looks at the stop flag again.
const WAKE: Duration = Duration::from_millis(100);
/// How often a held channel looks for a reader (the latest a joining reader's stream starts).
const HOLD_POLL: Duration = Duration::from_millis(20);
/// Upstream read size: the largest chunk a byte stream forwards.
const READ_BUF: usize = 64 << 10;
/// How often the status file is written.
const STATUS_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Another process already serves readers on this path.
    #[error("{} is already served by another process", path.display())]
    InUse { path: PathBuf },
    /// Binding a reader socket failed.
    #[error("listening on {}: {source}", path.display())]
    Listen { path: PathBuf, source: std::io::Error },
    /// A thread could not be started.
    #[error("starting a relay thread: {0}")]
    Thread(std::io::Error),
    /// Nothing to relay, or a limit of zero.
    #[error("invalid relay configuration: {0}")]
    Config(String),
}

/// How a channel's bytes are cut into what a reader may join at and lose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Framing {
    /// Any byte boundary (xentrace records: the reader resynchronises).
    Bytes,
    /// Whole lines only (dom0's `/proc/net/dev` blocks).
    Lines,
}

/// What a channel does while no reader is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unread {
    /// Read on and drop what comes (counted): the writer in dom0 never waits, and a reader that joins
    /// gets what is written from then on.
    Drop,
    /// Stop reading until a reader connects: the writer in dom0 waits. For xentrace, whose copying
    /// to the port is work in dom0 (and hypercalls that Xen traces in turn): drained for nobody,
    /// xentrace and its `cat` took 3% of dom0's CPU at idle and 5.5% after a zombie flood, against
    /// under 1% held (README, Telemetry, the Xen victim's hypercalls), on a TCG machine where dom0
    /// shares the emulated CPUs with the domU.
    Hold,
}

/// One stream: qemu's socket and the path readers connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelSpec {
    pub name: String,
    pub upstream: PathBuf,
    pub listen: PathBuf,
    pub framing: Framing,
    pub unread: Unread,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes queued for one reader before what comes is dropped for it.
    pub queue_bytes: usize,
    /// Readers served at once per channel; more are refused (connection closed at once).
    pub max_readers: usize,
    /// Longest line a line stream forwards; a longer one is dropped whole (and counted).
    pub max_line: usize,
}

impl Default for Limits {
    fn default() -> Self {
        // 8 MiB: seconds of a busy domU's trace records under TCG.
        Limits { queue_bytes: 8 << 20, max_readers: 32, max_line: 64 << 10 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelaySpec {
    pub channels: Vec<ChannelSpec>,
    pub limits: Limits,
    /// Where the counters are written every second (removed at shutdown).
    pub status: Option<PathBuf>,
}

/// What the relay has done, per channel (the status file's content).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RelayStatus {
    pub pid: u32,
    /// Unix seconds of this status.
    pub updated_unix: u64,
    pub channels: Vec<ChannelStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChannelStatus {
    pub name: String,
    pub upstream: PathBuf,
    pub listen: PathBuf,
    pub upstream_connected: bool,
    pub upstream_connects: u64,
    /// Bytes read from qemu.
    pub upstream_bytes: u64,
    /// Bytes that arrived while no reader was connected (a held channel: that waited in qemu's
    /// socket when a reader ended the hold): dropped.
    pub unread_bytes: u64,
    /// A held channel with no reader: the relay is not reading it (dom0's writer waits).
    #[serde(default)]
    pub held: bool,
    /// Readers connected now, and since the start.
    pub readers: usize,
    pub readers_total: u64,
    /// Readers turned away at `max_readers`.
    pub readers_refused: u64,
    /// Bytes dropped for readers whose queue was full, and how many connections that happened to.
    pub reader_dropped_bytes: u64,
    pub readers_overflowed: u64,
    /// Line streams: bytes of lines longer than `max_line`, and of an unfinished line when qemu's
    /// socket closed.
    pub line_dropped_bytes: u64,
    /// Why the last connection to qemu failed or ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_error: Option<String>,
}

impl RelayStatus {
    pub fn read(path: &Path) -> Option<RelayStatus> {
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }

    pub fn channel(&self, name: &str) -> Option<&ChannelStatus> {
        self.channels.iter().find(|c| c.name == name)
    }
}

/// Cuts a line stream into whole lines: what [`LineFramer::push`] returns always ends with `\n`,
/// and the concatenation of its returns is the input's whole lines of at most `max_line` bytes
/// (newline not counted), however the input was split. The unfinished last line is held back.
#[derive(Debug, Clone)]
pub struct LineFramer {
    partial: Vec<u8>,
    /// Inside a line already found too long: dropped up to its end.
    skipping: bool,
    max_line: usize,
    /// Bytes dropped: overlong lines and unfinished lines at [`LineFramer::reset`].
    pub dropped: u64,
}

impl LineFramer {
    pub fn new(max_line: usize) -> LineFramer {
        LineFramer { partial: Vec::new(), skipping: false, max_line, dropped: 0 }
    }

    /// The whole lines `data` completes, if any.
    pub fn push(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        for piece in data.split_inclusive(|&b| b == b'\n') {
            let whole = piece.last() == Some(&b'\n');
            if self.skipping {
                self.dropped += piece.len() as u64;
                self.skipping = !whole;
                continue;
            }
            if self.partial.len() + piece.len() - usize::from(whole) > self.max_line {
                self.dropped += (self.partial.len() + piece.len()) as u64;
                self.partial.clear();
                self.skipping = !whole;
                continue;
            }
            if whole {
                out.append(&mut self.partial);
                out.extend_from_slice(piece);
            } else {
                self.partial.extend_from_slice(piece);
            }
        }
        (!out.is_empty()).then_some(out)
    }

    /// Bytes of the unfinished line held back.
    pub fn held_back(&self) -> usize {
        self.partial.len()
    }

    /// Bytes were dropped before the next ones: whatever comes up to the next newline is the rest of
    /// a line already cut, dropped (counted) too, unless the dropped bytes ended at a line's end.
    pub fn cut(&mut self, ended_at_newline: bool) {
        self.reset();
        self.skipping = !ended_at_newline;
    }

    /// The stream broke: the unfinished line is dropped (counted), and so is nothing else.
    pub fn reset(&mut self) {
        self.dropped += self.partial.len() as u64;
        self.partial.clear();
        self.skipping = false;
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicked thread leaves counters and queues that are still usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One reader's queue, filled by the upstream thread and emptied by the reader's writer thread.
struct ReaderQueue {
    id: u64,
    inner: Mutex<Queue>,
    ready: Condvar,
}

#[derive(Default)]
struct Queue {
    chunks: VecDeque<Arc<[u8]>>,
    bytes: usize,
    sent: u64,
    dropped: u64,
    /// No more chunks are taken: the connection ends once the queue is written.
    ending: bool,
    /// The writer is gone.
    closed: bool,
}

enum Offer {
    Queued,
    /// Dropped; `first` on the connection's first drop.
    Dropped {
        first: bool,
    },
}

impl ReaderQueue {
    /// Queue a chunk if it fits (or the queue is empty); otherwise drop it for this reader and, when
    /// `end_on_overflow`, take no more.
    fn offer(&self, chunk: &Arc<[u8]>, limit: usize, end_on_overflow: bool) -> Offer {
        let mut q = lock(&self.inner);
        if q.closed || q.ending || (q.bytes > 0 && q.bytes + chunk.len() > limit) {
            let first = q.dropped == 0;
            q.dropped += chunk.len() as u64;
            q.ending |= end_on_overflow;
            drop(q);
            self.ready.notify_one();
            return Offer::Dropped { first };
        }
        q.bytes += chunk.len();
        q.chunks.push_back(Arc::clone(chunk));
        drop(q);
        self.ready.notify_one();
        Offer::Queued
    }

    /// The next chunk; `Err(true)` when the queue ended and is empty, `Err(false)` on a timeout.
    fn take(&self, wait: Duration) -> Result<Arc<[u8]>, bool> {
        let mut q = lock(&self.inner);
        if q.chunks.is_empty() && !q.ending {
            q = self.ready.wait_timeout(q, wait).unwrap_or_else(PoisonError::into_inner).0;
        }
        match q.chunks.pop_front() {
            Some(c) => {
                q.bytes -= c.len();
                Ok(c)
            }
            None => Err(q.ending),
        }
    }

    fn is_closed(&self) -> bool {
        lock(&self.inner).closed
    }
}

#[derive(Default)]
struct Counters {
    upstream_connected: bool,
    upstream_connects: u64,
    upstream_bytes: u64,
    unread_bytes: u64,
    held: bool,
    /// Logged that bytes are dropped for want of a reader (reset when one connects).
    unread_logged: bool,
    readers_total: u64,
    readers_refused: u64,
    reader_dropped_bytes: u64,
    readers_overflowed: u64,
    line_dropped_bytes: u64,
    upstream_error: Option<String>,
}

struct Channel {
    spec: ChannelSpec,
    limits: Limits,
    readers: Mutex<Vec<Arc<ReaderQueue>>>,
    counters: Mutex<Counters>,
}

impl Channel {
    fn has_readers(&self) -> bool {
        let mut readers = lock(&self.readers);
        readers.retain(|r| !r.is_closed());
        !readers.is_empty()
    }

    /// Hand one chunk to every reader; never blocks on a reader.
    fn broadcast(&self, chunk: Arc<[u8]>) {
        let mut readers = lock(&self.readers);
        readers.retain(|r| !r.is_closed());
        if readers.is_empty() {
            let mut c = lock(&self.counters);
            c.unread_bytes += chunk.len() as u64;
            if !c.unread_logged {
                c.unread_logged = true;
                tracing::info!(
                    "{}: no reader connected: dropping its bytes on the host side (counted as unread_bytes)",
                    self.spec.name
                );
            }
            return;
        }
        let end_on_overflow = self.spec.framing == Framing::Bytes;
        for r in readers.iter() {
            if let Offer::Dropped { first } = r.offer(&chunk, self.limits.queue_bytes, end_on_overflow) {
                let mut c = lock(&self.counters);
                c.reader_dropped_bytes += chunk.len() as u64;
                if first {
                    c.readers_overflowed += 1;
                    let then = if end_on_overflow {
                        "its connection ends once its queue is written (it reconnects and resynchronises)"
                    } else {
                        "what does not fit is dropped, whole lines"
                    };
                    tracing::warn!(
                        "{} reader {}: its queue of {} bytes is full (a slow reader): dropping for it only; {then}",
                        self.spec.name,
                        r.id,
                        self.limits.queue_bytes
                    );
                }
            }
        }
    }

    fn status(&self) -> ChannelStatus {
        let readers = lock(&self.readers).iter().filter(|r| !r.is_closed()).count();
        let c = lock(&self.counters);
        ChannelStatus {
            name: self.spec.name.clone(),
            upstream: self.spec.upstream.clone(),
            listen: self.spec.listen.clone(),
            upstream_connected: c.upstream_connected,
            upstream_connects: c.upstream_connects,
            upstream_bytes: c.upstream_bytes,
            unread_bytes: c.unread_bytes,
            held: c.held,
            readers,
            readers_total: c.readers_total,
            readers_refused: c.readers_refused,
            reader_dropped_bytes: c.reader_dropped_bytes,
            readers_overflowed: c.readers_overflowed,
            line_dropped_bytes: c.line_dropped_bytes,
            upstream_error: c.upstream_error.clone(),
        }
    }
}

/// Sleep up to `d`, waking early when `stop` is set.
fn nap(stop: &AtomicBool, d: Duration) {
    let until = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20).min(until.saturating_duration_since(Instant::now())));
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted)
}

/// Connect to qemu, drain, hand out, reconnect: until stopped.
fn drain_upstream(ch: Arc<Channel>, stop: Arc<AtomicBool>) {
    let mut buf = vec![0u8; READ_BUF];
    let mut lines = LineFramer::new(ch.limits.max_line);
    let mut waiting_logged = false;
    while !stop.load(Ordering::Relaxed) {
        match UnixStream::connect(&ch.spec.upstream) {
            Ok(mut sock) => {
                let _ = sock.set_read_timeout(Some(WAKE));
                {
                    let mut c = lock(&ch.counters);
                    c.upstream_connected = true;
                    c.upstream_connects += 1;
                    c.upstream_error = None;
                }
                waiting_logged = false;
                tracing::info!("{}: connected to qemu's {}", ch.spec.name, ch.spec.upstream.display());
                let mut holding = false;
                let why = loop {
                    if stop.load(Ordering::Relaxed) {
                        break None;
                    }
                    if ch.spec.unread == Unread::Hold {
                        if !ch.has_readers() {
                            if !holding {
                                holding = true;
                                lock(&ch.counters).held = true;
                                tracing::info!(
                                    "{}: no reader connected: holding the stream (not reading qemu's socket; dom0's writer waits) until one connects",
                                    ch.spec.name
                                );
                            }
                            nap(&stop, HOLD_POLL);
                            continue;
                        }
                        if holding {
                            holding = false;
                            let stale = match drop_waiting(&mut sock, &mut buf) {
                                Ok(s) => s,
                                Err(why) => break Some(why),
                            };
                            if ch.spec.framing == Framing::Lines && stale.bytes > 0 {
                                lines.cut(stale.ended_at_newline);
                            }
                            let mut c = lock(&ch.counters);
                            c.held = false;
                            c.upstream_bytes += stale.bytes;
                            c.unread_bytes += stale.bytes;
                            drop(c);
                            tracing::info!(
                                "{}: a reader connected: reading again; dropped {} bytes that waited in qemu's socket from before its join",
                                ch.spec.name,
                                stale.bytes
                            );
                        }
                    }
                    match sock.read(&mut buf) {
                        Ok(0) => break Some("qemu closed it".to_string()),
                        Ok(n) => {
                            lock(&ch.counters).upstream_bytes += n as u64;
                            let chunk: Option<Arc<[u8]>> = match ch.spec.framing {
                                Framing::Bytes => Some(Arc::from(&buf[..n])),
                                Framing::Lines => {
                                    let out = lines.push(&buf[..n]).map(Arc::from);
                                    lock(&ch.counters).line_dropped_bytes = lines.dropped;
                                    out
                                }
                            };
                            if let Some(chunk) = chunk {
                                ch.broadcast(chunk);
                            }
                        }
                        Err(e) if is_timeout(&e) => {}
                        Err(e) => break Some(format!("reading: {e}")),
                    }
                };
                lines.reset();
                let mut c = lock(&ch.counters);
                c.line_dropped_bytes = lines.dropped;
                c.upstream_connected = false;
                c.held = false;
                if let Some(why) = why {
                    tracing::warn!(
                        "{}: qemu's {}: {why}; connecting again every {:?}",
                        ch.spec.name,
                        ch.spec.upstream.display(),
                        RECONNECT_EVERY
                    );
                    c.upstream_error = Some(why);
                }
            }
            Err(e) => {
                if !waiting_logged {
                    tracing::info!(
                        "{}: waiting for qemu's {} ({e}); trying every {:?}",
                        ch.spec.name,
                        ch.spec.upstream.display(),
                        RECONNECT_EVERY
                    );
                    waiting_logged = true;
                }
                lock(&ch.counters).upstream_error = Some(format!("connecting: {e}"));
            }
        }
        nap(&stop, RECONNECT_EVERY);
    }
}

/// What [`drop_waiting`] dropped.
struct Stale {
    bytes: u64,
    ended_at_newline: bool,
}

/// Read and drop the bytes waiting in `sock`'s receive queue now (FIONREAD), and no more: dom0's
/// writer, waiting behind them, refills the socket as they go, and what it writes from now on is
/// the joining reader's. `Err` when qemu closed the socket or reading failed.
fn drop_waiting(sock: &mut UnixStream, buf: &mut [u8]) -> Result<Stale, String> {
    let mut waiting: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, which is valid for the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::FIONREAD, &mut waiting) } != 0 {
        return Err(format!("reading: FIONREAD: {}", std::io::Error::last_os_error()));
    }
    let mut stale = Stale { bytes: 0, ended_at_newline: false };
    let mut left = usize::try_from(waiting).unwrap_or(0);
    while left > 0 {
        let want = left.min(buf.len());
        match sock.read(&mut buf[..want]) {
            Ok(0) => return Err("qemu closed it".to_string()),
            Ok(n) => {
                left -= n;
                stale.bytes += n as u64;
                stale.ended_at_newline = buf[n - 1] == b'\n';
            }
            Err(e) if is_timeout(&e) => {}
            Err(e) => return Err(format!("reading: {e}")),
        }
    }
    Ok(stale)
}

/// Whether the reader hung up (it never sends; anything it does send is read and ignored).
fn peer_gone(sock: &mut UnixStream) -> bool {
    let mut pfd = libc::pollfd { fd: sock.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd for the duration of the call, a zero timeout.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    if n <= 0 {
        return false;
    }
    if pfd.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
        return true;
    }
    let mut scratch = [0u8; 256];
    // Readable: a read returns at once (data, or 0 at the reader's end).
    match sock.read(&mut scratch) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !is_timeout(&e),
    }
}

/// Write one reader's queue to its socket until it ends, hangs up, or the relay stops.
fn serve_reader(ch: Arc<Channel>, q: Arc<ReaderQueue>, mut sock: UnixStream, stop: Arc<AtomicBool>) {
    let _ = sock.set_write_timeout(Some(WAKE));
    let _ = sock.set_read_timeout(Some(Duration::from_millis(1)));
    let why = 'conn: loop {
        if stop.load(Ordering::Relaxed) {
            break "the relay stops";
        }
        let chunk = match q.take(WAKE) {
            Ok(c) => c,
            Err(true) => break "its queue overflowed (a slow reader)",
            Err(false) => {
                if peer_gone(&mut sock) {
                    break "it hung up";
                }
                continue;
            }
        };
        let mut at = 0;
        while at < chunk.len() {
            match sock.write(&chunk[at..]) {
                Ok(0) => break 'conn "it hung up",
                Ok(n) => at += n,
                Err(e) if is_timeout(&e) => {
                    if stop.load(Ordering::Relaxed) {
                        break 'conn "the relay stops";
                    }
                }
                Err(_) => break 'conn "it hung up",
            }
        }
        lock(&q.inner).sent += chunk.len() as u64;
    };
    let (sent, dropped) = {
        let mut s = lock(&q.inner);
        s.closed = true;
        s.chunks.clear();
        s.bytes = 0;
        (s.sent, s.dropped)
    };
    let _ = sock.shutdown(std::net::Shutdown::Both);
    tracing::info!(
        "{} reader {}: disconnected ({why}): {sent} bytes written, {dropped} dropped for it",
        ch.spec.name,
        q.id
    );
}

static READER_IDS: AtomicU64 = AtomicU64::new(1);

/// Accept readers until stopped; each gets a queue and a writer thread.
fn accept_readers(
    ch: Arc<Channel>,
    listener: UnixListener,
    stop: Arc<AtomicBool>,
    writers: Arc<Mutex<Vec<JoinHandle<()>>>>,
) {
    while !stop.load(Ordering::Relaxed) {
        let sock = match listener.accept() {
            Ok((sock, _)) => sock,
            Err(e) if is_timeout(&e) => {
                nap(&stop, Duration::from_millis(20));
                continue;
            }
            Err(e) => {
                tracing::warn!("{}: accepting a reader: {e}", ch.spec.name);
                nap(&stop, WAKE);
                continue;
            }
        };
        let _ = sock.set_nonblocking(false);
        let mut readers = lock(&ch.readers);
        readers.retain(|r| !r.is_closed());
        if readers.len() >= ch.limits.max_readers {
            lock(&ch.counters).readers_refused += 1;
            tracing::warn!("{}: refusing a reader: {} are connected (the limit)", ch.spec.name, readers.len());
            continue;
        }
        let q = Arc::new(ReaderQueue {
            id: READER_IDS.fetch_add(1, Ordering::Relaxed),
            inner: Mutex::new(Queue::default()),
            ready: Condvar::new(),
        });
        readers.push(Arc::clone(&q));
        drop(readers);
        let unread = {
            let mut c = lock(&ch.counters);
            c.readers_total += 1;
            c.unread_logged = false;
            c.unread_bytes
        };
        tracing::info!(
            "{} reader {}: connected ({unread} bytes dropped so far for want of a reader)",
            ch.spec.name,
            q.id
        );
        let (c2, s2) = (Arc::clone(&ch), Arc::clone(&stop));
        let name = format!("{}-reader-{}", ch.spec.name, q.id);
        match std::thread::Builder::new().name(name).spawn(move || serve_reader(c2, q, sock, s2)) {
            Ok(h) => {
                let mut w = lock(&writers);
                w.retain(|h| !h.is_finished());
                w.push(h);
            }
            Err(e) => tracing::warn!("{}: cannot start a reader's thread: {e}", ch.spec.name),
        }
    }
}

/// Bind `path` for readers: a stale socket (nobody accepting) is replaced, a live one refused.
fn listen(path: &Path) -> Result<UnixListener, RelayError> {
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(RelayError::InUse { path: path.to_path_buf() });
        }
        let _ = std::fs::remove_file(path);
    }
    let l = UnixListener::bind(path).map_err(|source| RelayError::Listen { path: path.to_path_buf(), source })?;
    l.set_nonblocking(true).map_err(|source| RelayError::Listen { path: path.to_path_buf(), source })?;
    Ok(l)
}

fn write_status(path: &Path, status: &RelayStatus) {
    let tmp = path.with_extension("tmp");
    let json = serde_json::to_vec_pretty(status).expect("status serializes");
    if std::fs::write(&tmp, json).and_then(|()| std::fs::rename(&tmp, path)).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

/// A running relay: threads for each channel's upstream and listener, one per reader, one for the
/// status file. [`Relay::shutdown`] (or dropping it) stops and joins them and removes the sockets
/// and the status file.
pub struct Relay {
    channels: Vec<Arc<Channel>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    writers: Arc<Mutex<Vec<JoinHandle<()>>>>,
    status_path: Option<PathBuf>,
}

impl Relay {
    /// Bind every channel's reader socket, then start draining. qemu's sockets need not exist yet.
    pub fn start(spec: &RelaySpec) -> Result<Relay, RelayError> {
        if spec.channels.is_empty() {
            return Err(RelayError::Config("no channel to relay".into()));
        }
        let l = spec.limits;
        if l.queue_bytes == 0 || l.max_readers == 0 || l.max_line == 0 {
            return Err(RelayError::Config(format!("limits must be above zero: {l:?}")));
        }
        let mut relay = Relay {
            channels: Vec::new(),
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
            writers: Arc::new(Mutex::new(Vec::new())),
            status_path: spec.status.clone(),
        };
        // Bind all first: a failure leaves nothing behind (`relay` drops and removes what was bound).
        let mut listeners = Vec::new();
        for c in &spec.channels {
            let listener = listen(&c.listen)?;
            relay.channels.push(Arc::new(Channel {
                spec: c.clone(),
                limits: l,
                readers: Mutex::new(Vec::new()),
                counters: Mutex::new(Counters::default()),
            }));
            listeners.push(listener);
        }
        for (ch, listener) in relay.channels.clone().into_iter().zip(listeners) {
            let (c, s) = (Arc::clone(&ch), Arc::clone(&relay.stop));
            relay.spawn(format!("{}-upstream", ch.spec.name), move || drain_upstream(c, s))?;
            let (s, w) = (Arc::clone(&relay.stop), Arc::clone(&relay.writers));
            relay.spawn(format!("{}-accept", ch.spec.name), move || accept_readers(ch, listener, s, w))?;
        }
        if let Some(path) = spec.status.clone() {
            let (chans, stop) = (relay.channels.clone(), Arc::clone(&relay.stop));
            relay.spawn("status".into(), move || {
                while !stop.load(Ordering::Relaxed) {
                    write_status(&path, &status_of(&chans));
                    nap(&stop, STATUS_EVERY);
                }
            })?;
        }
        Ok(relay)
    }

    fn spawn(&mut self, name: String, f: impl FnOnce() + Send + 'static) -> Result<(), RelayError> {
        let h = std::thread::Builder::new().name(name).spawn(f).map_err(RelayError::Thread)?;
        self.threads.push(h);
        Ok(())
    }

    pub fn status(&self) -> RelayStatus {
        status_of(&self.channels)
    }

    /// Stop every thread, wait for them, remove the reader sockets and the status file; returns the
    /// last counters.
    pub fn shutdown(mut self) -> RelayStatus {
        self.stop_and_clean()
    }

    fn stop_and_clean(&mut self) -> RelayStatus {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.threads.drain(..) {
            let _ = h.join();
        }
        let writers: Vec<_> = lock(&self.writers).drain(..).collect();
        for h in writers {
            let _ = h.join();
        }
        let last = status_of(&self.channels);
        for c in &self.channels {
            let _ = std::fs::remove_file(&c.spec.listen);
        }
        if let Some(p) = self.status_path.take() {
            let _ = std::fs::remove_file(&p);
            let _ = std::fs::remove_file(p.with_extension("tmp"));
        }
        self.channels.clear();
        last
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if !self.channels.is_empty() {
            self.stop_and_clean();
        }
    }
}

fn status_of(channels: &[Arc<Channel>]) -> RelayStatus {
    RelayStatus {
        pid: std::process::id(),
        updated_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        channels: channels.iter().map(|c| c.status()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What the framer must give: the whole lines of `input` no longer than `max` (newline excluded).
    fn expected_lines(input: &[u8], max: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for piece in input.split_inclusive(|&b| b == b'\n') {
            if piece.last() == Some(&b'\n') && piece.len() - 1 <= max {
                out.extend_from_slice(piece);
            }
        }
        out
    }

    #[test]
    fn the_framer_holds_back_an_unfinished_line_and_drops_long_ones() {
        let mut f = LineFramer::new(12);
        assert_eq!(f.push(b"eth0: 1 2"), None);
        assert_eq!(f.push(b"\nvif1"), Some(b"eth0: 1 2\n".to_vec()));
        assert_eq!(f.push(b".0: 3\n@@END\n"), Some(b"vif1.0: 3\n@@END\n".to_vec()));
        assert_eq!(f.dropped, 0);
        // A 16-byte line: dropped whole, also when it ends in a later chunk.
        assert_eq!(f.push(b"0123456"), None);
        assert_eq!(f.push(b"789abcdef\nok\n"), Some(b"ok\n".to_vec()));
        assert_eq!(f.dropped, 17);
        assert_eq!(f.push(b"half"), None);
        assert_eq!(f.held_back(), 4);
        f.reset();
        assert_eq!(f.dropped, 21);
        assert_eq!(f.push(b"new\n"), Some(b"new\n".to_vec()));
    }

    proptest! {
        #[test]
        fn the_framer_gives_whole_lines_however_the_stream_is_split(
            input in proptest::collection::vec(prop_oneof![Just(b'\n'), any::<u8>(), Just(b'a')], 0..600),
            cuts in proptest::collection::vec(0usize..600, 0..20),
            max in 1usize..40,
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(input.len())).collect();
            cuts.sort_unstable();
            let mut f = LineFramer::new(max);
            let mut out = Vec::new();
            let mut at = 0;
            for c in cuts.into_iter().chain([input.len()]) {
                if let Some(chunk) = f.push(&input[at..c]) {
                    prop_assert_eq!(chunk.last(), Some(&b'\n'));
                    out.extend(chunk);
                }
                at = c;
            }
            let want = expected_lines(&input, max);
            prop_assert_eq!(&out, &want);
            // What is not given is dropped or held back, never lost silently.
            prop_assert!(f.held_back() <= max);
            prop_assert_eq!(out.len() as u64 + f.dropped + f.held_back() as u64, input.len() as u64);
        }
    }
}
