//! Collection on the lab: the lab's guests as telemetry sees them, storing a round, and
//! [`CollectLoop`], `telemetry::pipeline::run` on a thread of its own (what `collect` runs in the
//! foreground, `record` and `agent` in the background).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use telemetry::GuestInfo;
use telemetry::export::Exporter;
use telemetry::pipeline::{Pipeline, RoundReport, RunOptions};

/// Why collection did not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error(transparent)]
    Lab(#[from] lab::LabError),
    #[error("cannot open the store {path}")]
    Store {
        path: String,
        #[source]
        source: store::StoreError,
    },
    #[error("collecting")]
    Pipeline(#[from] telemetry::pipeline::PipelineError),
    #[error("the collector thread panicked")]
    Panicked,
}

/// Every victim of the running lab as telemetry sees it, or [`lab::LabError::NotUp`].
pub fn lab_guests(spec: &lab::LabSpec) -> Result<(lab::LabState, Vec<GuestInfo>), lab::LabError> {
    let state = lab::LabState::running(spec)?;
    let guests = state.victims.iter().map(lab::VictimState::guest_info).collect();
    Ok((state, guests))
}

/// The lab's guests now: none when the lab is down (its guests are gone), an error when its state
/// cannot be read. What the pipeline re-reads every few seconds.
pub fn current_guests(spec: &lab::LabSpec) -> Result<Vec<GuestInfo>, String> {
    match lab::LabState::load(spec) {
        Ok(Some(state)) => Ok(state.victims.iter().map(lab::VictimState::guest_info).collect()),
        Ok(None) => Ok(Vec::new()),
        Err(e) => Err(e.to_string()),
    }
}

/// Stores a round: its new guests' descriptions and its samples (one transaction for the samples).
pub fn store_round(store: &mut store::Store, round: &RoundReport<'_>) -> Result<(), store::StoreError> {
    for g in round.new_guests {
        store.put_guest(g)?;
    }
    store.append(round.samples)?;
    Ok(())
}

/// Where the watched guests come from; asked again every refresh, so guests may come, go and restart
/// (a new PID under the same name starts afresh: the pipeline never mixes two instances' counters).
pub enum GuestSource {
    /// The running lab's victims (none while the lab is down).
    Lab(lab::LabSpec),
    /// Guests found on the host (libvirt, plain qemu, containers, Xen, a static list), with the lab's
    /// victims too when `lab` is given (discovery then skips the lab's own processes).
    Discovered { discoverer: Box<telemetry::discover::Discoverer>, lab: Option<lab::LabSpec> },
}

impl GuestSource {
    /// The guests now. Discovery problems are logged by the discoverer, once each.
    pub fn current(&mut self) -> Result<Vec<GuestInfo>, String> {
        match self {
            GuestSource::Lab(spec) => current_guests(spec),
            GuestSource::Discovered { discoverer, lab } => {
                let mut guests = match lab {
                    Some(spec) => current_guests(spec)?,
                    None => Vec::new(),
                };
                if lab.is_some() {
                    discoverer.set_exclude(guests.clone());
                }
                let found = discoverer.discover();
                guests.extend(
                    found.guests.into_iter().filter(|g| !guests.iter().any(|l| l.name == g.name)).collect::<Vec<_>>(),
                );
                Ok(guests)
            }
        }
    }
}

/// A per-round callback of [`CollectLoop`].
pub type OnRound = Box<dyn FnMut(&RoundReport<'_>) + Send>;

/// `telemetry::pipeline::run` on a thread of its own, storing every round and handing it to a
/// callback, until [`CollectLoop::finish`] or drop.
pub struct CollectLoop {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<Result<u64, CollectError>>>,
}

impl CollectLoop {
    /// Starts collecting from `guests` every `interval`, then from what `source` says every `refresh`
    /// (so a restarted guest is picked up), appending to the store at `store_path` if given and updating `exporter`.
    pub fn start(
        mut source: GuestSource,
        store_path: Option<&Path>,
        guests: Vec<GuestInfo>,
        (interval, refresh): (Duration, Duration),
        exporter: Option<Exporter>,
        mut on_round: OnRound,
    ) -> Result<CollectLoop, CollectError> {
        let mut store = match store_path {
            Some(p) => Some(
                store::Store::open(p)
                    .map_err(|source| CollectError::Store { path: p.display().to_string(), source })?,
            ),
            None => None,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let handle = std::thread::spawn(move || -> Result<u64, CollectError> {
            let mut pipeline = Pipeline::new(exporter);
            let opts = RunOptions { interval, refresh, ..RunOptions::default() };
            let mut first = Some(guests);
            telemetry::pipeline::run(
                &mut pipeline,
                &opts,
                &stop2,
                || match first.take() {
                    Some(g) => Ok(g),
                    None => source.current(),
                },
                |round| {
                    if let Some(store) = store.as_mut() {
                        store_round(store, round)?;
                    }
                    on_round(round);
                    Ok(())
                },
            )?;
            Ok(if store.is_some() { pipeline.stats().samples } else { 0 })
        });
        Ok(CollectLoop { stop, handle: Some(handle) })
    }

    /// Stops the loop and returns the number of samples stored.
    pub fn finish(mut self) -> Result<u64, CollectError> {
        self.stop.store(true, Ordering::SeqCst);
        match self.handle.take().map(|h| h.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(CollectError::Panicked),
            None => Ok(0),
        }
    }
}

impl Drop for CollectLoop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
