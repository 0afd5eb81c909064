//! The lab's recorded state: what `lab up` created, written before and after each step so that
//! `lab down` can remove it, also after a crash.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::LabError;
use crate::spec::{LabSpec, Plan, VictimKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// `lab up` is (or was, if it crashed) still creating things.
    Starting,
    /// Every victim answered.
    Up,
}

/// One running victim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VictimState {
    pub name: String,
    pub kind: VictimKind,
    pub ns: String,
    pub address: std::net::Ipv4Addr,
    /// Processes of the victim on the host (server, container init, qemu).
    pub pids: Vec<u32>,
    /// `kvm` or `tcg` (qemu only).
    pub accelerator: Option<String>,
    /// Host-side interface that carries the victim's traffic (veth or tap) and its namespace.
    pub host_iface: String,
    pub host_iface_ns: String,
    /// qemu's QMP socket (qemu only).
    pub qmp_socket: Option<PathBuf>,
    /// Guest command channel (qemu only): a virtio-serial port on a unix socket.
    pub control_socket: Option<PathBuf>,
    /// Control socket of the vhost-user backend (qemu on `net_backend = "vhost-user"` only).
    #[serde(default)]
    pub net_control_socket: Option<PathBuf>,
    /// OCI container id (container only).
    pub container_id: Option<String>,
    /// cgroup path relative to each controller's root, e.g. `/vmg-ctr` (container only).
    pub cgroup: Option<String>,
    /// Where the victim's own output goes.
    pub log: PathBuf,
    /// Seconds from start to the first HTTP answer.
    pub start_secs: f64,
    /// The victim's database tier (MariaDB), once started.
    #[serde(default)]
    pub database: Option<crate::database::DatabaseTier>,
    /// The gateway's end of the victim's veth and the gateway's namespace (vanilla, container): the
    /// host side of their link, which telemetry reads. A frame the guest sends with qdisc bypass
    /// (trafgen, AF_XDP) is invisible to packet taps on the guest's own end, never on the peer's.
    #[serde(default)]
    pub link_peer: Option<(String, String)>,
    /// The Xen machine (xen only): image, domU, dom0's and the domU's boot times.
    #[serde(default)]
    pub xen: Option<crate::victim::xen::XenInfo>,
}

impl VictimState {
    /// A victim whose traffic enters through `host`'s own interface (vanilla, container); the
    /// caller sets what else it has (container id, cgroup, sockets).
    pub fn new(kind: VictimKind, host: &crate::spec::Host, pids: Vec<u32>, log: PathBuf) -> VictimState {
        VictimState {
            name: kind.to_string(),
            kind,
            ns: host.ns.clone(),
            address: host.address,
            pids,
            accelerator: None,
            host_iface: host.ifname.clone(),
            host_iface_ns: host.ns.clone(),
            qmp_socket: None,
            control_socket: None,
            net_control_socket: None,
            container_id: None,
            cgroup: None,
            log,
            start_secs: 0.0,
            database: None,
            link_peer: None,
            xen: None,
        }
    }
}

impl VictimState {
    /// The victim's link as telemetry reads it: the gateway's end of its veth when known (vanilla,
    /// container), else the host-side interface it was started with (the qemu guest's tap); a lab
    /// recorded before `link_peer` existed reads the vanilla and container victims' own end, from the
    /// guest's side.
    pub fn link(&self) -> telemetry::Iface {
        match &self.link_peer {
            Some((iface, ns)) => telemetry::Iface::host_side(iface.clone(), Some(ns.clone())),
            None => telemetry::Iface {
                name: self.host_iface.clone(),
                netns: Some(self.host_iface_ns.clone()),
                guest_side: matches!(self.kind, VictimKind::Vanilla | VictimKind::Container),
            },
        }
    }

