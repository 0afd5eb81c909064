//! The kernel's process and CPU accounting in `/proc`: the one set of parsers for it, pure functions of
//! the text ([`parse_stat`] for `/proc/stat` with [`cpu_share`], [`parse_softirqs`] for
//! `/proc/softirqs`, [`parse_pid_stat`], [`parse_status_ctxt`], [`parse_status_name`] and
//! [`parse_schedstat`] for a process's or thread's files), and the [`ProcessCpu`] source on top.
//!
//! [`ProcessCpu`] watches a guest's host process (qemu, container init, server): CPU time per thread and
//! context switches.
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

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::cgroup::USER_HZ;
use crate::file::KeptFile;
use crate::sample::{Emit, Kind, Name, NameCache, Sample, SourceId};
use crate::{ParseError, Source, TelemetryError};

const NS_PER_TICK: u64 = 1_000_000_000 / USER_HZ;

/// CPU time of one `cpu` line of `/proc/stat`, in USER_HZ ticks; columns an older kernel does not print
/// are 0. `guest` and `guest_nice` are already counted in `user` and `nice`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CpuTimes {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
    pub guest: u64,
    pub guest_nice: u64,
}

impl CpuTimes {
    /// All CPU time (without `guest` and `guest_nice`, which `user` and `nice` hold already).
    pub fn total(&self) -> u64 {
        [self.user, self.nice, self.system, self.idle, self.iowait, self.irq, self.softirq, self.steal]
            .iter()
            .fold(0u64, |a, &b| a.saturating_add(b))
    }

    /// The numbers after `cpu` / `cpuN`: at least user, nice, system and idle.
    fn parse(values: &str, line: &str, text: &str) -> Result<CpuTimes, ParseError> {
        let mut v = [0u64; 10];
        let mut n = 0;
        for w in values.split_ascii_whitespace().take(v.len()) {
            v[n] = w.parse().map_err(|_| ParseError::new(STAT, format!("`{w}` in `{line}` is not a count"), text))?;
            n += 1;
        }
        if n < 4 {
            return Err(ParseError::new(STAT, format!("`{line}` has {n} numbers, expected at least 4"), text));
        }
        let [user, nice, system, idle, iowait, irq, softirq, steal, guest, guest_nice] = v;
        Ok(CpuTimes { user, nice, system, idle, iowait, irq, softirq, steal, guest, guest_nice })
    }
}

/// What vmguard uses of `/proc/stat`: CPU time of the whole host and of each CPU, and the global
/// counters since boot. A kernel always prints `ctxt`, `intr` and `softirq`; a text without them reads 0.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcStat {
    /// The aggregate `cpu` line: all CPUs summed.
    pub cpu: CpuTimes,
    /// The `cpuN` lines in the order the kernel prints them (online CPUs only).
    pub cpus: Vec<CpuTimes>,
    /// Context switches.
    pub ctxt: u64,
    /// Interrupts serviced (first field of `intr`).
    pub intr: u64,
    /// Softirqs run (first field of `softirq`).
    pub softirqs: u64,
}

const STAT: &str = "/proc/stat";

/// Parse `/proc/stat`. The aggregate `cpu` line must be there; a `cpu` line with fewer than 4 numbers
/// or a word that is not a count is an error.
pub fn parse_stat(text: &str) -> Result<ProcStat, ParseError> {
    let mut cpu = None;
    let mut stat = ProcStat::default();
    let first = |rest: &str| rest.split_ascii_whitespace().next().and_then(|w| w.parse().ok()).unwrap_or(0);
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(|c: char| c.is_ascii_whitespace()) else { continue };
        match key {
            "cpu" => cpu = Some(CpuTimes::parse(rest, line, text)?),
            "ctxt" => stat.ctxt = first(rest),
            "intr" => stat.intr = first(rest),
            "softirq" => stat.softirqs = first(rest),
            k if k.len() > 3 && k.starts_with("cpu") && k[3..].bytes().all(|b| b.is_ascii_digit()) => {
                stat.cpus.push(CpuTimes::parse(rest, line, text)?)
            }
            _ => {}
        }
    }
    stat.cpu = cpu.ok_or_else(|| ParseError::new(STAT, "no aggregate `cpu ` line", text))?;
    Ok(stat)
}

/// Shares of CPU time between two `/proc/stat` readings, in percent of all CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CpuShare {
    /// Everything but idle and iowait.
    pub busy_pct: f64,
    /// user + nice.
    pub user_pct: f64,
    pub system_pct: f64,
    pub irq_pct: f64,
    pub softirq_pct: f64,
    pub steal_pct: f64,
}

