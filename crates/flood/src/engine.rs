//! The flood engine: plan the egress, start the sending threads inside the namespace, pace them,
//! report progress, and sum up.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Serialize;
use wire::craft::{Kind, PacketSpec, SourceAddr};

use crate::guard::{CheckedSource, Target};
use crate::rate::{self, ETHERNET_HEADER_LEN, Pacer, Rate};
use crate::route::{self, Route};
use crate::sock::{Batch, Egress};
use crate::{Backend, FloodConfig, FloodError, FloodKind};

/// A flood ready to run: a guard-checked target and a checked configuration.
#[derive(Debug)]
pub struct Flood {
    target: Target,
    config: FloodConfig,
    stop: Arc<AtomicBool>,
}

/// Stops a running flood early (from another thread, e.g. a Ctrl-C handler).
#[derive(Debug, Clone)]
pub struct StopHandle(Arc<AtomicBool>);

impl StopHandle {
    pub fn stop(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Live figures, handed to the progress callback every `progress_interval`.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    pub elapsed_secs: f64,
    /// Packets the kernel accepted so far.
    pub sent: u64,
    /// Sends that failed so far.
    pub errors: u64,
    /// Packets/s accepted over the last interval.
    pub pps: f64,
    /// Bits/s (Ethernet frames) over the last interval.
    pub bps: f64,
}

/// Why the flood ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// It ran for its whole duration.
    Duration,
    /// It sent its whole count.
    Count,
    /// [`StopHandle::stop`] was called.
    Stopped,
}

/// What a flood did.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Summary {
    pub target: Ipv4Addr,
    pub target_name: Option<String>,
    pub kind: FloodKind,
    pub dst_port: u16,
    /// "random in NET" or "own ADDR".
    pub source: String,
    /// The backend that ran (never `auto`).
    pub backend: Backend,
    pub qdisc_bypass: bool,
    pub netns: Option<String>,
    /// Egress interface.
    pub dev: String,
    pub threads: usize,
    /// Bytes of one IP packet, and of its Ethernet frame (what bit rates count).
    pub packet_len: usize,
    pub frame_len: usize,
    pub requested_rate: Rate,
    pub sent: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Tokens lost because a sender fell more than a burst behind its rate.
    pub forfeited: u64,
    pub elapsed_secs: f64,
    pub achieved_pps: f64,
    pub achieved_bps: f64,
    pub stopped_by: StopReason,
}

#[repr(align(64))]
#[derive(Default)]
struct Counter {
    sent: AtomicU64,
    errors: AtomicU64,
}

struct WorkerEnd {
    end: Instant,
    reason: StopReason,
    forfeited: u64,
    first_error: Option<String>,
}

enum Worker {
    InNetns(netns::InNetns<WorkerEnd>),
    Plain(std::thread::JoinHandle<WorkerEnd>),
}

impl Worker {
    fn join(self) -> Result<WorkerEnd, FloodError> {
        match self {
            Worker::InNetns(h) => Ok(h.join()?),
            Worker::Plain(h) => h.join().map_err(|_| FloodError::Panicked("sender thread".into())),
        }
    }
}

/// Everything a sending thread needs.
struct Job {
    template: wire::Template,
    egress: Egress,
    batch: usize,
    pacer: Option<Pacer>,
    count: u64,
    duration: Duration,
    seed: u64,
    stop: Arc<AtomicBool>,
    counters: Arc<Vec<Counter>>,
    index: usize,
    finished: Arc<AtomicUsize>,
}

impl Flood {
    /// Check the configuration; the target is already checked (it is a [`Target`]).
    pub fn new(target: Target, config: FloodConfig) -> Result<Flood, FloodError> {
        config.check()?;
        Ok(Flood { target, config, stop: Arc::new(AtomicBool::new(false)) })
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    pub fn config(&self) -> &FloodConfig {
        &self.config
    }

    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(self.stop.clone())
    }

