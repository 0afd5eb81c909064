//! A guest's host process (qemu, container init, server): CPU time per thread and context switches.
//!
//! Samples every round: `cpu_ns` (whole process, live and exited threads, from `/proc/PID/stat`),
//! `threads` (gauge), and from each live thread's `schedstat` (nanosecond CPU time kept by the scheduler):
//! `run_delay_ns` (time spent runnable but waiting for a CPU, summed over threads), `timeslices` (times a
//! thread was put on a CPU, summed), and per thread name `thread.<comm>.cpu_ns` (threads of the same name
//! summed: qemu's `CPU 0/KVM` or `CPU 0/TCG`, `IO mon_iothread`, `worker`, ...).
//!
//! At most every [`ProcessCpu::detail_interval`] (default 5 s; always on the first round) also
//! `ctxt_voluntary` and `ctxt_nonvoluntary`
//! (summed over live threads) from the threads' `status` files, and the thread names are re-read: a
//! `status` file costs the kernel ~7 µs to generate against ~1 µs for `schedstat`, so reading it every
//! second for every thread would be most of the collector's cost. Kernels without `schedstat`
//! (CONFIG_SCHED_INFO unset) fall back to each thread's `stat` (10 ms ticks) for `thread.*.cpu_ns`.

use std::path::PathBuf;
use std::sync::Arc;

use crate::cgroup::USER_HZ;
use crate::file::KeptFile;
use crate::sample::{Emit, Kind, Name, NameCache, Sample, SourceId};
use crate::{Source, TelemetryError};

const NS_PER_TICK: u64 = 1_000_000_000 / USER_HZ;

/// What vmguard uses of a `/proc/*/stat` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat<'a> {
    /// The command (thread) name, between the first `(` and the last `)`.
    pub comm: &'a str,
    pub state: char,
    /// User and system time in USER_HZ ticks.
    pub utime: u64,
    pub stime: u64,
    pub num_threads: u64,
}

/// Parse `/proc/PID/stat` or `/proc/PID/task/TID/stat`. The name may hold spaces and parentheses, so
/// the fields are counted from the last `)`. Allocation-free.
pub fn parse_stat(text: &str) -> Option<ProcStat<'_>> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    if close < open {
        return None;
    }
    let comm = &text[open + 1..close];
    let mut f = text[close + 1..].split_ascii_whitespace();
    // Fields after the name, counted from 3 (state) as in proc(5).
    let state = f.next()?.chars().next()?;
    let mut f = f.skip(10); // 4..=13
    let utime = f.next()?.parse().ok()?; // 14
    let stime = f.next()?.parse().ok()?; // 15
    let mut f = f.skip(4); // 16..=19
    let num_threads = f.next()?.parse().ok()?; // 20
    Some(ProcStat { comm, state, utime, stime, num_threads })
}

/// `(voluntary_ctxt_switches, nonvoluntary_ctxt_switches)` of a `/proc/*/status` text.
pub fn parse_status_ctxt(text: &str) -> (Option<u64>, Option<u64>) {
    let (mut vol, mut nonvol) = (None, None);
    // Both lines are near the end: start at the first of them instead of walking every line.
    let start = text.find("voluntary_ctxt_switches:").map_or(0, |i| text[..i].rfind('\n').map_or(0, |j| j + 1));
    for line in text[start..].lines() {
        if let Some(v) = line.strip_prefix("voluntary_ctxt_switches:") {
            vol = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("nonvoluntary_ctxt_switches:") {
            nonvol = v.trim().parse().ok();
        }
    }
    (vol, nonvol)
}

/// The `Name:` of a `/proc/*/status` text (the thread's comm), with the kernel's escapes of `\\` and
/// newline undone.
pub fn parse_status_name(text: &str) -> Option<String> {
    let line = text.lines().find_map(|l| l.strip_prefix("Name:"))?;
    let raw = line.strip_prefix('\t').unwrap_or(line);
    if !raw.contains('\\') {
        return Some(raw.to_string());
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match (c, chars.clone().next()) {
            ('\\', Some('n')) => {
                out.push('\n');
                chars.next();
            }
            ('\\', Some('\\')) => {
                out.push('\\');
                chars.next();
            }
            (c, _) => out.push(c),
        }
    }
    Some(out)
}

/// A thread's `/proc/*/task/*/schedstat`: (CPU time ns, run-queue wait ns, timeslices).
pub fn parse_schedstat(text: &str) -> Option<(u64, u64, u64)> {
    let mut f = text.split_ascii_whitespace();
    Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?, f.next()?.parse().ok()?))
}