    /// The victim as the telemetry sources see it: the one mapping from the lab to telemetry.
    pub fn guest_info(&self) -> telemetry::GuestInfo {
        telemetry::GuestInfo {
            netns: Some(self.ns.clone()),
            pid: self.pids.first().copied(),
            qmp_socket: self.qmp_socket.clone(),
            iface: Some(self.link()),
            // telemetry wants it relative to the hierarchy root.
            cgroup: self.cgroup.as_ref().map(|c| c.trim_start_matches('/').to_string()),
            // The Xen machine: the domU's id and dom0's trace stream.
            xen_domid: self.xen.as_ref().and_then(|x| x.domu_id),
            xentrace_socket: self.xen.as_ref().and_then(|x| x.trace_socket.clone()),
            xen_netdev_socket: self.xen.as_ref().and_then(|x| x.stats_socket.clone()),
            ..telemetry::GuestInfo::new(self.name.clone(), self.kind)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabState {
    pub spec: LabSpec,
    pub plan: Plan,
    pub phase: Phase,
    /// Unix seconds when `lab up` began.
    pub started_at: u64,
    pub gateway_drop: bool,
    pub victims: Vec<VictimState>,
    /// Processes started before their victim was recorded (a booting guest, a probe).
    #[serde(default)]
    pub other_pids: Vec<u32>,
    /// The qemu guest image in use.
    #[serde(default)]
    pub image: Option<crate::image::GuestImage>,
    /// The Xen victim's images in use.
    #[serde(default)]
    pub xen_image: Option<crate::xen_image::XenImage>,
}

impl LabState {
    pub fn new(spec: &LabSpec) -> LabState {
        LabState {
            spec: spec.clone(),
            plan: spec.plan(),
            phase: Phase::Starting,
            started_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            gateway_drop: false,
            victims: Vec::new(),
            other_pids: Vec::new(),
            image: None,
            xen_image: None,
        }
    }

    /// Directory of this lab's run files (state, logs, sockets, bundles).
    pub fn dir(spec: &LabSpec) -> PathBuf {
        spec.run_dir.join(&spec.prefix)
    }

    pub fn file(spec: &LabSpec) -> PathBuf {
        Self::dir(spec).join("state.json")
    }

    /// The recorded state, or `None` if no lab with this prefix was recorded.
    pub fn load(spec: &LabSpec) -> Result<Option<LabState>, LabError> {
        let path = Self::file(spec);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LabError::io(format!("reading lab state {}", path.display()), e)),
        };
        serde_json::from_str(&text).map(Some).map_err(|source| LabError::StateUnreadable { path, source })
    }

    /// The running lab's state, or [`LabError::NotUp`] when none is recorded.
    pub fn running(spec: &LabSpec) -> Result<LabState, LabError> {
        LabState::load(spec)?.ok_or_else(|| LabError::NotUp(spec.prefix.clone()))
    }

    /// Write atomically (temporary file + rename), so a crash never leaves half a state file.
    pub fn save(&self) -> Result<(), LabError> {
        let path = Self::file(&self.spec);
        write_atomic(&path, serde_json::to_string_pretty(self).expect("state serializes").as_bytes())
    }

    pub fn victim(&self, name: &str) -> Option<&VictimState> {
        self.victims.iter().find(|v| v.name == name)
    }
}

pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<(), LabError> {
    let dir = path.parent().expect("state path has a parent");
    std::fs::create_dir_all(dir).map_err(|e| LabError::io(format!("creating {}", dir.display()), e))?;
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| LabError::io(format!("writing {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_victims_link_is_read_from_the_side_it_is_on() {
        let host = crate::spec::Host {
            ns: "vmg-van".into(),
            address: "10.1.10.2".parse().unwrap(),
            gateway: "10.1.10.1".parse().unwrap(),
            subnet: "10.1.10.0/24".parse().unwrap(),
            ifname: "vmg-van0".into(),
            gw_ifname: "vmg-gw-van".into(),
        };
        // The vanilla victim and the container: the gateway's end of their veth, host side; without
        // it (an older state file), their own end from the guest's side.
        for kind in [VictimKind::Vanilla, VictimKind::Container] {
            let mut v = VictimState::new(kind, &host, vec![1], PathBuf::from("/dev/null"));
            let iface = v.guest_info().iface.unwrap();
            assert!(iface.guest_side, "{kind:?}");
            assert_eq!((iface.name.as_str(), iface.netns.as_deref()), ("vmg-van0", Some("vmg-van")));
            v.link_peer = Some(("vmg-gw-van".into(), "vmg-gw".into()));
            let iface = v.guest_info().iface.unwrap();
            assert!(!iface.guest_side, "{kind:?}");
            assert_eq!((iface.name.as_str(), iface.netns.as_deref()), ("vmg-gw-van", Some("vmg-gw")));
        }
        // The qemu guest is behind its tap: the host side.
        let q = VictimState {
            host_iface: "vmg-tap0".into(),
            ..VictimState::new(VictimKind::Qemu, &host, vec![1], "/dev/null".into())
        };
        assert!(!q.guest_info().iface.unwrap().guest_side);
    }
}
