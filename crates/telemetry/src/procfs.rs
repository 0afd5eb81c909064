//! A guest's host process (qemu, container init, server): CPU time per thread and context switches.
//!
//! Samples: `cpu_ns` (whole process, live and exited threads), `threads` (gauge), `ctxt_voluntary` and
//! `ctxt_nonvoluntary` (summed over live threads), and per thread name `thread.<comm>.cpu_ns` (threads
//! of the same name summed: qemu's `CPU 0/KVM` or `CPU 0/TCG`, `IO mon_iothread`, `worker`, ...).

use std::path::PathBuf;
use std::sync::Arc;

use crate::cgroup::USER_HZ;
use crate::file::KeptFile;
use crate::sample::{Emit, Kind, Sample, SourceId};
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
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("voluntary_ctxt_switches:") {
            vol = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("nonvoluntary_ctxt_switches:") {
            nonvol = v.trim().parse().ok();
        }
    }
    (vol, nonvol)
}

/// Per-thread-name CPU and the process totals.
#[derive(Debug, Default)]
pub(crate) struct ThreadTotals {
    by_name: Vec<(String, u64)>,
    vol: u64,
    nonvol: u64,
}

impl ThreadTotals {
    fn clear(&mut self) {
        // Keep the names' allocations: thread names rarely change between rounds.
        for (_, v) in &mut self.by_name {
            *v = 0;
        }
        self.vol = 0;
        self.nonvol = 0;
    }

    pub(crate) fn add_thread(&mut self, stat: &str, status: &str) {
        if let Some(st) = parse_stat(stat) {
            let ns = (st.utime + st.stime).saturating_mul(NS_PER_TICK);
            match self.by_name.iter_mut().find(|(n, _)| n == st.comm) {
                Some((_, v)) => *v += ns,
                None => self.by_name.push((st.comm.to_string(), ns)),
            }
        }
        let (vol, nonvol) = parse_status_ctxt(status);
        self.vol += vol.unwrap_or(0);
        self.nonvol += nonvol.unwrap_or(0);
    }

    /// `process`: (utime + stime ticks, thread count) of the whole process.
    pub(crate) fn emit(&self, process: Option<(u64, u64)>, emit: &mut Emit<'_>) {
        if let Some((ticks, threads)) = process {
            emit.push("cpu_ns", ticks.saturating_mul(NS_PER_TICK), Kind::Counter);
            emit.push("threads", threads, Kind::Gauge);
        }
        emit.push("ctxt_voluntary", self.vol, Kind::Counter);
        emit.push("ctxt_nonvoluntary", self.nonvol, Kind::Counter);
        for (name, ns) in &self.by_name {
            let mut counter = String::with_capacity(name.len() + 15);
            counter.push_str("thread.");
            counter.push_str(name);
            counter.push_str(".cpu_ns");
            emit.push(counter, *ns, Kind::Counter);
        }
    }
}

/// The kept-open files of one thread.
struct ThreadFiles {
    tid: u32,
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
}

impl ProcessCpu {
    pub fn new(guest: &str, pid: u32) -> Self {
        Self::from_dir(guest, format!("/proc/{pid}"))
    }

    /// Read another directory of the same layout (`stat`, `task/*/stat`, `task/*/status`).
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
        }
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
                self.threads.push(ThreadFiles {
                    tid,
                    stat: KeptFile::new(d.join("stat")),
                    status: KeptFile::new(d.join("status")),
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
        self.totals.clear();
        let mut gone = false;
        for t in &mut self.threads {
            // A thread may exit at any time: skip it this round, list the threads again next round.
            if t.stat.read(&mut self.stat).is_err() {
                gone = true;
                continue;
            }
            if t.status.read(&mut self.status).is_err() {
                self.status.clear();
            }
            self.totals.add_thread(&self.stat, &self.status);
        }
        if gone {
            self.threads.clear();
        }
        let mut emit = Emit { out, guest: &self.guest, source: SourceId::Process, time_ns };
        self.totals.emit(Some(process), &mut emit);
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
    }

    #[test]
    fn threads_summed_by_name() {
        let mut t = ThreadTotals::default();
        let status = "voluntary_ctxt_switches:\t10\nnonvoluntary_ctxt_switches:\t2\n";
        t.add_thread(STAT, status);
        t.add_thread(VCPU, status);
        t.add_thread(&VCPU.replace("4250", "4251"), status);
        let guest: Arc<str> = "vm".into();
        let mut out = Vec::new();
        t.emit(
            parse_stat(STAT).map(|s| (s.utime + s.stime, s.num_threads)),
            &mut Emit { out: &mut out, guest: &guest, source: SourceId::Process, time_ns: 0 },
        );
        let get = |n: &str| out.iter().find(|s| s.counter == n).map(|s| s.value);
        assert_eq!(get("cpu_ns"), Some(1801 * 10_000_000));
        assert_eq!(get("threads"), Some(7));
        assert_eq!(get("ctxt_voluntary"), Some(30));
        assert_eq!(get("thread.CPU 0/KVM.cpu_ns"), Some(2800 * 10_000_000));
        assert_eq!(get("thread.qemu-system-x86.cpu_ns"), Some(1801 * 10_000_000));
    }

    #[test]
    fn reads_our_own_process() {
        let mut out = Vec::new();
        ProcessCpu::new("self", std::process::id()).sample(5, &mut out).unwrap();
        assert!(out.iter().any(|s| s.counter == "cpu_ns"));
        assert!(out.iter().any(|s| s.counter.starts_with("thread.")));
        let err = ProcessCpu::new("gone", u32::MAX).sample(5, &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("cannot read /proc/"), "{err}");
    }

    proptest! {
        #[test]
        fn never_panics(text in "\\PC*") {
            let _ = parse_stat(&text);
            let _ = parse_status_ctxt(&text);
            let mut t = ThreadTotals::default();
            t.add_thread(&text, &text);
        }
    }
}
