//! Benign workloads on the lab, each on a thread of its own and bounded by its duration (the tool's
//! own limit, plus `exec`'s timeout a little later).

use std::time::Duration;

use lab::LabState;

use crate::scenario::{Workload, WorkloadKind};

/// Why a workload failed.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("no victim `{0}` in the lab")]
    NoVictim(String),
    #[error(
        "bulk runs iperf3's server in the victim's namespace, which holds no server of a virtual machine's (the qemu guest, the Xen domU): use download or backup for bulk transfers to or from it, or web, udp"
    )]
    BulkInGuest,
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
    succeeded(what, &out)
}

/// A command's outcome inside a victim: an error with its output unless it exited 0.
fn succeeded(what: &str, out: &lab::victim::VictimOutput) -> Result<(), WorkloadError> {
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
    let client_addr = state.plan.client.address.to_string();
    // Servers in the client's namespace serve one victim each: one port per victim.
    let client_port = |base: u16| (base + u16::from(v.address.octets()[2])).to_string();
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
            if v.kind.has_own_kernel() {
                return Err(WorkloadError::BulkInGuest);
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
        WorkloadKind::FlashCrowd => Job::spawn(what, move || {
            // Waves of `par` clients, each wave opening all its connections at once (a burst of SYNs
            // that overflows busybox httpd's listen queue of 9), then keeping them alive for up to 5 s.
            let threads = par.min(2);
            let script = format!(
                "ulimit -n 65536 2>/dev/null || ulimit -n 4096; end=$(( $(date +%s) + {secs} )); \
                 while [ $(date +%s) -lt $end ]; do left=$(( end - $(date +%s) )); [ $left -gt 5 ] && left=5; \
                 [ $left -lt 1 ] && break; wrk -t{threads} -c{par} -d${{left}}s --timeout 2s http://{addr}/ >/dev/null || true; done"
            );
            exec::Cmd::new("sh").args(["-c", &script]).netns(client).timeout(grace).run()?;
            Ok(())
        }),
        WorkloadKind::Udp => {
            let len = w.length;
            let rate = w.rate.unwrap_or(crate::scenario::DEFAULT_UDP_RATE);
            // iperf3's -b counts UDP payload bits; the scenario's rate counts packets (or frames' bits).
            let pps = rate.pps(28 + len as usize).unwrap_or(1.0).max(1.0);
            let bits = format!("{}", (pps * f64::from(len) * 8.0).round() as u64);
            let udp_args: Vec<String> =
                ["-u", "-l", &len.to_string(), "-b", &bits, "-t", &secs.to_string()].map(String::from).to_vec();
            if v.kind.has_own_kernel() {
                // The guest runs the iperf3 client, the client host's server sends (-R) to it.
                let port = client_port(5300);
                let argv: Vec<String> = ["iperf3", "-c", &client_addr, "-p", &port, "-R"]
                    .map(String::from)
                    .into_iter()
                    .chain(udp_args)
                    .collect();
                Job::spawn(what.clone(), move || iperf3_from_victim(&st, &v.name, &what, &client, &port, argv, grace))
            } else {
                Job::spawn(what, move || {
                    let port = "5202";
                    let log = scratch_log()?;
                    let server = exec::Cmd::new("iperf3")
                        .args(["-s", "-1", "-p", port])
                        .netns(v.ns.clone())
                        .spawn_detached(&log)?;
                    std::thread::sleep(Duration::from_millis(300));
                    let r = exec::Cmd::new("iperf3")
                        .args(["-c", &addr, "-p", port])
                        .args(&udp_args)
                        .netns(client)
                        .timeout(grace)
                        .run();
                    let _ = exec::stop_pid(server, Duration::from_secs(2));
                    r?;
                    Ok(())
                })
            }
        }
        WorkloadKind::Download => {
            // The victim opens the connections and downloads (-R: the client host's server sends).
            let port = client_port(5400);
            let argv: Vec<String> =
                ["iperf3", "-c", &client_addr, "-p", &port, "-R", "-t", &secs.to_string(), "-P", &par.to_string()]
                    .map(String::from)
                    .to_vec();
            Job::spawn(what.clone(), move || iperf3_from_victim(&st, &v.name, &what, &client, &port, argv, grace))
        }
        WorkloadKind::Backup => {
            let files = w.files;
            let port = client_port(5500);
            Job::spawn(what.clone(), move || {
                // The client host's sink: busybox nc, its stdin held open by a sleep writing to a
                // FIFO (at EOF on stdin it stops reading after 1 KiB). It ends when the victim closes
                // its end (nc -l then exits at once; the sleep is ended by its PID), at the latest
                // `SINK_SLACK_SECS` after the phase: the victim's script starts that much later at
                // most (the Xen domU's relay and its many small files), and its loop runs `secs`
                // from its own start. exec's timeout kills the process group if all of it hangs.
                let sink_secs = secs + SINK_SLACK_SECS;
                let sink = exec::Cmd::new("timeout")
                    .args([
                        "-s".to_string(),
                        "TERM".into(),
                        sink_secs.to_string(),
                        "sh".into(),
                        "-c".into(),
                        format!(
                            "d=$(mktemp -d); mkfifo $d/f; sleep {sink_secs} > $d/f & s=$!; \
                             busybox nc -l -p {port} > /dev/null < $d/f; st=$?; kill $s 2>/dev/null; rm -rf $d; exit $st"
                        ),
                    ])
                    .netns(client)
                    .timeout(grace);
                let sink = std::thread::spawn(move || sink.run_unchecked());
                // Inside the victim: many small files (shell built-ins only, quick even in the TCG
                // guest), then tar of them, again and again, over one TCP connection to the sink.
                let dir = format!("/tmp/vmguard-backup-{}", v.name);
                let script = format!(
                    "end=$(( $(date +%s) + {secs} )); d={dir}; rm -rf $d; mkdir -p $d; p=$(printf '%01000d' 0); i=0; \
                     while [ $i -lt {files} ]; do echo \"$i $p\" > $d/f$i; i=$((i+1)); done; sleep 0.3; \
                     (while [ $(date +%s) -lt $end ]; do busybox tar c -C $d .; done) | busybox nc {client_addr} {port}; \
                     s=$?; rm -rf $d; exit $s"
                );
                let r = in_victim(&st, &v.name, &what, script, grace);
                let sink = sink.join().map_err(|_| WorkloadError::Panicked(format!("{what}'s sink")))?;
                r?;
                let out = sink?;
                // The sink ends at its `timeout` (124).
                if !matches!(out.status.code(), Some(0 | 124 | 143)) {
                    return Err(WorkloadError::InVictim {
                        what: format!("{what}'s sink on the client host"),
                        status: out.status.code().unwrap_or(-1),
                        output: out.stderr.trim().into(),
                    });
                }
                Ok(())
            })
        }
    })
}

/// How much longer than its phase a backup's sink on the client host waits for the victim (below
/// the 10 s of grace every workload command gets).
const SINK_SLACK_SECS: u64 = 8;

fn scratch_log() -> Result<tempfile::TempPath, WorkloadError> {
    Ok(tempfile::Builder::new()
        .prefix("vmguard-iperf3-")
        .suffix(".log")
        .tempfile()
        .map_err(WorkloadError::Scratch)?
        .into_temp_path())
}

/// An iperf3 server (one test) in the client host's namespace, and `argv` (the iperf3 client)
/// inside the victim.
fn iperf3_from_victim(
    state: &LabState,
    victim: &str,
    what: &str,
    client_ns: &str,
    port: &str,
    argv: Vec<String>,
    grace: Duration,
) -> Result<(), WorkloadError> {
    let log = scratch_log()?;
    let server = exec::Cmd::new("iperf3").args(["-s", "-1", "-p", port]).netns(client_ns).spawn_detached(&log)?;
    std::thread::sleep(Duration::from_millis(300));
    let r = lab::victim::run_in(state, victim, &argv, grace);
    let _ = exec::stop_pid(server, Duration::from_secs(2));
    succeeded(what, &r?)
}
