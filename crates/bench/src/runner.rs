//! Runs the matrix on a running lab: each benchmark inside its victim (and the iperf3/wrk clients in
//! the client namespace), a time-bounded SYN flood from the attacker namespace for attack cells, and
//! host-side CPU and profiling counters around every cell. A failed cell is recorded with its error and
//! the run goes on. A stop flag (set from a Ctrl-C handler) ends the run early: the running cell's
//! flood stops, no further cell starts, and every victim's services and settings are undone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use exec::{Cmd, shell_quote};
use lab::{LabState, VictimKind, VictimState};
use orchestrate::flood::{LabFlood, RunningFlood, Sender};
use telemetry::procfs;
use telemetry::{Collector, Sample};

use crate::BenchError;
use crate::matrix::{Benchmark, CellRecord, CellSpec, FloodFigures, HostFigures, MatrixSpec, Phase};
use crate::parse::{self, Figures};

const IPERF_PORT: u16 = 5201;
const WEB_PORT: u16 = 8080;
/// The lab's busybox httpd, flooded when a cell has no server of its own.
const HTTPD_PORT: u16 = 80;
/// Extra time a command inside a victim may take beyond the benchmark's duration (start-up under TCG).
const SLACK: Duration = Duration::from_secs(60);
/// Pause after an attack cell, so the next idle cell does not see the tail of the flood.
const SETTLE: Duration = Duration::from_millis(1500);

/// How the runner starts the web application inside each victim.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The vmguard binary on the host (runs the web application of the vanilla victim).
    pub host_tool: PathBuf,
    /// The vmguard binary inside the container and the guest (`lab::image::TOOL_PATH`).
    pub victim_tool: String,
    /// Arguments before the web application's own (`["webapp"]` for `vmguard webapp`).
    pub webapp_subcommand: Vec<String>,
    /// Seed size of the web application's database (threads, users) for wrk's request mix.
    pub web_threads: u32,
    pub web_users: u32,
}

/// What the runner reports as it goes.
pub enum Event<'a> {
    /// A cell is about to run.
    Started(&'a CellSpec),
    /// A cell finished (successfully or not); `raw` is the tool's output as it printed it.
    Done(&'a CellRecord, &'a str),
    /// Something worth telling the user that is not a cell (a service start, a skipped source).
    Note(String),
}

/// Run every cell of `spec` against the lab; returns the records (also passed to `on_event`).
///
/// When `stop` is set (by a Ctrl-C handler, say), the running cell's flood stops at once, the cell
/// ends as soon as its benchmark returns and is recorded as interrupted, no further cell starts, the
/// victim's teardown runs (services stopped, working directory removed, SYN cookies back to the lab's
/// setting) and the records so far are returned.
pub fn run_matrix(
    state: &LabState,
    spec: &MatrixSpec,
    opts: &RunOptions,
    stop: &AtomicBool,
    on_event: &mut dyn FnMut(Event<'_>),
) -> Vec<CellRecord> {
    let cells = spec.cells();
    let mut records = Vec::with_capacity(cells.len());
    let mut i = 0;
    while i < cells.len() && !stop.load(Ordering::SeqCst) {
        let kind = cells[i].victim;
        let end = cells[i..].iter().position(|c| c.victim != kind).map(|p| i + p).unwrap_or(cells.len());
        let mut ctx = match VictimCtx::new(state, kind, spec, opts, stop) {
            Ok(ctx) => Some(ctx),
            Err(e) => {
                on_event(Event::Note(format!("victim {kind}: {e}")));
                None
            }
        };
        for cell in &cells[i..end] {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            on_event(Event::Started(cell));
            let started = Instant::now();
            let (result, raw, runs) = match ctx.as_mut() {
                Some(ctx) => ctx.run_cell(cell),
                None => (Err(no_victim_error(kind)), String::new(), 1),
            };
            let result = match result {
                Ok(_) if stop.load(Ordering::SeqCst) => Err(INTERRUPTED.to_string()),
                Ok(r) => Ok(r),
                Err(e) => Err(e.to_string()),
            };
            let record = match result {
                Ok(mut r) => {
                    r.elapsed_secs = started.elapsed().as_secs_f64();
                    r.runs = runs;
                    r
                }
                Err(e) => CellRecord {
                    cell: *cell,
                    ok: false,
                    error: Some(e),
                    metric: cell.benchmark.metric().0.to_string(),
                    value: None,
                    figures: Figures::new(),
                    host: None,
                    flood: None,
                    accelerator: ctx.as_ref().and_then(|c| c.victim.accelerator.clone()),
                    elapsed_secs: started.elapsed().as_secs_f64(),
                    runs,
                },
            };
            on_event(Event::Done(&record, &raw));
            records.push(record);
        }
        if let Some(ctx) = ctx {
            for note in ctx.teardown() {
                on_event(Event::Note(note));
            }
        }
        i = end;
    }
    if stop.load(Ordering::SeqCst) && records.len() < cells.len() {
        on_event(Event::Note(format!("stopped: {} of {} cells ran", records.len(), cells.len())));
    }
    records
}

/// The error of a cell that was running when the stop flag was set.
const INTERRUPTED: &str = "interrupted: the run was stopped before this cell finished";

fn no_victim_error(kind: VictimKind) -> BenchError {
    BenchError::NoVictim(kind)
}

/// Run `work`; if `stop` is set before it returns, call `on_stop` at once (from a watcher thread that
/// looks every 50 ms), so a flood can end while a benchmark inside a victim finishes.
fn stop_while<R>(stop: &AtomicBool, on_stop: impl FnOnce() + Send, work: impl FnOnce() -> R) -> R {
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                if stop.load(Ordering::SeqCst) {
                    on_stop();
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let r = work();
        done.store(true, Ordering::SeqCst);
        r
    })
}

