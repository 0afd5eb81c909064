//! The SYN defences seed 000 names, applied to the lab's victims and taken away again exactly:
//!
//! - `syncookies`: SYN cookies on or off and the SYN backlog (the kernel's SYN cache) in the victim's
//!   own kernel: its namespace (vanilla, container) or the guest (the qemu guest, the Xen domU);
//! - `synproxy`: nftables synproxy, on the gateway (protecting the victim behind it) or on the victim;
//! - `syn-ratelimit`: a per-source SYN rate limit with an nftables dynamic set;
//! - `ingress-filter`: BCP 38 on the gateway, `fib saddr . iif oif missing`: a packet whose source is
//!   not routed back through the interface it came in on is dropped (the spoofed part of a flood);
//! - `coalesce`: the seed's fix, timer-based coalescing of the qemu guest's RX notifications, set
//!   over the control socket of vmguard's vhost-user backend (`[lab.qemu] net_backend = "vhost-user"`).
//!
//! Every nftables rule lives in a table of vmguard's own, one per defence and victim
//! (`vmguard_synproxy_qemu`), so `remove` deletes exactly what `apply` added; a sysctl is written
//! back to the value it had. What is applied is recorded in the lab's run directory
//! (`mitigations.json`), which `status`, the bench and `lab down` read.

mod rules;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use exec::Cmd;
use lab::{LabState, VictimKind};
use serde::{Deserialize, Serialize};

pub use rules::ruleset;

/// A defence, with its parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "defence", rename_all = "kebab-case")]
pub enum Defence {
    /// SYN cookies on or off, and optionally the SYN backlog (`tcp_max_syn_backlog`).
    Syncookies {
        on: bool,
        backlog: Option<u32>,
    },
    Synproxy,
    /// At most `rate` SYNs per second from any one source, `burst` above it.
    SynRatelimit {
        rate: u32,
        burst: u32,
    },
    IngressFilter,
    /// RX notification coalescing in the vhost-user backend (`pps_threshold`: adaptive only).
    Coalesce {
        mode: CoalesceMode,
        rx_usecs: u32,
        rx_frames: u32,
        pps_threshold: u64,
    },
}

/// Coalescing defaults, shared by `vmguard mitigate` and the bench: hold RX notifications up to
/// 200 us or 32 frames; adaptive engages above 5000 frames/s. The threshold sits between the lab's
/// benign traffic into the TCG guest (hundreds of frames/s) and the default flood's 16.9 kpps (the
/// 10 Mbit/s link's ceiling), so the flood engages it and benign load does not.
pub const DEFAULT_RX_USECS: u32 = 200;
pub const DEFAULT_RX_FRAMES: u32 = 32;
pub const DEFAULT_PPS_THRESHOLD: u64 = 5_000;

/// The coalescing modes `coalesce` applies (`off` is what `remove` goes back to).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CoalesceMode {
    /// Hold RX notifications up to `rx_usecs` or `rx_frames`, whatever the rate.
    Fixed,
    /// As `fixed` above `pps_threshold` received frames/s, no holding below it.
    Adaptive,
}

impl CoalesceMode {
    pub fn as_str(self) -> &'static str {
        match self {
            CoalesceMode::Fixed => "fixed",
            CoalesceMode::Adaptive => "adaptive",
        }
    }
}

impl std::str::FromStr for CoalesceMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fixed" => Ok(CoalesceMode::Fixed),
            "adaptive" => Ok(CoalesceMode::Adaptive),
            _ => Err(format!("unknown coalescing mode `{s}`: expected fixed or adaptive")),
        }
    }
}

/// What a defence is called on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DefenceKind {
    Syncookies,
    Synproxy,
    SynRatelimit,
    IngressFilter,
    /// The seed's fix, timer-based coalescing of virtio receive notifications: set through the
    /// qemu victim's vhost-user backend.
    Coalesce,
}

