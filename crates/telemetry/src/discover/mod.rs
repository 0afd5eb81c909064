//! Guest discovery: the KVM guests, containers and Xen domains already running on a host, each described
//! by the same [`GuestInfo`] the lab produces, so every source, the store, the exporter and the detector
//! work on them unchanged.
//!
//! ```no_run
//! use telemetry::discover::{DiscoverKind, DiscoverOptions, Discoverer};
//!
//! let kinds = DiscoverKind::parse_list("libvirt,qemu,containers").unwrap();
//! let mut discoverer = Discoverer::new(&kinds, DiscoverOptions::default());
//! let found = discoverer.discover(); // call again every few seconds (pipeline::run's guest closure)
//! for g in &found.guests {
//!     println!("{} {} pid {:?}", g.name, g.kind, g.pid);
//! }
//! ```
//!
//! What each kind reads (see [`DiscoverKind`]); discovery is **read-only**: it reads `/proc`, `/run` and
//! `/var/lib/docker` and runs list-type commands (`virsh list`/`dumpxml`, `podman ps`, `xl list`) through
//! [`exec`] with a timeout. It never connects to a QMP socket, enters or changes a namespace, a cgroup or
//! a firewall.
//!
//! **Names** are unique across kinds: a guest keeps its own name (libvirt's, qemu's `-name`, the engine's
//! container name, else the first 12 digits of the container id, Xen's, the static entry's) unless another
//! guest has the same one; then each of them is prefixed with where it came from: `libvirt:web`,
//! `qemu:web`, `podman:web`, `docker:web`, `containerd:…`, `crio:…`, `runc:…`, `xen:web` (and `#PID` or
//! `#N` if that still clashes). The names of the excluded (lab) guests are never taken, and a static
//! guest keeps its name against discovered ones: the others make way. A name so changes when a namesake appears or goes, which
//! [`crate::pipeline::Pipeline::set_guests`] sees as one guest gone and one new (fresh delta state).
//!
//! **Problems** (a missing tool, permission denied) come back in every [`Discovered::problems`] while they
//! last, and are logged (`tracing::warn`) once per (kind, guest, cause) in the life of the [`Discoverer`].
//!
//! **Namespaces** of unnamed processes are given in path form, `/proc/PID/ns/net`, which the `netns`
//! crate opens as that path; a process in a namespace that `ip netns` named gets that name instead, and
//! one in the host's namespace (the one of PID 1) gets `None`.

mod container;
mod libvirt;
mod procfs;
mod qemu;
mod statics;
mod xen;

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use container::{
    CgroupContainer, Engine, PodmanContainer, RuncState, container_in_cgroup, container_init, parse_docker_config_name,
    parse_podman_ps, parse_runc_state,
};
pub use libvirt::{DomainXml, libvirt_domain_cgroup, parse_domain_xml, parse_pid_file, parse_virsh_list};
pub use procfs::{
    ProcCgroup, parse_netdev_names, parse_proc_cgroup, parse_stat_ppid_start, pick_container_iface, split_cmdline,
};
pub use qemu::{QemuCmdline, is_qemu_binary, parse_qemu_cmdline, qemu_opts};
pub use statics::{InvalidStaticGuest, StaticGuest};
pub use xen::{XlDomain, parse_xl_list, pick_vif};

use crate::{GuestInfo, GuestKind, Iface};

/// Where guests are looked for (`--discover libvirt,qemu,containers,xen,static`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiscoverKind {
    /// libvirt's running qemu/KVM domains: `virsh -c URI list --name`, `virsh dumpxml NAME` (name, the
    /// `<target dev>` of each interface, in the host's namespace), the qemu PID from
    /// `/run/libvirt/qemu/NAME.pid` and the domain's cgroup from `/proc/PID/cgroup`. No QMP socket: libvirt
    /// holds the monitor (a later change may go through `virsh qemu-monitor-command`).
    Libvirt,
    /// Other qemu processes (`qemu-system-*`, `qemu-kvm`) from `/proc/*/cmdline`: `-name`, the QMP socket
    /// (`-qmp unix:PATH` or `-chardev socket,path=` + `-mon mode=control`; recorded, never connected to),
    /// the first `-netdev tap,ifname=` in qemu's namespace. PIDs libvirt claimed are skipped, and the QMP
    /// socket of a libvirt-managed qemu is left out.
    Qemu,
    /// Containers: `podman ps --format json` (if podman is installed), runc state files
    /// (`ROOT/ID/state.json` under [`DiscoverOptions::runc_roots`]) and the container ids Docker,
    /// containerd, CRI-O and Podman write into cgroup paths (`/proc/*/cgroup`, no CLI needed). The init's
    /// namespace in path form and its `eth0` (else first non-`lo`) read from `/proc/PID/net/dev`.
    Containers,
    /// Xen domains from `xl list` (dom0 left out), each with its `vif<domid>.<n>` in dom0's namespace.
    Xen,
    /// The caller's [`DiscoverOptions::statics`], as given (validated).
    Static,
}