/// One victim during the run: its services, its settings, its telemetry.
struct VictimCtx<'a> {
    state: &'a LabState,
    spec: &'a MatrixSpec,
    opts: &'a RunOptions,
    victim: VictimState,
    /// Working directory inside the victim (as the victim sees it).
    dir: String,
    /// The same directory on the host, for the vanilla victim; wrk's script lives in `host_dir`.
    host_dir: PathBuf,
    syncookies: Option<bool>,
    /// The defence applied for the current cells (`None`: the victim as the lab set it up).
    mitigation: crate::Mitigation,
    /// Services started once per victim: their outcome, shared by every cell that needs them.
    iperf: Option<Result<(), Arc<BenchError>>>,
    webapp: Option<Result<String, Arc<BenchError>>>,
    fileio: Option<Result<(), Arc<BenchError>>>,
    collector: Collector,
    /// Set when the run is to stop.
    stop: &'a AtomicBool,
}

impl<'a> VictimCtx<'a> {
    fn new(
        state: &'a LabState,
        kind: VictimKind,
        spec: &'a MatrixSpec,
        opts: &'a RunOptions,
        stop: &'a AtomicBool,
    ) -> Result<Self, BenchError> {
        let victim = state.victims.iter().find(|v| v.kind == kind).cloned().ok_or_else(|| no_victim_error(kind))?;
        let host_dir = LabState::dir(&state.spec).join("bench").join(kind.as_str());
        std::fs::create_dir_all(&host_dir)
            .map_err(|e| BenchError::io(format!("creating {}", host_dir.display()), e))?;
        std::fs::write(host_dir.join("wrk.lua"), parse::wrk::SCRIPT)
            .map_err(|e| BenchError::io(format!("writing {}/wrk.lua", host_dir.display()), e))?;
        let dir = match kind {
            VictimKind::Vanilla => host_dir.to_string_lossy().into_owned(),
            // The container's /data is a host directory on disk (its root is read-only); the
            // qemu guest's /data is an ext4 virtio disk, the Xen domU's an ext4 PV disk (blkback).
            VictimKind::Container | VictimKind::Qemu | VictimKind::Xen => "/data/vmguard-bench".to_string(),
        };
        let mut collector = Collector::new();
        // No packet socket on the victim's link: its cost (the flood's headers copied to user space)
        // would be part of what the cell measures.
        collector.skip(&[telemetry::SourceId::Flow]);
        for f in collector.add_guest(&victim.guest_info()) {
            tracing::debug!("telemetry source unavailable for bench: {f}");
        }
        let ctx = VictimCtx {
            state,
            spec,
            opts,
            victim,
            dir,
            host_dir,
            syncookies: None,
            mitigation: crate::Mitigation::None,
            iperf: None,
            webapp: None,
            fileio: None,
            collector,
            stop,
        };
        ctx.sh(&format!("mkdir -p {}", shell_quote(&ctx.dir)), Duration::from_secs(30))
            .map_err(|e| ctx.setup("creating its working directory", e))?;
        Ok(ctx)
    }

    fn setup(&self, what: &'static str, e: impl Into<Arc<BenchError>>) -> BenchError {
        BenchError::Setup { victim: self.victim.name.clone(), what, source: e.into() }
    }