    /// Run to the end (duration, count or stop), calling `on_progress` every progress interval and
    /// once at the end, on the calling thread.
    pub fn run(self, mut on_progress: impl FnMut(&Progress)) -> Result<Summary, FloodError> {
        let cfg = &self.config;
        let ns = cfg.netns.as_deref();
        if let Some(name) = ns
            && !netns::exists(name)
        {
            return Err(netns::NetnsError::Missing { name: name.into(), path: netns::path(name) }.into());
        }
        let dst = self.target.addr();
        let route = route::lookup(ns, dst)?;
        let (src, source_desc) = match self.target.source() {
            CheckedSource::Random(net) => (SourceAddr::Random(net), format!("random in {net}")),
            CheckedSource::Own => (SourceAddr::Fixed(route.src), format!("own {}", route.src)),
        };
        let kind = match cfg.kind {
            FloodKind::Syn | FloodKind::SynClosed => Kind::Syn(cfg.syn_options),
            FloodKind::Ack => Kind::Ack,
            FloodKind::Udp => Kind::Udp { payload_len: cfg.udp_payload_len },
        };
        let spec = PacketSpec {
            kind,
            src,
            dst,
            src_port: cfg.src_port,
            dst_port: cfg.dst_port(),
            seq: cfg.seq,
            ack: wire::Number::Random,
            ttl: cfg.ttl,
            window: 64240,
        };
        let template = spec.template()?;
        let egress = self.egress(&route)?;
        let backend = match egress {
            Egress::Raw { .. } => Backend::Raw,
            Egress::Packet { .. } => Backend::Packet,
        };
        let packet_len = template.len();
        let frame_len = packet_len + ETHERNET_HEADER_LEN as usize;
        tracing::info!(target = %self.target, dev = %route.dev, ?backend, rate = %cfg.rate, "flood starting");

        // Start the workers; each opens its socket inside the namespace and reports before sending.
        let threads = cfg.threads;
        let counters: Arc<Vec<Counter>> = Arc::new((0..threads).map(|_| Counter::default()).collect());
        let finished = Arc::new(AtomicUsize::new(0));
        let counts = rate::split(cfg.count.unwrap_or(u64::MAX / 2), threads);
        let pace = cfg.rate.packets_per_sec(packet_len);
        let seed = random_seed();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), FloodError>>();
        let mut go_txs = Vec::new();
        let mut workers = Vec::new();
        for (index, count) in counts.into_iter().enumerate() {
            let job = Job {
                template: template.clone(),
                egress,
                batch: cfg.batch,
                pacer: pace.map(|(n, d)| {
                    let d = d * threads as u128;
                    Pacer::new(n, d, Pacer::default_burst(n, d))
                }),
                count,
                duration: cfg.duration,
                seed: seed ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                stop: self.stop.clone(),
                counters: counters.clone(),
                index,
                finished: finished.clone(),
            };
            let (go_tx, go_rx) = mpsc::channel::<Option<Instant>>();
            go_txs.push(go_tx);
            let ready = ready_tx.clone();
            let body = move || worker(job, ready, go_rx);
            let w = match ns {
                Some(name) => match netns::spawn_in(name, body) {
                    Ok(h) => Worker::InNetns(h),
                    Err(e) => {
                        abort(go_txs, workers);
                        return Err(e.into());
                    }
                },
                None => Worker::Plain(std::thread::spawn(body)),
            };
            workers.push(w);
        }
        drop(ready_tx);
        for _ in 0..threads {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    abort(go_txs, workers);
                    return Err(e);
                }
                Err(_) => {
                    abort(go_txs, workers);
                    return Err(FloodError::Panicked("a sender died while opening its socket".into()));
                }
            }
        }
        let start = Instant::now();
        for tx in &go_txs {
            let _ = tx.send(Some(start));
        }

        // Report progress until every worker is done.
        let totals = || {
            counters.iter().fold((0u64, 0u64), |(s, e), c| {
                (s + c.sent.load(Ordering::Relaxed), e + c.errors.load(Ordering::Relaxed))
            })
        };
        let bits = (frame_len * 8) as f64;
        let (mut last_t, mut last_sent) = (start, 0u64);
        let mut next_tick = start + cfg.progress_interval;
        while finished.load(Ordering::Acquire) < threads {
            std::thread::sleep(Duration::from_millis(10).min(next_tick.saturating_duration_since(Instant::now())));
            let now = Instant::now();
            if now >= next_tick {
                let (sent, errors) = totals();
                let dt = now.duration_since(last_t).as_secs_f64().max(1e-9);
                let pps = (sent - last_sent) as f64 / dt;
                on_progress(&Progress {
                    elapsed_secs: now.duration_since(start).as_secs_f64(),
                    sent,
                    errors,
                    pps,
                    bps: pps * bits,
                });
                (last_t, last_sent) = (now, sent);
                next_tick += cfg.progress_interval;
            }
        }
        let mut ends = Vec::new();
        for w in workers {
            ends.push(w.join()?);
        }
        let end = ends.iter().map(|e| e.end).max().unwrap_or(start);
        let elapsed = end.duration_since(start).as_secs_f64().max(1e-9);
        let (sent, errors) = totals();
        let stopped_by = if ends.iter().any(|e| e.reason == StopReason::Stopped) {
            StopReason::Stopped
        } else if ends.iter().all(|e| e.reason == StopReason::Count) {
            StopReason::Count
        } else {
            StopReason::Duration
        };
        let first_error = ends.iter().find_map(|e| e.first_error.clone());
        let final_pps = sent as f64 / elapsed;
        on_progress(&Progress { elapsed_secs: elapsed, sent, errors, pps: final_pps, bps: final_pps * bits });
        if sent == 0 && errors > 0 {
            return Err(FloodError::NothingSent { errors, first: first_error.unwrap_or_default() });
        }
        Ok(Summary {
            target: dst,
            target_name: self.target.name().map(String::from),
            kind: cfg.kind,
            dst_port: cfg.dst_port(),
            source: source_desc,
            backend,
            qdisc_bypass: backend == Backend::Packet && cfg.qdisc_bypass,
            netns: cfg.netns.clone(),
            dev: route.dev,
            threads,
            packet_len,
            frame_len,
            requested_rate: cfg.rate,
            sent,
            errors,
            first_error,
            forfeited: ends.iter().map(|e| e.forfeited).sum(),
            elapsed_secs: elapsed,
            achieved_pps: final_pps,
            achieved_bps: final_pps * bits,
            stopped_by,
        })
    }

    /// Choose how packets leave: AF_PACKET on an Ethernet link whose next hop resolves, else raw IPv4.
    fn egress(&self, route: &Route) -> Result<Egress, FloodError> {
        let cfg = &self.config;
        let dst = self.target.addr();
        let raw = Egress::Raw { dst };
        let packet = |dst_mac: [u8; 6]| Egress::Packet {
            ifindex: route.ifindex,
            src_mac: route.mac.unwrap_or([0; 6]),
            dst_mac,
            qdisc_bypass: cfg.qdisc_bypass,
        };
        let ns = cfg.netns.clone();
        let resolve = |route: &Route| -> Result<[u8; 6], FloodError> {
            let route = route.clone();
            let f = move || route::resolve_neighbor(&route, dst);
            match &ns {
                Some(name) => netns::run_in(name, f)?,
                None => f(),
            }
        };
        match (cfg.backend, route.link_type.as_str()) {
            (Backend::Raw, _) => Ok(raw),
            (Backend::Packet, "loopback") => Ok(packet([0; 6])),
            (Backend::Packet, "ether") => Ok(packet(resolve(route)?)),
            (Backend::Packet, other) => Err(FloodError::Config {
                what: format!(
                    "the packet backend needs an Ethernet link, but {} is `{other}`: use the raw backend",
                    route.dev
                ),
            }),
            (Backend::Auto, "ether") => match resolve(route) {
                Ok(mac) => Ok(packet(mac)),
                Err(e) => {
                    tracing::warn!("{e}; sending through a raw IPv4 socket instead");
                    Ok(raw)
                }
            },
            (Backend::Auto, _) => Ok(raw),
        }
    }
}

