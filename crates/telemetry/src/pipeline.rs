//! The collection loop: guests → sources → samples and deltas → exporter and a per-round callback.
//!
//! [`Pipeline`] owns a [`Collector`], a [`DeltaTracker`] and optionally an [`Exporter`]; one
//! [`Pipeline::round`] reads every source once and hands back a [`RoundReport`] (the samples, their
//! deltas, the failures). [`run`] drives rounds at a fixed interval until a duration ends or a stop flag
//! is set, re-reads the guest list every few seconds, and gives every round to a callback: `vmguard
//! collect` appends it to the store there, `vmguard agent` also scores it.
//!
//! ```no_run
//! use std::sync::atomic::AtomicBool;
//! use std::time::Duration;
//! use telemetry::pipeline::{Pipeline, RunOptions, run};
//!
//! let mut pipeline = Pipeline::new(None);
//! let stop = AtomicBool::new(false);
//! let opts = RunOptions { interval: Duration::from_secs(1), ..RunOptions::default() };
//! let summary = run(&mut pipeline, &opts, &stop, || Ok(vec![/* GuestInfo of the lab */]), |round| {
//!     // round.samples, round.deltas[i] for round.samples[i], round.failures, round.new_guests
//!     Ok(())
//! })
//! .unwrap();
//! println!("{} rounds", summary.rounds);
//! ```
//!
//! A failing source is logged once when it starts failing and once when it recovers, never every
//! round; it is counted in [`Stats`] and in the exporter's `vmguard_collector_source_failures_total`.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::collect::{Collector, SourceFailure};
use crate::export::Exporter;
use crate::{Delta, DeltaTracker, GuestInfo, Sample, SourceId, unix_now_ns};

/// Why the loop stopped before its end.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The per-round callback failed (e.g. the store could not be written): the loop stops, since going
    /// on would lose data silently.
    #[error("round {round}: {source}")]
    Callback { round: u64, source: Box<dyn std::error::Error + Send + Sync> },
    /// Bad loop settings.
    #[error("invalid collection settings: {0}")]
    Options(String),
}

/// What one round produced. `deltas[i]` belongs to `samples[i]`: `None` for gauges and for the first
/// reading of a counter.
#[derive(Debug)]
pub struct RoundReport<'a> {
    /// 0 for the first round.
    pub index: u64,
    /// When the round started, unix nanoseconds.
    pub time_ns: i64,
    pub samples: &'a [Sample],
    pub deltas: &'a [Option<Delta>],
    /// Sources that failed this round (every round while they fail).
    pub failures: &'a [SourceFailure],
    /// Guests watched from this round on that were not watched in the previous one.
    pub new_guests: &'a [GuestInfo],
    /// How long reading the sources took.
    pub duration: Duration,
    /// Guests watched this round.
    pub guests: usize,
}

/// Counts since the pipeline was made.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Stats {
    pub rounds: u64,
    pub samples: u64,
    /// guest → source → samples.
    pub samples_by_guest: BTreeMap<String, BTreeMap<SourceId, u64>>,
    /// guest → source → rounds in which it failed.
    pub failures_by_guest: BTreeMap<String, BTreeMap<SourceId, u64>>,
    /// Sum and maximum of the rounds' durations, in microseconds.
    pub round_us_total: u64,
    pub round_us_max: u64,
}

impl Stats {
    pub fn failures(&self) -> u64 {
        self.failures_by_guest.values().flat_map(|m| m.values()).sum()
    }
}

/// Sources, deltas and exporter of a changing set of guests.
pub struct Pipeline {
    collector: Collector,
    deltas: DeltaTracker,
    exporter: Option<Exporter>,
    guests: Vec<GuestInfo>,
    new_guests: Vec<GuestInfo>,
    /// (guest, source) failing now: logged when they start failing and when they recover.
    failing: HashSet<(String, SourceId)>,
    samples: Vec<Sample>,
    round_deltas: Vec<Option<Delta>>,
    failures: Vec<SourceFailure>,
    stats: Stats,
}

impl Pipeline {
    pub fn new(exporter: Option<Exporter>) -> Self {
        Pipeline {
            collector: Collector::new(),
            deltas: DeltaTracker::new(),
            exporter,
            guests: Vec::new(),
            new_guests: Vec::new(),
            failing: HashSet::new(),
            samples: Vec::with_capacity(1024),
            round_deltas: Vec::with_capacity(1024),
            failures: Vec::new(),
            stats: Stats::default(),
        }
    }