impl DiscoverKind {
    pub const ALL: [DiscoverKind; 5] =
        [DiscoverKind::Libvirt, DiscoverKind::Qemu, DiscoverKind::Containers, DiscoverKind::Xen, DiscoverKind::Static];

    pub fn as_str(self) -> &'static str {
        match self {
            DiscoverKind::Libvirt => "libvirt",
            DiscoverKind::Qemu => "qemu",
            DiscoverKind::Containers => "containers",
            DiscoverKind::Xen => "xen",
            DiscoverKind::Static => "static",
        }
    }

    /// A comma-separated list (`libvirt,qemu`; `all` for every kind), without repeats, in [`Self::ALL`]
    /// order.
    pub fn parse_list(s: &str) -> Result<Vec<DiscoverKind>, UnknownDiscoverKind> {
        let mut kinds = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if part == "all" {
                kinds.extend(DiscoverKind::ALL);
            } else {
                kinds.push(part.parse()?);
            }
        }
        kinds.sort();
        kinds.dedup();
        Ok(kinds)
    }
}

impl std::fmt::Display for DiscoverKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a [`DiscoverKind`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown discovery kind `{0}`: expected libvirt, qemu, containers, xen, static or all")]
pub struct UnknownDiscoverKind(pub String);

impl std::str::FromStr for DiscoverKind {
    type Err = UnknownDiscoverKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DiscoverKind::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| UnknownDiscoverKind(s.to_string()))
    }
}

/// Where discovery looks, and what it leaves alone.
#[derive(Debug, Clone)]
pub struct DiscoverOptions {
    /// The guests of [`DiscoverKind::Static`].
    pub statics: Vec<StaticGuest>,
    /// Guests someone else watches already (the vmguard lab's): a found guest with the same PID, QMP
    /// socket or cgroup (or one inside it) is skipped, and their names are kept free.
    pub exclude: Vec<GuestInfo>,
    /// libvirt connection URI.
    pub libvirt_uri: String,
    /// Where libvirt's qemu driver keeps `NAME.pid`.
    pub libvirt_run_dir: PathBuf,
    /// runc state roots (`runc --root`) to read `ID/state.json` from; missing ones are skipped.
    pub runc_roots: Vec<PathBuf>,
    /// Docker's data root, for container names (`containers/ID/config.v2.json`).
    pub docker_root: PathBuf,
    /// The proc file system (tests point it elsewhere).
    pub proc_root: PathBuf,
    /// How long a listing command may take.
    pub timeout: Duration,
}

impl Default for DiscoverOptions {
    fn default() -> Self {
        DiscoverOptions {
            statics: Vec::new(),
            exclude: Vec::new(),
            libvirt_uri: "qemu:///system".into(),
            libvirt_run_dir: "/run/libvirt/qemu".into(),
            runc_roots: [
                "/run/runc",
                "/run/docker/runtime-runc/moby",
                "/run/containerd/runc/default",
                "/run/containerd/runc/k8s.io",
            ]
            .map(PathBuf::from)
            .into(),
            docker_root: "/var/lib/docker".into(),
            proc_root: "/proc".into(),
            timeout: Duration::from_secs(5),
        }
    }
}

/// What went wrong, as far as logging once is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemCause {
    /// The listing tool is not installed.
    ToolMissing,
    /// It ran and failed (daemon down, not allowed, timeout).
    ToolFailed,
    /// A file under /proc or /run was not ours to read.
    PermissionDenied,
    /// A file could not be read for another reason.
    Unreadable,
    /// Output or a file had an unexpected shape.
    Unparsable,
    /// A static guest is not valid.
    Invalid,
}

