//! Helpers shared by the CLI tests (each test binary includes this module with `mod common;`).
#![allow(dead_code)] // each test binary uses a part

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use telemetry::{GuestInfo, GuestKind, Kind, Sample, SourceId};

/// A scratch directory of the test's, removed when dropped.
pub fn temp_dir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(&format!("vmguard-cli-{tag}-")).tempdir().unwrap()
}

/// The real binary, with a config file that does not exist in `dir` (so: defaults, no lab).
pub fn vmguard(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vmguard"))
        .args(["--config", dir.join("none.toml").to_str().unwrap()])
        .args(args)
        .env_remove("VMGUARD_STORE")
        .env_remove("VMGUARD_CONFIG")
        .output()
        .unwrap()
}

/// The real binary on the lab described by `config`.
pub fn vmguard_with(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vmguard"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("VMGUARD_STORE")
        .output()
        .unwrap()
}

pub fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// A synthetic recording of scenario `scenario` from `t0`: a container `ct` flooded over seconds
/// 60..120 and a vanilla `van` that stays benign; both carry a benign bulk transfer over 150..210, and
/// the container a phase whose workload failed (unknown) over 215..230. 1 s samples of netdev, SNMP
/// and process CPU counters.
pub fn record(st: &mut store::Store, scenario: &str, flood_pps: u64, t0: i64) {
    for (name, kind) in [("ct", GuestKind::Container), ("van", GuestKind::Vanilla)] {
        st.put_guest(&GuestInfo::new(name, kind)).unwrap();
        let g: Arc<str> = name.into();
        let mut tot = [0u64; 9];
        let mut samples = Vec::new();
        for s in 0..240i64 {
            let t = t0 + s * 1_000_000_000;
            // The sample at s counts (s - 1, s]: the flood runs over seconds 60..120.
            let attack = name == "ct" && (61..=120).contains(&s);
            let bulk = (151..=210).contains(&s);
            let wob = (s % 5) as u64;
            // host rx = guest tx, host tx = guest rx
            let (gtx, grx, gtxb, grxb) = if attack {
                (flood_pps, flood_pps + 5, flood_pps * 58, flood_pps * 60)
            } else if bulk {
                (3000 + wob, 6000 + wob, 3000 * 66, 6000 * 1450)
            } else {
                (10 + wob, 12 + wob, 10 * 200, 12 * 300)
            };
            let cpu_ns = if attack {
                450_000_000
            } else if bulk {
                300_000_000
            } else {
                20_000_000 + wob * 1_000_000
            };
            let inc = [
                gtx,
                gtxb,
                grx,
                grxb,
                if attack { flood_pps } else { 0 },
                grx,
                gtx,
                u64::from(attack) * 299 + 1,
                cpu_ns,
            ];
            for (a, b) in tot.iter_mut().zip(inc) {
                *a += b;
            }
            let names = [
                (SourceId::Netdev, "rx_packets"),
                (SourceId::Netdev, "rx_bytes"),
                (SourceId::Netdev, "tx_packets"),
                (SourceId::Netdev, "tx_bytes"),
                (SourceId::Snmp, "TcpExt.SyncookiesSent"),
                (SourceId::Snmp, "Tcp.InSegs"),
                (SourceId::Snmp, "Tcp.OutSegs"),
                (SourceId::Snmp, "TcpExt.ListenDrops"),
                (SourceId::Process, "cpu_ns"),
            ];
            for ((src, c), v) in names.iter().zip(tot) {
                samples.push(Sample {
                    time_ns: t,
                    guest: Arc::clone(&g),
                    source: *src,
                    counter: (*c).into(),
                    value: v,
                    kind: Kind::Counter,
                });
            }
        }
        st.append(&samples).unwrap();
        let label = |a: i64, b: i64, l: &str| store::Label {
            guest: name.into(),
            start_ns: t0 + a * 1_000_000_000,
            end_ns: t0 + b * 1_000_000_000,
            label: l.into(),
            scenario: scenario.into(),
        };
        let attack = if name == "ct" { "attack-victim" } else { "normal" };
        let failed = if name == "ct" { "unknown" } else { "normal" };
        st.add_labels(&[
            label(2, 60, "normal"),
            label(60, 120, attack),
            label(120, 215, "normal"),
            label(215, 230, failed),
            label(230, 238, "normal"),
        ])
        .unwrap();
    }
}

pub fn chromium() -> PathBuf {
    match exec::which("chromium") {
        Some(p) => p,
        None if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("chromium is missing (Debian package chromium): `make deps` installs it")
        }
        None => panic!(
            "NOT RUN: chromium is not installed (Debian package chromium, `make deps` as root); this test did not run, \
             so it fails rather than pass (`make test` leaves it out when chromium is missing and lists it)"
        ),
    }
}

/// Headless Chromium on a file (the flags a closed network needs): `extra` is `--dump-dom` or `--screenshot=...`; stdout returned.
pub fn headless(dir: &Path, html: &Path, extra: &[&str]) -> String {
    let profile = dir.join("chromium-profile");
    let o = Command::new("timeout")
        .arg("120")
        .arg(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(format!("file://{}", html.display()))
        .output()
        .unwrap();
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "chromium failed: {stderr}");
    stdout
}

