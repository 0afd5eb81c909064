//! The Xen victim: Xen 4.17 booted by qemu (`-kernel xen`, dom0's kernel and initramfs as multiboot
//! modules), a PV dom0 on a Debian root (a qcow2 overlay on the cached image, so the cache is never
//! written), and a PV domU started by dom0 with `xl create`, whose vif joins a bridge with dom0's NIC
//! (a tap in the victim's namespace): the domU owns the victim's lab address and serves HTTP on 80.
//!
//! ```text
//!  lab ns: veth ── bridge ── tap ══ qemu: virtio-net ── dom0: xenbr0 ── vif1.0 ══ domU eth (10.x.13.2)
//!                                  virtio-serial ──── dom0 ── vmgctl ── vif1.1 ══ domU eth (169.254.77.2)
//! ```
//!
//! **Telemetry from dom0**: two more virtio-serial ports, whose host ends are qemu chardev sockets
//! (`trace.qemu.sock`, `stats.qemu.sock`). On `vmguard.trace` dom0 runs xentrace for the life of dom0
//! (restarted if it ends) on the hypercall, HVM and scheduler classes ([`XENTRACE_MASK`]); the host
//! parses the records into per-domain hypercall counts (`telemetry::xen::stream`). On `vmguard.stats`
//! dom0 writes its `/proc/net/dev` every second: the domU's vif counters as netback sees them. A qemu
//! chardev serves one client, so the lab starts [`crate::relay`] (`vmguard-xen-relay`) right after
//! qemu: the one client of both, serving any number of readers on `trace.sock` and `stats.sock`
//! (recorded in [`XenInfo`]). A reader that joins gets the stream from then on: xentrace's at any
//! byte (it resynchronises), the stats in whole lines. With no reader the trace stream is held (dom0's
//! xentrace waits and Xen counts what it drops, as if nothing were connected), the stats lines dropped.
//!
//! **Command channel** (`lab exec xen -- CMD`): the host talks to dom0 over a virtio-serial port with
//! the qemu guest's protocol ([`super::qemu::guest_run`]), and dom0 relays a command for the domU
//! over TCP to a busybox httpd CGI bound to the domU's address on `vmgctl`, a bridge that exists only
//! inside dom0. Why not the domU's console (`xl console`, a pty): a tty echoes, mangles and limits
//! lines, carries kernel messages, and serves one reader; a private TCP link is binary-safe, serves
//! commands concurrently, and nothing of it listens on the lab network (the CGI server binds the
//! control address only, so floods and scans of the victim never reach it).
//!
//! The accelerator: KVM where Xen boots under it (probed with dom0's kernel, cached), else TCG.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use exec::Cmd;
use serde::{Deserialize, Serialize};

use super::qemu::{Accel, ProbeResult};
use crate::LabError;
use crate::spec::{AccelChoice, Host, LabSpec, VictimKind};
use crate::state::{LabState, VictimState};
use crate::xen_image::XenImage;

/// dom0's PID-1 script, placed on each lab's config disk.
pub const DOM0_INIT_SCRIPT: &str = include_str!("xen-dom0-init.sh");
/// The block hotplug script for the domU's /data disk (config disk too).
pub const BLOCK_SCRIPT: &str = include_str!("xen-block-data.sh");

/// The domU's Xen domain name.
pub const DOMU_NAME: &str = "vmguard-domu";
/// The command channel's link inside dom0: dom0's and the domU's addresses, and the port.
pub const CTL_DOM0_IP: &str = "169.254.77.1/24";
pub const CTL_DOMU_IP: &str = "169.254.77.2/24";
pub const CTL_PORT: u16 = 7000;
/// The name `lab exec` takes for dom0 itself (the victim `xen` is the domU).
pub const DOM0_EXEC_NAME: &str = "xen-dom0";
/// xentrace's event mask in dom0: the PV (hypercalls, multicall subcalls), HVM (VMMCALL of PVH guests)
/// and scheduler (switches, for attribution) classes, every subclass. `TRC_LOST_RECORDS` needs no
/// class: Xen writes it whenever it dropped records.
pub const XENTRACE_MASK: &str = "0x002af000";
/// Per-CPU trace buffer, in pages: one second of a busy domU's records under TCG with room to spare.
pub const XENTRACE_BUFFER_PAGES: u32 = 256;

const DOM0_UP: &str = "VMGUARD_DOM0_UP";
const DOMU_UP: &str = "VMGUARD_DOMU_UP";
const FAIL: &str = "VMGUARD_XEN_FAIL";
const PROBE_UP: &str = "VMGUARD_XEN_PROBE_UP";

/// What the lab records about its Xen machine beside the usual victim state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct XenInfo {
    pub image_key: String,
    pub xen_version: String,
    pub kernel_version: String,
    pub domu_name: String,
    /// Seconds from qemu's start until dom0 ran its tools and bridge, and until the domU was up.
    pub dom0_up_secs: Option<f64>,
    pub domu_up_secs: Option<f64>,
    /// dom0's and the domU's MACs on the lab network.
    pub dom0_mac: String,
    pub domu_mac: String,
    /// The domU's domain id (from dom0's up marker).
    #[serde(default)]
    pub domu_id: Option<u32>,
    /// Host ends of dom0's xentrace stream and of its network counters.
    #[serde(default)]
    pub trace_socket: Option<PathBuf>,
    #[serde(default)]
    pub stats_socket: Option<PathBuf>,
    /// The stream relay serving both (its PID is among the victim's too) and its counters' file.
    #[serde(default)]
    pub relay_pid: Option<u32>,
    #[serde(default)]
    pub relay_status: Option<PathBuf>,
}