/// CPU shares of all CPUs between two readings (`after` later than `before`). Columns that went
/// backwards count as zero; no time passed gives all zeros.
pub fn cpu_share(before: &CpuTimes, after: &CpuTimes) -> CpuShare {
    let total = after.total().saturating_sub(before.total());
    if total == 0 {
        return CpuShare::default();
    }
    let pct = |a: u64, b: u64| (100.0 * a.saturating_sub(b) as f64 / total as f64).min(100.0);
    let idle = pct(after.idle.saturating_add(after.iowait), before.idle.saturating_add(before.iowait));
    CpuShare {
        busy_pct: (100.0 - idle).max(0.0),
        user_pct: pct(after.user.saturating_add(after.nice), before.user.saturating_add(before.nice)),
        system_pct: pct(after.system, before.system),
        irq_pct: pct(after.irq, before.irq),
        softirq_pct: pct(after.softirq, before.softirq),
        steal_pct: pct(after.steal, before.steal),
    }
}

/// Per-CPU counters summed over the CPUs, by row name: `NET_RX` → count.
pub type CounterTable = BTreeMap<String, u64>;

/// Parse `/proc/softirqs` (`NET_RX`, `TIMER`, ... summed over CPUs).
pub fn parse_softirqs(text: &str) -> Result<CounterTable, ParseError> {
    const TOOL: &str = "/proc/softirqs";
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let cpus = header.split_ascii_whitespace().filter(|w| w.starts_with("CPU")).count();
    if cpus == 0 {
        return Err(ParseError::new(TOOL, "no `CPU0 CPU1 ...` header", text));
    }
    let mut table = CounterTable::new();
    for line in lines {
        let Some((name, rest)) = line.split_once(':') else { continue };
        let name = name.trim();
        if name.is_empty() {
            continue;
        }
        let total = rest
            .split_ascii_whitespace()
            .take(cpus)
            .map_while(|w| w.parse::<u64>().ok())
            .fold(0u64, |a, b| a.saturating_add(b));
        table.insert(name.to_string(), total);
    }
    if table.is_empty() {
        return Err(ParseError::new(TOOL, "no `NAME: count ...` rows", text));
    }
    Ok(table)
}

/// Row-wise `after - before` (a row missing before counts from 0; a decrease gives 0).
pub fn table_delta(before: &CounterTable, after: &CounterTable) -> CounterTable {
    after.iter().map(|(k, v)| (k.clone(), v.saturating_sub(before.get(k).copied().unwrap_or(0)))).collect()
}