/// One thing discovery could not do, naming the source, the guest and the fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiscoveryProblem {
    pub kind: DiscoverKind,
    pub guest: Option<String>,
    pub cause: ProblemCause,
    pub message: String,
}

impl std::fmt::Display for DiscoveryProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "discovery {}", self.kind)?;
        if let Some(g) = &self.guest {
            write!(f, " guest {g}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// One discovery pass.
#[derive(Debug, Clone, Default)]
pub struct Discovered {
    /// Unique names; in kind order (static, libvirt, qemu, containers, xen), each kind's in a stable order.
    pub guests: Vec<GuestInfo>,
    /// Every problem of this pass (also those logged before).
    pub problems: Vec<DiscoveryProblem>,
}

/// Finds guests of the chosen kinds; keep one and call [`Discoverer::discover`] every refresh.
pub struct Discoverer {
    kinds: Vec<DiscoverKind>,
    opts: DiscoverOptions,
    reported: HashSet<(DiscoverKind, Option<String>, ProblemCause)>,
}

/// A found guest and where it came from (its prefix on a name clash).
#[derive(Debug, Clone)]
struct Found {
    guest: GuestInfo,
    origin: &'static str,
}

/// Whose network namespace a process is in.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ns {
    Host,
    Other(String),
    /// Not readable (reported).
    Unknown,
    /// The process is gone.
    Gone,
}

impl Ns {
    fn name(&self) -> Option<String> {
        match self {
            Ns::Other(s) => Some(s.clone()),
            _ => None,
        }
    }
}

const NS_FIX: &str = "needs root or CAP_SYS_ADMIN+CAP_SYS_PTRACE";

struct Ctx<'a> {
    opts: &'a DiscoverOptions,
    root_ns: Option<(u64, u64)>,
    named: Vec<((u64, u64), String)>,
    problems: Vec<DiscoveryProblem>,
    pids: Option<Vec<u32>>,
}

impl<'a> Ctx<'a> {
    fn new(opts: &'a DiscoverOptions) -> Self {
        let id = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
        let root_ns = id(&opts.proc_root.join("1/ns/net")).or_else(|| id(&opts.proc_root.join("self/ns/net")));
        let named = netns::list().into_iter().filter_map(|n| id(&netns::path(&n)).map(|i| (i, n))).collect();
        Ctx { opts, root_ns, named, problems: Vec::new(), pids: None }
    }

    fn proc(&self, pid: u32, rel: &str) -> PathBuf {
        self.opts.proc_root.join(pid.to_string()).join(rel)
    }

    fn problem(&mut self, kind: DiscoverKind, guest: Option<&str>, cause: ProblemCause, message: impl Into<String>) {
        self.problems.push(DiscoveryProblem { kind, guest: guest.map(String::from), cause, message: message.into() });
    }

    /// Every PID under the proc root, ascending (read once per pass).
    fn pids(&mut self) -> Vec<u32> {
        if self.pids.is_none() {
            let mut pids: Vec<u32> = std::fs::read_dir(&self.opts.proc_root)
                .map(|rd| rd.filter_map(|e| e.ok()).filter_map(|e| e.file_name().to_str()?.parse().ok()).collect())
                .unwrap_or_default();
            pids.sort_unstable();
            self.pids = Some(pids);
        }
        self.pids.clone().unwrap_or_default()
    }

    fn read(&self, pid: u32, rel: &str) -> std::io::Result<String> {
        std::fs::read_to_string(self.proc(pid, rel))
    }