/// Per-thread-name CPU and the process totals of one round.
#[derive(Debug, Default)]
pub(crate) struct ThreadTotals {
    /// (thread name, its shared counter name `thread.<name>.cpu_ns`, CPU ns this round).
    by_name: Vec<(String, Name, u64)>,
    run_delay: u64,
    slices: u64,
    /// Context switches, when this round read them.
    ctxt: Option<(u64, u64)>,
}

impl ThreadTotals {
    fn clear(&mut self) {
        // Keep the names: thread names rarely change between rounds.
        for (_, _, v) in &mut self.by_name {
            *v = 0;
        }
        self.run_delay = 0;
        self.slices = 0;
        self.ctxt = None;
    }

    /// One live thread: its name and CPU time, and what this round read of its scheduler figures
    /// (`(run delay ns, timeslices)`) and context switches.
    pub(crate) fn add_thread(&mut self, comm: &str, cpu_ns: u64, sched: Option<(u64, u64)>, ctxt: Option<(u64, u64)>) {
        match self.by_name.iter_mut().find(|(n, _, _)| n == comm) {
            Some((_, _, v)) => *v += cpu_ns,
            None => self.by_name.push((comm.to_string(), Name::from(format!("thread.{comm}.cpu_ns")), cpu_ns)),
        }
        if let Some((delay, slices)) = sched {
            self.run_delay += delay;
            self.slices += slices;
        }
        if let Some((vol, nonvol)) = ctxt {
            let (v, n) = self.ctxt.get_or_insert((0, 0));
            *v += vol;
            *n += nonvol;
        }
    }

    /// `process`: (utime + stime ticks, thread count) of the whole process; `sched`: whether the
    /// scheduler figures were read.
    pub(crate) fn emit(&self, process: Option<(u64, u64)>, sched: bool, emit: &mut Emit<'_>) {
        if let Some((ticks, threads)) = process {
            emit.push("cpu_ns", ticks.saturating_mul(NS_PER_TICK), Kind::Counter);
            emit.push("threads", threads, Kind::Gauge);
        }
        if sched {
            emit.push("run_delay_ns", self.run_delay, Kind::Counter);
            emit.push("timeslices", self.slices, Kind::Counter);
        }
        for (_, counter, ns) in &self.by_name {
            emit.push_name(counter.clone(), *ns, Kind::Counter);
        }
        // Last, so the rounds without them do not shift the positions of the names before.
        if let Some((vol, nonvol)) = self.ctxt {
            emit.push("ctxt_voluntary", vol, Kind::Counter);
            emit.push("ctxt_nonvoluntary", nonvol, Kind::Counter);
        }
    }
}

/// The kept-open files of one thread.
struct ThreadFiles {
    tid: u32,
    comm: String,
    schedstat: KeptFile,
    stat: KeptFile,
    status: KeptFile,
}

/// CPU time and context switches of one host process and its threads.
///
/// The thread list is re-read only when the process's thread count changes or a thread's files fail;
/// every file stays open between rounds.
pub struct ProcessCpu {
    guest: Arc<str>,
    dir: PathBuf,
    process: KeptFile,
    threads: Vec<ThreadFiles>,
    totals: ThreadTotals,
    stat: String,
    status: String,
    names: NameCache,
    detail_interval_ns: i64,
    /// Time of the last round that read the details.
    last_detail_ns: Option<i64>,
    /// `schedstat` files exist (else each thread's `stat` is read every round).
    schedstat: bool,
}

impl ProcessCpu {
    pub fn new(guest: &str, pid: u32) -> Self {
        Self::from_dir(guest, format!("/proc/{pid}"))
    }

    /// Read another directory of the same layout (`stat`, `task/*/{stat,status,schedstat}`).
    pub fn from_dir(guest: &str, dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        ProcessCpu {
            guest: guest.into(),
            process: KeptFile::new(dir.join("stat")),
            dir,
            threads: Vec::new(),
            totals: ThreadTotals::default(),
            stat: String::with_capacity(512),
            status: String::with_capacity(2048),
            names: NameCache::new(),
            detail_interval_ns: 5_000_000_000,
            last_detail_ns: None,
            schedstat: true,
        }
    }

    /// Read context switches and thread names when at least `interval` has passed since they were
    /// last read (zero: every round). Time-based, so a caller sampling rarely always gets them.
    pub fn detail_interval(mut self, interval: std::time::Duration) -> Self {
        self.detail_interval_ns = i64::try_from(interval.as_nanos()).unwrap_or(i64::MAX);
        self
    }