fn abort(go_txs: Vec<mpsc::Sender<Option<Instant>>>, workers: Vec<Worker>) {
    for tx in &go_txs {
        let _ = tx.send(None);
    }
    drop(go_txs);
    for w in workers {
        let _ = w.join();
    }
}

/// One sending thread: open the socket, wait for the go, then send until a bound is reached.
fn worker(job: Job, ready: mpsc::Sender<Result<(), FloodError>>, go: mpsc::Receiver<Option<Instant>>) -> WorkerEnd {
    let finished = job.finished.clone();
    let end = run_worker(job, ready, go);
    finished.fetch_add(1, Ordering::Release);
    end
}

fn run_worker(
    mut job: Job,
    ready: mpsc::Sender<Result<(), FloodError>>,
    go: mpsc::Receiver<Option<Instant>>,
) -> WorkerEnd {
    let idle = |reason| WorkerEnd { end: Instant::now(), reason, forfeited: 0, first_error: None };
    let mut batch = match Batch::new(job.egress, &job.template, job.batch) {
        Ok(b) => b,
        Err(e) => {
            let _ = ready.send(Err(e));
            return idle(StopReason::Stopped);
        }
    };
    crate::sock::fine_timer_slack();
    let _ = ready.send(Ok(()));
    drop(ready);
    let Ok(Some(start)) = go.recv() else { return idle(StopReason::Stopped) };

    let counter = &job.counters[job.index];
    let deadline_ns = u64::try_from(job.duration.as_nanos()).unwrap_or(u64::MAX);
    let mut rng = Rng(job.seed);
    let mut done = 0u64;
    let (mut sent, mut errors) = (0u64, 0u64);
    let mut first_error = None;
    let reason = loop {
        if job.stop.load(Ordering::Relaxed) {
            break StopReason::Stopped;
        }
        let now = start.elapsed().as_nanos() as u64;
        if now >= deadline_ns {
            break StopReason::Duration;
        }
        let remaining = job.count - done;
        if remaining == 0 {
            break StopReason::Count;
        }
        let mut n = remaining.min(batch.capacity() as u64);
        if let Some(p) = &mut job.pacer {
            let avail = p.available(now);
            if avail == 0 {
                wait_until(start, p.next_due_ns().min(deadline_ns));
                continue;
            }
            n = n.min(avail);
            p.take(n);
        }
        for i in 0..n as usize {
            job.template.patch_random(batch.slot(i), rng.next(), rng.next());
        }
        let (ok, failed, err) = batch.send(n as usize);
        done += n;
        sent += ok;
        errors += failed;
        if let (None, Some(e)) = (&first_error, err) {
            first_error = Some(e.to_string());
        }
        counter.sent.store(sent, Ordering::Relaxed);
        counter.errors.store(errors, Ordering::Relaxed);
    };
    WorkerEnd { end: Instant::now(), reason, forfeited: job.pacer.as_ref().map_or(0, Pacer::forfeited), first_error }
}

/// Sleep until `due_ns` after `start`; the last stretch spins, so the wake-up is sub-millisecond.
fn wait_until(start: Instant, due_ns: u64) {
    const SPIN_NS: u64 = 20_000;
    loop {
        let now = start.elapsed().as_nanos() as u64;
        if now >= due_ns {
            return;
        }
        let left = due_ns - now;
        if left > SPIN_NS {
            std::thread::sleep(Duration::from_nanos(left - SPIN_NS / 2));
        } else {
            std::hint::spin_loop();
        }
    }
}

/// wyrand: a tiny, fast generator; plenty for source addresses and sequence numbers.
struct Rng(u64);

impl Rng {
    #[inline]
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.0) * u128::from(self.0 ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) ^ t) as u64
    }
}

fn random_seed() -> u64 {
    use std::io::Read;
    let mut b = [0u8; 8];
    if std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)).is_ok() {
        return u64::from_ne_bytes(b);
    }
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
}
