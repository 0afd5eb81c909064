//! What a lab is made of: the plain description (`LabSpec`, read from `vmguard.toml` by the CLI)
//! and the address plan derived from it.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::LabError;

/// The kinds of victim: telemetry's [`telemetry::GuestKind`] is the one type (names, `Display`,
/// `FromStr`, serde).
pub use telemetry::GuestKind as VictimKind;

/// The victim kinds `lab up` starts by default, in the lab's order (the default `victims`). The Xen
/// victim is started only when listed (`victims = [..., "xen"]`): under TCG it boots in minutes.
pub const BUILT_VICTIMS: [VictimKind; 3] = [VictimKind::Vanilla, VictimKind::Container, VictimKind::Qemu];

/// The one rate type (packets/s, bits/s on Ethernet frames as tc counts them, or unlimited); the
/// attacker link takes a bit rate or `unlimited` (checked by [`LabSpec::validate`]).
pub use units::Rate;

/// Which accelerator the qemu victim uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccelChoice {
    /// Probe KVM with the real guest; use TCG if the guest does not boot under KVM.
    Auto,
    Kvm,
    Tcg,
}

/// How the qemu victim's virtio-net device reaches the tap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QemuNetBackend {
    /// qemu's own virtio-net device model on the tap.
    #[default]
    Virtio,
    /// vmguard's vhost-user backend (`vmguard-vhost-net`) on the tap: RX notification coalescing.
    VhostUser,
}

impl QemuNetBackend {
    pub fn as_str(self) -> &'static str {
        match self {
            QemuNetBackend::Virtio => "virtio",
            QemuNetBackend::VhostUser => "vhost-user",
        }
    }
}

impl std::fmt::Display for QemuNetBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QemuSpec {
    pub memory_mib: u32,
    pub vcpus: u32,
    pub accelerator: AccelChoice,
    /// Debian kernel package for the guest; empty: the newest `linux-image-*-cloud-amd64` apt knows.
    pub kernel_package: String,
    /// Size of the guest's virtio disk for file benchmarks.
    pub disk_mib: u32,
    /// How long the guest may take to boot to its HTTP server.
    pub boot_timeout_secs: u64,
    /// Extra host programs copied into the guest with their shared libraries, on top of
    /// [`QemuSpec::REQUIRED_GUEST_PROGRAMS`] (always there): names on PATH or absolute paths.
    pub guest_programs: Vec<String>,
    /// `virtio` (qemu's own device model) or `vhost-user` (vmguard-vhost-net, needed by `coalesce`).
    pub net_backend: QemuNetBackend,
}

impl QemuSpec {
    /// The programs the guest always gets: the benchmark tools `vmguard bench` runs inside it, and
    /// hping3 for zombie floods by a peer tool from the guest (all Debian packages in `make deps`);
    /// with them the initramfs grows from ~2.5 to ~33 MB, boot stays ~5-6 s.
    pub const REQUIRED_GUEST_PROGRAMS: [&'static str; 3] = ["sysbench", "iperf3", "hping3"];

    /// Every program for the guest: the required ones, then the configured extras, each name once.
    pub fn all_guest_programs(&self) -> Vec<String> {
        let mut all: Vec<String> = Self::REQUIRED_GUEST_PROGRAMS.iter().map(|p| p.to_string()).collect();
        for p in &self.guest_programs {
            if !all.contains(p) {
                all.push(p.clone());
            }
        }
        all
    }
}

impl Default for QemuSpec {
    fn default() -> Self {
        QemuSpec {
            // The database tier (~60 MB resident) and the image's programs live in guest RAM.
            memory_mib: 512,
            vcpus: 1,
            accelerator: AccelChoice::Auto,
            kernel_package: String::new(),
            // Room for the seed's 2 GB of sysbench files beside the database (a sparse file on the host).
            disk_mib: 3072,
            boot_timeout_secs: 120,
            // No extras: the required programs are always added (`all_guest_programs`).
            guest_programs: Vec::new(),
            net_backend: QemuNetBackend::Virtio,
        }
    }
}

/// The Xen victim: Xen 4.17 with a PV dom0 and a PV domU, inside qemu (`crate::victim::xen`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct XenSpec {
    /// qemu's accelerator for the whole Xen machine: `auto` probes KVM with the real Xen boot.
    pub accelerator: AccelChoice,
    /// RAM of the qemu machine (Xen, dom0 and the domU).
    pub memory_mib: u32,
    /// qemu's vCPUs (Xen's physical CPUs).
    pub vcpus: u32,
    pub dom0_memory_mib: u32,
    pub domu_memory_mib: u32,
    pub domu_vcpus: u32,
    /// Debian kernel package for dom0 and the domU; empty: the one `linux-image-amd64` depends on
    /// (the standard kernel: the cloud kernel has no dom0 support).
    pub kernel_package: String,
    /// Debian mirror for dom0's root (debootstrap); empty: the one apt's sources name.
    pub mirror: String,
    /// How long Xen, dom0 and the domU may take to boot to the domU's HTTP server.
    pub boot_timeout_secs: u64,
}