    /// Never start these kinds of source (e.g. `flow`, which opens a packet socket per guest).
    pub fn skip_sources(&mut self, ids: &[SourceId]) {
        self.collector.skip(ids);
    }

    /// Watch exactly these guests from the next round on: new ones get their sources, gone ones lose
    /// theirs (and their delta state and exported series), changed ones (restarted: new PID, socket...)
    /// are rebuilt. Sources that cannot start are logged once and counted as failures. Returns the names
    /// added and removed.
    pub fn set_guests(&mut self, guests: &[GuestInfo]) -> (Vec<String>, Vec<String>) {
        let mut removed = Vec::new();
        let mut added = Vec::new();
        let old = std::mem::take(&mut self.guests);
        for g in &old {
            match guests.iter().find(|n| n.name == g.name) {
                Some(n) if n == g => {}
                _ => {
                    self.collector.remove_guest(&g.name);
                    self.deltas.forget_guest(&g.name);
                    if let Some(e) = &self.exporter {
                        e.remove_guest(&g.name);
                    }
                    self.failing.retain(|(name, _)| *name != g.name);
                    removed.push(g.name.clone());
                }
            }
        }
        for g in guests {
            if old.iter().any(|o| o == g) {
                continue;
            }
            for f in self.collector.add_guest(g) {
                self.note_failure(&f);
                *self.stats.failures_by_guest.entry(f.guest.clone()).or_default().entry(f.source).or_default() += 1;
            }
            if let Some(e) = &self.exporter {
                e.add_guest(&g.name, g.kind);
            }
            self.new_guests.push(g.clone());
            added.push(g.name.clone());
        }
        self.guests = guests.to_vec();
        (added, removed)
    }

    pub fn guests(&self) -> &[GuestInfo] {
        &self.guests
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn exporter(&self) -> Option<&Exporter> {
        self.exporter.as_ref()
    }

    fn note_failure(&mut self, f: &SourceFailure) {
        if self.failing.insert((f.guest.clone(), f.source)) {
            tracing::warn!("{f} (logged once; retried every round)");
        }
    }

    /// One round over every source.
    pub fn round(&mut self) -> RoundReport<'_> {
        let time_ns = unix_now_ns();
        let started = Instant::now();
        self.samples.clear();
        self.failures = self.collector.round(&mut self.samples);
        let duration = started.elapsed();
        self.round_deltas.clear();
        for s in &self.samples {
            self.round_deltas.push(self.deltas.observe(s));
        }
        // Failures: warn on the first, note recoveries.
        let failures = std::mem::take(&mut self.failures);
        for f in &failures {
            self.note_failure(f);
            *self.stats.failures_by_guest.entry(f.guest.clone()).or_default().entry(f.source).or_default() += 1;
        }
        if !self.failing.is_empty() {
            let now_failing: HashSet<(&str, SourceId)> =
                failures.iter().map(|f| (f.guest.as_str(), f.source)).collect();
            let sources: HashSet<(&str, SourceId)> = self.collector.sources().collect();
            self.failing.retain(|(g, s)| {
                let still = now_failing.contains(&(g.as_str(), *s)) || !sources.contains(&(g.as_str(), *s));
                if !still {
                    tracing::info!("guest {g} source {s}: reading again");
                }
                still
            });
        }
        self.failures = failures;
        // Counts per guest and source: samples of one source come together.
        let mut i = 0;
        while i < self.samples.len() {
            let (g, src) = (&self.samples[i].guest, self.samples[i].source);
            let mut j = i + 1;
            while j < self.samples.len() && self.samples[j].source == src && self.samples[j].guest == *g {
                j += 1;
            }
            let by_source = match self.stats.samples_by_guest.get_mut(&**g) {
                Some(m) => m,
                None => self.stats.samples_by_guest.entry(g.to_string()).or_default(),
            };
            *by_source.entry(src).or_default() += (j - i) as u64;
            i = j;
        }
        let us = duration.as_micros() as u64;
        self.stats.rounds += 1;
        self.stats.samples += self.samples.len() as u64;
        self.stats.round_us_total += us;
        self.stats.round_us_max = self.stats.round_us_max.max(us);
        if let Some(e) = &self.exporter {
            e.update(&self.samples, &self.round_deltas);
            e.record_round(
                duration,
                self.samples.len(),
                &self.failures,
                self.guests.len(),
                self.collector.sources().count(),
            );
        }
        RoundReport {
            index: self.stats.rounds - 1,
            time_ns,
            samples: &self.samples,
            deltas: &self.round_deltas,
            failures: &self.failures,
            new_guests: &self.new_guests,
            duration,
            guests: self.guests.len(),
        }
    }

