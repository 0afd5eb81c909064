//! What the lab tells telemetry about a guest.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// What kind of victim a guest is: the one naming of victim kinds (the lab's `VictimKind` is this type).
/// Written lowercase everywhere: [`GuestKind::as_str`], `Display`, `FromStr` and serde agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuestKind {
    /// A plain process (the non-virtualized baseline).
    Vanilla,
    /// A container (namespaces and cgroups, started by an OCI runtime).
    Container,
    /// A qemu guest (KVM or TCG).
    Qemu,
    /// A Xen domain.
    Xen,
}

impl GuestKind {
    /// Every kind, in the order tables and reports list them.
    pub const ALL: [GuestKind; 4] = [GuestKind::Vanilla, GuestKind::Container, GuestKind::Qemu, GuestKind::Xen];

    /// A virtual machine with a kernel of its own (the qemu guest, the Xen domU): its TCP counters,
    /// sysctls and tools are inside it, reached over its command channel rather than in a host
    /// namespace.
    pub fn has_own_kernel(self) -> bool {
        matches!(self, GuestKind::Qemu | GuestKind::Xen)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            GuestKind::Vanilla => "vanilla",
            GuestKind::Container => "container",
            GuestKind::Qemu => "qemu",
            GuestKind::Xen => "xen",
        }
    }
}

impl std::fmt::Display for GuestKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a [`GuestKind`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown victim kind `{0}`: expected vanilla, container, qemu or xen")]
pub struct UnknownGuestKind(pub String);

impl std::str::FromStr for GuestKind {
    type Err = UnknownGuestKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        GuestKind::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| UnknownGuestKind(s.to_string()))
    }
}

/// A network interface and the namespace it lives in (`None`: the host's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Iface {
    pub name: String,
    pub netns: Option<String>,
    /// The guest's own interface (a container's `eth0` read inside its namespace) rather than the
    /// host side of its link (a tap, a veth peer): its receive and transmit counters are swapped on
    /// reading, so `tx` always means "towards the guest" as on the host side.
    #[serde(default)]
    pub guest_side: bool,
}

impl Iface {
    /// The host side of a guest's link (tap or veth), in `netns` (`None`: the host's).
    pub fn host_side(name: impl Into<String>, netns: Option<String>) -> Iface {
        Iface { name: name.into(), netns, guest_side: false }
    }
}

/// One guest as the lab describes it; the CLI maps the lab's state onto this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestInfo {
    /// Unique name: the `guest` of every sample.
    pub name: String,
    pub kind: GuestKind,
    /// The named network namespace the guest's server or qemu runs in.
    pub netns: Option<String>,
    /// The main host process: the server (vanilla), the container's init, or qemu.
    pub pid: Option<u32>,
    /// qemu's QMP unix socket.
    pub qmp_socket: Option<PathBuf>,
    /// The host side of the guest's link: qemu's tap or the container's veth.
    pub iface: Option<Iface>,
    /// The guest's cgroup, relative to the hierarchy root (e.g. `vmguard/ct1`): looked up under the v1
    /// `cpu`/`cpuacct` controllers, else in the v2 hierarchy.
    pub cgroup: Option<String>,
    /// The Xen domain id.
    pub xen_domid: Option<u32>,
    /// The unix socket that streams xentrace records of the guest's Xen machine (the lab's Xen victim:
    /// the host end of dom0's `vmguard.trace` port).
    #[serde(default)]
    pub xentrace_socket: Option<PathBuf>,
    /// The unix socket on which dom0 of that Xen machine writes its `/proc/net/dev` every second (the
    /// domU's vif counters as netback sees them).
    #[serde(default)]
    pub xen_netdev_socket: Option<PathBuf>,
}

impl GuestInfo {
    /// A guest with only a name and a kind; fill in the rest with struct update syntax.
    pub fn new(name: impl Into<String>, kind: GuestKind) -> Self {
        GuestInfo {
            name: name.into(),
            kind,
            netns: None,
            pid: None,
            qmp_socket: None,
            iface: None,
            cgroup: None,
            xen_domid: None,
            xentrace_socket: None,
            xen_netdev_socket: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_agree() {
        for k in GuestKind::ALL {
            assert_eq!(k.as_str().parse::<GuestKind>(), Ok(k));
            assert_eq!(k.to_string(), k.as_str());
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{k}\""));
            assert_eq!(serde_json::from_str::<GuestKind>(&format!("\"{k}\"")).unwrap(), k);
        }
        let err = "kvm".parse::<GuestKind>().unwrap_err().to_string();
        assert_eq!(err, "unknown victim kind `kvm`: expected vanilla, container, qemu or xen");
        assert!("Qemu".parse::<GuestKind>().is_err(), "names are lowercase");
    }
}
