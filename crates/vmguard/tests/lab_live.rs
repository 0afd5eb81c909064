//! Live lab tests: bring the lab up, reach every victim, measure the shaped attacker link, toggle the
//! gateway, tear down, and check that nothing is left, also after `lab up` is killed half-way.
//!
//! They need root. A missing prerequisite fails them with the reason (a test that did not run never
//! passes); as non-root, `make test` leaves this binary out and lists it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use exec::Cmd;

const BIN: &str = env!("CARGO_BIN_EXE_vmguard");

/// True if the test can run; panics with the reason when it cannot (also outside CI).
fn prerequisites() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let missing: Vec<&str> = ["ip", "tc", "nft", "runc", "qemu-system-x86_64", "iperf3"]
        .into_iter()
        .filter(|p| exec::which(p).is_none())
        .collect();
    let reason = if !root {
        "needs root (network namespaces, taps, cgroups)".to_string()
    } else if !missing.is_empty() {
        format!("missing tools: {} (run `make deps`)", missing.join(", "))
    } else {
        return true;
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("lab_live cannot run under CI: {reason}");
    }
    panic!("NOT RUN: lab_live test: {reason}: it did not run, so it fails (non-root `make test` leaves *_live out)")
}

/// A lab with its own prefix, torn down on drop (also when the test fails).
struct TestLab {
    prefix: String,
    config: PathBuf,
    /// Holds `config`; removed when dropped, which is after `Drop::drop` has run `lab down`.
    _dir: tempfile::TempDir,
}

impl TestLab {
    fn new(prefix: &str) -> TestLab {
        let dir = tempfile::Builder::new().prefix(&format!("vmguard-test-{prefix}-")).tempdir().unwrap();
        let config = dir.path().join("vmguard.toml");
        std::fs::write(&config, format!("[lab]\nprefix = \"{prefix}\"\n")).unwrap();
        let lab = TestLab { prefix: prefix.into(), config, _dir: dir };
        // A previous crashed run may have left this prefix behind.
        lab.vmguard(&["lab", "down"]).run().expect("lab down before the test");
        lab
    }

    fn vmguard(&self, args: &[&str]) -> Cmd {
        Cmd::new(BIN).arg("--config").arg(&self.config).args(args).timeout(Duration::from_secs(300))
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.vmguard(&[&["--json"], args].concat()).run().unwrap_or_else(|e| panic!("{e}"));
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("bad JSON from {args:?}: {e}\n{}", out.stdout))
    }

    fn ns(&self, role: &str) -> String {
        format!("{}-{role}", self.prefix)
    }

    /// Assert that nothing of this lab is left on the host.
    fn assert_nothing_left(&self, pids: &[u32]) {
        let p = format!("{}-", self.prefix);
        let namespaces: Vec<String> = netns::list().into_iter().filter(|n| n.starts_with(&p)).collect();
        assert!(namespaces.is_empty(), "namespaces left: {namespaces:?}");
        let links = Cmd::new("ip").args(["-o", "link"]).stdout().unwrap();
        assert!(!links.contains(&p), "interfaces left on the host: {links}");
        for pid in pids {
            assert!(!exec::pid_alive(*pid), "victim process {pid} still alive");
        }
        let run_dir = format!("/var/lib/vmguard/run/{}", self.prefix);
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            let ours = cmdline.contains(&run_dir) && !cmdline.contains(BIN);
            assert!(!ours, "a lab process is still alive: {} {cmdline}", e.file_name().to_string_lossy());
        }
        for controller in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            for entry in std::fs::read_dir(controller.path()).into_iter().flatten().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                assert!(!name.starts_with(&p), "cgroup left: {}", entry.path().display());
            }
        }
        let runc_root = Path::new(&run_dir).join("runc");
        if runc_root.exists() {
            let listed =
                Cmd::new("runc").arg("--root").arg(&runc_root).args(["list", "-q"]).stdout().unwrap_or_default();
            assert!(listed.trim().is_empty(), "containers left: {listed}");
        }
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        let _ = self.vmguard(&["lab", "down"]).run();
        // The temp dir goes with the fields, after this.
    }
}

fn http_ok(ns: &str, addr: &str) -> bool {
    lab::http::get(ns, addr.parse().unwrap(), 80, "/", Duration::from_secs(2)).map(|r| r.status == 200).unwrap_or(false)
}

