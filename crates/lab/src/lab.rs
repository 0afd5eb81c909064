//! `lab up`, `lab status`, `lab down`, `lab gateway`: the lab's life cycle.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::database::{self, Layout};
use crate::spec::{LabSpec, VictimKind};
use crate::state::{LabState, Phase, VictimState};
use crate::victim::{container, qemu, vanilla, xen};
use crate::{LabError, http, image, net, xen_image};

pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

pub fn require_root() -> Result<(), LabError> {
    if is_root() { Ok(()) } else { Err(LabError::NotRoot) }
}

fn lab_namespaces(prefix: &str) -> Vec<String> {
    let p = format!("{prefix}-");
    netns::list().into_iter().filter(|n| n.starts_with(&p)).collect()
}

/// Bring the lab up. On failure everything created so far is removed again (logs are kept), and
/// a kill at any point leaves only what [`down`] finds by the lab's prefix.
///
/// `tool` is the vmguard binary to place inside the container and the guest (for floods from a
/// victim acting as a zombie); `None` leaves it out.
pub fn up(spec: &LabSpec, tool: Option<&Path>, progress: &dyn Fn(&str)) -> Result<LabState, LabError> {
    require_root()?;
    spec.validate()?;
    if LabState::file(spec).exists() || !lab_namespaces(&spec.prefix).is_empty() {
        return Err(LabError::AlreadyUp(format!(
            "lab `{}` is already up (or was left over by a crash): `vmguard lab status` shows it, `vmguard lab down` removes it",
            spec.prefix
        )));
    }
    let mut state = LabState::new(spec);
    state.save()?;
    match build(&mut state, tool, progress) {
        Ok(()) => Ok(state),
        Err(err) => {
            progress("lab up failed: removing what it created");
            if let Err(down_err) = down(spec) {
                tracing::warn!("cleaning up after the failure also failed: {down_err}");
            }
            Err(err)
        }
    }
}