impl Default for XenSpec {
    fn default() -> Self {
        XenSpec {
            accelerator: AccelChoice::Auto,
            memory_mib: 1280,
            vcpus: 2,
            dom0_memory_mib: 384,
            // The domU's initramfs (~65 MB: busybox, the benchmark tools, vmguard) is unpacked into
            // its RAM while the packed copy is still there: 256 MiB was seen to run out.
            domu_memory_mib: 512,
            domu_vcpus: 1,
            kernel_package: String::new(),
            mirror: String::new(),
            // Under TCG on a busy 2-core machine dom0 alone takes a minute or more.
            boot_timeout_secs: 600,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ContainerSpec {
    /// CPU limit in cores (CFS quota over a 100 ms period).
    pub cpus: f64,
    pub memory_mib: u32,
    pub pids_max: u32,
}

impl Default for ContainerSpec {
    fn default() -> Self {
        ContainerSpec { cpus: 1.0, memory_mib: 256, pids_max: 512 }
    }
}

/// The whole lab, as `vmguard.toml` describes it. Every field has a default that works.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LabSpec {
    /// Prefix of every namespace, link, cgroup and container the lab creates; `lab down` removes
    /// everything that carries it.
    pub prefix: String,
    /// The lab's private /16. Every address of the lab, spoofed sources included, lies inside it.
    pub network: Ipv4Net,
    /// Rate of the attacker's link (tc tbf on both ends), like the seed's 10 Mbit/s ethtool setting.
    pub attacker_rate: Rate,
    pub victims: Vec<VictimKind>,
    /// Where lab state, logs and per-run files live.
    pub run_dir: PathBuf,
    /// Where the guest image is cached (content-addressed).
    pub cache_dir: PathBuf,
    pub qemu: QemuSpec,
    pub xen: XenSpec,
    pub container: ContainerSpec,
    /// SYN cookies in every victim (net.ipv4.tcp_syncookies).
    pub syncookies: bool,
}

impl Default for LabSpec {
    fn default() -> Self {
        LabSpec {
            prefix: "vmg".into(),
            network: "10.213.0.0/16".parse().expect("valid default network"),
            attacker_rate: Rate::BitsPerSec(10_000_000),
            victims: BUILT_VICTIMS.to_vec(),
            // Not /run: the guest disk for file benchmarks would fill a tmpfs.
            run_dir: PathBuf::from("/var/lib/vmguard/run"),
            cache_dir: PathBuf::from("/var/cache/vmguard"),
            qemu: QemuSpec::default(),
            xen: XenSpec::default(),
            container: ContainerSpec::default(),
            syncookies: true,
        }
    }
}

impl LabSpec {
    /// Check what serde cannot: name lengths, the network's size and privacy, unique victims.
    pub fn validate(&self) -> Result<(), LabError> {
        let bad = |msg: String| Err(LabError::Spec(msg));
        if self.prefix.is_empty()
            || self.prefix.len() > 6
            || !self.prefix.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        {
            return bad(format!(
                "prefix `{}` must be 1 to 6 lowercase letters or digits (interface names are limited to 15 characters)",
                self.prefix
            ));
        }
        if self.network.prefix_len() != 16 {
            return bad(format!("network `{}` must be a /16 (e.g. 10.213.0.0/16)", self.network));
        }
        if !self.network.addr().is_private() {
            return bad(format!(
                "network `{}` must be a private range (10/8, 172.16/12, 192.168/16): the lab never uses public addresses",
                self.network
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for v in &self.victims {
            if !seen.insert(v) {
                return bad(format!("victim `{v}` is listed twice"));
            }
        }
        match self.attacker_rate {
            Rate::Unlimited => {}
            Rate::BitsPerSec(b) if b >= 8000 => {}
            Rate::BitsPerSec(_) => {
                return bad(format!("attacker_rate = {} is below tc's useful minimum of 8kbit", self.attacker_rate));
            }
            Rate::PacketsPerSec(_) => {
                return bad(format!(
                    "attacker_rate = {} is a packet rate: the attacker link is shaped by tc in bits, write e.g. \"10mbit\" or \"unlimited\"",
                    self.attacker_rate
                ));
            }
        }
        if self.container.cpus <= 0.0 || self.container.cpus > 64.0 {
            return bad(format!("container.cpus = {} must be in (0, 64]", self.container.cpus));
        }
        if self.qemu.memory_mib < 128 {
            return bad(format!(
                "qemu.memory_mib = {} is too small: the guest needs at least 128",
                self.qemu.memory_mib
            ));
        }
        let x = &self.xen;
        if x.domu_memory_mib < 128
            || x.dom0_memory_mib < 256
            || x.dom0_memory_mib + x.domu_memory_mib + 64 > x.memory_mib
        {
            return bad(format!(
                "xen: dom0_memory_mib = {} (at least 256) and domu_memory_mib = {} (at least 128) must fit in memory_mib = {} with 64 MiB for Xen",
                x.dom0_memory_mib, x.domu_memory_mib, x.memory_mib
            ));
        }
        if x.vcpus == 0 || x.domu_vcpus == 0 {
            return bad("xen: vcpus and domu_vcpus must be at least 1".into());
        }
        Ok(())
    }

    pub fn plan(&self) -> Plan {
        Plan::new(self)
    }
}

/// One host of the lab: a namespace and the address of its lab-facing interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    pub ns: String,
    /// The host's own address, and the gateway's address on the same /24.
    pub address: Ipv4Addr,
    pub gateway: Ipv4Addr,
    pub subnet: Ipv4Net,
    /// Interface inside `ns` and its peer inside the gateway namespace.
    pub ifname: String,
    pub gw_ifname: String,
}

/// The address plan: which namespace, interface and address every lab host gets.
///
/// Inside the lab's /16: attacker 10.x.1.0/24, client 10.x.2.0/24, victim i 10.x.(10+i).0/24, and the
/// spoof range 10.x.128.0/17 from which floods draw source addresses. The gateway blackholes the spoof
/// range, so SYN-ACKs to spoofed sources die there, as in the seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub prefix: String,
    pub network: Ipv4Net,
    pub gateway_ns: String,
    pub attacker: Host,
    pub client: Host,
    pub victims: Vec<(VictimKind, Host)>,
    pub spoof_subnet: Ipv4Net,
}

impl Plan {
    fn new(spec: &LabSpec) -> Plan {
        let base = spec.network.network().octets();
        let host = |role: &str, third: u8| {
            let net = |last: u8| Ipv4Addr::new(base[0], base[1], third, last);
            Host {
                ns: format!("{}-{role}", spec.prefix),
                address: net(2),
                gateway: net(1),
                subnet: Ipv4Net::new(net(0), 24).expect("/24 is valid"),
                ifname: format!("{}-{role}0", spec.prefix),
                gw_ifname: format!("{}-gw-{role}", spec.prefix),
            }
        };
        let victims = spec
            .victims
            .iter()
            .map(|&kind| {
                (kind, host(victim_role(kind), 10 + VictimKind::ALL.iter().position(|&k| k == kind).unwrap() as u8))
            })
            .collect();
        Plan {
            prefix: spec.prefix.clone(),
            network: spec.network,
            gateway_ns: format!("{}-gw", spec.prefix),
            attacker: host("att", 1),
            client: host("cli", 2),
            victims,
            spoof_subnet: Ipv4Net::new(Ipv4Addr::new(base[0], base[1], 128, 0), 17).expect("/17 is valid"),
        }
    }

    /// Every namespace of the lab, gateway first.
    pub fn namespaces(&self) -> Vec<String> {
        let mut ns = vec![self.gateway_ns.clone(), self.attacker.ns.clone(), self.client.ns.clone()];
        ns.extend(self.victims.iter().map(|(_, h)| h.ns.clone()));
        ns
    }

    pub fn hosts(&self) -> impl Iterator<Item = &Host> {
        [&self.attacker, &self.client].into_iter().chain(self.victims.iter().map(|(_, h)| h))
    }

    pub fn victim(&self, kind: VictimKind) -> Option<&Host> {
        self.victims.iter().find(|(k, _)| *k == kind).map(|(_, h)| h)
    }
}

/// Short role name used in namespace and interface names (15-character limit on interfaces).
fn victim_role(kind: VictimKind) -> &'static str {
    match kind {
        VictimKind::Vanilla => "van",
        VictimKind::Container => "ctr",
        VictimKind::Qemu => "vm",
        VictimKind::Xen => "xen",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_programs_add_to_the_required_ones() {
        let mut q = QemuSpec::default();
        assert!(q.guest_programs.is_empty());
        assert_eq!(q.all_guest_programs(), ["sysbench", "iperf3", "hping3"]);
        q.guest_programs = vec!["curl".into(), "iperf3".into(), "curl".into(), "/usr/bin/wrk".into()];
        assert_eq!(q.all_guest_programs(), ["sysbench", "iperf3", "hping3", "curl", "/usr/bin/wrk"]);
        // A config that lists only extras still gets the benchmark tools.
        let spec: LabSpec = toml::from_str("[qemu]\nguest_programs = [\"curl\"]\n").unwrap();
        assert_eq!(spec.qemu.all_guest_programs(), ["sysbench", "iperf3", "hping3", "curl"]);
    }

    #[test]
    fn default_spec_is_valid_and_plan_is_inside_network() {
        let spec = LabSpec::default();
        spec.validate().unwrap();
        let plan = spec.plan();
        for h in plan.hosts() {
            assert!(spec.network.contains(&h.address), "{h:?}");
            assert!(h.subnet.contains(&h.gateway));
            assert!(h.ifname.len() <= 15 && h.gw_ifname.len() <= 15, "{h:?}");
            assert!(!plan.spoof_subnet.contains(&h.address));
        }
        assert!(spec.network.contains(&plan.spoof_subnet));
        assert_eq!(plan.namespaces().len(), 6);
    }

    #[test]
    fn rates_parse() {
        assert_eq!("10mbit".parse::<Rate>().unwrap(), Rate::BitsPerSec(10_000_000));
        assert_eq!("10Mbit/s".parse::<Rate>().unwrap(), Rate::BitsPerSec(10_000_000));
        assert_eq!("1.5gbit".parse::<Rate>().unwrap(), Rate::BitsPerSec(1_500_000_000));
        assert_eq!("unlimited".parse::<Rate>().unwrap(), Rate::Unlimited);
        assert!("10 furlongs".parse::<Rate>().is_err());
        assert!("-3mbit".parse::<Rate>().is_err());
        // A link rate is in bits: a packet rate or a rate below tc's minimum is refused by validate.
        for bad in ["1bit", "20kpps"] {
            let spec = LabSpec { attacker_rate: bad.parse().unwrap(), ..Default::default() };
            assert!(spec.validate().unwrap_err().to_string().contains("attacker_rate"), "{bad}");
        }
        for r in ["10mbit", "500kbit", "12345bit", "unlimited"] {
            assert_eq!(r.parse::<Rate>().unwrap().to_string(), r);
        }
    }

    #[test]
    fn bad_specs_are_refused_with_reasons() {
        let mut spec = LabSpec { prefix: "Way-Too-Long".into(), ..Default::default() };
        assert!(spec.validate().unwrap_err().to_string().contains("prefix"));
        spec.prefix = "vmg".into();
        spec.network = "8.8.0.0/16".parse().unwrap();
        assert!(spec.validate().unwrap_err().to_string().contains("private"));
        spec.network = "10.1.0.0/24".parse().unwrap();
        assert!(spec.validate().unwrap_err().to_string().contains("/16"));
    }

    #[test]
    fn toml_with_no_fields_gives_defaults_and_unknown_fields_are_refused() {
        let spec: LabSpec = toml::from_str("").unwrap();
        assert_eq!(spec, LabSpec::default());
        let spec: LabSpec =
            toml::from_str("attacker_rate = \"unlimited\"\nvictims = [\"qemu\"]\n[qemu]\nmemory_mib = 512\n").unwrap();
        assert_eq!(spec.attacker_rate, Rate::Unlimited);
        assert_eq!(spec.victims, vec![VictimKind::Qemu]);
        assert_eq!(spec.qemu.memory_mib, 512);
        assert!(toml::from_str::<LabSpec>("atacker_rate = \"1mbit\"").is_err());
    }

    #[test]
    fn net_backend_parses_defaults_and_refuses_unknown_values() {
        assert_eq!(LabSpec::default().qemu.net_backend, QemuNetBackend::Virtio);
        let spec: LabSpec = toml::from_str("[qemu]\nnet_backend = \"vhost-user\"\n").unwrap();
        assert_eq!(spec.qemu.net_backend, QemuNetBackend::VhostUser);
        let spec: LabSpec = toml::from_str("[qemu]\nnet_backend = \"virtio\"\n").unwrap();
        assert_eq!(spec.qemu.net_backend, QemuNetBackend::Virtio);
        let err = toml::from_str::<LabSpec>("[qemu]\nnet_backend = \"vhost-net\"\n").unwrap_err().to_string();
        assert!(err.contains("virtio") && err.contains("vhost-user"), "{err}");
        assert_eq!(QemuNetBackend::VhostUser.to_string(), "vhost-user");
    }
}
