//! Benign workloads on the lab, each on a thread of its own and bounded by its duration (the tool's
//! own limit, plus `exec`'s timeout a little later).

use std::time::Duration;

use lab::{LabState, VictimKind};

use crate::scenario::{Workload, WorkloadKind};

/// Why a workload failed.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("no victim `{0}` in the lab")]
    NoVictim(String),
    #[error("bulk needs iperf3 in the victim's namespace, which the qemu guest's namespace lacks: use web")]
    BulkOnQemu,
    #[error(transparent)]
    Exec(#[from] exec::ExecError),
    #[error(transparent)]
    Lab(#[from] lab::LabError),
    #[error("{what} exited with status {status}: {output}")]
    InVictim { what: String, status: i32, output: String },
    #[error("cannot make a scratch file for iperf3's log")]
    Scratch(#[source] std::io::Error),
    #[error("{0} panicked")]
    Panicked(String),
}

/// A running workload or flood: a thread running bounded commands.
pub struct Job<E> {
    pub what: String,
    handle: std::thread::JoinHandle<Result<(), E>>,
}

impl<E: std::error::Error + Send + 'static> Job<E> {
    pub fn spawn(what: String, f: impl FnOnce() -> Result<(), E> + Send + 'static) -> Job<E> {
        Job { what, handle: std::thread::spawn(f) }
    }

    /// Waits for the job: `None` if it succeeded, else what failed and why, on one line.
    pub fn failure(self) -> Option<String> {
        let what = self.what.clone();
        match self.join() {
            Ok(()) => None,
            Err(Some(e)) => Some(format!("{what}: {}", crate::error_chain(&e))),
            Err(None) => Some(format!("{what}: panicked")),
        }
    }

    /// Waits for the job; `Err(None)` when its thread panicked.
    pub fn join(self) -> Result<(), Option<E>> {
        match self.handle.join() {
            Ok(r) => r.map_err(Some),
            Err(_) => Err(None),
        }
    }
}

fn in_victim(state: &LabState, victim: &str, what: &str, script: String, grace: Duration) -> Result<(), WorkloadError> {
    let out = lab::victim::run_in(state, victim, &["sh".into(), "-c".into(), script], grace)?;
    if out.status != 0 {
        return Err(WorkloadError::InVictim {
            what: what.into(),
            status: out.status,
            output: out.output.trim().into(),
        });
    }
    Ok(())
}

/// Starts `w` for `dur`.
pub fn start(state: &LabState, w: &Workload, dur: Duration) -> Result<Job<WorkloadError>, WorkloadError> {
    let v = state.victim(&w.target).ok_or_else(|| WorkloadError::NoVictim(w.target.clone()))?.clone();
    let client = state.plan.client.ns.clone();
    let secs = dur.as_secs().max(1);
    let grace = dur + Duration::from_secs(10);
    let what = format!("{} workload on {}", w.kind, w.target);
    let par = w.parallel.max(1);
    let reverse = w.reverse;
    let st = state.clone();
    let addr = v.address.to_string();
    Ok(match w.kind {
        WorkloadKind::Web => Job::spawn(what, move || {
            exec::Cmd::new("wrk")
                .args(["-t1", &format!("-c{par}"), &format!("-d{secs}s"), "--timeout", "2s"])
                .arg(format!("http://{addr}/"))
                .netns(client)
                .timeout(grace)
                .run()?;
            Ok(())
        }),
        WorkloadKind::Connections => Job::spawn(what, move || {
            // Short connections: one HTTP/1.0 request each, `par` clients in parallel.
            let script = format!(
                "end=$(( $(date +%s) + {secs} )); for i in $(seq {par}); do \
                 (while [ $(date +%s) -lt $end ]; do curl -s -o /dev/null -m 2 http://{addr}/ ; done) & done; wait"
            );
            exec::Cmd::new("sh").args(["-c", &script]).netns(client).timeout(grace).run()?;
            Ok(())
        }),
        WorkloadKind::Bulk => {
            if v.kind == VictimKind::Qemu {
                return Err(WorkloadError::BulkOnQemu);
            }
            Job::spawn(what, move || {
                let port = "5201";
                let log = tempfile::Builder::new()
                    .prefix("vmguard-iperf3-")
                    .suffix(".log")
                    .tempfile()
                    .map_err(WorkloadError::Scratch)?
                    .into_temp_path();
                let server =
                    exec::Cmd::new("iperf3").args(["-s", "-1", "-p", port]).netns(v.ns.clone()).spawn_detached(&log)?;
                std::thread::sleep(Duration::from_millis(300));
                let mut c = exec::Cmd::new("iperf3")
                    .args(["-c", &addr, "-p", port, "-t", &secs.to_string()])
                    .args(["-P", &par.to_string()])
                    .netns(client)
                    .timeout(grace);
                if reverse {
                    c = c.arg("-R");
                }
                let r = c.run();
                let _ = exec::stop_pid(server, Duration::from_secs(2));
                r?;
                Ok(())
            })
        }
        WorkloadKind::Cpu => Job::spawn(what.clone(), move || {
            let script = format!(
                "for i in $(seq {par}); do (end=$(( $(date +%s) + {secs} )); while [ $(date +%s) -lt $end ]; do :; done) & done; wait"
            );
            in_victim(&st, &v.name, &what, script, grace)
        }),
        WorkloadKind::Fileio => Job::spawn(what.clone(), move || {
            let script = format!(
                "end=$(( $(date +%s) + {secs} )); while [ $(date +%s) -lt $end ]; do \
                 dd if=/dev/zero of=/tmp/vmguard-fileio bs=64k count=256 2>/dev/null; \
                 dd if=/tmp/vmguard-fileio of=/dev/null bs=64k 2>/dev/null; done; rm -f /tmp/vmguard-fileio"
            );
            in_victim(&st, &v.name, &what, script, grace)
        }),
    })
}