fn build(state: &mut LabState, tool: Option<&Path>, progress: &dyn Fn(&str)) -> Result<(), LabError> {
    let spec = state.spec.clone();
    let plan = state.plan.clone();
    // The database tier's data directory and the guest image first: they may take long, and create
    // nothing outside the cache.
    let db_template = database::template(&spec.cache_dir, progress)?;
    let image = if spec.victims.contains(&VictimKind::Qemu) {
        progress("guest image");
        let mut programs = spec.qemu.all_guest_programs();
        programs.push(database::server_binary()?.to_string_lossy().into_owned());
        let share = Path::new(database::SHARE_DIR);
        let data_dirs = [share.join("english"), share.join("charsets")];
        let image = image::ensure(&spec.cache_dir, &spec.qemu.kernel_package, &programs, &data_dirs, tool, progress)?;
        state.image = Some(image.clone());
        state.save()?;
        Some(image)
    } else {
        None
    };
    let xen_image = if spec.victims.contains(&VictimKind::Xen) {
        progress("Xen images");
        let mut programs = spec.qemu.all_guest_programs();
        programs.push(database::server_binary()?.to_string_lossy().into_owned());
        let share = Path::new(database::SHARE_DIR);
        let data_dirs = [share.join("english"), share.join("charsets")];
        let domu = xen_image::DomuContent { programs: &programs, data_dirs: &data_dirs, tool };
        let image = xen_image::ensure(&spec.cache_dir, &spec.xen, &domu, progress)?;
        state.xen_image = Some(image.clone());
        state.save()?;
        Some(image)
    } else {
        None
    };

    progress("namespaces, links, shaping and gateway");
    net::create(&plan, spec.attacker_rate, spec.syncookies)?;

    // Start the guest first: it boots while the other victims start.
    let mut booting = None;
    if let (Some(image), Some(host)) = (&image, plan.victim(VictimKind::Qemu)) {
        let accel = qemu::choose_accel(&spec, image, &host.ns, progress)?;
        progress(&format!("booting the qemu guest ({}: {})", accel.accel.as_str(), accel.reason));
        let started = Instant::now();
        let v = qemu::start(state, host, image, &accel, &db_template)?;
        state.other_pids.extend(&v.pids);
        state.save()?;
        booting = Some((v, started));
    }
    let mut booting_xen = None;
    if let (Some(image), Some(host)) = (&xen_image, plan.victim(VictimKind::Xen)) {
        let accel = xen::choose_accel(&spec, image, &host.ns, progress)?;
        progress(&format!("booting Xen, dom0 and the domU ({}: {})", accel.accel.as_str(), accel.reason));
        let started = Instant::now();
        let v = xen::start(state, host, image, &accel, &db_template)?;
        state.other_pids.extend(&v.pids);
        state.save()?;
        booting_xen = Some((v, started));
    }
    for (kind, host) in &plan.victims {
        let started = Instant::now();
        let (mut v, layout) = match kind {
            VictimKind::Vanilla => {
                progress("starting the vanilla victim");
                let v = vanilla::start(state, host)?;
                // Its data area is a directory on the host's disk.
                let area = LabState::dir(&spec).join("vanilla").join("data");
                let layout = Layout::under(&area.to_string_lossy());
                database::place(&db_template, Path::new(&layout.dir))?;
                (v, layout)
            }
            VictimKind::Container => {
                progress("starting the container victim (runc)");
                let v = container::start(state, host, tool)?;
                // Its /data is a host directory bind-mounted read-write.
                database::place(&db_template, &container::data_dir(&spec).join(database::DIR_NAME))?;
                (v, Layout::under("/data"))
            }
            VictimKind::Qemu | VictimKind::Xen => continue,
        };
        v.link_peer = Some((host.gw_ifname.clone(), plan.gateway_ns.clone()));
        wait_http(&v, &plan.client.ns, Instant::now() + Duration::from_secs(20))?;
        v.start_secs = started.elapsed().as_secs_f64();
        let name = v.name.clone();
        state.victims.push(v);
        state.save()?;
        start_database(state, &name, &layout, Duration::from_secs(60), progress)?;
    }
    if let Some((mut v, started)) = booting {
        progress("waiting for the qemu guest");
        let timeout = Duration::from_secs(spec.qemu.boot_timeout_secs);
        qemu::wait_booted(&v, timeout)?;
        wait_http(&v, &plan.client.ns, started + timeout)?;
        v.start_secs = started.elapsed().as_secs_f64();
        state.other_pids.retain(|p| !v.pids.contains(p));
        let name = v.name.clone();
        state.victims.push(v);
        state.save()?;
        // The guest's /data disk was made with the database's files on it (`qemu::start`).
        start_database(state, &name, &Layout::under("/data"), Duration::from_secs(180), progress)?;
    }
    if let Some((mut v, started)) = booting_xen {
        progress("waiting for Xen: dom0, then the domU");
        let timeout = Duration::from_secs(spec.xen.boot_timeout_secs);
        xen::wait_booted(&mut v, started, timeout)?;
        wait_http(&v, &plan.client.ns, started + timeout)?;
        v.start_secs = started.elapsed().as_secs_f64();
        state.other_pids.retain(|p| !v.pids.contains(p));
        let name = v.name.clone();
        state.victims.push(v);
        state.save()?;
        // The domU's /data (a PV disk) was made with the database's files on it (`xen::start`).
        start_database(state, &name, &Layout::under("/data"), Duration::from_secs(300), progress)?;
    }
    // Keep victims in the spec's order.
    state.victims.sort_by_key(|v| spec.victims.iter().position(|k| *k == v.kind));
    state.phase = Phase::Up;
    state.save()
}

/// Start a victim's database tier and record it.
fn start_database(
    state: &mut LabState,
    victim: &str,
    layout: &Layout,
    wait: Duration,
    progress: &dyn Fn(&str),
) -> Result<(), LabError> {
    progress(&format!("starting the database tier (MariaDB) in {victim}"));
    let tier = database::start(state, victim, layout, wait)?;
    if let Some(v) = state.victims.iter_mut().find(|v| v.name == victim) {
        v.database = Some(tier);
    }
    state.save()
}

fn wait_http(v: &VictimState, client_ns: &str, deadline: Instant) -> Result<(), LabError> {
    let pids = v.pids.clone();
    http::wait_ok(client_ns, v.address, deadline, || {
        if pids.iter().all(|p| exec::pid_alive(*p)) {
            Ok(())
        } else {
            Err(LabError::Victim { victim: v.name.clone(), reason: "its process exited".into(), log: v.log.clone() })
        }
    })
    .map_err(|e| match e {
        e @ (LabError::Http { .. } | LabError::HttpStatus { .. }) => {
            LabError::VictimUnreachable { victim: v.name.clone(), log: v.log.clone(), source: Box::new(e) }
        }
        other => other,
    })
}

/// What `lab down` removed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DownReport {
    pub removed: Vec<String>,
    pub warnings: Vec<String>,
}

