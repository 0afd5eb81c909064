//! One sampling round over every guest's sources.

use crate::cgroup::CgroupCpu;
use crate::flow::FlowCapture;
use crate::netdev::NetDev;
use crate::perf::KvmTracepoints;
use crate::procfs::ProcessCpu;
use crate::qmp::QmpStats;
use crate::snmp::NetSnmp;
use crate::xen::stream::XentraceStream;
use crate::{GuestInfo, GuestKind, Sample, Source, SourceId, TelemetryError, unix_now_ns};

/// A source that could not be built or failed in a round.
#[derive(Debug)]
pub struct SourceFailure {
    pub guest: String,
    pub source: SourceId,
    pub error: TelemetryError,
}

impl std::fmt::Display for SourceFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "guest {} source {}: {}", self.guest, self.source, self.error)
    }
}

/// The sources that apply to a guest, from what its description holds:
///
/// | source      | needs            | guest kinds                   |
/// |-------------|------------------|-------------------------------|
/// | kvm (QMP)   | `qmp_socket`     | qemu                          |
/// | tracepoint  | `pid`            | qemu                          |
/// | netdev      | `iface`          | all                           |
/// | flow        | `iface`          | all (packet socket: root)     |
/// | snmp        | `pid`            | vanilla, container (own TCP)  |
/// | cgroup      | `cgroup`         | all                           |
/// | process     | `pid`            | all                           |
/// | xentrace    | `xentrace_socket`| xen (the lab's Xen machine)   |
///
/// Sources that cannot start (tracepoints without perf access) come back as failures beside the ones
/// that did; the other Xen sources are built explicitly ([`crate::xen::xenperf::XenPerf`],
/// [`crate::xen::stream::XentraceFile`]) since they watch the whole host.
pub fn sources_for(guest: &GuestInfo) -> (Vec<Box<dyn Source>>, Vec<SourceFailure>) {
    let mut sources: Vec<Box<dyn Source>> = Vec::new();
    let mut failures = Vec::new();
    let name = guest.name.as_str();
    if guest.kind == GuestKind::Qemu {
        if let Some(sock) = &guest.qmp_socket {
            sources.push(Box::new(QmpStats::new(name, sock)));
        }
        if let Some(pid) = guest.pid {
            match KvmTracepoints::new(name, pid) {
                Ok(s) => sources.push(Box::new(s)),
                Err(error) => failures.push(SourceFailure { guest: name.into(), source: SourceId::Tracepoint, error }),
            }
        }
    }
    if let (Some(sock), GuestKind::Xen) = (&guest.xentrace_socket, guest.kind) {
        let mut s = XentraceStream::new(name, sock, guest.xen_domid);
        if let Some(net) = &guest.xen_netdev_socket {
            s = s.with_netdev(net);
        }
        sources.push(Box::new(s));
    }
    if let Some(iface) = &guest.iface {
        sources.push(Box::new(NetDev::new(name, iface)));
        sources.push(Box::new(FlowCapture::new(name, iface)));
    }
    if let (Some(pid), GuestKind::Vanilla | GuestKind::Container) = (guest.pid, guest.kind) {
        sources.push(Box::new(NetSnmp::new(name, pid)));
    }
    if let Some(cg) = &guest.cgroup {
        sources.push(Box::new(CgroupCpu::new(name, cg)));
    }
    if let Some(pid) = guest.pid {
        sources.push(Box::new(ProcessCpu::new(name, pid)));
    }
    (sources, failures)
}

/// Runs sampling rounds over a set of sources.
#[derive(Default)]
pub struct Collector {
    sources: Vec<Box<dyn Source>>,
    /// Kinds of source never started for a guest (`collect --skip-sources`, the bench's cells).
    skip: Vec<SourceId>,
}

impl Collector {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, source: Box<dyn Source>) {
        self.sources.push(source);
    }

    /// Never start these kinds of source for the guests added from now on.
    pub fn skip(&mut self, ids: &[SourceId]) {
        self.skip.extend_from_slice(ids);
    }

    /// Add every source [`sources_for`] builds for the guest, except skipped kinds; returns those that
    /// could not start.
    pub fn add_guest(&mut self, guest: &GuestInfo) -> Vec<SourceFailure> {
        let (sources, mut failures) = sources_for(guest);
        self.sources.extend(sources.into_iter().filter(|s| !self.skip.contains(&s.id())));
        failures.retain(|f| !self.skip.contains(&f.source));
        failures
    }

    /// Drop a guest's sources (it was torn down): closes their files, sockets and perf counters.
    pub fn remove_guest(&mut self, guest: &str) {
        self.sources.retain(|s| s.guest() != guest);
    }

    pub fn sources(&self) -> impl Iterator<Item = (&str, SourceId)> {
        self.sources.iter().map(|s| (s.guest(), s.id()))
    }

    /// One round: every source reads once, each stamped with the time just before its read. Samples are
    /// appended to `out`; a failing source is reported and the round goes on.
    pub fn round(&mut self, out: &mut Vec<Sample>) -> Vec<SourceFailure> {
        let mut failures = Vec::new();
        for s in &mut self.sources {
            if let Err(error) = s.sample(unix_now_ns(), out) {
                failures.push(SourceFailure { guest: s.guest().to_string(), source: s.id(), error });
            }
        }
        failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vanished_guest_is_a_warning_not_a_crash() {
        let gone = GuestInfo {
            pid: Some(u32::MAX - 1),
            qmp_socket: Some("/nonexistent/vmgt-qmp.sock".into()),
            iface: Some(crate::Iface::host_side("vmgt-none0", Some("vmgt-no-such-ns".into()))),
            cgroup: Some("vmgt/no-such-cgroup".into()),
            ..GuestInfo::new("ghost", GuestKind::Qemu)
        };
        let mut c = Collector::new();
        let startup = c.add_guest(&gone);
        // Tracepoints cannot open on a missing PID; the rest start lazily and fail in the round.
        assert!(startup.iter().all(|f| f.source == SourceId::Tracepoint));
        let mut out = Vec::new();
        let failures = c.round(&mut out);
        assert!(out.is_empty());
        let mut failed: Vec<SourceId> = failures.iter().map(|f| f.source).collect();
        failed.sort();
        assert_eq!(failed, [SourceId::Kvm, SourceId::Netdev, SourceId::Cgroup, SourceId::Process, SourceId::Flow]);
        // A skipped kind is never started.
        let mut skipping = Collector::new();
        skipping.skip(&[SourceId::Flow, SourceId::Tracepoint]);
        assert!(skipping.add_guest(&gone).is_empty());
        assert!(skipping.sources().all(|(_, id)| id != SourceId::Flow && id != SourceId::Tracepoint));
        for f in &failures {
            assert!(f.to_string().starts_with("guest ghost source "), "{f}");
        }
        c.remove_guest("ghost");
        assert_eq!(c.sources().count(), 0);
    }

    #[test]
    fn our_own_process_as_a_vanilla_guest() {
        let me = GuestInfo { pid: Some(std::process::id()), ..GuestInfo::new("self", GuestKind::Vanilla) };
        let mut c = Collector::new();
        assert!(c.add_guest(&me).is_empty());
        let mut out = Vec::new();
        let failures = c.round(&mut out);
        assert!(failures.is_empty(), "{failures:?}");
        assert!(out.iter().any(|s| s.source == SourceId::Snmp && s.counter == "Tcp.InSegs"));
        assert!(out.iter().any(|s| s.source == SourceId::Process && s.counter == "cpu_ns"));
    }
}
