//! Containers: `podman ps --format json`, runc's `state.json`, Docker's `config.v2.json`, and the container
//! ids that engines write into cgroup paths.

use serde::Deserialize;

use crate::ParseError;

/// Which engine runs a container; also the prefix of its name when two guests share one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Engine {
    Podman,
    Docker,
    /// containerd's CRI plugin (Kubernetes pods), or containerd's own runc root.
    Containerd,
    CriO,
    /// runc run by hand or by a tool of its own.
    Runc,
}

impl Engine {
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Podman => "podman",
            Engine::Docker => "docker",
            Engine::Containerd => "containerd",
            Engine::CriO => "crio",
            Engine::Runc => "runc",
        }
    }
}

/// A container id found in a cgroup path, and the container's cgroup (the path up to and including the
/// segment naming it, without the leading `/`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CgroupContainer {
    pub engine: Engine,
    /// 64 lowercase hex digits.
    pub id: String,
    pub cgroup: String,
}

fn is_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The container a cgroup path belongs to, from the segments engines create: `docker-ID.scope` and
/// `docker/ID` (Docker, systemd and cgroupfs drivers), `cri-containerd-ID.scope` (containerd),
/// `crio-ID.scope` (CRI-O), `libpod-ID.scope` and `libpod-ID` (Podman; not `libpod-conmon-ID`, which is
/// its monitor). The innermost one wins (a pod inside a node container is the pod).
pub fn container_in_cgroup(path: &str) -> Option<CgroupContainer> {
    let segs: Vec<&str> = path.split('/').collect();
    for i in (0..segs.len()).rev() {
        let seg = segs[i];
        let stem = seg.strip_suffix(".scope").unwrap_or(seg);
        let found = [
            ("docker-", Engine::Docker),
            ("cri-containerd-", Engine::Containerd),
            ("crio-", Engine::CriO),
            ("libpod-", Engine::Podman),
        ]
        .into_iter()
        .find_map(|(prefix, engine)| stem.strip_prefix(prefix).filter(|id| is_id(id)).map(|id| (engine, id)))
        .or_else(|| (i > 0 && segs[i - 1] == "docker" && is_id(seg)).then_some((Engine::Docker, seg)));
        if let Some((engine, id)) = found {
            let cgroup = segs[..=i].join("/").trim_start_matches('/').to_string();
            return Some(CgroupContainer { engine, id: id.to_string(), cgroup });
        }
    }
    None
}

/// One running container as `podman ps --format json` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodmanContainer {
    pub id: String,
    pub name: Option<String>,
    /// 0 when it is not running.
    pub pid: u32,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Names {
    List(Vec<String>),
    One(String),
}

#[derive(Deserialize)]
struct PodmanPs {
    #[serde(alias = "ID")]
    #[serde(rename = "Id")]
    id: String,
    #[serde(rename = "Names", default)]
    names: Option<Names>,
    #[serde(rename = "Pid", default)]
    pid: u32,
}

/// Parse `podman ps --format json` (podman 2 and later: `Id`, `Names` a list, `Pid`; podman 1: `ID`,
/// `Names` a string). Containers without a PID are skipped.
pub fn parse_podman_ps(text: &str) -> Result<Vec<PodmanContainer>, ParseError> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<PodmanPs> =
        serde_json::from_str(text).map_err(|e| ParseError::new("podman ps --format json", e.to_string(), text))?;
    Ok(rows
        .into_iter()
        .filter(|r| r.pid > 0)
        .map(|r| PodmanContainer {
            id: r.id,
            name: match r.names {
                Some(Names::List(l)) => l.into_iter().find(|n| !n.is_empty()),
                Some(Names::One(n)) => Some(n).filter(|n| !n.is_empty()),
                None => None,
            },
            pid: r.pid,
        })
        .collect())
}

/// What runc's `state.json` (`ROOT/ID/state.json`) says about a container.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RuncState {
    pub id: String,
    pub init_process_pid: u32,
    /// The init's start time (clock ticks since boot, as in `/proc/PID/stat`): a stale state file whose
    /// PID was reused shows a different one.
    #[serde(default)]
    pub init_process_start: Option<u64>,
}

