//! What the lab tells telemetry about a guest.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// What kind of victim a guest is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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

/// A network interface and the namespace it lives in (`None`: the host's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Iface {
    pub name: String,
    pub netns: Option<String>,
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
        }
    }
}