/// Remove everything the lab made: from its recorded state and, after a crash, by its prefix.
/// Safe to run at any time, also when nothing is up.
pub fn down(spec: &LabSpec) -> Result<DownReport, LabError> {
    require_root()?;
    let mut report = DownReport::default();
    let state = match LabState::load(spec) {
        Ok(s) => s,
        Err(e) => {
            report.warnings.push(e.to_string());
            None
        }
    };
    // Containers through their runtime first, so its own state stays consistent.
    report.removed.extend(container::remove_all(spec));

    // Every process inside a lab namespace, and recorded ones still recognisably ours.
    let namespaces = lab_namespaces(&spec.prefix);
    let mut pids: BTreeSet<u32> = namespaces.iter().flat_map(|ns| netns::pids_in(ns)).collect();
    if let Some(s) = &state {
        let recorded = s.victims.iter().flat_map(|v| v.pids.iter()).chain(&s.other_pids);
        pids.extend(recorded.filter(|p| belongs_to_lab(**p, spec)));
    }
    for pid in pids {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        match exec::stop_pid(pid, Duration::from_secs(3)) {
            Ok(()) => report.removed.push(format!("process {pid} ({})", comm.trim())),
            Err(e) => report.warnings.push(format!("could not stop process {pid}: {e}")),
        }
    }
    for ns in &namespaces {
        match exec::Cmd::new("ip").args(["netns", "del", ns]).run() {
            Ok(_) => report.removed.push(format!("namespace {ns}")),
            Err(e) => report.warnings.push(e.to_string()),
        }
    }
    remove_cgroups(&spec.prefix, &mut report);
    remove_run_files(&LabState::dir(spec), &mut report);
    for e in std::fs::read_dir(&spec.cache_dir).into_iter().flatten().flatten() {
        // Half-built images from an interrupted `lab up`.
        if e.file_name().to_string_lossy().starts_with("building-") && std::fs::remove_dir_all(e.path()).is_ok() {
            report.removed.push(format!("unfinished build {}", e.path().display()));
        }
    }
    Ok(report)
}

/// A recorded PID is killed only while it still looks like the process we started (PIDs get reused).
fn belongs_to_lab(pid: u32, spec: &LabSpec) -> bool {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmdline = String::from_utf8_lossy(&cmdline);
    cmdline.contains(&*LabState::dir(spec).to_string_lossy())
}

fn remove_cgroups(prefix: &str, report: &mut DownReport) {
    let p = format!("{prefix}-");
    for controller in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
        for entry in std::fs::read_dir(controller.path()).into_iter().flatten().flatten() {
            if entry.file_name().to_string_lossy().starts_with(&p) && entry.path().is_dir() {
                remove_cgroup_tree(&entry.path(), report);
            }
        }
    }
}

fn remove_cgroup_tree(dir: &Path, report: &mut DownReport) {
    for child in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if child.path().is_dir() {
            remove_cgroup_tree(&child.path(), report);
        }
    }
    // Any process still inside is ours: the cgroup carries the lab prefix.
    for pid in
        std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default().lines().filter_map(|l| l.parse().ok())
    {
        let _ = exec::stop_pid(pid, Duration::from_secs(2));
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => report.removed.push(format!("cgroup {}", dir.display())),
        Err(e) => report.warnings.push(format!("could not remove cgroup {}: {e}", dir.display())),
    }
}