    /// Forget the guests reported as new (after their round was handed out).
    fn clear_new_guests(&mut self) {
        self.new_guests.clear();
    }
}

/// How [`run`] paces itself.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Time between the starts of two rounds (rounds that overrun skip the ticks they missed).
    pub interval: Duration,
    /// How often the guest list is asked for again.
    pub refresh: Duration,
    /// Stop after this long (`None`: until the stop flag).
    pub duration: Option<Duration>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions { interval: Duration::from_secs(1), refresh: Duration::from_secs(5), duration: None }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub rounds: u64,
    /// Whether the stop flag ended it (else the duration).
    pub interrupted: bool,
    pub elapsed_ms: u64,
}

/// Rounds every `opts.interval` until `opts.duration` has passed or `stop` is set (checked at least
/// every 100 ms; the round in progress finishes and its callback runs first).
///
/// `guests` is asked for the guest list before the first round and every `opts.refresh`; an `Err` (the
/// lab's state unreadable) is logged once and the current guests are kept. `on_round` gets every round;
/// its error stops the loop.
pub fn run<G, F>(
    pipeline: &mut Pipeline,
    opts: &RunOptions,
    stop: &AtomicBool,
    mut guests: G,
    mut on_round: F,
) -> Result<RunSummary, PipelineError>
where
    G: FnMut() -> Result<Vec<GuestInfo>, String>,
    F: FnMut(&RoundReport<'_>) -> Result<(), Box<dyn std::error::Error + Send + Sync>>,
{
    if opts.interval.is_zero() {
        return Err(PipelineError::Options("the interval must be longer than 0".into()));
    }
    let start = Instant::now();
    let mut last_refresh: Option<Instant> = None;
    let mut guest_error_logged = false;
    let mut next = start;
    let mut rounds = 0u64;
    loop {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        // The next tick, or the end of the run if that comes first.
        let end = opts.duration.map(|d| start + d);
        let (wake, last) = match end {
            Some(end) if end <= next => (end, true),
            _ => (next, false),
        };
        // Wait in short slices, so a stop request is seen quickly.
        loop {
            let now = Instant::now();
            if now >= wake || stop.load(Ordering::SeqCst) {
                break;
            }
            std::thread::sleep((wake - now).min(Duration::from_millis(100)));
        }
        if last || stop.load(Ordering::SeqCst) {
            break;
        }
        if last_refresh.is_none_or(|t| t.elapsed() >= opts.refresh) {
            last_refresh = Some(Instant::now());
            match guests() {
                Ok(list) => {
                    guest_error_logged = false;
                    let (added, removed) = pipeline.set_guests(&list);
                    if !added.is_empty() || !removed.is_empty() {
                        tracing::info!(?added, ?removed, "guests changed");
                    }
                }
                Err(e) if !guest_error_logged => {
                    guest_error_logged = true;
                    tracing::warn!("cannot list the guests, keeping the current ones: {e}");
                }
                Err(_) => {}
            }
        }
        let report = pipeline.round();
        let index = report.index;
        let result = on_round(&report);
        pipeline.clear_new_guests();
        result.map_err(|source| PipelineError::Callback { round: index, source })?;
        rounds += 1;
        // The next tick after now (skip ticks a slow round missed).
        next += opts.interval;
        let now = Instant::now();
        if next < now {
            let behind = (now - next).as_nanos() / opts.interval.as_nanos();
            next += opts.interval * (behind as u32 + 1);
        }
    }
    Ok(RunSummary { rounds, interrupted: stop.load(Ordering::SeqCst), elapsed_ms: start.elapsed().as_millis() as u64 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GuestKind;

    fn me(name: &str) -> GuestInfo {
        GuestInfo { pid: Some(std::process::id()), ..GuestInfo::new(name, GuestKind::Vanilla) }
    }

    #[test]
    fn rounds_with_deltas_guest_changes_and_stop() {
        let exporter = Exporter::new();
        let mut p = Pipeline::new(Some(exporter.clone()));
        let stop = AtomicBool::new(false);
        let opts = RunOptions {
            interval: Duration::from_millis(50),
            refresh: Duration::from_millis(100),
            duration: Some(Duration::from_millis(600)),
        };
        let mut asked = 0;
        let mut seen_new = Vec::new();
        let mut deltas = 0;
        let summary = run(
            &mut p,
            &opts,
            &stop,
            || {
                asked += 1;
                // Guest b comes for a while, then goes; a ghost guest fails every round.
                let mut list = vec![me("a")];
                if (2..4).contains(&asked) {
                    list.push(me("b"));
                }
                list.push(GuestInfo {
                    cgroup: Some("vmgt/none".into()),
                    ..GuestInfo::new("ghost", GuestKind::Container)
                });
                Ok(list)
            },
            |r| {
                assert_eq!(r.samples.len(), r.deltas.len());
                deltas += r.deltas.iter().filter(|d| d.is_some()).count();
                seen_new.extend(r.new_guests.iter().map(|g| g.name.clone()));
                assert!(r.failures.iter().all(|f| f.guest == "ghost"));
                Ok(())
            },
        )
        .unwrap();
        assert!(!summary.interrupted);
        assert!((8..=13).contains(&summary.rounds), "{summary:?}");
        assert!(deltas > 0);
        assert_eq!(seen_new, ["a", "ghost", "b"]);
        let stats = p.stats();
        assert!(stats.samples_by_guest["a"][&SourceId::Process] > 0);
        assert!(stats.samples_by_guest["b"][&SourceId::Snmp] > 0);
        assert_eq!(stats.failures_by_guest["ghost"][&SourceId::Cgroup], summary.rounds);
        assert_eq!(p.guests().len(), 2, "b went away");
        let text = exporter.encode();
        assert!(text.contains(r#"guest="a""#) && !text.contains(r#"guest="b""#));
        assert!(text.contains(r#"vmguard_collector_source_failures_total{guest="ghost",source="cgroup"}"#));

        // A stop request ends the loop; a failing callback stops it with its error.
        stop.store(true, Ordering::SeqCst);
        let s = run(&mut p, &RunOptions::default(), &stop, || Ok(vec![me("a")]), |_| Ok(())).unwrap();
        assert!(s.interrupted && s.rounds == 0);
        stop.store(false, Ordering::SeqCst);
        let err =
            run(&mut p, &RunOptions::default(), &stop, || Ok(vec![me("a")]), |_| Err("disk full".into())).unwrap_err();
        assert_eq!(err.to_string(), format!("round {}: disk full", stats_rounds(&p) - 1));
        let zero = RunOptions { interval: Duration::ZERO, ..RunOptions::default() };
        assert!(run(&mut p, &zero, &stop, || Ok(vec![]), |_| Ok(())).is_err());
    }

    /// A restarted guest (same name, new PID) is one guest gone and one new: its sources are rebuilt and
    /// its delta state forgotten, so the new instance's counters never make deltas against the old one's.
    #[test]
    fn restarted_guest_starts_afresh() {
        let mut p = Pipeline::new(None);
        assert_eq!(p.set_guests(&[me("a")]), (vec!["a".to_string()], vec![]));
        p.round();
        p.clear_new_guests();
        let r = p.round();
        assert!(r.deltas.iter().any(|d| d.is_some()), "the second round of one instance has deltas");
        assert!(r.new_guests.is_empty());
        // Unchanged description: nothing happens.
        assert_eq!(p.set_guests(&[me("a")]), (vec![], vec![]));
        // Same name, another process (PID 1 stands in for the restarted instance).
        let restarted = GuestInfo { pid: Some(1), ..me("a") };
        assert_eq!(p.set_guests(std::slice::from_ref(&restarted)), (vec!["a".to_string()], vec!["a".to_string()]));
        let r = p.round();
        assert!(!r.samples.is_empty());
        assert!(r.deltas.iter().all(|d| d.is_none()), "no delta mixes the old and the new instance");
        assert_eq!(
            r.new_guests,
            std::slice::from_ref(&restarted),
            "reported as new, so the store records the new description"
        );
        p.clear_new_guests();
        assert!(p.round().deltas.iter().any(|d| d.is_some()), "the new instance's own deltas follow");
        assert_eq!(p.guests(), [restarted]);
    }

    fn stats_rounds(p: &Pipeline) -> u64 {
        p.stats().rounds
    }
}