/// The per-lab settings of a Xen machine: everything its generated files and command line say.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    pub prefix: String,
    pub address: std::net::Ipv4Addr,
    pub gateway: std::net::Ipv4Addr,
    pub syncookies: bool,
    pub dom0_mac: String,
    pub domu_mac: String,
    pub ctl_mac: String,
    pub memory_mib: u32,
    pub vcpus: u32,
    pub dom0_memory_mib: u32,
    pub domu_memory_mib: u32,
    pub domu_vcpus: u32,
    pub domu_boot_secs: u64,
}

impl Params {
    pub fn new(spec: &LabSpec, host: &Host) -> Params {
        let x = &spec.xen;
        Params {
            prefix: spec.prefix.clone(),
            address: host.address,
            gateway: host.gateway,
            syncookies: spec.syncookies,
            dom0_mac: mac_for(&spec.prefix, "xen-dom0", "52:54:00"),
            // 00:16:3e: Xen's own OUI, as xl would choose.
            domu_mac: mac_for(&spec.prefix, "xen-domu", "00:16:3e"),
            ctl_mac: mac_for(&spec.prefix, "xen-domu-ctl", "00:16:3e"),
            memory_mib: x.memory_mib,
            vcpus: x.vcpus,
            dom0_memory_mib: x.dom0_memory_mib,
            domu_memory_mib: x.domu_memory_mib,
            domu_vcpus: x.domu_vcpus,
            domu_boot_secs: x.boot_timeout_secs,
        }
    }

    /// `params`, sourced by dom0's init.
    pub fn params_file(&self) -> String {
        format!(
            "DOM0_MAC={}\nDOMU_NAME={DOMU_NAME}\nCTL_DOM0_IP={CTL_DOM0_IP}\nDOMU_BOOT_SECS={}\nXENTRACE_MASK={XENTRACE_MASK}\nXENTRACE_PAGES={XENTRACE_BUFFER_PAGES}\n",
            self.dom0_mac, self.domu_boot_secs
        )
    }

    /// The domU's xl configuration: a PV guest booted from the config disk's kernel and initramfs,
    /// a vif on dom0's lab bridge and one on the command channel's bridge.
    pub fn domu_config(&self) -> String {
        let cfg = "/run/vmguard/cfg";
        let extra = format!(
            "console=hvc0 quiet panic=-1 vmguard.ip={}/24 vmguard.gw={} vmguard.mac={} vmguard.ctlip={CTL_DOMU_IP} vmguard.ctlmac={} vmguard.syncookies={}",
            self.address,
            self.gateway,
            self.domu_mac,
            self.ctl_mac,
            u8::from(self.syncookies)
        );
        format!(
            "name = \"{DOMU_NAME}\"\ntype = \"pv\"\nkernel = \"{cfg}/vmlinuz\"\nramdisk = \"{cfg}/domu-initramfs.cpio\"\nextra = \"{extra}\"\nmemory = {}\nvcpus = {}\nvif = [ \"mac={},bridge=xenbr0\", \"mac={},bridge=vmgctl\" ]\non_poweroff = \"destroy\"\non_reboot = \"destroy\"\non_crash = \"destroy\"\n",
            self.domu_memory_mib, self.domu_vcpus, self.domu_mac, self.ctl_mac
        )
    }

    /// Xen's command line: its console on the first serial port (qemu's console log), dom0's memory
    /// fixed (no ballooning), one vCPU for dom0.
    pub fn xen_cmdline(&self) -> String {
        format!(
            "console=com1 com1=115200,8n1 dom0_mem={m}M,max:{m}M dom0_max_vcpus=1 noreboot loglvl=warning guest_loglvl=warning",
            m = self.dom0_memory_mib
        )
    }

    /// qemu's `-initrd` for a multiboot kernel: the modules, comma-separated, each with its command
    /// line (qemu reads `,,` as a literal comma in a path).
    pub fn multiboot_modules(&self, image: &XenImage, probe: bool) -> String {
        let esc = |p: &Path| p.to_string_lossy().replace(',', ",,");
        format!(
            "{} console=hvc0 quiet panic=-1 vmguard.probe={},{}",
            esc(&image.kernel),
            u8::from(probe),
            esc(&image.dom0_initramfs)
        )
    }