impl DefenceKind {
    pub const ALL: [DefenceKind; 5] = [
        DefenceKind::Syncookies,
        DefenceKind::Synproxy,
        DefenceKind::SynRatelimit,
        DefenceKind::IngressFilter,
        DefenceKind::Coalesce,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DefenceKind::Syncookies => "syncookies",
            DefenceKind::Synproxy => "synproxy",
            DefenceKind::SynRatelimit => "syn-ratelimit",
            DefenceKind::IngressFilter => "ingress-filter",
            DefenceKind::Coalesce => "coalesce",
        }
    }

    /// Where the defence goes when `--at` is not given.
    pub fn default_place(self) -> Place {
        match self {
            DefenceKind::Syncookies | DefenceKind::Coalesce => Place::Victim,
            _ => Place::Gateway,
        }
    }
}

impl std::fmt::Display for DefenceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for DefenceKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        DefenceKind::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| {
            let names: Vec<&str> = DefenceKind::ALL.iter().map(|k| k.as_str()).collect();
            format!("unknown defence `{s}`: expected one of {}", names.join(", "))
        })
    }
}

impl Defence {
    pub fn kind(&self) -> DefenceKind {
        match self {
            Defence::Syncookies { .. } => DefenceKind::Syncookies,
            Defence::Synproxy => DefenceKind::Synproxy,
            Defence::SynRatelimit { .. } => DefenceKind::SynRatelimit,
            Defence::IngressFilter => DefenceKind::IngressFilter,
            Defence::Coalesce { .. } => DefenceKind::Coalesce,
        }
    }

    /// The vhost-user backend's control request that sets this coalescing (coalesce only).
    fn control_line(&self) -> Option<String> {
        let Defence::Coalesce { mode, rx_usecs, rx_frames, pps_threshold } = *self else { return None };
        // The backend refuses keys a mode does not have: no pps_threshold for fixed.
        Some(
            match mode {
                CoalesceMode::Fixed => {
                    serde_json::json!({ "mode": "fixed", "rx_usecs": rx_usecs, "rx_frames": rx_frames })
                }
                CoalesceMode::Adaptive => serde_json::json!({
                    "mode": "adaptive", "rx_usecs": rx_usecs, "rx_frames": rx_frames, "pps_threshold": pps_threshold
                }),
            }
            .to_string(),
        )
    }

    /// A short description with the parameters, for tables.
    pub fn describe(&self) -> String {
        match self {
            Defence::Syncookies { on, backlog } => format!(
                "SYN cookies {}{}",
                if *on { "on" } else { "off" },
                backlog.map(|b| format!(", SYN backlog {b}")).unwrap_or_default()
            ),
            Defence::Synproxy => "nftables synproxy".into(),
            Defence::SynRatelimit { rate, burst } => format!("at most {rate} SYN/s per source, burst {burst}"),
            Defence::IngressFilter => "BCP 38: drop sources not routed back through their interface".into(),
            Defence::Coalesce { mode: CoalesceMode::Fixed, rx_usecs, rx_frames, .. } => {
                format!("RX notifications held up to {rx_usecs} us or {rx_frames} frames")
            }
            Defence::Coalesce { mode: CoalesceMode::Adaptive, rx_usecs, rx_frames, pps_threshold } => format!(
                "RX notifications held up to {rx_usecs} us or {rx_frames} frames above {pps_threshold} frames/s"
            ),
        }
    }
}

/// Where a defence runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Place {
    /// The lab's gateway, in front of the victim.
    Gateway,
    /// The victim's own kernel.
    Victim,
}

impl Place {
    pub fn as_str(self) -> &'static str {
        match self {
            Place::Gateway => "gateway",
            Place::Victim => "victim",
        }
    }
}

impl std::str::FromStr for Place {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "gateway" => Ok(Place::Gateway),
            "victim" => Ok(Place::Victim),
            _ => Err(format!("`{s}`: expected gateway or victim")),
        }
    }
}

/// A sysctl changed by a defence and the value it had before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SysctlChange {
    /// Path below /proc/sys, e.g. `net/ipv4/tcp_syncookies`.
    pub key: String,
    pub previous: String,
    pub value: String,
}

