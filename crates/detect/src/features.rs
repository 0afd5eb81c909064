//! Named feature sets: which counters make up a window's feature vector, per kind of guest.
//!
//! Every counter here is cumulative as read from the host (a window's feature is its increase over
//! the window); the names are the counter names the telemetry sources emit.

use serde::Serialize;

use crate::windows::CounterKind;

/// A named, documented list of counters, as the telemetry sources store them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FeatureSet {
    /// Short name (`xen`, `kvm`, `container`).
    pub name: &'static str,
    /// `(telemetry source, counter)` in feature-column order.
    pub counters: &'static [(&'static str, &'static str)],
    /// How the counters are reported.
    pub kind: CounterKind,
    /// Where the counters come from.
    pub source: &'static str,
}

impl FeatureSet {
    /// The counter names, in column order.
    pub fn counter_names(&self) -> Vec<&'static str> {
        self.counters.iter().map(|(_, c)| *c).collect()
    }
}

/// The seed's feature set V = (V_F1..V_F5): Xen hypercalls per domain, from xenperf counters or
/// attributed per domain from xentrace records. event_channel_op: event-channel operations (virtual
/// interrupts, notifications); grant_table_op: grant-table page sharing (I/O rings); mmuext_op: MMU
/// extended operations; hvm_op: hardware-virtual-machine operations; vcpu_op: virtual CPU operations.
pub const XEN_HYPERCALLS: FeatureSet = FeatureSet {
    name: "xen",
    counters: &[
        ("xentrace", "event_channel_op"),
        ("xentrace", "grant_table_op"),
        ("xentrace", "mmuext_op"),
        ("xentrace", "hvm_op"),
        ("xentrace", "vcpu_op"),
    ],
    kind: CounterKind::Cumulative,
    source: "xenperf hypercall counters or xentrace (-e 0x002af000) attributed per domain",
};

/// The analogue for a qemu/KVM guest: KVM per-vCPU statistics (QMP `query-stats`, summed over vCPUs)
/// plus the guest's tap packet counters. A flooding or flooded guest shows many more I/O and MMIO
/// exits (virtio kicks), interrupt injections and packets.
pub const KVM_GUEST: FeatureSet = FeatureSet {
    name: "kvm",
    counters: &[
        ("kvm", "vcpu.exits"),
        ("kvm", "vcpu.io_exits"),
        ("kvm", "vcpu.mmio_exits"),
        ("kvm", "vcpu.irq_exits"),
        ("kvm", "vcpu.halt_exits"),
        ("kvm", "vcpu.hypercalls"),
        ("kvm", "vcpu.irq_injections"),
        ("netdev", "rx_packets"),
        ("netdev", "tx_packets"),
    ],
    kind: CounterKind::Cumulative,
    source: "QMP query-stats (provider kvm, target vcpu) + the tap's /sys/class/net statistics",
};

/// The analogue for a container or bare-process guest: its network namespace's SNMP counters
/// (`/proc/<pid>/net/netstat` and `snmp`) and its cgroup's CPU time. A SYN-flooded listener shows SYN
/// cookies and listen-queue drops; a flooding one shows many output segments. cgroup CPU alone misses
/// the softirq cost of a flood, hence the network counters.
pub const CONTAINER_GUEST: FeatureSet = FeatureSet {
    name: "container",
    counters: &[
        ("snmp", "TcpExt.SyncookiesSent"),
        ("snmp", "TcpExt.ListenDrops"),
        ("snmp", "TcpExt.ListenOverflows"),
        ("snmp", "Tcp.InSegs"),
        ("snmp", "Tcp.OutSegs"),
        ("cgroup", "cpu.usage_ns"),
    ],
    kind: CounterKind::Cumulative,
    source: "netns SNMP (TcpExt.*, Tcp.*) + cgroup cpuacct.usage / cpu.stat usage_usec",
};

/// Every built-in feature set.
pub const ALL: [FeatureSet; 3] = [XEN_HYPERCALLS, KVM_GUEST, CONTAINER_GUEST];

/// A built-in feature set by name.
pub fn by_name(name: &str) -> Option<FeatureSet> {
    ALL.into_iter().find(|f| f.name == name)
}

/// Part A's feature set for a kind of guest (`xen`, `qemu`, `container`, `vanilla`): the seed's
/// hypercalls for Xen domains, KVM exits for qemu guests, the network stack for the rest.
pub fn for_guest_kind(kind: &str) -> FeatureSet {
    match kind {
        "xen" => XEN_HYPERCALLS,
        "qemu" => KVM_GUEST,
        _ => CONTAINER_GUEST,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn lookup() {
        assert_eq!(super::by_name("xen").unwrap().counters.len(), 5);
        assert!(super::by_name("hyperv").is_none());
        assert_eq!(super::for_guest_kind("qemu").name, "kvm");
        assert_eq!(super::for_guest_kind("vanilla").name, "container");
    }
}
