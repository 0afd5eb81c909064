//! Discovery over fake /proc trees and runc roots (no root, no engines needed).

use std::os::unix::fs::symlink;

use proptest::prelude::*;

use super::*;

const ID: &str = "4f1b0c9a6e0d4b3c8a2f1e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a39";
const NETDEV: &str = "Inter-|   Receive |  Transmit\n face |bytes packets\n    lo: 1 2 0 0 0 0 0 0 1 2 0 0 0 0 0 0\n  \
                      eth0: 3 4 0 0 0 0 0 0 5 6 0 0 0 0 0 0\n";

struct FakeProc {
    dir: tempfile::TempDir,
}

impl FakeProc {
    fn new() -> Self {
        let f = FakeProc { dir: tempfile::tempdir().unwrap() };
        f.process(1, 0, 1, b"/sbin/init\0", "0::/init.scope\n", None);
        f
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("proc")
    }

    /// A process; `own_ns`: a network namespace of its own (a separate file), else PID 1's.
    fn process(&self, pid: u32, ppid: u32, start: u64, cmdline: &[u8], cgroup: &str, own_ns: Option<&str>) {
        let d = self.root().join(pid.to_string());
        std::fs::create_dir_all(d.join("ns")).unwrap();
        std::fs::create_dir_all(d.join("net")).unwrap();
        std::fs::write(d.join("cmdline"), cmdline).unwrap();
        std::fs::write(d.join("cgroup"), cgroup).unwrap();
        let stat = format!("{pid} (x) S {ppid} 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 {start} 0 0\n");
        std::fs::write(d.join("stat"), stat).unwrap();
        match own_ns {
            Some(netdev) => {
                std::fs::write(d.join("ns/net"), format!("ns of {pid}")).unwrap();
                std::fs::write(d.join("net/dev"), netdev).unwrap();
            }
            None if pid == 1 => {
                std::fs::write(d.join("ns/net"), "host").unwrap();
                std::fs::write(d.join("net/dev"), NETDEV).unwrap();
            }
            None => {
                symlink(self.root().join("1/ns/net"), d.join("ns/net")).unwrap();
                symlink(self.root().join("1/net/dev"), d.join("net/dev")).unwrap();
            }
        }
        symlink("/srv/vm", d.join("cwd")).unwrap();
    }

    fn opts(&self) -> DiscoverOptions {
        DiscoverOptions {
            proc_root: self.root(),
            runc_roots: vec![self.dir.path().join("runc"), self.dir.path().join("no-such-root")],
            docker_root: self.dir.path().join("docker"),
            libvirt_run_dir: self.dir.path().join("libvirt"),
            ..DiscoverOptions::default()
        }
    }
}

fn argv(s: &str) -> Vec<u8> {
    s.split(' ').flat_map(|a| a.bytes().chain([0])).collect()
}

#[test]
fn kinds_parse() {
    assert_eq!(DiscoverKind::parse_list("xen, libvirt,xen").unwrap(), [DiscoverKind::Libvirt, DiscoverKind::Xen]);
    assert_eq!(DiscoverKind::parse_list("all").unwrap(), DiscoverKind::ALL);
    assert!(DiscoverKind::parse_list("").unwrap().is_empty());
    let err = DiscoverKind::parse_list("qemu,docker").unwrap_err();
    assert_eq!(err, UnknownDiscoverKind("docker".into()));
    for k in DiscoverKind::ALL {
        assert_eq!(k.to_string().parse::<DiscoverKind>(), Ok(k));
        assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{k}\""));
    }
}

#[test]
fn qemu_processes() {
    let p = FakeProc::new();
    p.process(
        100,
        1,
        10,
        &argv("/usr/bin/qemu-system-x86_64 -name test -qmp unix:/tmp/x.qmp,server,nowait"),
        "0::/\n",
        None,
    );
    // In a namespace of its own, tap there, QMP socket relative to its working directory.
    p.process(
        200,
        1,
        20,
        &argv("qemu-system-x86_64 -netdev tap,id=n0,ifname=tap7,script=no -chardev socket,id=m,path=vm.qmp,server=on -mon chardev=m,mode=control"),
        "0::/\n",
        Some(NETDEV),
    );
    // libvirt's: no QMP socket.
    p.process(300, 1, 30, &argv("qemu-system-x86_64 -name guest=web,debug-threads=on -chardev socket,id=charmonitor,fd=3,server=on -mon chardev=charmonitor,mode=control"), "0::/\n", None);
    p.process(400, 1, 40, &argv("/usr/bin/qemu-img info x"), "0::/\n", None);
    p.process(500, 1, 50, b"", "0::/\n", None);
    let mut d = Discoverer::new(&[DiscoverKind::Qemu], p.opts());
    let found = d.discover();
    assert!(found.problems.is_empty(), "{:?}", found.problems);
    let ns200 = p.root().join("200/ns/net").to_string_lossy().into_owned();
    assert_eq!(
        found.guests,
        [
            GuestInfo {
                pid: Some(100),
                qmp_socket: Some("/tmp/x.qmp".into()),
                ..GuestInfo::new("test", GuestKind::Qemu)
            },
            GuestInfo {
                pid: Some(200),
                netns: Some(ns200.clone()),
                qmp_socket: Some("/srv/vm/vm.qmp".into()),
                iface: Some(Iface::host_side("tap7", Some(ns200))),
                ..GuestInfo::new("qemu-200", GuestKind::Qemu)
            },
            GuestInfo { pid: Some(300), ..GuestInfo::new("web", GuestKind::Qemu) },
        ]
    );
    // The lab's guest is left out, and its name kept free.
    let lab = GuestInfo { pid: Some(100), ..GuestInfo::new("web", GuestKind::Qemu) };
    let mut d = Discoverer::new(&[DiscoverKind::Qemu], DiscoverOptions { exclude: vec![lab], ..p.opts() });
    let names: Vec<String> = d.discover().guests.into_iter().map(|g| g.name).collect();
    assert_eq!(names, ["qemu-200", "qemu:web"]);
}