    /// Run a shell script inside the victim; a non-zero exit is an error quoting the output.
    fn sh(&self, script: &str, timeout: Duration) -> Result<String, BenchError> {
        // The guest runs commands with its command channel open as fd 3: a daemon started from here
        // would inherit it and keep the channel from reopening. Close it first (harmless elsewhere).
        let argv = ["sh".to_string(), "-c".to_string(), format!("exec 3>&-; {script}")];
        match lab::victim::run_in(self.state, &self.victim.name, &argv, timeout) {
            Ok(out) if out.status == 0 => Ok(out.output),
            Ok(out) => Err(BenchError::Exited {
                victim: self.victim.name.clone(),
                script: script.to_string(),
                status: out.status,
                output: tail(&out.output),
            }),
            Err(source) => Err(BenchError::InVictim {
                victim: self.victim.name.clone(),
                script: script.to_string(),
                source: Box::new(source),
            }),
        }
    }

    fn set_syncookies(&mut self, on: bool) -> Result<(), BenchError> {
        if self.syncookies == Some(on) {
            return Ok(());
        }
        let script = format!("echo {} > /proc/sys/net/ipv4/tcp_syncookies", u8::from(on));
        match self.victim.kind {
            // The container's /proc/sys is read-only inside it: set its namespace's sysctl from the host.
            VictimKind::Vanilla | VictimKind::Container => Cmd::new("sh")
                .args(["-c", &script])
                .netns(&self.victim.ns)
                .timeout(Duration::from_secs(10))
                .run()
                .map(|_| ())?,
            // A machine's own kernel: set inside it.
            VictimKind::Qemu | VictimKind::Xen => self.sh(&script, Duration::from_secs(30)).map(|_| ())?,
        }
        self.syncookies = Some(on);
        Ok(())
    }

    /// Take the current defence away and apply `m` (with mitigate's defaults).
    fn set_mitigation(&mut self, m: crate::Mitigation) -> Result<(), BenchError> {
        if self.mitigation == m {
            return Ok(());
        }
        let fail = |source| BenchError::Mitigate { victim: self.victim.name.clone(), source: Box::new(source) };
        if let Some(current) = self.mitigation.defence() {
            mitigate::remove(self.state, current.kind(), &self.victim.name, None).map_err(fail)?;
        }
        self.mitigation = crate::Mitigation::None;
        if let Some(d) = m.defence() {
            mitigate::apply(self.state, &d, &self.victim.name, None).map_err(fail)?;
        }
        self.mitigation = m;
        Ok(())
    }

    fn ensure_iperf(&mut self) -> Result<(), Arc<BenchError>> {
        if self.iperf.is_none() {
            let pidfile = format!("{}/iperf3.pid", self.dir);
            let r = self.sh(&format!("iperf3 -s -D -p {IPERF_PORT} -I {pidfile}"), Duration::from_secs(30)).map(|_| {
                // iperf3 -D listens shortly after it detaches (slower under TCG). A probe
                // connection would occupy its single test slot, so wait instead.
                let pause = if self.victim.kind.has_own_kernel() { 3 } else { 1 };
                std::thread::sleep(Duration::from_secs(pause));
            });
            self.iperf = Some(r.map_err(|e| Arc::new(self.setup("starting the iperf3 server", e))));
        }
        self.iperf.clone().expect("set above")
    }

    fn ensure_webapp(&mut self) -> Result<(), Arc<BenchError>> {
        if self.webapp.is_none() {
            self.webapp =
                Some(self.start_webapp().map_err(|e| Arc::new(self.setup("starting the web application", e))));
        }
        self.webapp.clone().expect("set above").map(|_| ())
    }

