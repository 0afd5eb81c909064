//! The qemu victim: a Linux guest (Debian cloud kernel + vmguard's busybox initramfs) with
//! virtio-net on a tap in the victim's namespace (qemu's own device model, or vmguard's
//! vhost-user backend `vmguard-vhost-net` with `net_backend = "vhost-user"`), a virtio disk for file benchmarks, QMP for
//! statistics and a virtio-serial command channel.
//!
//! The accelerator is probed: KVM where the real guest boots with it, otherwise TCG. One code path
//! serves both; only `-accel` and `-cpu` differ.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use exec::Cmd;
use serde::{Deserialize, Serialize};

use crate::LabError;
use crate::image::GuestImage;
use crate::spec::{AccelChoice, Host, LabSpec, QemuNetBackend, VictimKind};
use crate::state::{LabState, VictimState};

/// What the guest's init prints once its services run.
const UP_MARKER: &str = "VMGUARD_GUEST_UP";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }

    fn qemu_args(self) -> [&'static str; 4] {
        match self {
            Accel::Kvm => ["-accel", "kvm", "-cpu", "host"],
            // qemu64: the model lab-facts saw boot the cloud kernel quickly under TCG.
            Accel::Tcg => ["-accel", "tcg,thread=multi", "-cpu", "qemu64"],
        }
    }
}

/// The outcome of a KVM probe, cached per image, host kernel and qemu version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeResult {
    pub accel: Accel,
    pub reason: String,
}

pub fn qemu_binary() -> Result<PathBuf, LabError> {
    exec::which("qemu-system-x86_64")
        .ok_or_else(|| LabError::Missing("qemu-system-x86_64 (Debian package qemu-system-x86): run `make deps`".into()))
}

/// Decide the accelerator for `image`, probing KVM with the real guest when the spec says `auto`.
pub fn choose_accel(
    spec: &LabSpec,
    image: &GuestImage,
    probe_ns: &str,
    progress: &dyn Fn(&str),
) -> Result<ProbeResult, LabError> {
    let kvm_usable = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok();
    match spec.qemu.accelerator {
        AccelChoice::Tcg => return Ok(ProbeResult { accel: Accel::Tcg, reason: "configured".into() }),
        AccelChoice::Kvm if !kvm_usable => {
            return Err(LabError::Spec("accelerator = \"kvm\" but /dev/kvm cannot be opened".into()));
        }
        AccelChoice::Kvm => return Ok(ProbeResult { accel: Accel::Kvm, reason: "configured".into() }),
        AccelChoice::Auto if !kvm_usable => {
            return Ok(ProbeResult { accel: Accel::Tcg, reason: "/dev/kvm cannot be opened".into() });
        }
        AccelChoice::Auto => {}
    }
    let qemu_version = Cmd::new(qemu_binary()?).arg("--version").stdout()?;
    let host_kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cache_key = hex_key(&[&image.key, qemu_version.lines().next().unwrap_or(""), host_kernel.trim()]);
    let cache = spec.cache_dir.join(format!("accel-probe-{cache_key}.json"));
    if let Some(cached) =
        std::fs::read_to_string(&cache).ok().and_then(|t| serde_json::from_str::<ProbeResult>(&t).ok())
    {
        return Ok(cached);
    }
    progress("probing whether the guest boots under KVM");
    let result = probe_kvm(spec, image, probe_ns)?;
    crate::state::write_atomic(&cache, serde_json::to_string(&result).expect("json").as_bytes())?;
    Ok(result)
}

pub(crate) fn hex_key(parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..8])
}