/// Parse a runc `state.json`; everything but the id and the init's PID and start is ignored.
pub fn parse_runc_state(text: &str) -> Result<RuncState, ParseError> {
    serde_json::from_str(text).map_err(|e| ParseError::new("runc state.json", e.to_string(), text))
}

/// The container's name in Docker's `/var/lib/docker/containers/ID/config.v2.json` (`"Name": "/web"`).
pub fn parse_docker_config_name(text: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Config {
        #[serde(rename = "Name")]
        name: Option<String>,
    }
    let c: Config = serde_json::from_str(text).ok()?;
    c.name.map(|n| n.trim_start_matches('/').to_string()).filter(|n| !n.is_empty())
}

/// A container's init among the processes of its cgroup, `(pid, ppid, starttime)` each: the ones whose
/// parent is outside the group (`docker exec` processes are such too), the earliest started of them.
pub fn container_init(procs: &[(u32, u32, u64)]) -> Option<u32> {
    procs
        .iter()
        .filter(|(_, ppid, _)| !procs.iter().any(|(p, _, _)| p == ppid))
        .min_by_key(|(pid, _, start)| (*start, *pid))
        .map(|(pid, _, _)| *pid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ID: &str = "4f1b0c9a6e0d4b3c8a2f1e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a39";

    #[test]
    fn ids_in_cgroup_paths() {
        let cases = [
            (format!("/system.slice/docker-{ID}.scope"), Engine::Docker, format!("system.slice/docker-{ID}.scope")),
            (format!("/docker/{ID}"), Engine::Docker, format!("docker/{ID}")),
            (
                format!(
                    "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-containerd-{ID}.scope"
                ),
                Engine::Containerd,
                format!(
                    "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-containerd-{ID}.scope"
                ),
            ),
            (
                format!("/machine.slice/libpod-{ID}.scope/container"),
                Engine::Podman,
                format!("machine.slice/libpod-{ID}.scope"),
            ),
            (format!("/libpod_parent/libpod-{ID}"), Engine::Podman, format!("libpod_parent/libpod-{ID}")),
            (
                format!("/kubepods/burstable/pod1/crio-{ID}.scope"),
                Engine::CriO,
                format!("kubepods/burstable/pod1/crio-{ID}.scope"),
            ),
        ];
        for (path, engine, cgroup) in cases {
            let c = container_in_cgroup(&path).unwrap_or_else(|| panic!("{path}"));
            assert_eq!((c.engine, c.id.as_str(), c.cgroup.as_str()), (engine, ID, cgroup.as_str()), "{path}");
        }
        for path in [
            format!("/machine.slice/libpod-conmon-{ID}.scope"),
            "/system.slice/docker.service".to_string(),
            "/user.slice/user-0.slice/session-3.scope".to_string(),
            format!("/system.slice/docker-{}.scope", &ID[..63]),
            format!("/system.slice/docker-{}.scope", ID.to_uppercase()),
            "/".to_string(),
        ] {
            assert_eq!(container_in_cgroup(&path), None, "{path}");
        }
        // Innermost wins.
        let other = "a".repeat(64);
        let nested = format!("/system.slice/docker-{ID}.scope/kubepods/pod1/cri-containerd-{other}.scope");
        assert_eq!(container_in_cgroup(&nested).unwrap().id, other);
    }

    #[test]
    fn podman_ps_json() {
        let text = format!(
            r#"[{{"AutoRemove":false,"Command":["nginx","-g","daemon off;"],"Created":1700000000,"Exited":false,
            "Id":"{ID}","Image":"docker.io/library/nginx:latest","Names":["web"],"Pid":4242,"Pod":"",
            "Ports":[{{"host_ip":"","container_port":80,"host_port":8080,"range":1,"protocol":"tcp"}}],"State":"running"}},
            {{"Id":"{}","Names":["stopped"],"Pid":0,"State":"exited"}}]"#,
            "b".repeat(64)
        );
        assert_eq!(
            parse_podman_ps(&text).unwrap(),
            [PodmanContainer { id: ID.into(), name: Some("web".into()), pid: 4242 }]
        );
        let v1 = r#"[{"ID":"abc","Names":"old","Pid":7}]"#;
        assert_eq!(parse_podman_ps(v1).unwrap()[0].name.as_deref(), Some("old"));
        assert!(parse_podman_ps("").unwrap().is_empty());
        assert!(parse_podman_ps("[]\n").unwrap().is_empty());
        assert!(parse_podman_ps("Error: cannot connect").is_err());
    }

    #[test]
    fn runc_state_and_docker_config() {
        let state = r#"{"id":"ct1","init_process_pid":5150,"init_process_start":123456,"created":"2024-05-01T10:00:00Z",
            "config":{"rootfs":"/srv/ct1/rootfs","cgroups":{"path":"/vmguard/ct1"}},"rootless":false,
            "cgroup_paths":{"":"/sys/fs/cgroup/vmguard/ct1"},"namespace_paths":{"NEWNET":"/proc/5150/ns/net"}}"#;
        assert_eq!(
            parse_runc_state(state).unwrap(),
            RuncState { id: "ct1".into(), init_process_pid: 5150, init_process_start: Some(123456) }
        );
        assert!(parse_runc_state(r#"{"id":"x"}"#).is_err());
        assert_eq!(parse_docker_config_name(r#"{"ID":"x","Name":"/web","State":{}}"#).as_deref(), Some("web"));
        assert_eq!(parse_docker_config_name("{}"), None);
    }

    #[test]
    fn init_is_the_earliest_whose_parent_is_outside() {
        // 10 init (parent the shim 5), 11 its child, 20 a `docker exec` started later.
        assert_eq!(container_init(&[(11, 10, 101), (20, 5, 500), (10, 5, 100)]), Some(10));
        assert_eq!(container_init(&[]), None);
    }

    proptest! {
        #[test]
        fn never_panics(text in "\\PC*") {
            let _ = container_in_cgroup(&text);
            let _ = parse_podman_ps(&text);
            let _ = parse_runc_state(&text);
            let _ = parse_docker_config_name(&text);
        }

        #[test]
        fn ids_found_under_any_prefix(
            prefix in "(/[a-z0-9_.@-]{1,12}){0,4}",
            id in "[0-9a-f]{64}",
            which in 0usize..4,
            tail in "(/[a-z]{1,8}){0,2}",
        ) {
            let seg = match which {
                0 => format!("docker-{id}.scope"),
                1 => format!("cri-containerd-{id}.scope"),
                2 => format!("libpod-{id}.scope"),
                _ => format!("crio-{id}.scope"),
            };
            let path = format!("{prefix}/{seg}{tail}");
            let c = container_in_cgroup(&path).unwrap();
            prop_assert_eq!(&c.id, &id);
            prop_assert_eq!(c.cgroup, format!("{prefix}/{seg}").trim_start_matches('/').to_string());
        }

        #[test]
        fn podman_roundtrip(rows in proptest::collection::vec(("[0-9a-f]{64}", "\\PC{0,10}", 0u32..100_000), 0..5)) {
            let json = serde_json::to_string(&rows.iter().map(|(id, name, pid)| serde_json::json!({"Id": id, "Names": [name], "Pid": pid, "State": "running"})).collect::<Vec<_>>()).unwrap();
            let parsed = parse_podman_ps(&json).unwrap();
            let want: Vec<PodmanContainer> = rows.iter().filter(|r| r.2 > 0).map(|(id, name, pid)| PodmanContainer {
                id: id.clone(), name: Some(name.clone()).filter(|n| !n.is_empty()), pid: *pid,
            }).collect();
            prop_assert_eq!(parsed, want);
        }

        #[test]
        fn runc_roundtrip(id in "\\PC{1,20}", pid in any::<u32>(), start in proptest::option::of(any::<u64>())) {
            let json = serde_json::json!({"id": id, "init_process_pid": pid, "init_process_start": start, "config": {}}).to_string();
            prop_assert_eq!(parse_runc_state(&json).unwrap(), RuncState { id, init_process_pid: pid, init_process_start: start });
        }
    }
}