#[test]
fn lab_up_serves_every_victim_shapes_the_attacker_and_leaves_nothing() {
    if !prerequisites() {
        return;
    }
    let lab = TestLab::new("vmgi");
    lab.vmguard(&["lab", "up"]).run().unwrap_or_else(|e| panic!("lab up: {e}"));

    let status = lab.json(&["lab", "status"]);
    assert_eq!(status["phase"], "up");
    let victims = status["victims"].as_array().unwrap();
    let kinds: Vec<&str> = victims.iter().map(|v| v["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["vanilla", "container", "qemu"]);
    let mut pids = Vec::new();
    for v in victims {
        assert_eq!(v["http_ok"], true, "{v}");
        // Fetched again here from the client namespace, independently of `lab status`.
        assert!(http_ok(&lab.ns("cli"), v["address"].as_str().unwrap()), "{v}");
        pids.extend(v["pids"].as_array().unwrap().iter().map(|p| p.as_u64().unwrap() as u32));
    }
    let qemu = &victims[2];
    assert!(["kvm", "tcg"].contains(&qemu["accelerator"].as_str().unwrap()), "{qemu}");
    assert!(status["namespaces"].as_array().unwrap().len() == 6);

    // A second `lab up` is refused and changes nothing.
    let err = lab.vmguard(&["lab", "up"]).run().unwrap_err().to_string();
    assert!(err.contains("already up"), "{err}");
    assert!(http_ok(&lab.ns("cli"), "10.213.10.2"));

    // Commands run inside each victim.
    let guest = lab.vmguard(&["lab", "exec", "qemu", "--", "cat", "/proc/version"]).stdout().unwrap();
    assert!(guest.starts_with("Linux version"), "{guest}");
    let host_kernel = std::fs::read_to_string("/proc/version").unwrap();
    assert_ne!(guest.trim(), host_kernel.trim(), "the qemu victim must run its own kernel");
    let hostname = lab.vmguard(&["lab", "exec", "container", "--", "hostname"]).stdout().unwrap();
    assert_eq!(hostname.trim(), "vmgi-ctr");

    // The attacker link is shaped to 10 Mbit/s: iperf3 from the attacker to the vanilla victim.
    let server_log = lab.config.with_file_name("iperf3.log");
    let server = Cmd::new("iperf3").args(["-s", "-1"]).netns(lab.ns("van")).spawn_detached(&server_log).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let out = Cmd::new("iperf3")
        .args(["-c", "10.213.10.2", "-t", "4", "-J"])
        .netns(lab.ns("att"))
        .timeout(Duration::from_secs(30))
        .stdout()
        .unwrap();
    let _ = exec::stop_pid(server, Duration::from_secs(1));
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mbps = report["end"]["sum_received"]["bits_per_second"].as_f64().unwrap() / 1e6;
    eprintln!("attacker link: {mbps:.2} Mbit/s");
    assert!(mbps <= 10.5, "attacker link carried {mbps:.2} Mbit/s, more than 10.5");
    assert!(mbps >= 7.0, "attacker link carried only {mbps:.2} Mbit/s");

    // The gateway drops forwarded packets, and forwards again.
    lab.vmguard(&["lab", "gateway", "--drop", "on"]).run().unwrap();
    assert!(!http_ok(&lab.ns("cli"), "10.213.10.2"), "traffic passed a dropping gateway");
    assert_eq!(lab.json(&["lab", "status"])["gateway_drop"], true);
    lab.vmguard(&["lab", "gateway", "--drop", "off"]).run().unwrap();
    assert!(http_ok(&lab.ns("cli"), "10.213.10.2"), "traffic did not resume");

    lab.vmguard(&["lab", "down"]).run().unwrap();
    lab.assert_nothing_left(&pids);
    assert_eq!(lab.json(&["lab", "status"])["phase"], "down");
}

/// A random-enough delay without a dependency: the clock's nanoseconds.
fn random_millis(max: u64) -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64;
    nanos.wrapping_mul(6364136223846793005).rotate_left(17) % max
}

#[test]
fn lab_up_killed_at_a_random_point_leaves_nothing_after_down() {
    if !prerequisites() {
        return;
    }
    let lab = TestLab::new("vmgk");
    // Cache the image and time a whole `lab up`, so that every kill lands somewhere inside one.
    let started = Instant::now();
    lab.vmguard(&["lab", "up"]).run().unwrap();
    let up_millis = started.elapsed().as_millis() as u64;
    lab.vmguard(&["lab", "down"]).run().unwrap();
    for (round, signal) in [(1, exec::SIGKILL), (2, exec::SIGKILL), (3, exec::SIGTERM), (4, 2 /* SIGINT */)] {
        let delay = Duration::from_millis(random_millis(up_millis.max(1)));
        let log = lab.config.with_file_name(format!("up-{round}.log"));
        let pid = lab.vmguard(&["lab", "up"]).spawn_detached(&log).unwrap();
        let started = Instant::now();
        while started.elapsed() < delay && exec::pid_alive(pid) {
            std::thread::sleep(Duration::from_millis(10));
        }
        eprintln!(
            "round {round}: signal {signal} after {:?} (still running: {})",
            started.elapsed(),
            exec::pid_alive(pid)
        );
        exec::signal_pid(pid, signal).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while exec::pid_alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = exec::signal_pid(pid, exec::SIGKILL);
        lab.vmguard(&["lab", "down"]).run().unwrap_or_else(|e| panic!("lab down after a kill: {e}"));
        lab.assert_nothing_left(&[]);
    }
}