/// Remove the lab's run files but keep its logs for a post-mortem.
fn remove_run_files(dir: &Path, report: &mut DownReport) {
    fn walk(dir: &Path) -> bool {
        let mut empty = true;
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = e.path();
            let keep = if path.is_dir() && !path.is_symlink() {
                let child_empty = walk(&path);
                !(child_empty && std::fs::remove_dir(&path).is_ok())
            } else if path.extension().is_some_and(|x| x == "log") {
                true
            } else {
                std::fs::remove_file(&path).is_err()
            };
            empty &= !keep;
        }
        empty
    }
    if dir.exists() {
        walk(dir);
        report.removed.push(format!("run files in {} (logs kept)", dir.display()));
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct VictimStatus {
    pub name: String,
    pub kind: VictimKind,
    pub address: std::net::Ipv4Addr,
    pub http_ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accelerator: Option<String>,
    pub pids: Vec<u32>,
    pub pids_alive: bool,
    pub namespace: String,
    pub host_iface: String,
    pub start_secs: f64,
    /// Resident memory of the victim's host processes (qemu: the whole guest), KiB.
    pub rss_kib: u64,
    /// The database tier: where it listens, its PID in the victim, how long it took to start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<database::DatabaseTier>,
    /// The Xen machine (xen only): its domains as `xl list` shows them, boot times, versions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xen: Option<XenStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct XenStatus {
    #[serde(flatten)]
    pub info: xen::XenInfo,
    /// dom0 (`Domain-0`) and the domU, from `xl list` in dom0.
    pub domains: Vec<xen::XlDomain>,
    /// Why `domains` is empty, when dom0 did not answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domains_error: Option<String>,
    /// The stream relay serving the trace and stats sockets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay: Option<RelayReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RelayReport {
    pub pid: u32,
    pub alive: bool,
    /// Its counters per stream (from its status file, written every second).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<crate::relay::RelayStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub prefix: String,
    /// `up`, `starting` (or crashed while starting), `leftover` (namespaces but no state), `down`.
    pub phase: String,
    pub attacker_rate: Option<String>,
    pub gateway_drop: Option<bool>,
    pub victims: Vec<VictimStatus>,
    pub namespaces: Vec<String>,
}

pub fn status(spec: &LabSpec) -> Result<StatusReport, LabError> {
    let namespaces = lab_namespaces(&spec.prefix);
    let Some(state) = LabState::load(spec)? else {
        let phase = if namespaces.is_empty() { "down" } else { "leftover" };
        return Ok(StatusReport {
            prefix: spec.prefix.clone(),
            phase: phase.into(),
            attacker_rate: None,
            gateway_drop: None,
            victims: Vec::new(),
            namespaces,
        });
    };
    let victims = state
        .victims
        .iter()
        .map(|v| VictimStatus {
            name: v.name.clone(),
            kind: v.kind,
            address: v.address,
            http_ok: http::get(&state.plan.client.ns, v.address, 80, "/", Duration::from_secs(3))
                .map(|r| r.status == 200)
                .unwrap_or(false),
            accelerator: v.accelerator.clone(),
            pids: v.pids.clone(),
            pids_alive: v.pids.iter().all(|p| exec::pid_alive(*p)),
            namespace: v.ns.clone(),
            host_iface: v.host_iface.clone(),
            start_secs: v.start_secs,
            rss_kib: v.pids.iter().map(|p| rss_kib(*p)).sum(),
            database: v.database.clone(),
            xen: v.xen.clone().map(|info| {
                let (domains, domains_error) = match xen::domains(v, Duration::from_secs(15)) {
                    Ok(d) => (d, None),
                    Err(e) => (Vec::new(), Some(e.to_string())),
                };
                let relay = info.relay_pid.map(|pid| RelayReport {
                    pid,
                    alive: exec::pid_alive(pid),
                    status: info.relay_status.as_deref().and_then(crate::relay::RelayStatus::read),
                });
                XenStatus { info, domains, domains_error, relay }
            }),
        })
        .collect();
    let phase = match state.phase {
        Phase::Up => "up",
        Phase::Starting => "starting",
    };
    Ok(StatusReport {
        prefix: spec.prefix.clone(),
        phase: phase.into(),
        attacker_rate: Some(state.spec.attacker_rate.to_string()),
        gateway_drop: Some(state.gateway_drop),
        victims,
        namespaces,
    })
}

/// Resident set of a process and its descendants' own entries are not summed: for qemu and a
/// single-process server the process itself holds the memory.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Make the gateway drop forwarded packets (`true`) or forward them again.
pub fn gateway_drop(spec: &LabSpec, drop: bool) -> Result<(), LabError> {
    require_root()?;
    let mut state = LabState::running(spec)?;
    net::set_gateway_drop(&state.plan, drop)?;
    state.gateway_drop = drop;
    state.save()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec;

    #[test]
    fn xen_is_a_victim_the_lab_starts_when_listed() {
        assert!(!spec::BUILT_VICTIMS.contains(&VictimKind::Xen), "Xen boots in minutes under TCG: not by default");
        let spec = LabSpec { victims: vec![VictimKind::Vanilla, VictimKind::Xen], ..Default::default() };
        spec.validate().unwrap();
        let xen = spec.plan().victim(VictimKind::Xen).unwrap().clone();
        assert_eq!(xen.address.to_string(), "10.213.13.2");
        assert_eq!(xen.ns, "vmg-xen");
    }
}