/// One applied defence, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub defence: Defence,
    pub victim: String,
    pub place: Place,
    /// The namespace whose nftables and sysctls it changed (for the sysctls of a machine's own
    /// kernel, the qemu guest's or the Xen domU's: `None`).
    pub ns: Option<String>,
    /// The nftables table it added, if any.
    pub table: Option<String>,
    /// Sysctls to write back on remove, in order.
    pub sysctls: Vec<SysctlChange>,
    /// coalesce: the backend's mode before, as its control request (what `remove` sets again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_mode: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum MitigateError {
    /// The request cannot be carried out as asked; the message says what to do instead.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Lab(#[from] lab::LabError),
    #[error(transparent)]
    Exec(#[from] exec::ExecError),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("{} is not vmguard's mitigation record ({source}); `vmguard lab down` removes the lab and it", path.display())]
    Unreadable { path: PathBuf, source: serde_json::Error },
}

fn refused(msg: impl Into<String>) -> MitigateError {
    MitigateError::Refused(msg.into())
}

/// The record of applied defences, in the lab's run directory (gone with `lab down`).
pub fn record_path(state: &LabState) -> PathBuf {
    LabState::dir(&state.spec).join("mitigations.json")
}

/// The defences applied on the lab, in the order they were applied.
pub fn applied(state: &LabState) -> Result<Vec<Applied>, MitigateError> {
    let path = record_path(state);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).map_err(|source| MitigateError::Unreadable { path, source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(MitigateError::Io { what: format!("reading {}", path.display()), source: e }),
    }
}

fn save(state: &LabState, all: &[Applied]) -> Result<(), MitigateError> {
    let path = record_path(state);
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(all).expect("json");
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, &path))
        .map_err(|e| MitigateError::Io { what: format!("writing {}", path.display()), source: e })
}

/// Check that `defence` can run on `victim` at `place`, and say what to do when it cannot.
pub fn check(kind: DefenceKind, victim: VictimKind, place: Place) -> Result<(), MitigateError> {
    match (kind, place, victim) {
        (DefenceKind::Syncookies, Place::Gateway, _) => {
            Err(refused("syncookies is a setting of the victim's own kernel: use --at victim (the default)"))
        }
        (DefenceKind::IngressFilter, Place::Victim, _) => Err(refused(
            "ingress-filter (BCP 38) filters at the edge, where packets enter from other networks: use --at gateway (the default)",
        )),
        (DefenceKind::Synproxy | DefenceKind::SynRatelimit, Place::Victim, VictimKind::Qemu | VictimKind::Xen) => {
            Err(refused(format!(
                "the {victim} guest has no nftables (its userland is busybox): apply {kind} with --at gateway, which protects the guest behind it"
            )))
        }
        (DefenceKind::Coalesce, Place::Gateway, VictimKind::Qemu) => Err(refused(
            "coalesce runs in the qemu victim's vhost-user backend, not on the gateway: use --at victim (the default)",
        )),
        (DefenceKind::Coalesce, _, other) if other != VictimKind::Qemu => Err(refused(format!(
            "coalesce changes how a hypervisor notifies a guest of received packets: it applies to the qemu victim only, not to {other}"
        ))),
        _ => Ok(()),
    }
}

/// [`check`] for a running victim: coalesce also needs the victim on the vhost-user backend.
pub fn check_victim(kind: DefenceKind, v: &lab::VictimState, place: Place) -> Result<(), MitigateError> {
    check(kind, v.kind, place)?;
    if kind == DefenceKind::Coalesce && v.net_control_socket.is_none() {
        return Err(refused(format!(
            "coalesce needs the {} victim on vmguard's vhost-user backend, but it runs on qemu's own virtio-net: set [lab.qemu] net_backend = \"vhost-user\" and run lab up again",
            v.name
        )));
    }
    Ok(())
}

/// One request to the vhost-user backend's control socket; its reply when `"ok": true`.
fn backend_request(socket: &Path, line: &str) -> Result<serde_json::Value, MitigateError> {
    let io = |what: &str, e| MitigateError::Io { what: format!("{what} {}", socket.display()), source: e };
    let mut stream = UnixStream::connect(socket).map_err(|e| io("connecting to the vhost-user backend at", e))?;
    let timeout = Some(Duration::from_secs(5));
    stream
        .set_read_timeout(timeout)
        .and_then(|_| stream.set_write_timeout(timeout))
        .map_err(|e| io("setting up", e))?;
    writeln!(stream, "{line}").map_err(|e| io("writing to", e))?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply).map_err(|e| io("reading the reply of", e))?;
    let v: serde_json::Value = serde_json::from_str(reply.trim())
        .map_err(|e| refused(format!("the vhost-user backend answered `{}`: {e}", reply.trim())))?;
    if v["ok"] != serde_json::Value::Bool(true) {
        return Err(refused(format!("the vhost-user backend refused `{line}`: {}", v["error"])));
    }
    Ok(v)
}