#[test]
fn containers_from_cgroups_and_runc_state() {
    let p = FakeProc::new();
    // A Docker container (systemd driver): init 600 under the shim 590, a child, a `docker exec` later.
    let docker_cg = format!("0::/system.slice/docker-{ID}.scope\n");
    p.process(590, 1, 59, b"containerd-shim\0", "0::/system.slice/containerd.service\n", None);
    p.process(600, 590, 60, b"nginx\0", &docker_cg, Some(NETDEV));
    p.process(601, 600, 61, b"nginx: worker\0", &docker_cg, Some(NETDEV));
    p.process(650, 590, 99, b"sh\0", &docker_cg, Some(NETDEV));
    let cfg = p.dir.path().join("docker/containers").join(ID);
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(cfg.join("config.v2.json"), r#"{"Name":"/web"}"#).unwrap();
    // A podman container seen through its cgroup only (no podman CLI here), v1 hybrid host.
    let other = "c".repeat(64);
    p.process(700, 1, 70, b"/pause\0", &format!("4:cpu,cpuacct:/machine.slice/libpod-{other}.scope\n0::/\n"), Some(""));
    // A hand-run runc container: the state file names the init; a stale one names a PID now reused.
    p.process(800, 1, 80, b"server\0", "0::/ct/db\n", Some(NETDEV));
    for (id, pid, start) in [("db", 800, 80), ("stale", 800, 12), ("gone", 999, 1)] {
        let d = p.dir.path().join("runc").join(id);
        std::fs::create_dir_all(&d).unwrap();
        let state = format!(r#"{{"id":"{id}","init_process_pid":{pid},"init_process_start":{start},"config":{{}}}}"#);
        std::fs::write(d.join("state.json"), state).unwrap();
    }
    // A container on the host's network: no interface of its own.
    p.process(900, 1, 90, b"agent\0", &format!("0::/docker/{}\n", "d".repeat(64)), None);
    let mut d = Discoverer::new(&[DiscoverKind::Containers], p.opts());
    let found = d.discover();
    assert!(found.problems.is_empty(), "{:?}", found.problems);
    let ns = |pid: u32| Some(p.root().join(format!("{pid}/ns/net")).to_string_lossy().into_owned());
    let eth0 = |pid: u32| Some(Iface { name: "eth0".into(), netns: ns(pid), guest_side: true });
    assert_eq!(
        found.guests,
        [
            GuestInfo {
                pid: Some(800),
                netns: ns(800),
                iface: eth0(800),
                cgroup: Some("ct/db".into()),
                ..GuestInfo::new("db", GuestKind::Container)
            },
            GuestInfo {
                pid: Some(700),
                netns: ns(700),
                cgroup: Some(format!("machine.slice/libpod-{other}.scope")),
                ..GuestInfo::new("cccccccccccc", GuestKind::Container)
            },
            GuestInfo {
                pid: Some(600),
                netns: ns(600),
                iface: eth0(600),
                cgroup: Some(format!("system.slice/docker-{ID}.scope")),
                ..GuestInfo::new("web", GuestKind::Container)
            },
            GuestInfo {
                pid: Some(900),
                cgroup: Some(format!("docker/{}", "d".repeat(64))),
                ..GuestInfo::new("dddddddddddd", GuestKind::Container)
            },
        ]
    );
    // Cgroup finds come by engine (podman, docker, ...) and id.
    // The lab's container (its cgroup) is skipped.
    let lab = GuestInfo { cgroup: Some("ct".into()), ..GuestInfo::new("ct1", GuestKind::Container) };
    let mut d = Discoverer::new(&[DiscoverKind::Containers], DiscoverOptions { exclude: vec![lab], ..p.opts() });
    assert!(d.discover().guests.iter().all(|g| g.name != "db"));
}

#[test]
fn statics_and_problems_once() {
    let opts = DiscoverOptions {
        statics: vec![
            StaticGuest {
                name: "a".into(),
                kind: GuestKind::Vanilla,
                pid: Some(1),
                cgroup: None,
                iface: None,
                netns: None,
            },
            StaticGuest {
                name: "bad".into(),
                kind: GuestKind::Vanilla,
                pid: None,
                cgroup: None,
                iface: None,
                netns: None,
            },
        ],
        proc_root: "/nonexistent-proc".into(),
        ..DiscoverOptions::default()
    };
    let mut d = Discoverer::new(&[DiscoverKind::Static], opts);
    for _ in 0..3 {
        let found = d.discover();
        assert_eq!(found.guests, [GuestInfo { pid: Some(1), ..GuestInfo::new("a", GuestKind::Vanilla) }]);
        assert_eq!(found.problems.len(), 1);
        assert_eq!(found.problems[0].cause, ProblemCause::Invalid);
        assert!(found.problems[0].to_string().starts_with("discovery static guest bad: "), "{}", found.problems[0]);
    }
    assert_eq!(d.reported.len(), 1, "logged once");
}

#[test]
fn missing_tool_is_one_problem() {
    if exec::which("xl").is_some() {
        return;
    }
    let mut d = Discoverer::new(&[DiscoverKind::Xen], DiscoverOptions::default());
    let found = d.discover();
    assert!(found.guests.is_empty());
    assert_eq!(found.problems.len(), 1);
    assert_eq!(found.problems[0].cause, ProblemCause::ToolMissing);
    assert!(found.problems[0].message.contains("xl not found"), "{}", found.problems[0]);
}

#[test]
fn exclusion() {
    let lab =
        GuestInfo { pid: Some(5), cgroup: Some("/vmguard/ct1".into()), ..GuestInfo::new("ct1", GuestKind::Container) };
    let g = |pid: Option<u32>, cg: Option<&str>| GuestInfo {
        pid,
        cgroup: cg.map(String::from),
        ..GuestInfo::new("x", GuestKind::Container)
    };
    assert!(same_guest(&lab, &g(Some(5), None)));
    assert!(same_guest(&lab, &g(None, Some("vmguard/ct1"))));
    assert!(same_guest(&lab, &g(None, Some("vmguard/ct1/sub"))));
    assert!(!same_guest(&lab, &g(None, Some("vmguard/ct10"))));
    assert!(!same_guest(&lab, &g(Some(6), None)));
    assert!(
        !same_guest(&GuestInfo::new("y", GuestKind::Qemu), &GuestInfo::new("y", GuestKind::Qemu)),
        "names alone do not exclude"
    );
}

fn found(name: &str, origin: &'static str, pid: u32) -> Found {
    Found { guest: GuestInfo { pid: Some(pid), ..GuestInfo::new(name, GuestKind::Qemu) }, origin }
}

#[test]
fn name_clashes() {
    let reserved: HashSet<String> = ["lab".to_string()].into();
    let names = |v: Vec<Found>| unique_names(v, &reserved).into_iter().map(|g| g.name).collect::<Vec<_>>();
    assert_eq!(
        names(vec![
            found("s", "static", 1),
            found("web", "libvirt", 2),
            found("web", "podman", 3),
            found("s", "qemu", 4),
            found("lab", "qemu", 5),
            found("solo", "xen", 6)
        ]),
        ["s", "libvirt:web", "podman:web", "qemu:s", "qemu:lab", "solo"]
    );
    assert_eq!(
        names(vec![found("t", "qemu", 7), found("t", "qemu", 8), found("qemu:t", "runc", 9)]),
        ["qemu:t#7", "qemu:t#8", "qemu:t"]
    );
}

proptest! {
    #[test]
    fn names_are_unique_and_kept_when_free(
        guests in proptest::collection::vec(("[ab:#1-2]{1,4}", 0usize..4, proptest::option::of(1u32..4)), 0..12),
        reserved in proptest::collection::hash_set("[ab]{1,2}", 0..3),
    ) {
        const ORIGINS: [&str; 4] = ["static", "libvirt", "qemu", "podman"];
        let mut v: Vec<Found> = guests.iter().map(|(n, o, pid)| Found {
            guest: GuestInfo { pid: *pid, ..GuestInfo::new(n.clone(), GuestKind::Qemu) },
            origin: ORIGINS[*o],
        }).collect();
        v.sort_by_key(|f| f.origin != "static");
        let before: Vec<(String, &str)> = v.iter().map(|f| (f.guest.name.clone(), f.origin)).collect();
        let out = unique_names(v, &reserved);
        let set: HashSet<&str> = out.iter().map(|g| g.name.as_str()).collect();
        prop_assert_eq!(set.len(), out.len(), "unique: {:?}", out.iter().map(|g| &g.name).collect::<Vec<_>>());
        prop_assert!(out.iter().all(|g| !reserved.contains(&g.name)));
        for ((name, origin), g) in before.iter().zip(&out) {
            let clashes = before.iter().filter(|(n, _)| n == name).count() > 1;
            if !clashes && !reserved.contains(name) {
                prop_assert_eq!(&g.name, name);
            } else {
                prop_assert!(g.name == *name || g.name.starts_with(&format!("{origin}:{name}")), "{} from {}", g.name, name);
            }
        }
    }
}
