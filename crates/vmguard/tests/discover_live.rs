//! Live (root): the agent on guests vmguard did not start. A libvirt domain (the lab's guest kernel and
//! initramfs under TCG, on a tap that reaches nothing) and a Podman container (runc, a rootfs of
//! busybox and vmguard, in a network namespace this test makes and wires to the lab's gateway) run
//! beside a small lab. `vmguard agent --discover libvirt,qemu,containers` must list both in /metrics
//! with their kind, sample each from at least three sources, raise an alert naming the container as
//! the attacker of its bounded flood at a lab victim, forget both when they stop and find them again
//! when they start. Every object the test makes is removed, also on failure. About 4 minutes.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const PREFIX: &str = "vmgdi";
const NETWORK: &str = "10.216.0.0/16";
/// The test's own namespace for the Podman container, wired to the lab's gateway.
const POD_NS: &str = "vmgdi-pod";
const POD_NET: &str = "10.216.30";
const DOMAIN: &str = "vmgdi-libvirt";
const CONTAINER: &str = "vmgdi-podman";

mod common;

fn prerequisites() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("not root".into());
    }
    for p in ["virsh", "libvirtd", "virtlogd", "podman", "runc", "qemu-system-x86_64", "busybox", "ip", "wrk"] {
        if exec::which(p).is_none() {
            return Err(format!("{p} is missing (make deps)"));
        }
    }
    Ok(())
}

fn skip_or_fail() {
    if let Err(why) = prerequisites() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("discover live test cannot run with CI=true: {why}");
        }
        panic!(
            "NOT RUN: discover live test: {why}: it did not run, so it fails (non-root `make test` leaves *_live out)"
        )
    }
}

fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd}: {e}"))
}

fn ok(cmd: &str, args: &[&str]) -> String {
    let o = run(cmd, args);
    assert!(
        o.status.success(),
        "{cmd} {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Everything the test made, undone in reverse order on drop (also after a failed assertion).
struct World {
    dir: tempfile::TempDir,
    config: PathBuf,
    /// Daemons this test started (libvirtd, virtlogd), ended by PID.
    daemons: Vec<Child>,
    domain_defined: bool,
    container_made: bool,
    pod_ns: bool,
    /// The engines' parent cgroups (libvirt's `machine`, Podman's `libpod_parent`) that existed
    /// before the test: the ones it made them create are removed afterwards.
    cgroups_before: Vec<PathBuf>,
}

/// The cgroup directories libvirt and Podman make for their guests, deepest first.
fn engine_cgroups() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&e.path(), out);
                }
            }
        }
        out.push(dir.to_path_buf());
    }
    let mut out = Vec::new();
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
        for parent in ["machine", "machine.slice", "libpod_parent"] {
            let p = hierarchy.path().join(parent);
            if p.is_dir() {
                walk(&p, &mut out);
            }
        }
    }
    out
}

impl World {
    fn vmguard(&self, args: &[&str]) -> Output {
        common::vmguard_with(&self.config, args)
    }
    fn vmguard_ok(&self, args: &[&str]) -> String {
        let o = self.vmguard(args);
        assert!(
            o.status.success(),
            "vmguard {args:?}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if self.container_made {
            let _ = run("podman", &["--runtime", "runc", "rm", "-f", "-t", "0", CONTAINER]);
        }
        if self.domain_defined {
            let _ = run("virsh", &["-c", "qemu:///system", "destroy", DOMAIN]);
            let _ = run("virsh", &["-c", "qemu:///system", "undefine", DOMAIN]);
        }
        for d in self.daemons.iter_mut().rev() {
            let _ = exec::stop_pid(d.id(), Duration::from_secs(5));
            let _ = d.wait();
        }
        if self.pod_ns {
            let _ = run("ip", &["netns", "del", POD_NS]);
        }
        for dir in engine_cgroups() {
            if !self.cgroups_before.contains(&dir) {
                let _ = std::fs::remove_dir(&dir); // only empty ones go
            }
        }
        let o = self.vmguard(&["lab", "down"]);
        if !o.status.success() {
            eprintln!("lab down failed: {}", String::from_utf8_lossy(&o.stderr));
        }
    }
}