    /// The whole qemu command line (after the binary) of a lab's Xen machine.
    pub fn qemu_args(&self, accel: Accel, image: &XenImage, files: &MachineFiles) -> Vec<String> {
        let mut a: Vec<String> = vec!["-name".into(), format!("{}-xen,debug-threads=on", self.prefix)];
        a.extend(accel_args(accel));
        a.extend(["-M", "pc", "-nodefaults", "-no-reboot", "-display", "none", "-m"].iter().map(|s| s.to_string()));
        a.push(self.memory_mib.to_string());
        a.push("-smp".into());
        a.push(self.vcpus.to_string());
        a.push("-kernel".into());
        a.push(image.xen.to_string_lossy().into_owned());
        a.push("-append".into());
        a.push(self.xen_cmdline());
        a.push("-initrd".into());
        a.push(self.multiboot_modules(image, false));
        a.push("-drive".into());
        a.push(format!("file={},format=qcow2,if=virtio", files.overlay.display()));
        a.push("-drive".into());
        a.push(format!("file={},format=raw,if=virtio,readonly=on", files.config_disk.display()));
        // The domU's /data: dom0 passes it on as the domU's PV disk (blkback).
        a.push("-drive".into());
        a.push(format!("file={},format=raw,if=virtio,cache=none,aio=threads", files.data_disk.display()));
        a.push("-netdev".into());
        a.push(format!("tap,id=n0,ifname={},script=no,downscript=no", files.tap));
        a.push("-device".into());
        a.push(format!("virtio-net-pci,netdev=n0,mac={}", self.dom0_mac));
        a.push("-serial".into());
        a.push(format!("file:{}", files.console.display()));
        a.push("-qmp".into());
        a.push(format!("unix:{},server=on,wait=off", files.qmp.display()));
        a.extend(["-device".into(), "virtio-serial-pci".into(), "-chardev".into()]);
        a.push(format!("socket,id=ctl,path={},server=on,wait=off", files.control.display()));
        a.extend(["-device".into(), "virtserialport,chardev=ctl,name=vmguard.ctl".into()]);
        // qemu's ends of the telemetry ports: the relay is their one client.
        let ports =
            [("trace", &files.trace_upstream, "vmguard.trace"), ("stats", &files.stats_upstream, "vmguard.stats")];
        for (id, path, port) in ports {
            a.push("-chardev".into());
            a.push(format!("socket,id={id},path={},server=on,wait=off", path.display()));
            a.extend(["-device".into(), format!("virtserialport,chardev={id},name={port}")]);
        }
        a
    }
}

/// The per-lab files of a Xen machine.
#[derive(Debug, Clone, PartialEq)]
pub struct MachineFiles {
    pub overlay: PathBuf,
    pub config_disk: PathBuf,
    pub data_disk: PathBuf,
    pub console: PathBuf,
    pub qmp: PathBuf,
    pub control: PathBuf,
    /// The relay's sockets, which readers connect to, and qemu's, which the relay reads.
    pub trace: PathBuf,
    pub stats: PathBuf,
    pub trace_upstream: PathBuf,
    pub stats_upstream: PathBuf,
    pub relay_status: PathBuf,
    pub relay_log: PathBuf,
    pub tap: String,
}

impl MachineFiles {
    pub fn under(dir: &Path, tap: &str) -> MachineFiles {
        MachineFiles {
            overlay: dir.join("dom0-root.qcow2"),
            config_disk: dir.join("config.img"),
            data_disk: dir.join("data.img"),
            console: dir.join("console.log"),
            qmp: dir.join("qmp.sock"),
            control: dir.join("ctl.sock"),
            trace: dir.join("trace.sock"),
            stats: dir.join("stats.sock"),
            trace_upstream: dir.join("trace.qemu.sock"),
            stats_upstream: dir.join("stats.qemu.sock"),
            relay_status: dir.join("relay.json"),
            relay_log: dir.join("relay.log"),
            tap: tap.to_string(),
        }
    }
}