/// Boot the guest under KVM with no devices; KVM is usable if it reaches userspace in time.
fn probe_kvm(spec: &LabSpec, image: &GuestImage, ns: &str) -> Result<ProbeResult, LabError> {
    let dir = LabState::dir(spec).join("qemu-probe");
    std::fs::create_dir_all(&dir).map_err(|e| LabError::io("creating the probe directory", e))?;
    let console = dir.join("console.log");
    let log = dir.join("qemu.log");
    let _ = std::fs::remove_file(&console);
    let pid = Cmd::new(qemu_binary()?)
        .args(Accel::Kvm.qemu_args())
        .args(["-M", "pc", "-m", "256", "-smp", "1", "-nodefaults", "-no-reboot", "-display", "none"])
        .arg("-kernel")
        .arg(&image.kernel)
        .arg("-initrd")
        .arg(&image.initramfs)
        .args(["-append", "console=ttyS0 quiet panic=-1 vmguard.probe=1"])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .netns(ns)
        .spawn_detached(&log)?;
    // Under real KVM the guest is up in a few seconds; a software or broken KVM is far slower.
    let deadline = Instant::now() + Duration::from_secs(30);
    let result = loop {
        let text = std::fs::read_to_string(&console).unwrap_or_default();
        if text.contains(UP_MARKER) {
            break ProbeResult { accel: Accel::Kvm, reason: "the guest booted under KVM".into() };
        }
        let err = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = err.lines().find(|l| l.contains("error") || l.contains("Error")) {
            break ProbeResult { accel: Accel::Tcg, reason: format!("KVM failed: {}", line.trim()) };
        }
        if !exec::pid_alive(pid) {
            break ProbeResult { accel: Accel::Tcg, reason: "qemu exited under KVM before the guest was up".into() };
        }
        if Instant::now() > deadline {
            break ProbeResult { accel: Accel::Tcg, reason: "the guest did not boot under KVM within 30 s".into() };
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    exec::stop_pid(pid, Duration::from_secs(2)).map_err(|e| LabError::io("stopping the KVM probe", e))?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(result)
}

/// A locally administered MAC derived from the lab prefix, stable across runs.
fn mac_for(prefix: &str) -> String {
    let h = hex_key(&[prefix, "qemu-mac"]);
    format!("52:54:00:{}:{}:{}", &h[0..2], &h[2..4], &h[4..6])
}

/// Start the guest; [`wait_booted`] waits for it. The caller checks HTTP.
///
/// The guest's `/data` disk is made with the database tier's data directory (`db_template`) on it,
/// so the guest never bootstraps MariaDB itself.
pub fn start(
    state: &LabState,
    host: &Host,
    image: &GuestImage,
    accel: &ProbeResult,
    db_template: &Path,
) -> Result<VictimState, LabError> {
    let spec = &state.spec;
    let dir = LabState::dir(spec).join("qemu");
    std::fs::create_dir_all(&dir).map_err(|e| LabError::io(format!("creating {}", dir.display()), e))?;
    let disk = dir.join("disk.img");
    Cmd::new("qemu-img")
        .args(["create", "-q", "-f", "raw"])
        .arg(&disk)
        .arg(format!("{}M", spec.qemu.disk_mib))
        .run()?;
    let disk_root = dir.join("disk-root");
    crate::database::place(db_template, &disk_root.join(crate::database::DIR_NAME))?;
    Cmd::new("mkfs.ext4").args(["-q", "-F", "-L", "vmguard-data", "-d"]).arg(&disk_root).arg(&disk).run()?;
    let _ = std::fs::remove_dir_all(&disk_root);

    let console = dir.join("console.log");
    let qmp = dir.join("qmp.sock");
    let ctl = dir.join("ctl.sock");
    let log = dir.join("qemu.log");
    let _ = std::fs::remove_file(&console);
    let cookies = if spec.syncookies { 1 } else { 0 };
    let append = format!(
        "console=ttyS0 quiet panic=-1 vmguard.ip={}/24 vmguard.gw={} vmguard.syncookies={cookies}",
        host.address, host.gateway
    );
    let tap = crate::net::qemu_tap(&state.plan);
    let mac = mac_for(&spec.prefix);
    let (net_args, backend) = match spec.qemu.net_backend {
        QemuNetBackend::Virtio => (
            vec![
                "-netdev".to_string(),
                format!("tap,id=n0,ifname={tap},script=no,downscript=no"),
                "-device".into(),
                format!("virtio-net-pci,netdev=n0,mac={mac}"),
            ],
            None,
        ),
        QemuNetBackend::VhostUser => {
            let b = start_vhost_backend(&dir, &tap, &host.ns)?;
            let args = vec![
                // vhost-user maps guest RAM in the backend: it must be a shareable memfd.
                "-object".to_string(),
                format!("memory-backend-memfd,id=mem,size={}M,share=on", spec.qemu.memory_mib),
                "-numa".into(),
                "node,memdev=mem".into(),
                "-chardev".into(),
                format!("socket,id=vu0,path={}", b.socket.display()),
                "-netdev".into(),
                "vhost-user,id=n0,chardev=vu0".into(),
                "-device".into(),
                vhost_user_device(&mac, &Cmd::new(qemu_binary()?).arg("--version").stdout()?),
            ];
            (args, Some(b))
        }
    };
    let pid = Cmd::new(qemu_binary()?)
        // debug-threads names qemu's threads ("CPU 0/TCG", "CPU 0/KVM") for per-thread CPU figures.
        .args(["-name", &format!("{}-vm,debug-threads=on", spec.prefix)])
        .args(accel.accel.qemu_args())
        .args(["-M", "pc", "-nodefaults", "-no-reboot", "-display", "none"])
        .args(["-m", &spec.qemu.memory_mib.to_string(), "-smp", &spec.qemu.vcpus.to_string()])
        .arg("-kernel")
        .arg(&image.kernel)
        .arg("-initrd")
        .arg(&image.initramfs)
        .args(["-append", &append])
        .args(&net_args)
        .args(["-drive", &format!("file={},format=raw,if=virtio,cache=none,aio=threads", disk.display())])
        .args(["-serial", &format!("file:{}", console.display())])
        // Two QMP sockets: qemu serves one client per socket, and telemetry keeps its own open.
        .args(["-qmp", &format!("unix:{},server=on,wait=off", qmp.display())])
        .args(["-qmp", &format!("unix:{},server=on,wait=off", dir.join("qmp-lab.sock").display())])
        .args(["-device", "virtio-serial-pci"])
        .args(["-chardev", &format!("socket,id=ctl,path={},server=on,wait=off", ctl.display())])
        .args(["-device", "virtserialport,chardev=ctl,name=vmguard.ctl"])
        .netns(&host.ns)
        .spawn_detached(&log)?;
    // qemu first: `wait_booted` watches pids[0]; the backend is the victim's too (status, down).
    let mut pids = vec![pid];
    pids.extend(backend.as_ref().map(|b| b.pid));
    Ok(VictimState {
        accelerator: Some(accel.accel.as_str().into()),
        host_iface: tap,
        qmp_socket: Some(qmp),
        control_socket: Some(ctl),
        net_control_socket: backend.map(|b| b.control),
        ..VictimState::new(VictimKind::Qemu, host, pids, console)
    })
}

/// The oldest qemu seen running virtio-net-pci on the vhost-user backend with MSI-X: Debian 12's
/// 7.2 segfaults in `vhost_net_start` (in `virtio_pci_vector_unmask`, called by
/// `msix_set_vector_notifiers`) when the guest's driver starts the device, whatever the backend
/// answers; bookworm-backports' 10.0.2 serves. Versions in between are untested: INTx for them.
const VHOST_USER_MSIX_SINCE: (u32, u32) = (10, 0);

/// Major and minor from `qemu-system-x86_64 --version` ("QEMU emulator version 10.0.2 (...)").
fn qemu_version(text: &str) -> Option<(u32, u32)> {
    let v = text.lines().next()?.split("version ").nth(1)?.split_whitespace().next()?;
    let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
    Some((parts.next()??, parts.next()??))
}

/// The virtio-net-pci device on the vhost-user netdev: MSI-X (qemu's default vectors) when qemu
/// is new enough, else INTx (`vectors=0`), which 7.2 runs.
fn vhost_user_device(mac: &str, qemu_version_text: &str) -> String {
    match qemu_version(qemu_version_text) {
        Some(v) if v >= VHOST_USER_MSIX_SINCE => format!("virtio-net-pci,netdev=n0,mac={mac}"),
        _ => format!("virtio-net-pci,netdev=n0,mac={mac},vectors=0"),
    }
}

/// The name of the vhost-user backend's binary (crate `vhost-coalesce`).
pub const VHOST_BACKEND_BIN: &str = "vmguard-vhost-net";

/// `vmguard-vhost-net` next to the running binary (the same cargo target directory), else on PATH.
pub fn vhost_backend_binary() -> Result<PathBuf, LabError> {
    super::companion_binary(
        VHOST_BACKEND_BIN,
        "for [lab.qemu] net_backend = \"vhost-user\"",
        "cargo build -p vhost-coalesce",
    )
}

struct VhostBackend {
    pid: u32,
    socket: PathBuf,
    control: PathBuf,
}

/// Start the vhost-user backend on `tap` inside `ns` and wait until it listens.
fn start_vhost_backend(dir: &Path, tap: &str, ns: &str) -> Result<VhostBackend, LabError> {
    let bin = vhost_backend_binary()?;
    let socket = dir.join("vhost-user.sock");
    let control = dir.join("vhost-net-ctl.sock");
    let log = dir.join("vhost-net.log");
    for p in [&socket, &control] {
        let _ = std::fs::remove_file(p);
    }
    let pid = Cmd::new(&bin)
        .arg("--socket")
        .arg(&socket)
        .args(["--tap", tap])
        .arg("--control")
        .arg(&control)
        // Off until `vmguard mitigate apply coalesce` sets a mode.
        .args(["--mode", "off"])
        .netns(ns)
        .spawn_detached(&log)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let fail = |reason: String| LabError::Victim { victim: "qemu".into(), reason, log: log.clone() };
    // The control socket is bound before the vhost-user one: both exist once it listens.
    while !(socket.exists() && control.exists()) {
        if !exec::pid_alive(pid) {
            return Err(fail(format!("{VHOST_BACKEND_BIN} exited at start: {}", tail(&log, 3))));
        }
        if Instant::now() > deadline {
            return Err(fail(format!("{VHOST_BACKEND_BIN} did not listen on {} within 10 s", socket.display())));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(VhostBackend { pid, socket, control })
}

/// Wait until the guest's init reports its services up.
pub fn wait_booted(victim: &VictimState, timeout: Duration) -> Result<(), LabError> {
    let pid = victim.pids[0];
    let console = &victim.log;
    let log = console.with_file_name("qemu.log");
    let deadline = Instant::now() + timeout;
    loop {
        if std::fs::read_to_string(console).unwrap_or_default().contains(UP_MARKER) {
            return Ok(());
        }
        if !exec::pid_alive(pid) {
            return Err(LabError::Victim {
                victim: victim.name.clone(),
                reason: format!("qemu exited during boot: {}", tail(&log, 5)),
                log,
            });
        }
        if Instant::now() > deadline {
            return Err(LabError::Victim {
                victim: victim.name.clone(),
                reason: format!(
                    "the guest did not finish booting within {timeout:?} (raise [lab.qemu] boot_timeout_secs); console: {}",
                    tail(console, 3)
                ),
                log: console.clone(),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let out = all[all.len().saturating_sub(lines)..].join(" | ");
    if out.is_empty() { "(empty)".into() } else { out }
}

/// Output and exit status of a command run inside the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestOutput {
    pub status: i32,
    pub output: String,
}

/// How the guest's command channel failed (carried by [`LabError::GuestChannel`]).
#[derive(Debug, thiserror::Error)]
pub enum GuestChannelError {
    /// The socket cannot be connected to (qemu gone, or not this lab's guest).
    #[error("cannot reach the guest: {0}")]
    Connect(std::io::Error),
    /// The command could not be sent (or the socket set up).
    #[error("cannot send the command to the guest: {0}")]
    Send(std::io::Error),
    /// Nothing came back for the whole timeout.
    #[error("no answer from the guest within {timeout:?}: {source}")]
    Silent { timeout: Duration, source: std::io::Error },
    /// Reading the answer failed otherwise.
    #[error("reading the guest's answer: {0}")]
    Read(std::io::Error),
    /// The guest closed the channel before the command's exit status.
    #[error("the guest closed its command channel")]
    Closed,
    /// The command printed output but did not finish in time.
    #[error("the guest command did not finish within {0:?}")]
    Unfinished(Duration),
    /// Another command held the channel for the whole wait.
    #[error("the guest's command channel was busy with another command for {0:?}: try again when it is done")]
    Busy(Duration),
    /// The channel's lock file cannot be opened or locked.
    #[error("cannot take the command channel's lock {path}: {source}")]
    Lock { path: PathBuf, source: std::io::Error },
}

impl GuestChannelError {
    /// The guest sent nothing for the whole timeout: see [`LabError::is_guest_channel_silent`].
    pub fn is_silent(&self) -> bool {
        matches!(self, GuestChannelError::Silent { .. })
    }
}

/// What the guest writes after a command's output: `@@VMGUARD-EXIT <id> <status>`.
const EXIT_MARKER: &str = "@@VMGUARD-EXIT ";

/// Run a shell script inside the guest over its virtio-serial command channel. Callers take turns
/// ([`lock_channel`], waiting at most `timeout`); `timeout` then bounds the silence of the command.
pub fn guest_run(control_socket: &Path, script: &str, timeout: Duration) -> Result<GuestOutput, LabError> {
    let fail = |source: GuestChannelError| LabError::GuestChannel { socket: control_socket.to_path_buf(), source };
    let _turn = lock_channel(control_socket, timeout).map_err(fail)?;
    let mut stream = UnixStream::connect(control_socket).map_err(|e| fail(GuestChannelError::Connect(e)))?;
    stream.set_read_timeout(Some(timeout)).map_err(|e| fail(GuestChannelError::Send(e)))?;
    let id = format!(
        "{:x}",
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos()
    );
    writeln!(stream, "{id} {}", base64::engine::general_purpose::STANDARD.encode(script))
        .map_err(|e| fail(GuestChannelError::Send(e)))?;
    let marker = format!("{EXIT_MARKER}{id} ");
    let mut output = String::new();
    let mut reader = BufReader::new(stream);
    let deadline = Instant::now() + timeout;
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).map_err(|e| {
            fail(match e.kind() {
                // A read timeout: SO_RCVTIMEO expired with nothing read.
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                    GuestChannelError::Silent { timeout, source: e }
                }
                _ => GuestChannelError::Read(e),
            })
        })?;
        if n == 0 {
            return Err(fail(GuestChannelError::Closed));
        }
        if let Some(rest) = line.trim_end().strip_prefix(&marker) {
            let status = rest.trim().parse().unwrap_or(-1);
            return Ok(GuestOutput { status, output });
        }
        // Another command's end: one whose client stopped waiting (its timeout). The guest's write
        // of its output waited for the next client, this one; what came before is that command's.
        if line.starts_with(EXIT_MARKER) {
            tracing::warn!(
                "{}: dropped {} bytes of output of an earlier command nobody waited for ({})",
                control_socket.display(),
                output.len(),
                line.trim_end()
            );
            output.clear();
            continue;
        }
        output.push_str(&line);
        if Instant::now() > deadline {
            return Err(fail(GuestChannelError::Unfinished(timeout)));
        }
    }
}

/// The holder of a command channel's turn; dropping it ends the turn.
#[derive(Debug)]
pub struct ChannelTurn(#[allow(dead_code)] std::fs::File);

/// Wait (at most `wait`) for this process's or any other's command on the channel to end, and hold
/// the channel until the returned turn drops. qemu's chardev socket serves one client at a time: a
/// second client's connection waits unaccepted in the kernel's backlog with its command already
/// written, so its timeout runs out behind the other command, and once it has given up qemu still
/// accepts it and the guest runs a command nobody waits for (a flood included). An flock on a file
/// beside the socket makes clients take turns, threads and processes alike, and a command is sent
/// only when it is the channel's.
pub fn lock_channel(control_socket: &Path, wait: Duration) -> Result<ChannelTurn, GuestChannelError> {
    let mut path = control_socket.as_os_str().to_owned();
    path.push(".lock");
    let path = PathBuf::from(path);
    let lock_err = |source| GuestChannelError::Lock { path: path.clone(), source };
    let file = match std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path) {
        Ok(f) => f,
        // The run directory is gone: so is the guest.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(GuestChannelError::Connect(e)),
        Err(e) => return Err(lock_err(e)),
    };
    let deadline = Instant::now() + wait;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(ChannelTurn(file)),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(std::fs::TryLockError::WouldBlock) => return Err(GuestChannelError::Busy(wait)),
            Err(std::fs::TryLockError::Error(e)) => return Err(lock_err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vhost_user_gets_msix_from_qemu_10_and_intx_before() {
        let v72 = "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright (c) 2003-2022";
        let v10 = "QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)\n";
        assert_eq!(qemu_version(v72), Some((7, 2)));
        assert_eq!(qemu_version(v10), Some((10, 0)));
        assert_eq!(qemu_version("QEMU emulator version 9.2.50\n"), Some((9, 2)));
        assert_eq!(vhost_user_device("m", v72), "virtio-net-pci,netdev=n0,mac=m,vectors=0");
        assert_eq!(vhost_user_device("m", "QEMU emulator version 9.2.0\n"), "virtio-net-pci,netdev=n0,mac=m,vectors=0");
        assert_eq!(vhost_user_device("m", v10), "virtio-net-pci,netdev=n0,mac=m");
        assert_eq!(vhost_user_device("m", "QEMU emulator version 11.1.0\n"), "virtio-net-pci,netdev=n0,mac=m");
        // Unreadable: the safe choice.
        assert_eq!(vhost_user_device("m", "qemu?"), "virtio-net-pci,netdev=n0,mac=m,vectors=0");
    }

    #[test]
    fn commands_take_turns_on_the_channel_and_a_long_wait_is_busy_not_silent() {
        let dir = tempfile::Builder::new().prefix("vmguard-lab-turn-").tempdir().unwrap();
        let sock = dir.path().join("ctl.sock");
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        // A guest that answers one command at a time, slowly, like qemu's one-client chardev.
        let guest = std::thread::spawn(move || {
            for _ in 0..2 {
                let (conn, _) = listener.accept().unwrap();
                let mut line = String::new();
                BufReader::new(&conn).read_line(&mut line).unwrap();
                std::thread::sleep(Duration::from_millis(300));
                let id = line.split_whitespace().next().unwrap().to_string();
                writeln!(&conn, "ok\n@@VMGUARD-EXIT {id} 0").unwrap();
            }
        });
        let held = lock_channel(&sock, Duration::from_secs(1)).unwrap();
        // While the turn is held, another caller waits, and says busy when its wait runs out.
        let err = guest_run(&sock, "true", Duration::from_millis(150)).unwrap_err();
        assert!(matches!(err, LabError::GuestChannel { source: GuestChannelError::Busy(_), .. }), "{err}");
        assert!(!err.is_guest_channel_silent(), "{err}");
        drop(held);
        // Two callers at once: each waits its turn, and each gets its own answer.
        let a = std::thread::spawn({
            let sock = sock.clone();
            move || guest_run(&sock, "a", Duration::from_secs(2)).unwrap()
        });
        let b = guest_run(&sock, "b", Duration::from_secs(2)).unwrap();
        assert_eq!(b.output, "ok\n");
        assert_eq!(a.join().unwrap().output, "ok\n");
        guest.join().unwrap();
    }

    #[test]
    fn a_silent_guest_is_told_apart() {
        let dir = tempfile::Builder::new().prefix("vmguard-lab-ctl-").tempdir().unwrap();
        let sock = dir.path().join("ctl.sock");
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        // A guest that takes the command and never answers.
        let guest = std::thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            let mut line = String::new();
            BufReader::new(&conn).read_line(&mut line).unwrap();
            std::thread::sleep(Duration::from_millis(400));
            drop(conn);
            // A second one that takes the command and closes the channel.
            let (conn, _) = listener.accept().unwrap();
            BufReader::new(&conn).read_line(&mut line).unwrap();
            drop(conn);
        });
        let err = guest_run(&sock, "true", Duration::from_millis(100)).unwrap_err();
        assert!(err.is_guest_channel_silent(), "{err}");
        assert!(err.to_string().contains("no answer from the guest within 100ms"), "{err}");
        let err = guest_run(&sock, "true", Duration::from_secs(5)).unwrap_err();
        assert!(matches!(err, LabError::GuestChannel { source: GuestChannelError::Closed, .. }), "{err}");
        assert!(!err.is_guest_channel_silent());
        guest.join().unwrap();
        // The channel's directory is gone: connecting fails, naming the socket.
        dir.close().unwrap();
        let err = guest_run(&sock, "true", Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err, LabError::GuestChannel { source: GuestChannelError::Connect(_), .. }), "{err}");
        assert!(err.to_string().contains("ctl.sock"), "{err}");
    }

    #[test]
    fn an_earlier_commands_late_output_is_not_taken_for_this_ones() {
        let dir = tempfile::Builder::new().prefix("vmguard-lab-stale-").tempdir().unwrap();
        let sock = dir.path().join("ctl.sock");
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        // The guest's write of a command its client gave up on waits for the next client: that
        // client reads the old output and end first, then its own.
        let guest = std::thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            let mut line = String::new();
            BufReader::new(&conn).read_line(&mut line).unwrap();
            let id = line.split_whitespace().next().unwrap().to_string();
            writeln!(&conn, "old output\nmore of it\n@@VMGUARD-EXIT 1a2b 0\nmine\n@@VMGUARD-EXIT {id} 3").unwrap();
        });
        let out = guest_run(&sock, "true", Duration::from_secs(5)).unwrap();
        assert_eq!((out.status, out.output.as_str()), (3, "mine\n"));
        guest.join().unwrap();
    }

    #[test]
    fn mac_is_local_and_stable() {
        assert_eq!(mac_for("vmg"), mac_for("vmg"));
        assert!(mac_for("vmg").starts_with("52:54:00:"));
        assert_ne!(mac_for("vmg"), mac_for("abc"));
    }
}