/// What vmguard uses of a `/proc/PID/stat` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PidStat<'a> {
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
pub fn parse_pid_stat(text: &str) -> Option<PidStat<'_>> {
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
    Some(PidStat { comm, state, utime, stime, num_threads })
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
        let process = parse_pid_stat(&self.stat)
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
                match parse_pid_stat(&self.stat) {
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
        let s = parse_pid_stat(VCPU).unwrap();
        assert_eq!((s.comm, s.state, s.utime, s.stime, s.num_threads), ("CPU 0/KVM", 'R', 1000, 400, 7));
        let s = parse_pid_stat("1 (a) b) (c) S 0 0 0 0 0 0 0 0 0 0 5 6 0 0 0 0 3").unwrap();
        assert_eq!((s.comm, s.utime, s.stime, s.num_threads), ("a) b) (c", 5, 6, 3));
        assert_eq!(parse_pid_stat("garbage"), None);
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
            parse_pid_stat(STAT).map(|s| (s.utime + s.stime, s.num_threads)),
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

    const PROC_STAT: &str = include_str!("../tests/fixtures/proc-stat.txt");
    const SOFTIRQS: &str = include_str!("../tests/fixtures/proc-softirqs.txt");

    #[test]
    fn proc_stat_of_a_real_host() {
        let s = parse_stat(PROC_STAT).unwrap();
        let c = s.cpu;
        assert_eq!((c.user, c.system, c.idle, c.iowait, c.softirq, c.steal), (243887, 56939, 121766, 3923, 21018, 875));
        assert_eq!(s.cpus.len(), 2);
        assert_eq!(s.cpus[1].system, 35404);
        assert_eq!((s.ctxt, s.intr, s.softirqs), (3493059, 4509833, 93013013));
        let t = parse_softirqs(SOFTIRQS).unwrap();
        assert_eq!(t["NET_RX"], 29034277 + 61152437);
        assert_eq!(t.len(), 10);
    }

    #[test]
    fn proc_stat_errors_say_what_is_wrong() {
        assert!(parse_stat("").unwrap_err().to_string().contains("/proc/stat"));
        assert!(parse_stat("cpu  1 2").unwrap_err().to_string().contains("at least 4"));
        assert!(parse_stat("cpu  1 2 3 4\ncpu0 1 x 3 4\n").unwrap_err().to_string().contains("`x`"));
        // A 2.4-era line of 4 columns and nothing else.
        let old = parse_stat("cpu 1 2 3 4\n").unwrap();
        assert_eq!((old.cpu.idle, old.cpu.softirq, old.ctxt), (4, 0, 0));
        assert!(parse_softirqs("hello").unwrap_err().to_string().contains("header"));
        assert!(parse_softirqs("   CPU0\n").unwrap_err().to_string().contains("rows"));
    }

    #[test]
    fn shares_and_deltas() {
        let a = CpuTimes { user: 100, idle: 100, ..Default::default() };
        let b = CpuTimes { user: 150, idle: 120, softirq: 30, ..Default::default() };
        let c = cpu_share(&a, &b);
        assert_eq!((c.busy_pct, c.user_pct, c.softirq_pct), (80.0, 50.0, 30.0));
        assert_eq!(cpu_share(&b, &a), CpuShare::default());
        assert_eq!(cpu_share(&a, &a), CpuShare::default());
        let before: CounterTable = [("NET_RX".to_string(), 5)].into();
        let after: CounterTable = [("NET_RX".to_string(), 9), ("X".to_string(), 2)].into();
        assert_eq!(table_delta(&before, &after), [("NET_RX".to_string(), 4), ("X".to_string(), 2)].into());
        assert_eq!(table_delta(&after, &before)["NET_RX"], 0);
    }

    fn cpu_times() -> impl Strategy<Value = CpuTimes> {
        proptest::array::uniform10(0u64..1 << 40).prop_map(
            |[user, nice, system, idle, iowait, irq, softirq, steal, guest, guest_nice]| CpuTimes {
                user,
                nice,
                system,
                idle,
                iowait,
                irq,
                softirq,
                steal,
                guest,
                guest_nice,
            },
        )
    }

    /// `/proc/stat` as the kernel prints it.
    fn render(s: &ProcStat) -> String {
        let line = |name: &str, c: &CpuTimes| {
            let v = [c.user, c.nice, c.system, c.idle, c.iowait, c.irq, c.softirq, c.steal, c.guest, c.guest_nice];
            format!("{name} {}\n", v.map(|x| x.to_string()).join(" "))
        };
        let mut t = line("cpu ", &s.cpu);
        for (i, c) in s.cpus.iter().enumerate() {
            t += &line(&format!("cpu{i}"), c);
        }
        t += &format!("intr {} 0 0 1 2\nctxt {}\nbtime 1764000000\nprocesses 5000\n", s.intr, s.ctxt);
        t += &format!("procs_running 2\nprocs_blocked 0\nsoftirq {} 0 1 2 3\n", s.softirqs);
        t
    }

    proptest! {
        #[test]
        fn proc_stat_round_trips(
            cpu in cpu_times(),
            cpus in proptest::collection::vec(cpu_times(), 0..5),
            ctxt: u64,
            intr: u64,
            softirqs: u64,
        ) {
            let s = ProcStat { cpu, cpus, ctxt, intr, softirqs };
            prop_assert_eq!(parse_stat(&render(&s)).unwrap(), s);
        }

        #[test]
        fn shares_are_percentages(a in cpu_times(), d in cpu_times()) {
            let b = CpuTimes {
                user: a.user + d.user,
                nice: a.nice + d.nice,
                system: a.system + d.system,
                idle: a.idle + d.idle,
                iowait: a.iowait + d.iowait,
                irq: a.irq + d.irq,
                softirq: a.softirq + d.softirq,
                steal: a.steal + d.steal,
                guest: a.guest + d.guest,
                guest_nice: a.guest_nice + d.guest_nice,
            };
            let c = cpu_share(&a, &b);
            for p in [c.busy_pct, c.user_pct, c.system_pct, c.irq_pct, c.softirq_pct, c.steal_pct] {
                prop_assert!((0.0..=100.0).contains(&p), "{c:?}");
            }
            let parts = c.user_pct + c.system_pct + c.irq_pct + c.softirq_pct + c.steal_pct;
            prop_assert!(parts <= c.busy_pct + 1e-6, "{c:?}");
        }

        #[test]
        fn host_parsers_never_panic(text in "(?s).{0,600}", cut in 0usize..2500, junk in ".{0,20}") {
            let _ = parse_stat(&text);
            let _ = parse_softirqs(&text);
            for real in [PROC_STAT, SOFTIRQS] {
                let mut t: String = real.chars().take(cut).collect();
                t.push_str(&junk);
                let _ = parse_stat(&t);
                let _ = parse_softirqs(&t);
            }
        }

        #[test]
        fn huge_softirq_counts_do_not_overflow(a: u64, b: u64) {
            let t = parse_softirqs(&format!("   CPU0 CPU1\nNET_RX: {a} {b}\n")).unwrap();
            prop_assert_eq!(t["NET_RX"], a.saturating_add(b));
        }
    }

    proptest! {
        #[test]
        fn never_panics(text in "\\PC*") {
            let _ = parse_pid_stat(&text);
            let _ = parse_status_ctxt(&text);
            let _ = parse_schedstat(&text);
            let _ = parse_status_name(&text);
        }
    }
}