fn accel_args(accel: Accel) -> Vec<String> {
    match accel {
        Accel::Kvm => ["-accel", "kvm", "-cpu", "host"],
        // qemu64: the model Xen 4.17 was seen to boot with under TCG (lab-facts).
        Accel::Tcg => ["-accel", "tcg,thread=multi", "-cpu", "qemu64"],
    }
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// A locally administered (or Xen OUI) MAC derived from the lab prefix, stable across runs.
fn mac_for(prefix: &str, what: &str, oui: &str) -> String {
    let h = super::qemu::hex_key(&[prefix, what]);
    format!("{oui}:{}:{}:{}", &h[0..2], &h[2..4], &h[4..6])
}

/// Decide the accelerator, probing KVM with Xen and dom0's kernel when the spec says `auto`.
pub fn choose_accel(
    spec: &LabSpec,
    image: &XenImage,
    probe_ns: &str,
    progress: &dyn Fn(&str),
) -> Result<ProbeResult, LabError> {
    let kvm_usable = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok();
    match spec.xen.accelerator {
        AccelChoice::Tcg => return Ok(ProbeResult { accel: Accel::Tcg, reason: "configured".into() }),
        AccelChoice::Kvm if !kvm_usable => {
            return Err(LabError::Spec("[lab.xen] accelerator = \"kvm\" but /dev/kvm cannot be opened".into()));
        }
        AccelChoice::Kvm => return Ok(ProbeResult { accel: Accel::Kvm, reason: "configured".into() }),
        AccelChoice::Auto if !kvm_usable => {
            return Ok(ProbeResult { accel: Accel::Tcg, reason: "/dev/kvm cannot be opened".into() });
        }
        AccelChoice::Auto => {}
    }
    let qemu_version = Cmd::new(super::qemu::qemu_binary()?).arg("--version").stdout()?;
    let host_kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let key = super::qemu::hex_key(&[&image.key, qemu_version.lines().next().unwrap_or(""), host_kernel.trim()]);
    let cache = spec.cache_dir.join(format!("accel-probe-xen-{key}.json"));
    if let Some(cached) = std::fs::read_to_string(&cache).ok().and_then(|t| serde_json::from_str(&t).ok()) {
        return Ok(cached);
    }
    progress("probing whether Xen boots under KVM");
    let result = probe_kvm(spec, image, probe_ns)?;
    crate::state::write_atomic(&cache, serde_json::to_string(&result).expect("json").as_bytes())?;
    Ok(result)
}

/// Boot Xen and dom0's kernel under KVM with no devices: usable if dom0's first stage runs in time.
fn probe_kvm(spec: &LabSpec, image: &XenImage, ns: &str) -> Result<ProbeResult, LabError> {
    let dir = LabState::dir(spec).join("xen-probe");
    std::fs::create_dir_all(&dir).map_err(|e| LabError::io("creating the Xen probe directory", e))?;
    let console = dir.join("console.log");
    let log = dir.join("qemu.log");
    let _ = std::fs::remove_file(&console);
    let params = Params { memory_mib: 768, dom0_memory_mib: 512, ..Params::new(spec, &spec.plan().client) };
    let pid = Cmd::new(super::qemu::qemu_binary()?)
        .args(accel_args(Accel::Kvm))
        .args(["-M", "pc", "-m", "768", "-smp", "1", "-nodefaults", "-no-reboot", "-display", "none"])
        .arg("-kernel")
        .arg(&image.xen)
        .args(["-append", &params.xen_cmdline()])
        .args(["-initrd", &params.multiboot_modules(image, true)])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        // In the lab's namespace: `lab down` finds it there after a crash.
        .netns(ns)
        .spawn_detached(&log)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let result = loop {
        let text = std::fs::read_to_string(&console).unwrap_or_default();
        if text.contains(PROBE_UP) {
            break ProbeResult { accel: Accel::Kvm, reason: "Xen and dom0 booted under KVM".into() };
        }
        let err = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = err.lines().find(|l| l.contains("error") || l.contains("Error")) {
            break ProbeResult { accel: Accel::Tcg, reason: format!("KVM failed: {}", line.trim()) };
        }
        if !exec::pid_alive(pid) {
            break ProbeResult { accel: Accel::Tcg, reason: "qemu exited under KVM before dom0 was up".into() };
        }
        if Instant::now() > deadline {
            break ProbeResult { accel: Accel::Tcg, reason: "Xen's dom0 did not boot under KVM within 60 s".into() };
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    exec::stop_pid(pid, Duration::from_secs(2)).map_err(|e| LabError::io("stopping the Xen KVM probe", e))?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(result)
}

/// Make the lab's disks and start qemu; [`wait_booted`] waits for dom0 and the domU.
///
/// The domU's `/data` disk is made with the database tier's data directory (`db_template`) on it, as
/// the qemu guest's is.
pub fn start(
    state: &LabState,
    host: &Host,
    image: &XenImage,
    accel: &ProbeResult,
    db_template: &Path,
) -> Result<VictimState, LabError> {
    let spec = &state.spec;
    let dir = LabState::dir(spec).join("xen");
    std::fs::create_dir_all(&dir).map_err(|e| LabError::io(format!("creating {}", dir.display()), e))?;
    let files = MachineFiles::under(&dir, &crate::net::xen_tap(&state.plan));
    let params = Params::new(spec, host);
    // dom0 writes to its own overlay; the cached root stays as built.
    let _ = std::fs::remove_file(&files.overlay);
    Cmd::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
        .arg(&image.dom0_root)
        .arg(&files.overlay)
        .run()?;
    write_config_disk(&dir, &files.config_disk, &params, image)?;
    Cmd::new("qemu-img")
        .args(["create", "-q", "-f", "raw"])
        .arg(&files.data_disk)
        .arg(format!("{}M", spec.qemu.disk_mib))
        .run()?;
    let disk_root = dir.join("data-root");
    crate::database::place(db_template, &disk_root.join(crate::database::DIR_NAME))?;
    let made = Cmd::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "vmguard-data", "-d"])
        .arg(&disk_root)
        .arg(&files.data_disk)
        .run();
    let _ = std::fs::remove_dir_all(&disk_root);
    made?;
    let log = dir.join("qemu.log");
    let _ = std::fs::remove_file(&files.console);
    let pid = Cmd::new(super::qemu::qemu_binary()?)
        .args(params.qemu_args(accel.accel, image, &files))
        .netns(&host.ns)
        .spawn_detached(&log)?;
    // In the same namespace as qemu: `lab down` finds both there after a crash.
    let relay_pid = start_relay(&files, &host.ns)?;
    Ok(VictimState {
        accelerator: Some(accel.accel.as_str().into()),
        host_iface: files.tap.clone(),
        qmp_socket: Some(files.qmp.clone()),
        control_socket: Some(files.control.clone()),
        xen: Some(XenInfo {
            image_key: image.key.clone(),
            xen_version: image.xen_version.clone(),
            kernel_version: image.kernel_version.clone(),
            domu_name: DOMU_NAME.into(),
            dom0_up_secs: None,
            domu_up_secs: None,
            dom0_mac: params.dom0_mac.clone(),
            domu_mac: params.domu_mac.clone(),
            domu_id: None,
            trace_socket: Some(files.trace.clone()),
            stats_socket: Some(files.stats.clone()),
            relay_pid: Some(relay_pid),
            relay_status: Some(files.relay_status.clone()),
        }),
        // qemu first: `wait_booted` watches pids[0]; the relay is the victim's too (status, down).
        ..VictimState::new(VictimKind::Xen, host, vec![pid, relay_pid], files.console.clone())
    })
}

/// `vmguard-xen-relay` next to the running binary (the same cargo target directory), else on PATH.
pub fn relay_binary() -> Result<PathBuf, LabError> {
    super::companion_binary(crate::relay::RELAY_BIN, "the Xen victim's stream relay", "cargo build -p lab")
}

/// The relay's command line (after the binary).
pub fn relay_args(files: &MachineFiles) -> Vec<std::ffi::OsString> {
    let mut a: Vec<std::ffi::OsString> = vec!["--trace".into()];
    a.extend([files.trace_upstream.clone().into(), files.trace.clone().into(), "--stats".into()]);
    a.extend([files.stats_upstream.clone().into(), files.stats.clone().into(), "--status".into()]);
    a.push(files.relay_status.clone().into());
    a
}

/// Start the stream relay and wait until it listens for readers (qemu's sockets may come later:
/// the relay connects to them when they do).
fn start_relay(files: &MachineFiles, ns: &str) -> Result<u32, LabError> {
    let bin = relay_binary()?;
    for p in [&files.trace, &files.stats, &files.relay_status] {
        let _ = std::fs::remove_file(p);
    }
    let pid = Cmd::new(&bin).args(relay_args(files)).netns(ns).spawn_detached(&files.relay_log)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let fail = |reason: String| LabError::Victim { victim: "xen".into(), reason, log: files.relay_log.clone() };
    while !(files.trace.exists() && files.stats.exists()) {
        if !exec::pid_alive(pid) {
            return Err(fail(format!(
                "{} exited at start: {}",
                crate::relay::RELAY_BIN,
                super::qemu::tail(&files.relay_log, 3)
            )));
        }
        if Instant::now() > deadline {
            return Err(fail(format!("{} did not listen within 10 s", crate::relay::RELAY_BIN)));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(pid)
}

/// The lab's config disk (ext4, read-only in dom0): dom0's init and params, the domU's kernel,
/// initramfs and xl config.
fn write_config_disk(dir: &Path, disk: &Path, params: &Params, image: &XenImage) -> Result<(), LabError> {
    let staging = dir.join("config-root");
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(|e| LabError::io("creating the config disk's files", e))?;
    let write = |name: &str, data: &[u8]| {
        std::fs::write(staging.join(name), data).map_err(|e| LabError::io(format!("writing {name}"), e))
    };
    write("dom0-init.sh", DOM0_INIT_SCRIPT.as_bytes())?;
    write("block-data", BLOCK_SCRIPT.as_bytes())?;
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(staging.join("block-data"), std::fs::Permissions::from_mode(0o755))
            .map_err(|e| LabError::io("making block-data executable", e))?;
    }
    write("params", params.params_file().as_bytes())?;
    write("domu.cfg", params.domu_config().as_bytes())?;
    let mut bytes = 0;
    for (src, name) in [(&image.kernel, "vmlinuz"), (&image.domu_initramfs, "domu-initramfs.cpio")] {
        let dst = staging.join(name);
        // A hard link where the cache and the run directory share a filesystem, else a copy.
        if std::fs::hard_link(src, &dst).is_err() {
            std::fs::copy(src, &dst).map_err(|e| LabError::io(format!("copying {}", src.display()), e))?;
        }
        bytes += std::fs::metadata(&dst).map(|m| m.len()).unwrap_or(0);
    }
    let mib = config_disk_mib(bytes);
    let _ = std::fs::remove_file(disk);
    let made = Cmd::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "vmguard-xencfg", "-d"])
        .arg(&staging)
        .arg(disk)
        .arg(format!("{mib}M"))
        .run();
    let _ = std::fs::remove_dir_all(&staging);
    made?;
    Ok(())
}