/// libvirtd (with virtlogd) when none answers: CI starts no service for us.
fn ensure_libvirtd(w: &mut World) {
    if run("virsh", &["-c", "qemu:///system", "list"]).status.success() {
        return;
    }
    for daemon in ["virtlogd", "libvirtd"] {
        let child = Command::new(daemon)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {daemon}: {e}"));
        w.daemons.push(child);
        std::thread::sleep(Duration::from_millis(500));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !run("virsh", &["-c", "qemu:///system", "list"]).status.success() {
        assert!(Instant::now() < deadline, "libvirtd did not answer within 30 s");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// A rootfs for Podman: a static busybox and the vmguard binary with its shared libraries.
fn make_rootfs(root: &Path) {
    for d in ["bin", "opt/vmguard", "proc", "sys", "dev", "tmp", "etc"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"].into_iter().find(|p| Path::new(p).exists()).unwrap();
    std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
    for applet in ["sh", "sleep"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    let exe = env!("CARGO_BIN_EXE_vmguard");
    std::fs::copy(exe, root.join("opt/vmguard/vmguard")).unwrap();
    // Shared libraries as ldd lists them, at the same paths.
    let ldd = ok("ldd", &[exe]);
    for lib in ldd.split_whitespace().filter(|w| w.starts_with('/')) {
        let dest = root.join(lib.trim_start_matches('/'));
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(lib, &dest).unwrap();
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n").unwrap();
}

/// The test's namespace for the container: a veth to the lab's gateway, a default route through it.
fn make_pod_ns(w: &mut World) {
    ok("ip", &["netns", "add", POD_NS]);
    w.pod_ns = true;
    let gw_ns = format!("{PREFIX}-gw");
    ok(
        "ip",
        &["link", "add", "vmgdi-pod0", "netns", POD_NS, "type", "veth", "peer", "name", "vmgdi-gwpod", "netns", &gw_ns],
    );
    ok("ip", &["-n", POD_NS, "addr", "add", &format!("{POD_NET}.2/24"), "dev", "vmgdi-pod0"]);
    ok("ip", &["-n", POD_NS, "link", "set", "vmgdi-pod0", "up"]);
    ok("ip", &["-n", POD_NS, "link", "set", "lo", "up"]);
    ok("ip", &["-n", POD_NS, "route", "add", "default", "via", &format!("{POD_NET}.1")]);
    ok("ip", &["-n", &gw_ns, "addr", "add", &format!("{POD_NET}.1/24"), "dev", "vmgdi-gwpod"]);
    ok("ip", &["-n", &gw_ns, "link", "set", "vmgdi-gwpod", "up"]);
}

fn domain_xml(kernel: &str, initrd: &str) -> String {
    format!(
        "<domain type='qemu'>
  <name>{DOMAIN}</name>
  <memory unit='MiB'>192</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><kernel>{kernel}</kernel><initrd>{initrd}</initrd>
    <cmdline>console=ttyS0 quiet panic=-1</cmdline></os>
  <on_crash>restart</on_crash>
  <devices>
    <emulator>{}</emulator>
    <interface type='ethernet'><target dev='vmgdi-lv0' managed='yes'/><model type='virtio'/></interface>
    <serial type='pty'/>
  </devices>
</domain>
",
        exec::which("qemu-system-x86_64").unwrap().display()
    )
}

/// One scrape of the agent's /metrics.
fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else { return String::new() };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes());
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Waits until `cond` holds on a scrape (or fails with the last scrape).
fn wait_metrics(addr: &str, what: &str, secs: u64, cond: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let m = scrape(addr);
        if cond(&m) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: not seen within {secs} s; last /metrics:\n{m}");
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Sources sampled for `guest` in a scrape.
fn sources_of(metrics: &str, guest: &str) -> std::collections::BTreeSet<String> {
    metrics
        .lines()
        .filter(|l| l.starts_with("vmguard_counter_total{") && l.contains(&format!("guest=\"{guest}\"")))
        .filter_map(|l| l.split("source=\"").nth(1)?.split('"').next().map(str::to_string))
        .collect()
}

fn has_guest(metrics: &str, guest: &str, kind: &str) -> bool {
    metrics.lines().any(|l| l.contains(&format!("guest=\"{guest}\"")) && l.contains(&format!("kind=\"{kind}\"")))
}

/// The discovered name of a guest whose name contains `needle`.
fn discovered_name(metrics: &str, needle: &str) -> Option<String> {
    metrics
        .lines()
        .filter(|l| l.starts_with("vmguard_counter_total{"))
        .filter_map(|l| l.split("guest=\"").nth(1)?.split('"').next().map(str::to_string))
        .find(|g| g.contains(needle))
}

#[test]
fn agent_discovers_libvirt_and_podman_guests_and_names_the_container_as_attacker() {
    skip_or_fail();
    let dir = tempfile::Builder::new().prefix("vmguard-discover-live-").tempdir().unwrap();
    let config = dir.path().join("vmguard.toml");
    std::fs::write(
        &config,
        format!(
            "[lab]\nprefix = \"{PREFIX}\"\nnetwork = \"{NETWORK}\"\nvictims = [\"vanilla\", \"container\", \"qemu\"]\nrun_dir = \"{}\"\n",
            dir.path().join("run").display()
        ),
    )
    .unwrap();
    let mut w = World {
        dir,
        config,
        daemons: Vec::new(),
        domain_defined: false,
        container_made: false,
        pod_ns: false,
        cgroups_before: engine_cgroups(),
    };
    w.vmguard_ok(&["lab", "up"]);

    // A model that knows containers as attackers: a short recording with a zombie flood.
    let scenario = w.path("discover-train.toml");
    std::fs::write(
        &scenario,
        "name = \"discover-train\"\n\
         [[phase]]\nname = \"idle\"\nduration = \"12s\"\n\
         [[phase]]\nname = \"web\"\nduration = \"10s\"\nworkload = [{ kind = \"web\", target = \"vanilla\", parallel = 4 }]\n\
         [[phase]]\nname = \"zombie\"\nduration = \"15s\"\nflood = [{ target = \"vanilla\", from = \"container\", rate = \"3000\" }]\n\
         [[phase]]\nname = \"calm\"\nduration = \"10s\"\n",
    )
    .unwrap();
    let db = w.path("train.db");
    let model = w.path("model.json");
    w.vmguard_ok(&["record", scenario.to_str().unwrap(), "--store", db.to_str().unwrap()]);
    w.vmguard_ok(&[
        "detect",
        "train",
        "--store",
        db.to_str().unwrap(),
        "--scenarios",
        "discover-train",
        "--out",
        model.to_str().unwrap(),
    ]);

    // The guests vmguard did not create.
    ensure_libvirtd(&mut w);
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(w.path("run").join(PREFIX).join("state.json")).unwrap()).unwrap();
    let (kernel, initrd) = (state["image"]["kernel"].as_str().unwrap(), state["image"]["initramfs"].as_str().unwrap());
    let xml = w.path("domain.xml");
    std::fs::write(&xml, domain_xml(kernel, initrd)).unwrap();
    ok("virsh", &["-c", "qemu:///system", "define", xml.to_str().unwrap()]);
    w.domain_defined = true;
    ok("virsh", &["-c", "qemu:///system", "start", DOMAIN]);
    make_pod_ns(&mut w);
    let rootfs = w.path("rootfs");
    make_rootfs(&rootfs);
    let netns = format!("ns:/var/run/netns/{POD_NS}");
    let podman_run = [
        "--runtime",
        "runc",
        "run",
        "-d",
        "--name",
        CONTAINER,
        "--network",
        &netns,
        "--cap-add",
        "NET_RAW",
        // runc cannot raise rlimits here (no CAP_SYS_RESOURCE): ask for what the host gives.
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=4096:4096",
        "--rootfs",
        rootfs.to_str().unwrap(),
        "/bin/sleep",
        "3600",
    ];
    ok("podman", &podman_run);
    w.container_made = true;

    // The agent, discovering them (and the lab's own victims, which it finds as qemu/containers too).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let alerts = w.path("alerts.jsonl");
    let mut agent = Command::new(env!("CARGO_BIN_EXE_vmguard"))
        .arg("--config")
        .arg(&w.config)
        .args(["agent", "--discover", "libvirt,qemu,containers", "--refresh", "2s", "--model"])
        .arg(&model)
        .arg("--alerts")
        .arg(&alerts)
        .args(["--listen", &addr, "--duration", "240s"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = agent.stderr.take().unwrap();
    let log_lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = std::sync::Arc::clone(&log_lines);
    std::thread::spawn(move || {
        for l in BufReader::new(log).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(l);
        }
    });
    struct StopAgent<'a>(&'a mut Child);
    impl Drop for StopAgent<'_> {
        fn drop(&mut self) {
            let _ = exec::stop_pid(self.0.id(), Duration::from_secs(5));
            let _ = self.0.wait();
        }
    }
    let agent = StopAgent(&mut agent);

    wait_metrics(&addr, "the libvirt domain and the podman container", 60, |m| {
        discovered_name(m, DOMAIN).is_some_and(|g| has_guest(m, &g, "qemu"))
            && discovered_name(m, CONTAINER).is_some_and(|g| has_guest(m, &g, "container"))
    });
    let m = scrape(&addr);
    // The lab's own qemu, a plain qemu process to discovery (`-name vmgdi-vm`, its tap, its QMP).
    assert!(
        discovered_name(&m, &format!("{PREFIX}-vm")).is_some_and(|g| has_guest(&m, &g, "qemu")),
        "the lab's qemu process is found by `qemu` discovery:\n{m}"
    );
    let domain_guest = discovered_name(&m, DOMAIN).unwrap();
    let pod_guest = discovered_name(&m, CONTAINER).unwrap();
    wait_metrics(&addr, "three sources per discovered guest", 30, |m| {
        sources_of(m, &domain_guest).len() >= 3 && sources_of(m, &pod_guest).len() >= 3
    });

    // A bounded flood from inside the container at the lab's vanilla victim, through the zombie
    // protocol: the vmguard inside checks the target against the lab's policy itself.
    let plan: serde_json::Value = serde_json::from_str(&w.vmguard_ok(&["--json", "lab", "plan"])).unwrap();
    let status: serde_json::Value = serde_json::from_str(&w.vmguard_ok(&["--json", "lab", "status"])).unwrap();
    let targets: Vec<(String, String)> = status["victims"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap().to_string(), v["address"].as_str().unwrap().to_string()))
        .collect();
    let vanilla = targets.iter().find(|(n, _)| n == "vanilla").unwrap().1.clone();
    let request = serde_json::json!({
        "target": vanilla,
        "own_source": false,
        "lab_targets": targets,
        "spoof_subnet": plan["spoof_subnet"],
        "lab_network": plan["network"],
        // Fields left out take FloodConfig's defaults.
        "config": { "kind": "syn", "rate": "3000", "duration": { "secs": 20, "nanos": 0 } }
    });
    let flood_start_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let flood = run(
        "podman",
        &[
            "--runtime",
            "runc",
            "exec",
            CONTAINER,
            "/opt/vmguard/vmguard",
            "flood-agent",
            "--request",
            &request.to_string(),
        ],
    );
    assert!(flood.status.success(), "flood from inside the container: {}", String::from_utf8_lossy(&flood.stderr));
    std::thread::sleep(Duration::from_secs(3));
    let text = std::fs::read_to_string(&alerts).unwrap_or_default();
    let raised = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["event"] == "raised" && e["guest"] == pod_guest.as_str())
        .unwrap_or_else(|| panic!("no alert on {pod_guest}: {text}\n{}", log_lines.lock().unwrap().join("\n")));
    assert_eq!(raised["role"], "attacker", "{raised}");
    assert!(raised["time_ms"].as_i64().unwrap() >= flood_start_ms, "{raised}");

    // Both stop: the agent forgets them; both start again: found again (new PIDs), and it kept running.
    ok("virsh", &["-c", "qemu:///system", "destroy", DOMAIN]);
    ok("podman", &["--runtime", "runc", "stop", "-t", "0", CONTAINER]);
    wait_metrics(&addr, "both guests forgotten", 30, |m| {
        !m.is_empty()
            && !m.contains(&format!("guest=\"{domain_guest}\""))
            && !m.contains(&format!("guest=\"{pod_guest}\""))
    });
    ok("virsh", &["-c", "qemu:///system", "start", DOMAIN]);
    ok("podman", &["--runtime", "runc", "start", CONTAINER]);
    wait_metrics(&addr, "both guests found again", 60, |m| {
        has_guest(m, &domain_guest, "qemu") && has_guest(m, &pod_guest, "container")
    });
    drop(agent);
}