    fn start_webapp(&self) -> Result<String, BenchError> {
        let tool = match self.victim.kind {
            VictimKind::Vanilla => self.opts.host_tool.to_string_lossy().into_owned(),
            _ => self.opts.victim_tool.clone(),
        };
        let q = shell_quote;
        match lab::victim::run_in(
            self.state,
            &self.victim.name,
            &["test".into(), "-x".into(), tool.clone()],
            Duration::from_secs(30),
        ) {
            Ok(out) if out.status == 0 => {}
            Ok(_) => return Err(BenchError::NoTool { victim: self.victim.name.clone(), path: tool }),
            Err(source) => {
                return Err(BenchError::InVictim {
                    victim: self.victim.name.clone(),
                    script: format!("test -x {}", q(&tool)),
                    source: Box::new(source),
                });
            }
        }
        let Some(database) = &self.victim.database else {
            return Err(BenchError::NoDatabase { victim: self.victim.name.clone() });
        };
        let sub: Vec<String> = self.opts.webapp_subcommand.iter().map(|s| q(s)).collect();
        // --reseed: every run starts from the seed's rows, whatever earlier runs posted.
        let script = format!(
            "{} {} --db-socket {} --reseed --listen 0.0.0.0:{WEB_PORT} > {dir}/webapp.log 2>&1 & echo $!",
            q(&tool),
            sub.join(" "),
            q(&database.layout.socket),
            dir = self.dir
        );
        let out = self.sh(&script, Duration::from_secs(30))?;
        let pid = out.lines().rev().find_map(|l| l.trim().parse::<u32>().ok()).map(|p| p.to_string());
        let pid = pid.ok_or_else(|| BenchError::NoPid { script: script.clone(), output: tail(&out) })?;
        // Seeding the database under TCG takes a while.
        let timeout = Duration::from_secs(240);
        if let Err(url) = wait_http(self.state, self.victim.address, timeout, self.stop) {
            let log = self.sh(&format!("tail -5 {}/webapp.log", self.dir), Duration::from_secs(20)).unwrap_or_default();
            let _ = self.sh(&format!("kill {pid}"), Duration::from_secs(20));
            return Err(BenchError::WebNotAnswering { url, timeout, log: tail(&log) });
        }
        Ok(pid)
    }

    fn ensure_fileio(&mut self) -> Result<(), Arc<BenchError>> {
        if self.fileio.is_none() {
            let script = format!("cd {} && sysbench fileio {} prepare", self.dir, self.spec.fileio.sysbench_args());
            // Writing 2 GB through the TCG guest's emulated disk takes minutes.
            let timeout = Duration::from_secs(120 + u64::from(self.spec.fileio.total_mib) / 2);
            self.fileio =
                Some(self.sh(&script, timeout).map(|_| ()).map_err(|e| Arc::new(self.setup("preparing the files", e))));
        }
        self.fileio.clone().expect("set above")
    }

    /// Run a cell; one that failed in a way a second run may not repeat
    /// ([`BenchError::worth_another_run`]) runs once more, whole (an attack cell with a fresh bounded
    /// flood). The first run's error stays in the raw output; the record counts the runs.
    fn run_cell(&mut self, cell: &CellSpec) -> (Result<CellRecord, BenchError>, String, u32) {
        let mut raw = String::new();
        let mut runs = 1;
        let mut r = self.run_cell_once(cell, &mut raw);
        if let Err(e) = &r
            && e.worth_another_run()
            && !self.stop.load(Ordering::SeqCst)
        {
            tracing::warn!("{cell:?}: {e}; running the cell once more");
            raw.push_str(&format!("\n[vmguard: the run failed ({e}); running the cell once more]\n"));
            runs = 2;
            r = self.run_cell_once(cell, &mut raw);
        }
        (r, raw, runs)
    }

    fn run_cell_once(&mut self, cell: &CellSpec, raw: &mut String) -> Result<CellRecord, BenchError> {
        let r = self.run_cell_inner(cell, raw);
        if cell.phase == Phase::Attack {
            std::thread::sleep(SETTLE);
        }
        r
    }

    fn run_cell_inner(&mut self, cell: &CellSpec, raw: &mut String) -> Result<CellRecord, BenchError> {
        if let Some(reason) = cell.backend.and_then(|b| b.unavailable_reason(self.state.spec.qemu.net_backend)) {
            return Err(BenchError::Unavailable(reason));
        }
        if let Some(reason) = cell.mitigation.unavailable_reason(&self.victim) {
            return Err(BenchError::Unavailable(reason));
        }
        self.set_syncookies(cell.syncookies).map_err(|e| self.setup("setting SYN cookies", e))?;
        self.set_mitigation(cell.mitigation)?;
        // A service that failed to start is the error of every cell that needs it.
        let port = match cell.benchmark {
            Benchmark::Network => {
                self.ensure_iperf().map_err(|e| self.setup("network benchmark", e))?;
                IPERF_PORT
            }
            Benchmark::Web => {
                self.ensure_webapp().map_err(|e| self.setup("web benchmark", e))?;
                WEB_PORT
            }
            Benchmark::Fileio => {
                self.ensure_fileio().map_err(|e| self.setup("fileio benchmark", e))?;
                HTTPD_PORT
            }
            _ => HTTPD_PORT,
        };

        let before = HostSnapshot::take(&mut self.collector)?;
        let flood = match cell.phase {
            Phase::Attack => {
                Some(start_flood(self.state, &self.victim, port, cell.attack_rate, self.spec.duration + SLACK)?)
            }
            Phase::Idle => None,
        };
        if flood.is_some() {
            // Let the flood reach its rate before measuring.
            std::thread::sleep(Duration::from_millis(500));
        }
        // A stop ends the flood at once; the benchmark inside the victim runs to its end.
        let stop_flood = flood.as_ref().map(RunningFlood::stopper);
        let outcome = stop_while(
            self.stop,
            move || {
                if let Some(s) = stop_flood {
                    s.stop();
                }
            },
            || self.benchmark(cell.benchmark, raw),
        );
        let flood = flood.map(flood_figures).transpose()?;
        let after = HostSnapshot::take(&mut self.collector)?;
        let host = before.figures(&after);
        let (metric, _) = cell.benchmark.metric();
        let mut figures = outcome?;
        let value = match cell.benchmark {
            Benchmark::IdleCpu => {
                figures.insert("host_busy_pct".into(), host.busy_pct);
                Some(host.busy_pct)
            }
            _ => figures.get(metric).copied(),
        };
        Ok(CellRecord {
            cell: *cell,
            ok: value.is_some(),
            error: value.is_none().then(|| format!("the tool's output has no `{metric}`")),
            metric: metric.to_string(),
            value,
            figures,
            host: Some(host),
            flood,
            accelerator: self.victim.accelerator.clone(),
            elapsed_secs: 0.0,
            runs: 1,
        })
    }