    fn netns_of(&mut self, kind: DiscoverKind, guest: &str, pid: u32) -> Ns {
        let path = self.proc(pid, "ns/net");
        match std::fs::metadata(&path) {
            Ok(m) => {
                let id = (m.dev(), m.ino());
                if Some(id) == self.root_ns {
                    Ns::Host
                } else if let Some((_, name)) = self.named.iter().find(|(i, _)| *i == id) {
                    Ns::Other(name.clone())
                } else {
                    Ns::Other(path.to_string_lossy().into_owned())
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ns::Gone,
            Err(e) => {
                let (cause, fix) = if e.kind() == std::io::ErrorKind::PermissionDenied {
                    (ProblemCause::PermissionDenied, NS_FIX)
                } else {
                    (ProblemCause::Unreadable, "is the process still running?")
                };
                self.problem(
                    kind,
                    Some(guest),
                    cause,
                    format!("cannot read {}: {e}; its network is not watched ({fix} to read it)", path.display()),
                );
                Ns::Unknown
            }
        }
    }

    fn cgroup_of(&self, pid: u32) -> Option<ProcCgroup> {
        self.read(pid, "cgroup").ok().map(|t| parse_proc_cgroup(&t))
    }

    fn start_of(&self, pid: u32) -> Option<(u32, u64)> {
        self.read(pid, "stat").ok().and_then(|t| parse_stat_ppid_start(&t))
    }

    /// Run a listing command; `None` (and a problem) when it is missing or fails. A missing optional tool is
    /// no problem.
    fn run(&mut self, kind: DiscoverKind, guest: Option<&str>, argv: &[&str], optional: bool) -> Option<String> {
        let program = argv[0];
        if exec::which(program).is_none() {
            if !optional {
                self.problem(
                    kind,
                    None,
                    ProblemCause::ToolMissing,
                    format!("{program} not found on PATH: install it or drop `{kind}` from the discovery kinds"),
                );
            }
            return None;
        }
        match exec::Cmd::new(program).args(&argv[1..]).timeout(self.opts.timeout).stdout() {
            Ok(out) => Some(out),
            Err(e) => {
                let cause = match e {
                    exec::ExecError::NotFound { .. } => ProblemCause::ToolMissing,
                    _ => ProblemCause::ToolFailed,
                };
                self.problem(kind, guest, cause, format!("{e} (needs root, and the daemon running)"));
                None
            }
        }
    }
}

impl Discoverer {
    /// Discovery of `kinds` (repeats ignored; run in [`DiscoverKind::ALL`] order whatever the order given).
    pub fn new(kinds: &[DiscoverKind], opts: DiscoverOptions) -> Self {
        let mut kinds = kinds.to_vec();
        kinds.sort();
        kinds.dedup();
        Discoverer { kinds, opts, reported: HashSet::new() }
    }

    pub fn kinds(&self) -> &[DiscoverKind] {
        &self.kinds
    }

    /// The guests someone else watches now (the lab's victims, which come and go).
    pub fn set_exclude(&mut self, guests: Vec<GuestInfo>) {
        self.opts.exclude = guests;
    }

    pub fn options(&self) -> &DiscoverOptions {
        &self.opts
    }

    /// One pass over every kind. Never fails: what could not be read is a problem, logged the first time.
    pub fn discover(&mut self) -> Discovered {
        let mut ctx = Ctx::new(&self.opts);
        let mut found: Vec<Found> = Vec::new();
        // PIDs already described: libvirt's qemus, static guests.
        let mut claimed: HashSet<u32> = HashSet::new();
        let has = |k| self.kinds.contains(&k);
        if has(DiscoverKind::Static) {
            statics(&mut ctx, &mut found);
            claimed.extend(found.iter().filter_map(|f| f.guest.pid));
        }
        let first_found = found.len();
        if has(DiscoverKind::Libvirt) {
            libvirt(&mut ctx, &mut found, &mut claimed);
        }
        if has(DiscoverKind::Qemu) {
            plain_qemu(&mut ctx, &mut found, &claimed);
        }
        if has(DiscoverKind::Containers) {
            containers(&mut ctx, &mut found, &claimed);
        }
        if has(DiscoverKind::Xen) {
            xen(&mut ctx, &mut found);
        }
        // Leave the excluded (lab) guests to whoever watches them.
        let exclude = &self.opts.exclude;
        let mut i = 0;
        found.retain(|f| {
            i += 1;
            i <= first_found || !exclude.iter().any(|e| same_guest(e, &f.guest))
        });
        let reserved: HashSet<String> = exclude.iter().map(|g| g.name.clone()).collect();
        let guests = unique_names(found, &reserved);
        let problems = ctx.problems;
        for p in &problems {
            if self.reported.insert((p.kind, p.guest.clone(), p.cause)) {
                tracing::warn!("{p} (reported once)");
            }
        }
        Discovered { guests, problems }
    }
}

/// Whether a found guest is the excluded one: same PID, QMP socket, or cgroup (or inside it).
fn same_guest(excluded: &GuestInfo, g: &GuestInfo) -> bool {
    fn same<T: PartialEq>(a: &Option<T>, b: &Option<T>) -> bool {
        a.is_some() && a == b
    }
    let inside = match (&excluded.cgroup, &g.cgroup) {
        (Some(e), Some(c)) => {
            let e = e.trim_matches('/');
            !e.is_empty() && (c == e || c.strip_prefix(e).is_some_and(|rest| rest.starts_with('/')))
        }
        _ => false,
    };
    same(&excluded.pid, &g.pid) || same(&excluded.qmp_socket, &g.qmp_socket) || inside
}

/// Give every guest a unique name (the rule in the module documentation). Static guests come first in
/// `found` and are the only ones flagged by origin `static`.
fn unique_names(found: Vec<Found>, reserved: &HashSet<String>) -> Vec<GuestInfo> {
    let mut count: HashMap<&str, usize> = HashMap::new();
    let mut static_count: HashMap<&str, usize> = HashMap::new();
    for f in &found {
        *count.entry(&f.guest.name).or_default() += 1;
        if f.origin == "static" {
            *static_count.entry(&f.guest.name).or_default() += 1;
        }
    }
    let keep: Vec<bool> = found
        .iter()
        .map(|f| {
            let n = f.guest.name.as_str();
            !reserved.contains(n)
                && (count[n] == 1 || (f.origin == "static" && static_count.get(n).copied() == Some(1)))
        })
        .collect();
    let mut taken: HashSet<String> = reserved.clone();
    taken.extend(found.iter().zip(&keep).filter(|(_, k)| **k).map(|(f, _)| f.guest.name.clone()));
    found
        .into_iter()
        .zip(keep)
        .map(|(mut f, keep)| {
            if !keep {
                let base = format!("{}:{}", f.origin, f.guest.name);
                let mut name = base.clone();
                if taken.contains(&name) {
                    name = f.guest.pid.map(|p| format!("{base}#{p}")).unwrap_or_else(|| format!("{base}#2"));
                }
                let mut n = 2;
                while taken.contains(&name) {
                    n += 1;
                    name = format!("{base}#{n}");
                }
                taken.insert(name.clone());
                f.guest.name = name;
            }
            f.guest
        })
        .collect()
}

fn statics(ctx: &mut Ctx<'_>, found: &mut Vec<Found>) {
    for s in &ctx.opts.statics {
        match s.to_guest_info() {
            Ok(guest) => found.push(Found { guest, origin: "static" }),
            Err(e) => ctx.problems.push(DiscoveryProblem {
                kind: DiscoverKind::Static,
                guest: Some(s.name.clone()),
                cause: ProblemCause::Invalid,
                message: e.to_string(),
            }),
        }
    }
}

fn libvirt(ctx: &mut Ctx<'_>, found: &mut Vec<Found>, claimed: &mut HashSet<u32>) {
    const K: DiscoverKind = DiscoverKind::Libvirt;
    let uri = ctx.opts.libvirt_uri.clone();
    let Some(list) = ctx.run(K, None, &["virsh", "-c", &uri, "list", "--name"], false) else { return };
    for name in parse_virsh_list(&list) {
        let Some(xml) = ctx.run(K, Some(&name), &["virsh", "-c", &uri, "dumpxml", &name], false) else { continue };
        let dom = match parse_domain_xml(&xml) {
            Ok(d) => d,
            Err(e) => {
                ctx.problem(K, Some(&name), ProblemCause::Unparsable, e.to_string());
                continue;
            }
        };
        let pid_file = ctx.opts.libvirt_run_dir.join(format!("{name}.pid"));
        let pid = match std::fs::read_to_string(&pid_file) {
            Ok(t) => parse_pid_file(&t),
            Err(e) => {
                let cause = if e.kind() == std::io::ErrorKind::PermissionDenied {
                    ProblemCause::PermissionDenied
                } else {
                    ProblemCause::Unreadable
                };
                ctx.problem(
                    K,
                    Some(&name),
                    cause,
                    format!("cannot read {}: {e}; its qemu process is not watched (needs root)", pid_file.display()),
                );
                None
            }
        };
        // A stale PID file (qemu gone, PID reused) names no qemu.
        let pid = pid.filter(|p| {
            ctx.read(*p, "cmdline")
                .is_ok_and(|c| split_cmdline(c.as_bytes()).first().is_some_and(|a| is_qemu_binary(a)))
        });
        if let Some(p) = pid {
            claimed.insert(p);
        }
        let cgroup = pid
            .and_then(|p| ctx.cgroup_of(p))
            .and_then(|c| c.relative())
            .map(|c| libvirt_domain_cgroup(&c).to_string());
        let guest = GuestInfo {
            pid,
            iface: dom.ifaces.first().map(|d| Iface::host_side(d.clone(), None)),
            cgroup,
            ..GuestInfo::new(dom.name, GuestKind::Qemu)
        };
        found.push(Found { guest, origin: "libvirt" });
    }
}

fn plain_qemu(ctx: &mut Ctx<'_>, found: &mut Vec<Found>, claimed: &HashSet<u32>) {
    for pid in ctx.pids() {
        if claimed.contains(&pid) {
            continue;
        }
        let Ok(bytes) = std::fs::read(ctx.proc(pid, "cmdline")) else { continue };
        let argv = split_cmdline(&bytes);
        if !argv.first().is_some_and(|a| is_qemu_binary(a)) {
            continue;
        }
        let c = parse_qemu_cmdline(&argv);
        let name = c.name.clone().unwrap_or_else(|| format!("qemu-{pid}"));
        let qmp_socket = c.qmp_socket.filter(|_| !c.libvirt_managed).map(|p| {
            if p.is_absolute() {
                p
            } else {
                std::fs::read_link(ctx.proc(pid, "cwd")).map(|cwd| cwd.join(&p)).unwrap_or(p)
            }
        });
        let ns = ctx.netns_of(DiscoverKind::Qemu, &name, pid);
        if ns == Ns::Gone {
            continue;
        }
        let netns = ns.name();
        let iface = c.taps.first().filter(|_| ns != Ns::Unknown).map(|t| Iface::host_side(t.clone(), netns.clone()));
        let guest = GuestInfo { netns, pid: Some(pid), qmp_socket, iface, ..GuestInfo::new(name, GuestKind::Qemu) };
        found.push(Found { guest, origin: "qemu" });
    }
}

/// A container before it becomes a guest.
struct Ct {
    engine: Engine,
    id: String,
    name: Option<String>,
    pid: u32,
    cgroup: Option<String>,
}

fn engine_of_root(root: &Path) -> Engine {
    let s = root.to_string_lossy();
    if s.contains("docker") || s.contains("moby") {
        Engine::Docker
    } else if s.contains("containerd") {
        Engine::Containerd
    } else if s.contains("crio") {
        Engine::CriO
    } else {
        Engine::Runc
    }
}

fn containers(ctx: &mut Ctx<'_>, found: &mut Vec<Found>, claimed: &HashSet<u32>) {
    const K: DiscoverKind = DiscoverKind::Containers;
    let mut cts: Vec<Ct> = Vec::new();
    // 1. podman, when installed.
    if let Some(out) = ctx.run(K, None, &["podman", "ps", "--format", "json"], true) {
        match parse_podman_ps(&out) {
            Ok(list) => cts.extend(list.into_iter().map(|c| Ct {
                engine: Engine::Podman,
                id: c.id,
                name: c.name,
                pid: c.pid,
                cgroup: None,
            })),
            Err(e) => ctx.problem(K, None, ProblemCause::Unparsable, e.to_string()),
        }
    }
    // 2. runc state files.
    for root in &ctx.opts.runc_roots.clone() {
        let rd = match std::fs::read_dir(root) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                ctx.problem(
                    K,
                    None,
                    ProblemCause::PermissionDenied,
                    format!("cannot list runc root {}: {e} (needs root)", root.display()),
                );
                continue;
            }
        };
        let mut dirs: Vec<PathBuf> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        dirs.sort();
        for dir in dirs {
            let file = dir.join("state.json");
            let Ok(text) = std::fs::read_to_string(&file) else { continue };
            let state = match parse_runc_state(&text) {
                Ok(s) => s,
                Err(e) => {
                    ctx.problem(K, None, ProblemCause::Unparsable, format!("{}: {e}", file.display()));
                    continue;
                }
            };
            // Alive, and the same process (not a reused PID).
            let Some((_, start)) = ctx.start_of(state.init_process_pid) else { continue };
            if state.init_process_start.is_some_and(|s| s != start) || state.init_process_pid == 0 {
                continue;
            }
            if cts.iter().any(|c| c.pid == state.init_process_pid || c.id == state.id) {
                continue;
            }
            cts.push(Ct {
                engine: engine_of_root(root),
                id: state.id,
                name: None,
                pid: state.init_process_pid,
                cgroup: None,
            });
        }
    }
    // 3. Container ids in cgroup paths.
    let mut groups: HashMap<CgroupContainer, Vec<(u32, u32, u64)>> = HashMap::new();
    for pid in ctx.pids() {
        let Some(cg) = ctx.cgroup_of(pid) else { continue };
        let hit = cg.v2.iter().chain(cg.v1_cpu.iter()).chain(cg.paths.iter()).find_map(|p| container_in_cgroup(p));
        let Some(hit) = hit else { continue };
        let Some((ppid, start)) = ctx.start_of(pid) else { continue };
        groups.entry(hit).or_default().push((pid, ppid, start));
    }
    let mut groups: Vec<_> = groups.into_iter().collect();
    groups.sort_by(|a, b| (a.0.engine, &a.0.id).cmp(&(b.0.engine, &b.0.id)));
    for (hit, procs) in groups {
        let Some(init) = container_init(&procs) else { continue };
        if let Some(c) = cts.iter_mut().find(|c| c.id == hit.id || c.pid == init) {
            // runc's state says little of the engine; the cgroup knows it.
            if c.engine == Engine::Runc {
                c.engine = hit.engine;
            }
            c.cgroup.get_or_insert(hit.cgroup);
            continue;
        }
        cts.push(Ct { engine: hit.engine, id: hit.id, name: None, pid: init, cgroup: Some(hit.cgroup) });
    }
    for c in cts {
        if claimed.contains(&c.pid) {
            continue;
        }
        let name = c
            .name
            .clone()
            .or_else(|| {
                (c.engine == Engine::Docker)
                    .then(|| {
                        let p = ctx.opts.docker_root.join("containers").join(&c.id).join("config.v2.json");
                        std::fs::read_to_string(p).ok().and_then(|t| parse_docker_config_name(&t))
                    })
                    .flatten()
            })
            .unwrap_or_else(|| {
                let hex = c.id.len() == 64 && c.id.bytes().all(|b| b.is_ascii_hexdigit());
                if hex { c.id[..12].to_string() } else { c.id.clone() }
            });
        let cgroup = c.cgroup.clone().or_else(|| ctx.cgroup_of(c.pid).and_then(|g| g.relative()));
        let ns = ctx.netns_of(K, &name, c.pid);
        if ns == Ns::Gone {
            continue;
        }
        let netns = ns.name();
        // The container's own interface, read from its namespace's /proc/PID/net/dev (no setns needed). A
        // container on the host's network has no interface of its own.
        let iface = netns.as_ref().and_then(|n| match ctx.read(c.pid, "net/dev") {
            Ok(text) => {
                let names = parse_netdev_names(&text);
                pick_container_iface(&names).map(|i| Iface {
                    name: i.to_string(),
                    netns: Some(n.clone()),
                    guest_side: true,
                })
            }
            Err(e) => {
                ctx.problem(
                    K,
                    Some(&name),
                    ProblemCause::Unreadable,
                    format!("cannot read /proc/{}/net/dev: {e}; its interface is not watched ({NS_FIX})", c.pid),
                );
                None
            }
        });
        let guest = GuestInfo { netns, pid: Some(c.pid), iface, cgroup, ..GuestInfo::new(name, GuestKind::Container) };
        found.push(Found { guest, origin: c.engine.as_str() });
    }
}

fn xen(ctx: &mut Ctx<'_>, found: &mut Vec<Found>) {
    let Some(out) = ctx.run(DiscoverKind::Xen, None, &["xl", "list"], false) else { return };
    // dom0's interfaces: the namespace of PID 1.
    let host_ifaces = std::fs::read_to_string(ctx.opts.proc_root.join("1/net/dev"))
        .or_else(|_| std::fs::read_to_string(ctx.opts.proc_root.join("self/net/dev")))
        .map(|t| parse_netdev_names(&t))
        .unwrap_or_default();
    for d in parse_xl_list(&out) {
        if d.name == "(null)" {
            continue; // dying
        }
        let iface = pick_vif(&host_ifaces, d.id).map(|name| Iface::host_side(name, None));
        let guest = GuestInfo { xen_domid: Some(d.id), iface, ..GuestInfo::new(d.name, GuestKind::Xen) };
        found.push(Found { guest, origin: "xen" });
    }
}

#[cfg(test)]
mod tests;
