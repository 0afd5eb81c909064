//! The container victim: busybox httpd started by runc (Debian's OCI runtime) with its own pid,
//! mount, uts, ipc and network namespaces and a cgroup with CPU, memory and pid limits. Its root is
//! read-only, made of the host's binaries bind-mounted read-only.
//!
//! runc rather than crun: crun refuses cgroup v1 hybrid hosts like this one (lab-facts.md).

use std::path::{Path, PathBuf};
use std::time::Duration;

use exec::Cmd;
use serde_json::json;

use crate::LabError;
use crate::spec::{ContainerSpec, Host, VictimKind};
use crate::state::{LabState, VictimState};

/// Where runc keeps the state of the lab's containers (per lab, so `lab down` lists only ours).
pub fn runc_root(spec: &crate::LabSpec) -> PathBuf {
    LabState::dir(spec).join("runc")
}

/// The container's `/data` on the host: a directory on the host's disk, bind-mounted read-write.
pub fn data_dir(spec: &crate::LabSpec) -> PathBuf {
    LabState::dir(spec).join("container").join("data")
}

pub fn container_id(prefix: &str) -> String {
    format!("{prefix}-ctr")
}

/// Host directories the container sees read-only (those that exist on this host).
const HOST_DIRS: [&str; 6] = ["/bin", "/sbin", "/usr", "/lib", "/lib64", "/etc"];

pub fn start(state: &LabState, host: &Host, tool: Option<&Path>) -> Result<VictimState, LabError> {
    let spec = &state.spec;
    let dir = LabState::dir(spec).join("container");
    let rootfs = dir.join("rootfs");
    let www = dir.join("www");
    super::write_www(&www, "container")?;
    // A writable data directory on the host's disk, for file benchmarks (the root is read-only).
    let data = data_dir(spec);
    std::fs::create_dir_all(&data).map_err(|e| LabError::io(format!("creating {}", data.display()), e))?;
    for d in ["bin", "sbin", "usr", "lib", "lib64", "etc", "www", "data", "proc", "dev", "sys", "tmp"] {
        std::fs::create_dir_all(rootfs.join(d))
            .map_err(|e| LabError::io(format!("creating {}", rootfs.display()), e))?;
    }
    let id = container_id(&spec.prefix);
    let cgroup = format!("/{id}");
    let busybox = super::busybox()?;
    if tool.is_some() {
        std::fs::create_dir_all(rootfs.join("opt/vmguard"))
            .map_err(|e| LabError::io("creating the tool mount point", e))?;
        std::fs::write(rootfs.join("opt/vmguard/vmguard"), b"")
            .map_err(|e| LabError::io("creating the tool mount point", e))?;
    }
    let config = oci_config(&id, &cgroup, &host.ns, &busybox, &www, tool, &spec.container);
    crate::state::write_atomic(
        &dir.join("config.json"),
        serde_json::to_string_pretty(&config).expect("json").as_bytes(),
    )?;

    let log = dir.join("container.log");
    let pid_file = dir.join("init.pid");
    let root = runc_root(spec);
    Cmd::new("runc")
        .arg("--root")
        .arg(&root)
        .args(["run", "--detach", "--bundle"])
        .arg(&dir)
        .arg("--pid-file")
        .arg(&pid_file)
        .arg(&id)
        .timeout(Duration::from_secs(60))
        .run_logged(&log)?;
    let pid: u32 = std::fs::read_to_string(&pid_file).ok().and_then(|s| s.trim().parse().ok()).ok_or_else(|| {
        LabError::Victim {
            victim: id.clone(),
            reason: format!("runc started it but wrote no PID to {}", pid_file.display()),
            log: log.clone(),
        }
    })?;
    Ok(VictimState {
        container_id: Some(id),
        cgroup: Some(cgroup),
        ..VictimState::new(VictimKind::Container, host, vec![pid], log)
    })
}

/// Remove the lab's containers: those recorded, and any other runc knows under the lab's root.
pub fn remove_all(spec: &crate::LabSpec) -> Vec<String> {
    let root = runc_root(spec);
    if !root.exists() || exec::which("runc").is_none() {
        return Vec::new();
    }
    let listed = Cmd::new("runc").arg("--root").arg(&root).args(["list", "-q"]).stdout().unwrap_or_default();
    let mut removed = Vec::new();
    for id in listed.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let _ = Cmd::new("runc").arg("--root").arg(&root).args(["kill", id, "KILL"]).run();
        match Cmd::new("runc").arg("--root").arg(&root).args(["delete", "--force", id]).run() {
            Ok(_) => removed.push(format!("container {id}")),
            Err(e) => tracing::warn!("could not delete container {id}: {e}"),
        }
    }
    removed
}

fn oci_config(
    id: &str,
    cgroup: &str,
    netns: &str,
    busybox: &Path,
    www: &Path,
    tool: Option<&Path>,
    limits: &ContainerSpec,
) -> serde_json::Value {
    let caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"];
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/www", "type": "bind", "source": www, "options": ["rbind", "ro"]}),
        json!({"destination": "/data", "type": "bind", "source": www.with_file_name("data"), "options": ["rbind", "rw"]}),
    ];
    for d in HOST_DIRS.iter().filter(|d| Path::new(d).exists()) {
        mounts.push(json!({"destination": d, "type": "bind", "source": d, "options": ["rbind", "ro", "nosuid"]}));
    }
    if let Some(tool) = tool {
        mounts.push(
            json!({"destination": crate::image::TOOL_PATH, "type": "bind", "source": tool, "options": ["bind", "ro"]}),
        );
    }
    let period: u64 = 100_000;
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": [busybox, "httpd", "-f", "-p", "80", "-h", "/www"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": id,
        "mounts": mounts,
        "linux": {
            "cgroupsPath": cgroup,
            "resources": {
                "memory": {"limit": u64::from(limits.memory_mib) * 1024 * 1024},
                "cpu": {"quota": (limits.cpus * period as f64).round() as i64, "period": period},
                "pids": {"limit": limits.pids_max}
            },
            "namespaces": [
                {"type": "pid"},
                {"type": "ipc"},
                {"type": "uts"},
                {"type": "mount"},
                {"type": "network", "path": netns::path(netns)}
            ],
            "maskedPaths": ["/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
                            "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oci_config_limits_and_joins_the_lab_namespace() {
        let limits = ContainerSpec { cpus: 0.5, memory_mib: 128, pids_max: 64 };
        let c = oci_config(
            "vmg-ctr",
            "/vmg-ctr",
            "vmg-ctr",
            Path::new("/bin/busybox"),
            Path::new("/run/x/www"),
            None,
            &limits,
        );
        assert_eq!(c["linux"]["resources"]["cpu"]["quota"], 50_000);
        assert_eq!(c["linux"]["resources"]["memory"]["limit"], 128 * 1024 * 1024);
        assert_eq!(c["root"]["readonly"], true);
        let ns = c["linux"]["namespaces"].as_array().unwrap();
        assert!(ns.iter().any(|n| n["type"] == "network" && n["path"] == "/var/run/netns/vmg-ctr"));
        for kind in ["pid", "mount", "uts"] {
            assert!(ns.iter().any(|n| n["type"] == kind), "{kind}");
        }
    }
}