    /// Run the benchmark itself; its raw output goes to `raw`.
    fn benchmark(&self, b: Benchmark, raw: &mut String) -> Result<Figures, BenchError> {
        let d = self.spec.duration.as_secs().max(1);
        let timeout = self.spec.duration + SLACK;
        let in_victim = |script: String, raw: &mut String| -> Result<String, BenchError> {
            let out = self.sh(&script, timeout);
            match out {
                Ok(o) => {
                    raw.push_str(&o);
                    Ok(o)
                }
                Err(e) => {
                    raw.push_str(&e.to_string());
                    Err(e)
                }
            }
        };
        let client = |cmd: Cmd, raw: &mut String| -> Result<String, BenchError> {
            let out = cmd.netns(&self.state.plan.client.ns).timeout(timeout).run_unchecked()?;
            raw.push_str(&out.stdout);
            raw.push_str(&out.stderr);
            Ok(out.stdout + &out.stderr)
        };
        let addr = self.victim.address.to_string();
        Ok(match b {
            Benchmark::Cpu => parse::sysbench::parse_cpu(&in_victim(
                format!("sysbench cpu --threads=1 --cpu-max-prime=10000 --time={d} run"),
                raw,
            )?)?,
            Benchmark::Memory => parse::sysbench::parse_memory(&in_victim(
                format!("sysbench memory --threads=1 --memory-block-size=1M --memory-total-size=1000G --time={d} run"),
                raw,
            )?)?,
            Benchmark::Fileio => parse::sysbench::parse_fileio(&in_victim(
                format!(
                    "cd {} && sysbench fileio {} --file-test-mode=rndrw --threads=1 --time={d} run",
                    self.dir,
                    self.spec.fileio.sysbench_args()
                ),
                raw,
            )?)?,
            Benchmark::Network => parse::iperf::parse(&client(
                Cmd::new("iperf3").args(["-c", &addr, "-p", &IPERF_PORT.to_string(), "-t", &d.to_string(), "-J"]),
                raw,
            )?)?,
            Benchmark::Web => {
                let tiers = self.tier_pids();
                let before = self.tier_ticks(&tiers);
                let started = Instant::now();
                let mut figures = parse::wrk::parse(&client(
                    Cmd::new("wrk")
                        .args([
                            "-t1",
                            &format!("-c{}", self.spec.web_connections),
                            &format!("-d{d}s"),
                            "--timeout",
                            "2s",
                        ])
                        .arg("--latency")
                        .arg("-s")
                        .arg(self.host_dir.join("wrk.lua"))
                        .arg(format!("http://{addr}:{WEB_PORT}/"))
                        .env("VMGUARD_WEB_THREADS", self.opts.web_threads.to_string())
                        .env("VMGUARD_WEB_USERS", self.opts.web_users.to_string()),
                    raw,
                )?)?;
                let after = self.tier_ticks(&tiers);
                let secs = started.elapsed().as_secs_f64();
                for ((name, _), (b, a)) in tiers.iter().zip(before.iter().zip(&after)) {
                    if let (Some(b), Some(a)) = (b, a) {
                        // USER_HZ is 100 on every Linux this runs on: a tick is 10 ms.
                        figures.insert(format!("{name}_cpu_pct"), a.saturating_sub(*b) as f64 / secs);
                    }
                }
                figures
            }
            Benchmark::IdleCpu => {
                let end = Instant::now() + self.spec.duration;
                while Instant::now() < end && !self.stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(50).min(end.saturating_duration_since(Instant::now())));
                }
                Figures::new()
            }
        })
    }

    /// The two tiers of the web benchmark, by the PIDs the victim sees: the web application and the
    /// database server.
    fn tier_pids(&self) -> Vec<(&'static str, u32)> {
        let web = self.webapp.as_ref().and_then(|w| w.as_ref().ok()).and_then(|p| p.parse().ok());
        let db = self.victim.database.as_ref().map(|d| d.pid);
        [("web_tier", web), ("db_tier", db)].into_iter().filter_map(|(n, p)| Some((n, p?))).collect()
    }

    /// CPU ticks (user + system) of each tier as the victim's own /proc counts them; `None` for one
    /// that could not be read (the figure is then left out, never made up).
    fn tier_ticks(&self, tiers: &[(&'static str, u32)]) -> Vec<Option<u64>> {
        let script: Vec<String> =
            tiers.iter().map(|(_, pid)| format!("cat /proc/{pid}/stat 2>/dev/null || echo")).collect();
        let out = self.sh(&script.join("; "), Duration::from_secs(30)).unwrap_or_default();
        let mut lines = out.lines();
        tiers
            .iter()
            .map(|_| lines.next().and_then(telemetry::procfs::parse_pid_stat).map(|st| st.utime + st.stime))
            .collect()
    }

    /// Stop the victim's services and remove its files; returns what could not be undone.
    fn teardown(mut self) -> Vec<String> {
        let mut notes = Vec::new();
        if let Err(e) = self.set_mitigation(crate::Mitigation::None) {
            notes.push(format!("removing the defence: {e}"));
        }
        let t = Duration::from_secs(60);
        if let Some(Ok(pid)) = &self.webapp
            && let Err(e) = self.sh(&format!("kill {pid}"), t)
        {
            notes.push(format!("stopping the web application: {e}"));
        }
        if let Some(Ok(())) = &self.fileio
            && let Err(e) =
                self.sh(&format!("cd {} && sysbench fileio {} cleanup", self.dir, self.spec.fileio.sysbench_args()), t)
        {
            notes.push(format!("removing the sysbench files: {e}"));
        }
        if let Some(Ok(())) = &self.iperf
            && let Err(e) = self.sh(&format!("kill $(cat {}/iperf3.pid)", self.dir), t)
        {
            notes.push(format!("stopping iperf3: {e}"));
        }
        if let Err(e) = self.sh(&format!("rm -rf {}", shell_quote(&self.dir)), Duration::from_secs(120)) {
            notes.push(format!("removing the working directory: {e}"));
        }
        if self.syncookies.is_some_and(|s| s != self.state.spec.syncookies) {
            let mut me = self;
            let lab_setting = me.state.spec.syncookies;
            if let Err(e) = me.set_syncookies(lab_setting) {
                notes.push(format!("restoring SYN cookies: {e}"));
            }
            let _ = std::fs::remove_dir_all(&me.host_dir);
        } else {
            let _ = std::fs::remove_dir_all(&self.host_dir);
        }
        notes
    }
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

/// Wait until the web application answers `/health` from the client namespace (or the run stops);
/// `Err(url)` if it did not.
fn wait_http(state: &LabState, addr: std::net::Ipv4Addr, timeout: Duration, stop: &AtomicBool) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let url = format!("http://{addr}:{WEB_PORT}/health");
    loop {
        let ok = Cmd::new("curl")
            .args(["-sf", "-m", "3", &url])
            .netns(&state.plan.client.ns)
            .timeout(Duration::from_secs(6))
            .run()
            .is_ok();
        if ok {
            return Ok(());
        }
        if Instant::now() > deadline || stop.load(Ordering::SeqCst) {
            return Err(url);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The cell's SYN flood from the attacker, through the lab's one flood launch.
fn start_flood(
    state: &LabState,
    victim: &VictimState,
    port: u16,
    rate: lab::Rate,
    bound: Duration,
) -> Result<RunningFlood, BenchError> {
    let config = flood::FloodConfig {
        kind: flood::FloodKind::Syn,
        dst_port: Some(port),
        rate,
        duration: bound,
        ..Default::default()
    };
    let plan = LabFlood { measure_victim: false, ..LabFlood::new(Sender::Attacker, &victim.name, config) };
    Ok(orchestrate::flood::prepare(state, plan)?.spawn())
}

fn flood_figures(flood: RunningFlood) -> Result<FloodFigures, BenchError> {
    flood.stop();
    let report = flood.finish()?;
    let summary = report.summary.ok_or(BenchError::FloodPanicked)?;
    Ok(FloodFigures {
        sent: summary.sent,
        achieved_pps: summary.achieved_pps,
        achieved_bps: summary.achieved_bps,
        elapsed_secs: summary.elapsed_secs,
    })
}

/// Host-wide and victim counters at one instant.
struct HostSnapshot {
    at: Instant,
    stat: procfs::ProcStat,
    softirqs: procfs::CounterTable,
    samples: Vec<Sample>,
}

fn read_proc(path: &Path) -> Result<String, BenchError> {
    std::fs::read_to_string(path).map_err(|e| BenchError::io(format!("reading {}", path.display()), e))
}

impl HostSnapshot {
    fn take(collector: &mut Collector) -> Result<HostSnapshot, BenchError> {
        let mut samples = Vec::new();
        for f in collector.round(&mut samples) {
            tracing::debug!("telemetry round: {f}");
        }
        Ok(HostSnapshot {
            at: Instant::now(),
            stat: procfs::parse_stat(&read_proc(Path::new("/proc/stat"))?)?,
            softirqs: procfs::parse_softirqs(&read_proc(Path::new("/proc/softirqs"))?)?,
            samples,
        })
    }

    fn figures(&self, after: &HostSnapshot) -> HostFigures {
        let secs = after.at.duration_since(self.at).as_secs_f64().max(1e-3);
        let share = procfs::cpu_share(&self.stat.cpu, &after.stat.cpu);
        let per_sec = |a: u64, b: u64| a.saturating_sub(b) as f64 / secs;
        let net_rx = procfs::table_delta(&self.softirqs, &after.softirqs).get("NET_RX").copied().unwrap_or(0);
        let before: BTreeMap<(String, String), u64> = self
            .samples
            .iter()
            .filter(|s| s.kind.is_cumulative())
            .map(|s| ((s.source.as_str().to_string(), s.counter.to_string()), s.value))
            .collect();
        let mut telemetry_per_sec = BTreeMap::new();
        let mut threads = BTreeMap::new();
        let (mut victim_cpu_pct, mut victim_ctxt) = (0.0, 0.0);
        for s in after.samples.iter().filter(|s| s.kind.is_cumulative()) {
            let key = (s.source.as_str().to_string(), s.counter.to_string());
            let Some(&b) = before.get(&key) else { continue };
            let rate = per_sec(s.value, b);
            if key.0 == "process" {
                if s.counter == "cpu_ns" {
                    victim_cpu_pct = rate / 1e7;
                } else if let Some(t) = s.counter.strip_prefix("thread.").and_then(|c| c.strip_suffix(".cpu_ns")) {
                    threads.insert(t.to_string(), rate / 1e7);
                } else if s.counter.starts_with("ctxt_") {
                    victim_ctxt += rate;
                }
                continue;
            }
            telemetry_per_sec.insert(format!("{}.{}", key.0, key.1), rate);
        }
        HostFigures {
            secs,
            busy_pct: share.busy_pct,
            user_pct: share.user_pct,
            system_pct: share.system_pct,
            irq_pct: share.irq_pct,
            softirq_pct: share.softirq_pct,
            ctxt_per_sec: per_sec(after.stat.ctxt, self.stat.ctxt),
            intr_per_sec: per_sec(after.stat.intr, self.stat.intr),
            net_rx_per_sec: net_rx as f64 / secs,
            victim_cpu_pct,
            victim_threads_pct: threads,
            victim_ctxt_per_sec: victim_ctxt,
            telemetry_per_sec,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lab state with no victims: every cell fails at once with "no victim", nothing is touched.
    fn empty_lab() -> LabState {
        LabState::new(&lab::LabSpec::default())
    }

    fn opts() -> RunOptions {
        RunOptions {
            host_tool: PathBuf::from("/nonexistent/vmguard"),
            victim_tool: "/nonexistent/vmguard".into(),
            webapp_subcommand: vec!["webapp".into()],
            web_threads: 1,
            web_users: 1,
        }
    }

    fn spec() -> MatrixSpec {
        MatrixSpec {
            victims: vec![VictimKind::Vanilla, VictimKind::Container, VictimKind::Xen],
            ..MatrixSpec::quick(lab::Rate::Unlimited)
        }
    }

    #[test]
    fn without_stop_every_cell_is_recorded() {
        let stop = AtomicBool::new(false);
        let cells = spec().cells();
        let records = run_matrix(&empty_lab(), &spec(), &opts(), &stop, &mut |_| {});
        assert_eq!(records.len(), cells.len());
        assert!(records.iter().all(|r| !r.ok));
        let van = records.iter().find(|r| r.cell.victim == VictimKind::Vanilla).unwrap();
        assert!(van.error.as_deref().unwrap().contains("the lab has no vanilla victim"), "{:?}", van.error);
        let xen = records.iter().find(|r| r.cell.victim == VictimKind::Xen).unwrap();
        assert!(xen.error.as_deref().unwrap().contains("the lab has no xen victim"), "{:?}", xen.error);
    }

    #[test]
    fn a_set_stop_flag_starts_nothing() {
        let stop = AtomicBool::new(true);
        let mut started = 0;
        let records = run_matrix(&empty_lab(), &spec(), &opts(), &stop, &mut |e| {
            if let Event::Started(_) = e {
                started += 1;
            }
        });
        assert!(records.is_empty());
        assert_eq!(started, 0);
    }

    #[test]
    fn stopping_mid_run_ends_after_the_running_cell() {
        let stop = AtomicBool::new(false);
        let (mut started, mut notes) = (0, Vec::new());
        let records = run_matrix(&empty_lab(), &spec(), &opts(), &stop, &mut |e| match e {
            Event::Started(_) => {
                started += 1;
                // Ctrl-C while the third cell runs.
                if started == 3 {
                    stop.store(true, Ordering::SeqCst);
                }
            }
            Event::Done(..) => {}
            Event::Note(n) => notes.push(n),
        });
        assert_eq!((started, records.len()), (3, 3));
        // A cell that failed keeps its own error (one that succeeded would read "interrupted").
        assert!(records[2].error.as_deref().unwrap().contains("no vanilla victim"), "{:?}", records[2].error);
        let total = spec().cells().len();
        assert!(notes.last().unwrap().contains(&format!("3 of {total} cells ran")), "{notes:?}");
    }

    #[test]
    fn stop_while_calls_on_stop_promptly_and_only_when_stopped() {
        let stop = AtomicBool::new(false);
        let called = AtomicBool::new(false);
        let r = stop_while(&stop, || called.store(true, Ordering::SeqCst), || 7);
        assert_eq!(r, 7);
        assert!(!called.load(Ordering::SeqCst));
        let t0 = Instant::now();
        stop_while(
            &stop,
            || called.store(true, Ordering::SeqCst),
            || {
                stop.store(true, Ordering::SeqCst);
                // The work goes on (a benchmark inside a victim); the flood is stopped meanwhile.
                while !called.load(Ordering::SeqCst) {
                    assert!(t0.elapsed() < Duration::from_secs(5), "on_stop was not called");
                    std::thread::sleep(Duration::from_millis(5));
                }
            },
        );
        assert!(called.load(Ordering::SeqCst));
    }

    #[test]
    fn silence_on_the_guest_channel_is_recognized_through_setup() {
        let silent = || BenchError::InVictim {
            victim: "qemu".into(),
            script: "true".into(),
            source: Box::new(lab::LabError::GuestChannel {
                socket: "/x/ctl.sock".into(),
                source: lab::GuestChannelError::Silent {
                    timeout: Duration::from_secs(1),
                    source: std::io::ErrorKind::WouldBlock.into(),
                },
            }),
        };
        assert!(silent().is_guest_channel_silent());
        let setup = BenchError::Setup { victim: "qemu".into(), what: "x", source: Arc::new(silent()) };
        assert!(setup.is_guest_channel_silent());
        let closed = BenchError::InVictim {
            victim: "qemu".into(),
            script: "true".into(),
            source: Box::new(lab::LabError::GuestChannel {
                socket: "/x/ctl.sock".into(),
                source: lab::GuestChannelError::Closed,
            }),
        };
        assert!(!closed.is_guest_channel_silent());
        // Worth a second run: a silent channel, iperf3's own failure. Not: a failed setup (kept for
        // every later cell, it would fail again at once), a closed channel, output that is no JSON.
        assert!(silent().worth_another_run());
        assert!(!setup.worth_another_run());
        assert!(!closed.worth_another_run());
        let lost = parse::iperf::IperfError::Reported("control socket has closed unexpectedly".into());
        assert!(BenchError::from(lost).worth_another_run());
        let garbage = parse::iperf::parse("not json").unwrap_err();
        assert!(!BenchError::from(garbage).worth_another_run());
        // The message still says what failed, and the cause is kept.
        let e = silent();
        assert!(e.to_string().contains("guest command channel /x/ctl.sock: no answer"), "{e}");
        assert!(std::error::Error::source(&e).is_some());
    }
}