/// The config disk's size: its files, a quarter more for ext4's own, and 16 MiB.
pub fn config_disk_mib(file_bytes: u64) -> u64 {
    (file_bytes + file_bytes / 4) / (1 << 20) + 16
}

/// Boot progress read from the console log: dom0 up, domU up, or a failure reason.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BootProgress {
    pub dom0_up: bool,
    pub domu_up: bool,
    /// The domU's domain id, as the up marker gives it.
    pub domu_id: Option<u32>,
    pub failure: Option<String>,
}

pub fn boot_progress(console: &str) -> BootProgress {
    let mut p = BootProgress::default();
    for line in console.lines() {
        let line = line.trim_end_matches('\r');
        if line.contains(DOM0_UP) {
            p.dom0_up = true;
        }
        if let Some(i) = line.find(DOMU_UP) {
            p.domu_up = true;
            p.domu_id = line[i..].split_whitespace().find_map(|w| w.strip_prefix("domid=")?.parse().ok());
        }
        if let Some(i) = line.find(FAIL) {
            p.failure.get_or_insert_with(|| line[i + FAIL.len()..].trim().to_string());
        }
        // Xen's own panic ("Panic on CPU 0:") and the reason on the next lines.
        if line.contains("Panic on CPU") {
            p.failure.get_or_insert_with(|| "Xen panicked (see the console log)".into());
        }
        if line.contains("Kernel panic") {
            p.failure.get_or_insert_with(|| format!("dom0 {}", line.trim()));
        }
    }
    p
}

