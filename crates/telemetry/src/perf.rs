//! KVM tracepoint counts of one qemu process, with `perf_event_open` in counting mode (no sampling, no
//! ring buffer): one counter per (tracepoint, thread), opened with `inherit` so threads qemu starts later
//! are counted in their creator's counter. Like `perf stat -e kvm:... -p PID`.
//!
//! Samples: `kvm_exit`, `kvm_userspace_exit`, ... (the tracepoint names). On some hosts several stay at
//! zero (under a software nested KVM kvm_exit and kvm_entry never fire): that is the host, not a bug.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use perf_event_open::config::{Inherit, Opts, Proc};
use perf_event_open::count::Counter;
use perf_event_open::event::tp::Tracepoint;

use crate::sample::{Emit, Kind, Sample, SourceId};
use crate::{Source, TelemetryError};

/// The KVM tracepoints counted by default (those missing on a kernel are left out).
pub const DEFAULT_KVM_EVENTS: [&str; 14] = [
    "kvm_exit",
    "kvm_entry",
    "kvm_userspace_exit",
    "kvm_hypercall",
    "kvm_mmio",
    "kvm_pio",
    "kvm_fast_mmio",
    "kvm_msi_set_irq",
    "kvm_set_irq",
    "kvm_inj_virq",
    "kvm_apic_accept_irq",
    "kvm_emulate_insn",
    "kvm_halt_poll_ns",
    "kvm_vcpu_wakeup",
];

const TRACEFS_DIRS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// The tracefs directory, mounting tracefs at /sys/kernel/tracing if it is not mounted anywhere.
pub fn tracefs() -> Result<PathBuf, TelemetryError> {
    if let Some(dir) = TRACEFS_DIRS.iter().map(Path::new).find(|d| d.join("events").is_dir()) {
        return Ok(dir.to_path_buf());
    }
    tracing::info!("mounting tracefs at /sys/kernel/tracing");
    exec::Cmd::new("mount")
        .args(["-t", "tracefs", "nodev", TRACEFS_DIRS[0]])
        .timeout(std::time::Duration::from_secs(10))
        .run()
        .map_err(|e| TelemetryError::Tracefs { detail: e.to_string() })?;
    let dir = PathBuf::from(TRACEFS_DIRS[0]);
    if dir.join("events").is_dir() {
        Ok(dir)
    } else {
        Err(TelemetryError::Tracefs { detail: "mounted, but it has no events/ directory".into() })
    }
}

/// The id of `group:name` (from `events/GROUP/NAME/id`), `None` if the tracepoint does not exist.
pub fn tracepoint_id(tracefs: &Path, group: &str, name: &str) -> Option<u64> {
    std::fs::read_to_string(tracefs.join("events").join(group).join(name).join("id")).ok()?.trim().parse().ok()
}

struct Event {
    name: String,
    counters: Vec<Counter>,
}

/// Tracepoint counts of one process (all its threads).
pub struct KvmTracepoints {
    guest: Arc<str>,
    pid: u32,
    events: Vec<Event>,
    names: crate::sample::NameCache,
}

impl KvmTracepoints {
    /// Count [`DEFAULT_KVM_EVENTS`] in process `pid`.
    pub fn new(guest: &str, pid: u32) -> Result<Self, TelemetryError> {
        Self::with_events(guest, pid, "kvm", &DEFAULT_KVM_EVENTS)
    }

    /// Count the given tracepoints of `group` in process `pid`; those this kernel lacks are skipped (at
    /// least one must exist).
    pub fn with_events(guest: &str, pid: u32, group: &str, names: &[&str]) -> Result<Self, TelemetryError> {
        let tracefs = tracefs()?;
        let tids = threads_of(pid)?;
        let mut events = Vec::new();
        for name in names {
            let Some(id) = tracepoint_id(&tracefs, group, name) else {
                tracing::debug!(tracepoint = %name, "not on this kernel; skipped");
                continue;
            };
            let opts = Opts { inherit: Some(Inherit::NewChild), enable: true, ..Opts::default() };
            let mut counters = Vec::with_capacity(tids.len());
            for &tid in &tids {
                match Counter::new(Tracepoint { id }, (Proc(tid), perf_event_open::config::Cpu::ALL), &opts) {
                    Ok(c) => counters.push(c),
                    // The thread exited since we listed it.
                    Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                    Err(source) => {
                        return Err(TelemetryError::PerfOpen { event: format!("{group}:{name}"), tid, source });
                    }
                }
            }
            events.push(Event { name: name.to_string(), counters });
        }
        if events.is_empty() {
            return Err(TelemetryError::NoTracepoints {
                wanted: format!("{group}:{{{}}}", names.join(",")),
                dir: tracefs.join("events").join(group),
            });
        }
        Ok(KvmTracepoints { guest: guest.into(), pid, events, names: Default::default() })
    }

    /// The tracepoints being counted.
    pub fn events(&self) -> impl Iterator<Item = &str> {
        self.events.iter().map(|e| e.name.as_str())
    }
}

fn threads_of(pid: u32) -> Result<Vec<u32>, TelemetryError> {
    let dir = format!("/proc/{pid}/task");
    let rd = std::fs::read_dir(&dir).map_err(|e| TelemetryError::read(&dir, e))?;
    let mut tids: Vec<u32> = rd.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect();
    tids.sort_unstable();
    Ok(tids)
}

impl Source for KvmTracepoints {
    fn id(&self) -> SourceId {
        SourceId::Tracepoint
    }

    fn guest(&self) -> &str {
        &self.guest
    }

    fn sample(&mut self, time_ns: i64, out: &mut Vec<Sample>) -> Result<(), TelemetryError> {
        if !exec::pid_alive(self.pid) {
            return Err(TelemetryError::read(
                format!("/proc/{}", self.pid),
                std::io::Error::new(std::io::ErrorKind::NotFound, "the process exited"),
            ));
        }
        let mut emit = Emit::new(out, &self.guest, SourceId::Tracepoint, time_ns).with_names(&mut self.names);
        for ev in &self.events {
            let mut total = 0u64;
            for c in &ev.counters {
                // A counter of an exited thread keeps its final count.
                let stat = c.stat().map_err(|source| TelemetryError::PerfRead { event: ev.name.clone(), source })?;
                total = total.wrapping_add(stat.count);
            }
            emit.push(ev.name.as_str(), total, Kind::Counter);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_syscalls_of_a_child_with_threads() {
        // Runs only where perf and tracefs are usable (root); the live KVM case is in tests/telemetry_live.rs.
        let Ok(tracefs) = tracefs() else { return };
        if tracepoint_id(&tracefs, "syscalls", "sys_enter_getppid").is_none() {
            return;
        }
        let child = std::process::Command::new("sh")
            .args(["-c", "read x; for i in 1 2 3 4 5 6 7 8 9 10; do /bin/true; done; read y"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let mut child = child;
        let src = KvmTracepoints::with_events("sh", pid, "syscalls", &["sys_enter_execve", "no_such_event"]);
        let Ok(mut src) = src else { return };
        assert_eq!(src.events().collect::<Vec<_>>(), ["sys_enter_execve"]);
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"go\n").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        let mut out = Vec::new();
        src.sample(1, &mut out).unwrap();
        // Each /bin/true is a fork (inherited counter) + execve.
        assert!(out[0].value >= 10, "{out:?}");
        stdin.write_all(b"end\n").unwrap();
        drop(stdin);
        child.wait().unwrap();
    }
}
