//! The recording loop: run a scenario on the lab while collecting every guest's counters into the
//! store, and write timed ground truth beside them (one label per guest per phase, see
//! [`crate::scenario::Phase::truth_of`]). A phase whose workload or flood failed is labelled
//! `unknown`, which training and evaluation leave out.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use detect::truth::Truth;
use serde::Serialize;

use crate::collect::{CollectError, CollectLoop};
use crate::flood::LaunchError;
use crate::scenario::{FloodSpec, Scenario, ScenarioError};
use crate::workload::{self, Job};

/// How to record.
#[derive(Debug, Clone)]
pub struct RecordOptions {
    /// The store to append samples and labels to.
    pub store: PathBuf,
    /// Sampling period of the collector.
    pub interval: Duration,
    /// Scales every phase's duration (e.g. 0.5 for a quick run).
    pub time_scale: f64,
}

/// Why a recording did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error(transparent)]
    Collect(#[from] CollectError),
    #[error("time scale {0} must be in (0, 10]")]
    TimeScale(f64),
    #[error("sampling interval {0:?} is shorter than {min} ms, the shortest that keeps sampling rounds apart", min = detect::online::MIN_ROUND_MS)]
    Interval(Duration),
    #[error("phase `{phase}`: cannot start the {what}")]
    Start {
        phase: String,
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("storing the labels in {path}")]
    Labels {
        path: String,
        #[source]
        source: store::StoreError,
    },
}

/// What a recording did.
#[derive(Debug, Clone, Serialize)]
pub struct RecordReport {
    pub scenario: String,
    pub store: String,
    pub start_ns: i64,
    pub end_ns: i64,
    pub samples: u64,
    /// (guest, label, seconds) per guest and phase.
    pub labels: Vec<(String, String, String)>,
    /// Workloads and floods that failed (their phases are labelled `unknown`).
    pub failures: Vec<String>,
    /// Stopped before the last phase.
    pub interrupted: bool,
    /// Each phase that ran, with its interval and what it ran (as stored for its family).
    pub phases: Vec<crate::family::PhaseRecord>,
}

fn flood_job(state: &lab::LabState, f: &FloodSpec, dur: Duration) -> Result<Job<LaunchError>, LaunchError> {
    let plan = f.lab_flood(state, dur);
    let prepared = crate::flood::prepare(state, plan)?;
    let what =
        format!("{} {} flood {} -> {} at {} ({} sources)", f.tool.as_str(), f.kind, f.from, f.target, f.rate, f.source);
    Ok(Job::spawn(what, move || prepared.run(&mut |_| {}).map(|_| ())))
}

/// Records `scenario` on the running lab. `stop` ends it after the current phase's wait (the
/// phases that ran are labelled); `progress` hears of each phase.
pub fn record(
    state: &lab::LabState,
    scenario: &Scenario,
    opts: &RecordOptions,
    stop: &AtomicBool,
    progress: &mut dyn FnMut(&str),
) -> Result<RecordReport, RecordError> {
    if !(opts.time_scale > 0.0 && opts.time_scale <= 10.0) {
        return Err(RecordError::TimeScale(opts.time_scale));
    }
    if opts.interval < Duration::from_millis(detect::online::MIN_ROUND_MS as u64) {
        return Err(RecordError::Interval(opts.interval));
    }
    let guests: Vec<telemetry::GuestInfo> = state.victims.iter().map(lab::VictimState::guest_info).collect();
    let names: Vec<&str> = guests.iter().map(|g| g.name.as_str()).collect();
    scenario.check_guests(&names)?;
    let collect = CollectLoop::start(
        crate::collect::GuestSource::Lab(state.spec.clone()),
        Some(&opts.store),
        guests.clone(),
        (opts.interval, Duration::from_secs(5)),
        None,
        Box::new(|_| {}),
    )?;
    // Two rounds before the first phase, so its first deltas exist.
    std::thread::sleep(2 * opts.interval + Duration::from_millis(100));
    let start_ns = telemetry::unix_now_ns();
    let mut labels = Vec::new();
    let mut phases = Vec::new();
    let mut failures = Vec::new();
    let mut interrupted = false;
    for p in &scenario.phases {
        if stop.load(Ordering::SeqCst) {
            interrupted = true;
            break;
        }
        let dur = p.duration.mul_f64(opts.time_scale);
        progress(&format!("{}: phase {} ({:.0} s)", scenario.name, p.name, dur.as_secs_f64()));
        let phase_start = telemetry::unix_now_ns();
        let mut workloads = Vec::new();
        let mut floods = Vec::new();
        let start_err = |what: String, e: Box<dyn std::error::Error + Send + Sync>| RecordError::Start {
            phase: p.name.clone(),
            what,
            source: e,
        };
        for w in &p.workloads {
            workloads.push(
                workload::start(state, w, dur)
                    .map_err(|e| start_err(format!("{} workload on {}", w.kind, w.target), Box::new(e)))?,
            );
        }
        for f in &p.floods {
            floods.push(
                flood_job(state, f, dur)
                    .map_err(|e| start_err(format!("flood {} -> {}", f.from, f.target), Box::new(e)))?,
            );
        }
        let deadline = Instant::now() + dur;
        while Instant::now() < deadline && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(100).min(deadline.saturating_duration_since(Instant::now())));
        }
        let phase_end = telemetry::unix_now_ns();
        phases.push(crate::family::PhaseRecord::of(p, phase_start, phase_end));
        let failed_jobs: Vec<String> =
            workloads.into_iter().map(Job::failure).chain(floods.into_iter().map(Job::failure)).flatten().collect();
        let failed = !failed_jobs.is_empty();
        failures.extend(failed_jobs.into_iter().map(|f| format!("phase {}: {f}", p.name)));
        for g in &guests {
            let truth = if failed { Truth::Unknown } else { p.truth_of(&g.name) };
            labels.push(store::Label {
                guest: g.name.clone(),
                start_ns: phase_start,
                end_ns: phase_end,
                label: truth.as_str().into(),
                scenario: scenario.name.clone(),
            });
        }
    }
    let end_ns = telemetry::unix_now_ns();
    // One more round after the last phase, then stop.
    std::thread::sleep(opts.interval + Duration::from_millis(100));
    let samples = collect.finish()?;
    let path = opts.store.display().to_string();
    let mut st =
        store::Store::open(&opts.store).map_err(|source| RecordError::Labels { path: path.clone(), source })?;
    st.add_labels(&labels).map_err(|source| RecordError::Labels { path: path.clone(), source })?;
    // What each phase ran, so its scenario family is known later (`detect eval --leave-one-family-out`).
    crate::family::store_run(&mut st, &scenario.name, start_ns, phases.clone())
        .map_err(|source| RecordError::Labels { path: path.clone(), source })?;
    Ok(RecordReport {
        scenario: scenario.name.clone(),
        store: path,
        start_ns,
        end_ns,
        samples,
        labels: labels
            .iter()
            .map(|l| (l.guest.clone(), l.label.clone(), format!("{:.1}s", (l.end_ns - l.start_ns) as f64 / 1e9)))
            .collect(),
        failures,
        interrupted,
        phases,
    })
}