/// Wait until dom0 and then the domU report up; records both times in the victim's [`XenInfo`].
pub fn wait_booted(victim: &mut VictimState, started: Instant, timeout: Duration) -> Result<(), LabError> {
    let pid = victim.pids[0];
    let console = victim.log.clone();
    let log = console.with_file_name("qemu.log");
    let deadline = started + timeout;
    loop {
        let p = boot_progress(&std::fs::read_to_string(&console).unwrap_or_default());
        if let Some(info) = victim.xen.as_mut() {
            if p.dom0_up && info.dom0_up_secs.is_none() {
                info.dom0_up_secs = Some(started.elapsed().as_secs_f64());
            }
            if p.domu_up && info.domu_up_secs.is_none() {
                info.domu_up_secs = Some(started.elapsed().as_secs_f64());
                info.domu_id = p.domu_id;
            }
        }
        if let Some(reason) = p.failure {
            return Err(LabError::Victim { victim: victim.name.clone(), reason, log: console });
        }
        if p.domu_up {
            return Ok(());
        }
        if !exec::pid_alive(pid) {
            return Err(LabError::Victim {
                victim: victim.name.clone(),
                reason: format!("qemu exited during Xen's boot: {}", super::qemu::tail(&log, 5)),
                log,
            });
        }
        if Instant::now() > deadline {
            let stage = if p.dom0_up { "the domU did not come up" } else { "dom0 did not come up" };
            return Err(LabError::Victim {
                victim: victim.name.clone(),
                reason: format!(
                    "{stage} within {timeout:?} (raise [lab.xen] boot_timeout_secs); console: {}",
                    super::qemu::tail(&console, 3)
                ),
                log: console,
            });
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The dom0 script that runs `script` in the domU over the command channel and exits with its
/// status; `timeout` bounds the relay (a gone domU fails it instead of blocking dom0's channel).
pub fn relay_script(script: &str, timeout: Duration) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(script);
    let ip = CTL_DOMU_IP.split('/').next().expect("address");
    format!(
        "body='{body}'\n\
         f=/tmp/relay.$$\n\
         printf 'POST /cgi-bin/run HTTP/1.0\\r\\nContent-Length: %d\\r\\n\\r\\n%s' ${{#body}} \"$body\" | timeout {secs} busybox nc {ip} {CTL_PORT} > $f 2>&1\n\
         rc=$(sed -n 's/^@@VMGUARD-DOMU-EXIT \\([0-9][0-9]*\\)$/\\1/p' $f | tail -n 1)\n\
         sed -e '1,/^[[:space:]]*$/d' -e '/^@@VMGUARD-DOMU-EXIT [0-9]*$/d' $f\n\
         rm -f $f\n\
         [ -n \"$rc\" ] || {{ echo 'vmguard: no exit status from the domU: its command channel did not answer (relay bounded at {secs} s)' >&2; exit 255; }}\n\
         exit $rc\n",
        secs = timeout.as_secs().max(1)
    )
}

/// One line of `xl list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct XlDomain {
    pub name: String,
    pub id: u32,
    pub mem_mib: u64,
    pub vcpus: u32,
    pub state: String,
    pub cpu_secs: String,
}

/// `xl list`'s table: a header line, then `Name ID Mem VCPUs State Time(s)` per domain.
pub fn parse_xl_list(text: &str) -> Vec<XlDomain> {
    text.lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            if w.len() < 6 || w[0] == "Name" {
                return None;
            }
            let n = w.len();
            Some(XlDomain {
                name: w[..n - 5].join(" "),
                id: w[n - 5].parse().ok()?,
                mem_mib: w[n - 4].parse().ok()?,
                vcpus: w[n - 3].parse().ok()?,
                state: w[n - 2].to_string(),
                cpu_secs: w[n - 1].parse::<f64>().ok().map(|_| w[n - 1].to_string())?,
            })
        })
        .collect()
}