/// Apply `defence` to `victim` at `place` (the defence's default place when `None`). Applying the
/// same defence with the same parameters again changes nothing; with other parameters it is refused.
pub fn apply(
    state: &LabState,
    defence: &Defence,
    victim: &str,
    place: Option<Place>,
) -> Result<Applied, MitigateError> {
    if let Defence::SynRatelimit { rate, burst } = defence {
        if *rate == 0 {
            return Err(refused("syn-ratelimit: --rate 0 would drop every SYN; give a rate of at least 1 per second"));
        }
        if *burst == 0 {
            return Err(refused("syn-ratelimit: --burst must be at least 1 packet"));
        }
    }
    if let Defence::Syncookies { backlog: Some(b), .. } = defence
        && !(1..=1 << 20).contains(b)
    {
        return Err(refused(format!("syncookies: --backlog {b} is out of range (1 to 1048576)")));
    }
    let v = state.victim(victim).ok_or_else(|| {
        let names: Vec<&str> = state.victims.iter().map(|v| v.name.as_str()).collect();
        refused(format!("no victim `{victim}` in the lab (victims: {})", names.join(", ")))
    })?;
    let kind = defence.kind();
    let place = place.unwrap_or(kind.default_place());
    check_victim(kind, v, place)?;
    let mut all = applied(state)?;
    if let Some(existing) = all.iter().find(|a| a.defence.kind() == kind && a.victim == victim && a.place == place) {
        if &existing.defence == defence {
            return Ok(existing.clone());
        }
        return Err(refused(format!(
            "{kind} is already applied to {victim} at the {} ({}): `vmguard mitigate remove {kind} --victim {victim}` first",
            place.as_str(),
            existing.defence.describe()
        )));
    }
    let ns = match place {
        Place::Gateway => Some(state.plan.gateway_ns.clone()),
        // A machine's own kernel: its sysctls are set inside it, over its command channel.
        Place::Victim if v.kind.has_own_kernel() => None,
        Place::Victim => Some(v.ns.clone()),
    };
    let mut rec = Applied {
        defence: defence.clone(),
        victim: victim.to_string(),
        place,
        ns: ns.clone(),
        table: None,
        sysctls: Vec::new(),
        previous_mode: None,
    };
    match defence {
        Defence::Syncookies { on, backlog } => {
            let mut changes = vec![("net/ipv4/tcp_syncookies".to_string(), if *on { "1" } else { "0" }.to_string())];
            if let Some(b) = backlog {
                changes.push(("net/ipv4/tcp_max_syn_backlog".into(), b.to_string()));
            }
            for (key, value) in changes {
                let previous = write_sysctl(state, v, ns.as_deref(), &key, &value)?;
                rec.sysctls.push(SysctlChange { key, previous, value });
            }
        }
        Defence::Coalesce { .. } => {
            let socket = v.net_control_socket.as_deref().expect("checked by check_victim");
            let before = backend_request(socket, r#"{"get":"stats"}"#)?;
            rec.previous_mode = Some(before["coalesce"].to_string());
            backend_request(socket, &defence.control_line().expect("a coalesce defence"))?;
        }
        _ => {
            let ns = ns.as_deref().expect("nftables defences run in a namespace");
            let table = rules::table_name(kind, victim);
            let script = ruleset(defence, &table, v.address, place);
            // Synproxy needs conntrack to refuse out-of-window ACKs instead of picking up
            // connections it never saw: the one sysctl it changes, once per namespace.
            if kind == DefenceKind::Synproxy
                && !all.iter().any(|a| a.defence.kind() == DefenceKind::Synproxy && a.ns.as_deref() == Some(ns))
            {
                let key = "net/netfilter/nf_conntrack_tcp_loose".to_string();
                let previous = write_sysctl(state, v, Some(ns), &key, "0")?;
                rec.sysctls.push(SysctlChange { key, previous, value: "0".into() });
            }
            if let Err(e) = Cmd::new("nft").args(["-f", "-"]).netns(ns).stdin(script).run() {
                undo_sysctls(state, v, &rec);
                return Err(e.into());
            }
            rec.table = Some(table);
        }
    }
    all.push(rec.clone());
    save(state, &all)?;
    Ok(rec)
}

/// Remove the defence `kind` from `victim` at `place` (its default place when `None`).
pub fn remove(
    state: &LabState,
    kind: DefenceKind,
    victim: &str,
    place: Option<Place>,
) -> Result<Applied, MitigateError> {
    let place = place.unwrap_or(kind.default_place());
    let mut all = applied(state)?;
    let Some(i) = all.iter().position(|a| a.defence.kind() == kind && a.victim == victim && a.place == place) else {
        return Err(refused(format!(
            "{kind} is not applied to {victim} at the {}: `vmguard mitigate status` lists what is",
            place.as_str()
        )));
    };
    let mut rec = all.remove(i);
    let v = state.victim(victim).ok_or_else(|| refused(format!("no victim `{victim}` in the lab")))?;
    if let (Some(table), Some(ns)) = (&rec.table, &rec.ns) {
        Cmd::new("nft").args(["delete", "table", rules::FAMILY, table]).netns(ns).run()?;
    }
    if kind == DefenceKind::Coalesce {
        let socket =
            v.net_control_socket.as_deref().ok_or_else(|| refused(format!("{victim} has no vhost-user backend")))?;
        backend_request(socket, rec.previous_mode.as_deref().unwrap_or(r#"{"mode":"off"}"#))?;
    }
    // Another synproxy in the same namespace still needs the conntrack setting: hand it over.
    if kind == DefenceKind::Synproxy
        && let Some(other) = all.iter_mut().find(|a| a.defence.kind() == DefenceKind::Synproxy && a.ns == rec.ns)
    {
        other.sysctls.append(&mut rec.sysctls);
    }
    save(state, &all)?;
    for change in rec.sysctls.iter().rev() {
        write_sysctl(state, v, rec.ns.as_deref(), &change.key, &change.previous)?;
    }
    Ok(rec)
}

fn undo_sysctls(state: &LabState, v: &lab::VictimState, rec: &Applied) {
    for change in rec.sysctls.iter().rev() {
        if let Err(e) = write_sysctl(state, v, rec.ns.as_deref(), &change.key, &change.previous) {
            tracing::warn!("restoring {} after a failed apply: {e}", change.key);
        }
    }
}

/// Write a sysctl in namespace `ns` (or, for `None`, inside the machine: the qemu guest, the Xen
/// domU) and return its old value.
fn write_sysctl(
    state: &LabState,
    v: &lab::VictimState,
    ns: Option<&str>,
    key: &str,
    value: &str,
) -> Result<String, MitigateError> {
    if key.contains("..") || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '/') {
        return Err(refused(format!("`{key}` is not a sysctl name")));
    }
    let path = format!("/proc/sys/{key}");
    let script = format!("cat {path} && echo {value} > {path}");
    let out = match ns {
        // The container's /proc/sys is read-only inside it: its namespace's sysctls are set from
        // the host, as for the vanilla victim and the gateway.
        Some(ns) => Cmd::new("sh").args(["-c", &script]).netns(ns).timeout(Duration::from_secs(10)).stdout()?,
        None => {
            let argv = ["sh".to_string(), "-c".to_string(), script.clone()];
            let out = lab::victim::run_in(state, &v.name, &argv, Duration::from_secs(60))?;
            if out.status != 0 {
                return Err(refused(format!("setting {key} in {} failed: {}", v.name, out.output.trim())));
            }
            out.output
        }
    };
    Ok(out.lines().next().unwrap_or("").trim().to_string())
}

/// One applied defence and whether what it changed is still in place.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    #[serde(flatten)]
    pub applied: Applied,
    pub description: String,
    /// Its nftables table is in the namespace's ruleset (`None` for a sysctl-only defence).
    pub table_present: Option<bool>,
    /// Packets its drop or synproxy rules counted, where nftables counts them.
    pub counted_packets: Option<u64>,
    /// coalesce: the vhost-user backend's live mode, RX rate and counters (`{"get":"stats"}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<serde_json::Value>,
}

impl Status {
    /// coalesce: RX notifications the backend sent, held back by its policy, and suppressed by
    /// the guest (EVENT_IDX).
    pub fn notifications(&self) -> Option<(u64, u64, u64)> {
        let stats = &self.backend.as_ref()?["stats"];
        let n = |k: &str| stats[k].as_u64();
        Some((n("rx_notify_sent")?, n("rx_notify_coalesced")?, n("rx_notify_guest_suppressed")?))
    }
}

/// Every applied defence, checked against the live rulesets.
pub fn status(state: &LabState) -> Result<Vec<Status>, MitigateError> {
    applied(state)?
        .into_iter()
        .map(|a| {
            let listing = match (&a.table, &a.ns) {
                (Some(table), Some(ns)) => {
                    Some(Cmd::new("nft").args(["list", "table", rules::FAMILY, table]).netns(ns).stdout().ok())
                }
                _ => None,
            };
            let backend = match a.defence {
                Defence::Coalesce { .. } => state
                    .victim(&a.victim)
                    .and_then(|v| v.net_control_socket.as_deref())
                    .and_then(|s| backend_request(s, r#"{"get":"stats"}"#).ok()),
                _ => None,
            };
            Ok(Status {
                backend,
                description: a.defence.describe(),
                table_present: listing.as_ref().map(Option::is_some),
                counted_packets: listing.flatten().map(|l| rules::counted_packets(&l)),
                applied: a,
            })
        })
        .collect()
}

/// The nftables tables of vmguard's defences present in namespace `ns` (what `remove` must leave empty).
pub fn tables_in(ns: &str) -> Result<Vec<String>, MitigateError> {
    let out = Cmd::new("nft").args(["list", "tables"]).netns(ns).stdout()?;
    Ok(rules::defence_tables(&out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_refusals_say_what_to_do() {
        for k in DefenceKind::ALL {
            assert_eq!(k.as_str().parse::<DefenceKind>().unwrap(), k);
        }
        let err = "cookies".parse::<DefenceKind>().unwrap_err();
        assert!(err.contains("syncookies, synproxy, syn-ratelimit, ingress-filter, coalesce"), "{err}");
        assert!("edge".parse::<Place>().is_err());
        let e = check(DefenceKind::Syncookies, VictimKind::Vanilla, Place::Gateway).unwrap_err().to_string();
        assert!(e.contains("--at victim"), "{e}");
        let e = check(DefenceKind::Synproxy, VictimKind::Qemu, Place::Victim).unwrap_err().to_string();
        assert!(e.contains("--at gateway"), "{e}");
        let e = check(DefenceKind::IngressFilter, VictimKind::Container, Place::Victim).unwrap_err().to_string();
        assert!(e.contains("--at gateway"), "{e}");
        assert!(check(DefenceKind::Coalesce, VictimKind::Vanilla, Place::Victim).is_err());
        for kind in [DefenceKind::Synproxy, DefenceKind::SynRatelimit] {
            for victim in [VictimKind::Vanilla, VictimKind::Container] {
                check(kind, victim, Place::Victim).unwrap();
                check(kind, victim, Place::Gateway).unwrap();
            }
            // The gateway protects any victim behind it; a machine's busybox has no nftables.
            for machine in [VictimKind::Qemu, VictimKind::Xen] {
                check(kind, machine, Place::Gateway).unwrap();
                let e = check(kind, machine, Place::Victim).unwrap_err().to_string();
                assert!(
                    e.contains(&format!("the {machine} guest has no nftables")) && e.contains("--at gateway"),
                    "{e}"
                );
            }
        }
        check(DefenceKind::IngressFilter, VictimKind::Xen, Place::Gateway).unwrap();
        check(DefenceKind::Syncookies, VictimKind::Qemu, Place::Victim).unwrap();
        check(DefenceKind::Syncookies, VictimKind::Xen, Place::Victim).unwrap();
        let e = check(DefenceKind::Coalesce, VictimKind::Xen, Place::Victim).unwrap_err().to_string();
        assert!(e.contains("qemu victim only"), "{e}");
        check(DefenceKind::Coalesce, VictimKind::Qemu, Place::Victim).unwrap();
    }

    fn qemu_victim(on_vhost_user: bool) -> lab::VictimState {
        let plan = lab::LabSpec::default().plan();
        let host = plan.victim(VictimKind::Qemu).unwrap();
        let mut v = lab::VictimState::new(VictimKind::Qemu, host, vec![], "/dev/null".into());
        v.net_control_socket = on_vhost_user.then(|| "/nonexistent/vhost-net-ctl.sock".into());
        v
    }

    #[test]
    fn coalesce_is_refused_off_the_vhost_user_backend_with_what_to_do() {
        let e = check_victim(DefenceKind::Coalesce, &qemu_victim(false), Place::Victim).unwrap_err().to_string();
        assert!(e.contains("net_backend = \"vhost-user\"") && e.contains("lab up again"), "{e}");
        check_victim(DefenceKind::Coalesce, &qemu_victim(true), Place::Victim).unwrap();
        let e = check_victim(DefenceKind::Coalesce, &qemu_victim(true), Place::Gateway).unwrap_err().to_string();
        assert!(e.contains("--at victim"), "{e}");
        let e = check(DefenceKind::Coalesce, VictimKind::Container, Place::Victim).unwrap_err().to_string();
        assert!(e.contains("qemu victim only"), "{e}");
        // Other defences do not care about the backend.
        check_victim(DefenceKind::Syncookies, &qemu_victim(false), Place::Victim).unwrap();
    }

    #[test]
    fn coalesce_requests_are_what_the_backend_accepts() {
        let fixed = Defence::Coalesce { mode: CoalesceMode::Fixed, rx_usecs: 200, rx_frames: 32, pps_threshold: 9 };
        let v: serde_json::Value = serde_json::from_str(&fixed.control_line().unwrap()).unwrap();
        assert_eq!(v, serde_json::json!({"mode": "fixed", "rx_usecs": 200, "rx_frames": 32}));
        let adaptive =
            Defence::Coalesce { mode: CoalesceMode::Adaptive, rx_usecs: 200, rx_frames: 32, pps_threshold: 20000 };
        let v: serde_json::Value = serde_json::from_str(&adaptive.control_line().unwrap()).unwrap();
        assert_eq!(v["pps_threshold"], 20000);
        assert!(Defence::Synproxy.control_line().is_none());
        let text = serde_json::to_string(&adaptive).unwrap();
        assert!(text.contains("\"defence\":\"coalesce\"") && text.contains("\"mode\":\"adaptive\""), "{text}");
        assert_eq!(serde_json::from_str::<Defence>(&text).unwrap(), adaptive);
        assert!("bursty".parse::<CoalesceMode>().unwrap_err().contains("fixed or adaptive"));
    }

    #[test]
    fn backend_replies_are_read_and_refusals_passed_on() {
        let dir = tempfile::Builder::new().prefix("vmguard-mitigate-").tempdir().unwrap();
        let sock = dir.path().join("ctl.sock");
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let server = std::thread::spawn(move || {
            for reply in [r#"{"ok":true,"coalesce":{"mode":"off"}}"#, r#"{"ok":false,"error":"rx_usecs too big"}"#] {
                let (conn, _) = listener.accept().unwrap();
                let mut line = String::new();
                BufReader::new(&conn).read_line(&mut line).unwrap();
                writeln!(&conn, "{reply}").unwrap();
            }
        });
        let ok = backend_request(&sock, r#"{"get":"stats"}"#).unwrap();
        assert_eq!(ok["coalesce"].to_string(), r#"{"mode":"off"}"#);
        let e = backend_request(&sock, r#"{"mode":"fixed"}"#).unwrap_err().to_string();
        assert!(e.contains("rx_usecs too big"), "{e}");
        server.join().unwrap();
    }

    #[test]
    fn records_round_trip_as_json() {
        let a = Applied {
            defence: Defence::SynRatelimit { rate: 20, burst: 40 },
            victim: "qemu".into(),
            place: Place::Gateway,
            ns: Some("vmg-gw".into()),
            table: Some("vmguard_syn_ratelimit_qemu".into()),
            sysctls: vec![],
            previous_mode: None,
        };
        let text = serde_json::to_string(std::slice::from_ref(&a)).unwrap();
        assert!(text.contains("\"defence\":\"syn-ratelimit\""), "{text}");
        let back: Vec<Applied> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, [a]);
    }
}