    fn rescan(&mut self) -> Result<(), TelemetryError> {
        let task_dir = self.dir.join("task");
        let entries = std::fs::read_dir(&task_dir).map_err(|e| TelemetryError::read(&task_dir, e))?;
        let mut tids: Vec<u32> = entries.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect();
        tids.sort_unstable();
        self.threads.retain(|t| tids.binary_search(&t.tid).is_ok());
        for tid in tids {
            if !self.threads.iter().any(|t| t.tid == tid) {
                let d = task_dir.join(tid.to_string());
                let mut status = KeptFile::new(d.join("status"));
                // A thread that is already gone is dropped at its first read.
                let comm = match status.read(&mut self.status) {
                    Ok(()) => parse_status_name(&self.status).unwrap_or_default(),
                    Err(_) => String::new(),
                };
                self.threads.push(ThreadFiles {
                    tid,
                    comm,
                    schedstat: KeptFile::new(d.join("schedstat")),
                    stat: KeptFile::new(d.join("stat")),
                    status,
                });
            }
        }
        Ok(())
    }
}

impl Source for ProcessCpu {
    fn id(&self) -> SourceId {
        SourceId::Process
    }

    fn guest(&self) -> &str {
        &self.guest
    }

    fn sample(&mut self, time_ns: i64, out: &mut Vec<Sample>) -> Result<(), TelemetryError> {
        self.process.read(&mut self.stat)?;
        let process = parse_stat(&self.stat)
            .map(|st| (st.utime + st.stime, st.num_threads))
            .ok_or_else(|| TelemetryError::parse(self.process.path().display().to_string(), "unexpected format"))?;
        if self.threads.len() as u64 != process.1 {
            self.rescan()?;
        }
        let detail = self.last_detail_ns.is_none_or(|last| time_ns.saturating_sub(last) >= self.detail_interval_ns);
        if detail {
            self.last_detail_ns = Some(time_ns);
        }
        self.totals.clear();
        let mut gone = false;
        for t in &mut self.threads {
            // A thread may exit at any time: skip it this round, list the threads again next round.
            let mut sched = None;
            let cpu_ns = if self.schedstat && t.schedstat.read(&mut self.stat).is_ok() {
                match parse_schedstat(&self.stat) {
                    Some((run, delay, slices)) => {
                        sched = Some((delay, slices));
                        run
                    }
                    None => {
                        gone = true;
                        continue;
                    }
                }
            } else {
                if t.stat.read(&mut self.stat).is_err() {
                    gone = true;
                    continue;
                }
                if self.schedstat && !t.schedstat.path().exists() {
                    // No schedstat on this kernel (the thread's stat is still there): stat from now on.
                    self.schedstat = false;
                }
                match parse_stat(&self.stat) {
                    Some(st) => (st.utime + st.stime).saturating_mul(NS_PER_TICK),
                    None => continue,
                }
            };
            let mut ctxt = None;
            if detail && t.status.read(&mut self.status).is_ok() {
                if let (Some(v), Some(n)) = parse_status_ctxt(&self.status) {
                    ctxt = Some((v, n));
                }
                // Threads are named after they start: pick up a rename.
                if let Some(name) = parse_status_name(&self.status)
                    && name != t.comm
                {
                    t.comm = name;
                }
            }
            self.totals.add_thread(&t.comm, cpu_ns, sched, ctxt);
        }
        if gone {
            self.threads.clear();
        }
        let mut emit = Emit::new(out, &self.guest, SourceId::Process, time_ns).with_names(&mut self.names);
        self.totals.emit(Some(process), self.schedstat, &mut emit);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const STAT: &str = "4242 (qemu-system-x86) S 1 4242 4242 0 -1 4194624 12080 0 0 0 1234 567 0 0 20 0 7 0 98765 1350000000 45000 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0";
    const VCPU: &str = "4250 (CPU 0/KVM) R 1 4242 4242 0 -1 4194368 3 0 0 0 1000 400 0 0 20 0 7 0 98770 1350000000 45000 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 0 0 0 0 0 0";

    #[test]
    fn stat_with_spaces_in_the_name() {
        let s = parse_stat(VCPU).unwrap();
        assert_eq!((s.comm, s.state, s.utime, s.stime, s.num_threads), ("CPU 0/KVM", 'R', 1000, 400, 7));
        let s = parse_stat("1 (a) b) (c) S 0 0 0 0 0 0 0 0 0 0 5 6 0 0 0 0 3").unwrap();
        assert_eq!((s.comm, s.utime, s.stime, s.num_threads), ("a) b) (c", 5, 6, 3));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn status_ctxt() {
        let status = "Name:\tqemu\nvoluntary_ctxt_switches:\t150\nnonvoluntary_ctxt_switches:\t7\n";
        assert_eq!(parse_status_ctxt(status), (Some(150), Some(7)));
        assert_eq!(parse_status_name(status).as_deref(), Some("qemu"));
        assert_eq!(parse_status_name("Name:\tCPU 0/KVM\n").as_deref(), Some("CPU 0/KVM"));
        assert_eq!(parse_status_name("Name:\ta\\\\b\\nc\n").as_deref(), Some("a\\b\nc"));
        assert_eq!(parse_status_name("Umask:\t0022\n"), None);
    }

    #[test]
    fn threads_summed_by_name() {
        let mut t = ThreadTotals::default();
        let status = "Name:\tx\nvoluntary_ctxt_switches:\t10\nnonvoluntary_ctxt_switches:\t2\n";
        let ctxt = match parse_status_ctxt(status) {
            (Some(v), Some(n)) => Some((v, n)),
            _ => None,
        };
        let (run, delay, slices) = parse_schedstat("14000000000 50000 7\n").unwrap();
        t.add_thread("qemu-system-x86", 1801 * 10_000_000, Some((delay, slices)), ctxt);
        t.add_thread("CPU 0/KVM", run, Some((delay, slices)), ctxt);
        t.add_thread("CPU 0/KVM", run, Some((delay, slices)), ctxt);
        let guest: Arc<str> = "vm".into();
        let mut out = Vec::new();
        t.emit(
            parse_stat(STAT).map(|s| (s.utime + s.stime, s.num_threads)),
            true,
            &mut Emit::new(&mut out, &guest, SourceId::Process, 0),
        );
        let get = |n: &str| out.iter().find(|s| s.counter == n).map(|s| s.value);
        assert_eq!(get("cpu_ns"), Some(1801 * 10_000_000));
        assert_eq!(get("threads"), Some(7));
        assert_eq!(get("ctxt_voluntary"), Some(30));
        assert_eq!(get("ctxt_nonvoluntary"), Some(6));
        assert_eq!(get("run_delay_ns"), Some(150000));
        assert_eq!(get("timeslices"), Some(21));
        assert_eq!(get("thread.CPU 0/KVM.cpu_ns"), Some(28_000_000_000));
        assert_eq!(get("thread.qemu-system-x86.cpu_ns"), Some(1801 * 10_000_000));
        // A round without context switches leaves them out, at the end.
        t.clear();
        t.add_thread("CPU 0/KVM", run, None, None);
        out.clear();
        t.emit(None, false, &mut Emit::new(&mut out, &guest, SourceId::Process, 0));
        assert_eq!(out.len(), 2);
        assert_eq!(out.last().unwrap().counter, "thread.CPU 0/KVM.cpu_ns");
    }

    #[test]
    fn reads_our_own_process() {
        let mut out = Vec::new();
        let mut p = ProcessCpu::new("self", std::process::id()).detail_interval(std::time::Duration::from_nanos(2));
        p.sample(5, &mut out).unwrap();
        assert!(out.iter().any(|s| s.counter == "cpu_ns"));
        assert!(out.iter().any(|s| s.counter.starts_with("thread.")));
        assert!(out.iter().any(|s| s.counter == "ctxt_voluntary"), "first round reads the details");
        out.clear();
        p.sample(6, &mut out).unwrap();
        assert!(!out.iter().any(|s| s.counter == "ctxt_voluntary"), "a round 1 ns later does not");
        out.clear();
        p.sample(7, &mut out).unwrap();
        assert!(out.iter().any(|s| s.counter == "ctxt_voluntary"), "a round 2 ns after the last detail does");
        assert!(out.iter().any(|s| s.counter == "run_delay_ns"));
        let err = ProcessCpu::new("gone", u32::MAX).sample(5, &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("cannot read /proc/"), "{err}");
    }

    proptest! {
        #[test]
        fn never_panics(text in "\\PC*") {
            let _ = parse_stat(&text);
            let _ = parse_status_ctxt(&text);
            let _ = parse_schedstat(&text);
            let _ = parse_status_name(&text);
        }
    }
}