/// dom0 and the domU as `xl list` shows them now (through the command channel).
pub fn domains(victim: &VictimState, timeout: Duration) -> Result<Vec<XlDomain>, LabError> {
    let ctl = victim.control_socket.as_ref().ok_or_else(|| LabError::NoGuestChannel(victim.name.clone()))?;
    let out = super::qemu::guest_run(ctl, "xl list", timeout)?;
    Ok(parse_xl_list(&out.output))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn params() -> Params {
        let spec = LabSpec { prefix: "vmgx".into(), network: "10.221.0.0/16".parse().unwrap(), ..Default::default() };
        let spec = LabSpec { victims: vec![VictimKind::Vanilla, VictimKind::Xen], ..spec };
        let plan = spec.plan();
        Params::new(&spec, plan.victim(VictimKind::Xen).unwrap())
    }

    fn image() -> XenImage {
        XenImage {
            key: "k".into(),
            xen_version: "4.17.5".into(),
            kernel_package: "linux-image-6.1.0-57-amd64".into(),
            kernel_version: "6.1.192-3".into(),
            xen: "/c/xenimg-k/xen".into(),
            kernel: "/c/xenimg-k/vmlinuz".into(),
            dom0_initramfs: "/c/xenimg-k/dom0-initramfs.cpio".into(),
            domu_initramfs: "/c/xenimg-k/domu-initramfs.cpio".into(),
            domu_initramfs_bytes: 1,
            dom0_root: "/c/xenroot-r/root.img".into(),
            build_secs: None,
            root_build_secs: None,
        }
    }

    #[test]
    fn the_domu_gets_the_victims_lab_address_and_two_vifs() {
        let p = params();
        assert_eq!(p.address.to_string(), "10.221.13.2");
        let cfg = p.domu_config();
        assert!(cfg.contains("name = \"vmguard-domu\"\ntype = \"pv\"\n"), "{cfg}");
        assert!(cfg.contains("vmguard.ip=10.221.13.2/24 vmguard.gw=10.221.13.1 "), "{cfg}");
        assert!(
            cfg.contains(&format!(
                "vif = [ \"mac={},bridge=xenbr0\", \"mac={},bridge=vmgctl\" ]",
                p.domu_mac, p.ctl_mac
            ))
        );
        assert!(cfg.contains("memory = 512\nvcpus = 1\n"));
        assert!(cfg.contains("vmguard.syncookies=1"));
        assert!(p.domu_mac.starts_with("00:16:3e:") && p.ctl_mac.starts_with("00:16:3e:"));
        assert!(p.dom0_mac.starts_with("52:54:00:"));
        assert_ne!(p.domu_mac, p.ctl_mac);
        assert_eq!(params().domu_mac, p.domu_mac, "MACs are stable across runs");
        let params = p.params_file();
        assert!(params.contains(&format!("DOM0_MAC={}\n", p.dom0_mac)) && params.contains("DOMU_NAME=vmguard-domu\n"));
        // Every line of params is a plain shell assignment.
        assert!(params.lines().all(|l| {
            l.split_once('=').is_some_and(|(k, v)| {
                k.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_') && !v.contains(' ')
            })
        }));
    }

    #[test]
    fn qemu_boots_xen_with_dom0_as_multiboot_modules() {
        let p = params();
        let files = MachineFiles::under(Path::new("/run/lab/xen"), "vmgx-xtap0");
        let args = p.qemu_args(Accel::Tcg, &image(), &files);
        let after = |flag: &str| args.iter().position(|a| a == flag).map(|i| args[i + 1].clone()).unwrap();
        assert_eq!(after("-kernel"), "/c/xenimg-k/xen");
        assert_eq!(after("-accel"), "tcg,thread=multi");
        assert_eq!(
            after("-initrd"),
            "/c/xenimg-k/vmlinuz console=hvc0 quiet panic=-1 vmguard.probe=0,/c/xenimg-k/dom0-initramfs.cpio"
        );
        assert!(after("-append").contains("dom0_mem=384M,max:384M"));
        assert!(after("-append").starts_with("console=com1 "));
        assert_eq!(after("-m"), "1280");
        assert_eq!(after("-netdev"), "tap,id=n0,ifname=vmgx-xtap0,script=no,downscript=no");
        assert!(args.contains(&"file=/run/lab/xen/dom0-root.qcow2,format=qcow2,if=virtio".to_string()));
        assert!(args.contains(&"file=/run/lab/xen/config.img,format=raw,if=virtio,readonly=on".to_string()));
        assert!(args.contains(&"file=/run/lab/xen/data.img,format=raw,if=virtio,cache=none,aio=threads".to_string()));
        assert!(args.contains(&"virtserialport,chardev=ctl,name=vmguard.ctl".to_string()));
        // qemu's telemetry sockets are the relay's upstreams; readers use the relay's.
        assert!(args.contains(&"socket,id=trace,path=/run/lab/xen/trace.qemu.sock,server=on,wait=off".to_string()));
        assert!(args.contains(&"socket,id=stats,path=/run/lab/xen/stats.qemu.sock,server=on,wait=off".to_string()));
        let relay: Vec<String> = relay_args(&files).iter().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(
            relay.join(" "),
            "--trace /run/lab/xen/trace.qemu.sock /run/lab/xen/trace.sock --stats /run/lab/xen/stats.qemu.sock /run/lab/xen/stats.sock --status /run/lab/xen/relay.json"
        );
        assert!(args.contains(&"virtserialport,chardev=trace,name=vmguard.trace".to_string()));
        assert!(args.contains(&"virtserialport,chardev=stats,name=vmguard.stats".to_string()));
        let kvm = p.qemu_args(Accel::Kvm, &image(), &files);
        assert!(kvm.windows(2).any(|w| w == ["-accel", "kvm"]) && kvm.windows(2).any(|w| w == ["-cpu", "host"]));
        // A comma in a module's path is doubled: qemu splits the modules at single commas.
        let mut img = image();
        img.kernel = "/c/a,b/vmlinuz".into();
        assert!(
            p.multiboot_modules(&img, true).starts_with("/c/a,,b/vmlinuz console=hvc0 quiet panic=-1 vmguard.probe=1,")
        );
    }

    #[test]
    fn boot_progress_reads_markers_and_failures() {
        assert_eq!(boot_progress(""), BootProgress::default());
        let p = boot_progress("(XEN) Xen version 4.17\r\nVMGUARD_DOM0_UP uptime=9.1 nic=eth0\r\n");
        assert!(p.dom0_up && !p.domu_up && p.failure.is_none());
        let p = boot_progress("VMGUARD_DOM0_UP x\nVMGUARD_DOMU_UP uptime=20 domid=1\n");
        assert!(p.domu_up);
        assert_eq!(p.domu_id, Some(1));
        let p = boot_progress("[  3.0] VMGUARD_XEN_FAIL xl create: bridge xenbr0 missing\r\nVMGUARD_XEN_FAIL later\n");
        assert_eq!(p.failure.as_deref(), Some("xl create: bridge xenbr0 missing"));
        assert!(boot_progress("(XEN) Panic on CPU 0:\n").failure.unwrap().contains("Xen panicked"));
    }

    #[test]
    fn config_disk_has_room() {
        assert_eq!(config_disk_mib(0), 16);
        assert!(config_disk_mib(100 << 20) >= 125 + 16);
    }

    #[test]
    fn the_relay_is_valid_shell_and_carries_the_script_intact() {
        let script = "echo 'quotes' \"and\" $HOME `x` \\ end\n";
        let relay = relay_script(script, Duration::from_secs(30));
        let out = Cmd::new("sh").arg("-n").stdin(relay.as_str()).run_unchecked().unwrap();
        assert!(out.status.success(), "{}: {relay}", out.stderr);
        assert!(relay.contains("timeout 30 busybox nc 169.254.77.2 7000"));
        for (name, s) in [("dom0 init", DOM0_INIT_SCRIPT), ("block-data", BLOCK_SCRIPT)] {
            let out = Cmd::new("sh").arg("-n").stdin(s).run_unchecked().unwrap();
            assert!(out.status.success() && s.starts_with("#!/bin/sh\n"), "{name}: {}", out.stderr);
        }
        use base64::Engine as _;
        let body = relay.lines().next().unwrap().strip_prefix("body='").unwrap().strip_suffix('\'').unwrap();
        assert_eq!(base64::engine::general_purpose::STANDARD.decode(body).unwrap(), script.as_bytes());
    }

    #[test]
    fn the_relay_parses_the_domus_answer() {
        // Run the relay's answer handling on a canned answer: a fake `busybox` prints it.
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("busybox");
        std::fs::write(&fake, "#!/bin/sh\ncat > /dev/null\nprintf 'HTTP/1.1 200 OK\\r\\nContent-Type: text/plain\\n\\nline one\\n\\nline three\\n@@VMGUARD-DOMU-EXIT 3\\n'\n").unwrap();
        Cmd::new("chmod").args(["755"]).arg(&fake).run().unwrap();
        let relay = relay_script("true", Duration::from_secs(5));
        let path = format!("{}:{}", dir.path().display(), std::env::var("PATH").unwrap_or_default());
        let out = std::process::Command::new("sh").args(["-c", &relay]).env("PATH", path).output().unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "line one\n\nline three\n");
    }

    #[test]
    fn xl_list_is_parsed() {
        let text = "Name                                        ID   Mem VCPUs\tState\tTime(s)\nDomain-0                                     0   384     1     r-----      41.2\nvmguard-domu                                 1   256     1     -b----       3.9\n";
        let d = parse_xl_list(text);
        assert_eq!(d.len(), 2);
        assert_eq!(
            d[0],
            XlDomain {
                name: "Domain-0".into(),
                id: 0,
                mem_mib: 384,
                vcpus: 1,
                state: "r-----".into(),
                cpu_secs: "41.2".into()
            }
        );
        assert_eq!((d[1].name.as_str(), d[1].id, d[1].state.as_str()), ("vmguard-domu", 1, "-b----"));
        assert!(parse_xl_list("libxl: error: cannot connect\n").is_empty());
    }

    proptest! {
        #[test]
        fn xl_list_parser_never_panics(s in "(?s).{0,400}") {
            let _ = parse_xl_list(&s);
            let _ = boot_progress(&s);
        }

        #[test]
        fn xl_list_rows_round_trip(name in "[A-Za-z][A-Za-z0-9_.-]{0,20}", id in 0u32..32000, mem in 0u64..1 << 20, vcpus in 1u32..64, state in "[-rbpscd]{6}", t in 0.0f64..1e6) {
            let row = format!("Name ID Mem VCPUs State Time(s)\n{name:<40} {id:>5} {mem:>5} {vcpus:>5}     {state} {t:>10.1}\n");
            let d = parse_xl_list(&row);
            prop_assert_eq!(d.len(), 1);
            prop_assert_eq!(&d[0].name, &name);
            prop_assert_eq!((d[0].id, d[0].mem_mib, d[0].vcpus), (id, mem, vcpus));
            prop_assert_eq!(&d[0].state, &state);
        }
    }
}