/// A live lab with its own prefix, configured in a temp dir; `lab down` runs when it is dropped,
/// also when the test fails. (Older live tests carry their own copy of this.)
pub struct LiveLab {
    pub config: PathBuf,
    pub prefix: String,
    /// Removed when dropped, after `Drop::drop` has run `lab down`.
    pub dir: tempfile::TempDir,
}

impl LiveLab {
    /// Bring a lab up with `[lab] prefix = PREFIX` and `extra` appended to the config.
    pub fn up(prefix: &str, extra: &str) -> LiveLab {
        let dir = tempfile::Builder::new().prefix(&format!("vmguard-test-{prefix}-")).tempdir().unwrap();
        let config = dir.path().join("vmguard.toml");
        std::fs::write(&config, format!("[lab]\nprefix = \"{prefix}\"\n{extra}")).unwrap();
        let lab = LiveLab { config, prefix: prefix.to_string(), dir };
        let down = lab.run(&["lab", "down"]);
        assert!(down.status.success(), "lab down before the test: {:?}", text(&down));
        let up = lab.run(&["lab", "up"]);
        assert!(up.status.success(), "lab up: {:?}", text(&up));
        lab
    }

    pub fn run(&self, args: &[&str]) -> Output {
        vmguard_with(&self.config, args)
    }

    /// Run and require success; stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let (o, e) = text(&out);
        assert!(out.status.success(), "vmguard {}: {e}{o}", args.join(" "));
        o
    }

    /// Run and require failure; stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let (o, e) = text(&out);
        assert!(!out.status.success(), "vmguard {} should have failed: {o}", args.join(" "));
        e
    }
}

impl Drop for LiveLab {
    fn drop(&mut self) {
        let out = self.run(&["lab", "down"]);
        if !out.status.success() {
            eprintln!("lab down of {} failed: {:?}", self.prefix, text(&out));
        }
    }
}

/// Everything of lab `prefix` still on the host: namespaces, interfaces, live processes naming its
/// run directory, mounts (an image build's `/building-xen` too), and the Xen victim's machine files
/// (overlay, config and data disks, sockets).
pub fn lab_leftovers(prefix: &str, run_dir: &str) -> Vec<String> {
    let p = format!("{prefix}-");
    let mut left: Vec<String> =
        netns::list().into_iter().filter(|n| n.starts_with(&p)).map(|n| format!("namespace {n}")).collect();
    let links = exec::Cmd::new("ip").args(["-o", "link"]).stdout().unwrap_or_default();
    left.extend(links.lines().filter(|l| l.contains(&p)).map(|l| format!("link {l}")));
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline =
            String::from_utf8_lossy(&std::fs::read(e.path().join("cmdline")).unwrap_or_default()).replace('\0', " ");
        let state = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        // Zombies wait for their parent to reap them: not alive.
        let zombie = state.rsplit(')').next().is_some_and(|s| s.trim_start().starts_with('Z'));
        // vmguard itself names the run directory; the Xen stream relay is the lab's.
        let ours = !cmdline.contains("vmguard") || cmdline.contains(lab::relay::RELAY_BIN);
        if cmdline.contains(run_dir) && ours && !zombie {
            left.push(format!("process {} {cmdline}", e.file_name().to_string_lossy()));
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    left.extend(
        mounts.lines().filter(|l| l.contains(run_dir) || l.contains("/building-xen")).map(|l| format!("mount {l}")),
    );
    let files = [
        "dom0-root.qcow2",
        "config.img",
        "data.img",
        "ctl.sock",
        "ctl.sock.lock",
        "qmp.sock",
        "trace.sock",
        "stats.sock",
    ];
    let relay = ["trace.qemu.sock", "stats.qemu.sock", "relay.json"];
    for f in files.iter().chain(&relay) {
        let path = format!("{run_dir}/xen/{f}");
        if std::path::Path::new(&path).exists() {
            left.push(format!("file {path}"));
        }
    }
    left
}

/// Fails a Xen live test with `NOT RUN: test: reason` unless it can run: root, the tools a Xen lab
/// needs plus `extra`, and apt knowing Debian's Xen packages (the images come from apt's mirror).
/// `needs` says what root is for in this test.
pub fn require_xen_lab(test: &str, extra: &[&str], needs: &str) {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let tools = ["ip", "qemu-system-x86_64", "qemu-img", "mkfs.ext4", "debootstrap", "apt-get", "dpkg-deb"];
    let missing: Vec<&str> = tools
        .iter()
        .chain(&["unshare", "setpriv", "curl"])
        .chain(extra)
        .copied()
        .filter(|p| exec::which(p).is_none() && !Path::new(&format!("/usr/sbin/{p}")).exists())
        .collect();
    let known = exec::Cmd::new("apt-cache").args(["show", "xen-hypervisor-4.17-amd64"]).run().is_ok();
    let reason = if !root {
        format!("needs root ({needs})")
    } else if !missing.is_empty() {
        format!("missing tools: {} (run `make deps`)", missing.join(", "))
    } else if !known {
        "apt knows no xen-hypervisor-4.17-amd64 (run `apt-get update`; the images come from apt's Debian mirror)".into()
    } else {
        return;
    };
    panic!("NOT RUN: {test}: {reason}: it did not run, so it fails (non-root `make test` leaves *_live out)");
}
