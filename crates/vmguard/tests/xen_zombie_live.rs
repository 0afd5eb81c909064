//! Live test of the Xen domU as a zombie and a defended victim (own prefix `vmgxz`, own network
//! 10.225.0.0/16), on a lab with the vanilla and xen victims:
//! - `vmguard flood --from xen` floods the vanilla victim from inside the PV domU, through its
//!   netfront NIC, and the vanilla victim's own counters show the SYNs arriving; a target outside
//!   the lab is refused;
//! - `mitigate` round-trips on xen: SYN cookies and the SYN backlog inside the domU, synproxy,
//!   syn-ratelimit and ingress-filter on the gateway in front of it (HTTP still served); nothing is
//!   left behind (sysctls inside the domU, vmguard tables in any lab namespace);
//! - the detector is trained the documented way on the shipped seed-004 scenario in its short
//!   version (`record seed004-xen --time-scale 0.05`, `detect train`), then `vmguard agent` watches a
//!   fresh zombie flood from the domU and raises an alert naming `xen` as the attacker;
//! - `lab down` leaves no qemu, tap, namespace, mount or run file.
//!
//! Needs root, qemu, debootstrap and apt's Debian mirror (images built once and cached). A missing
//! prerequisite fails it with `NOT RUN: ...`. 8.7 minutes under TCG on a busy 2-core machine
//! (2026-12-02): Xen's boot (2.6 min), the 3.5-minute recording, the agent's 45 s.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use exec::Cmd;

mod common;

const PREFIX: &str = "vmgxz";
const NETWORK: &str = "10.225.0.0/16";
const XEN_ADDR: &str = "10.225.13.2";

/// The sysctls a defence may change: inside the domU, and in every lab namespace.
fn sysctls(lab: &common::LiveLab) -> Vec<(String, String)> {
    let keys = ["net/ipv4/tcp_syncookies", "net/ipv4/tcp_max_syn_backlog"];
    let mut out = Vec::new();
    for key in keys {
        let v = lab.ok(&["lab", "exec", "xen", "--", "cat", &format!("/proc/sys/{key}")]);
        out.push((format!("domU:{key}"), v.trim().to_string()));
    }
    for ns in netns::list().into_iter().filter(|n| n.starts_with(&format!("{PREFIX}-"))) {
        for key in [keys[0], keys[1], "net/netfilter/nf_conntrack_tcp_loose"] {
            let v = Cmd::new("cat").arg(format!("/proc/sys/{key}")).netns(&ns).stdout().unwrap_or_default();
            out.push((format!("{ns}:{key}"), v.trim().to_string()));
        }
    }
    out
}

/// vmguard's defence tables in any lab namespace.
fn tables_left() -> Vec<String> {
    netns::list()
        .into_iter()
        .filter(|n| n.starts_with(&format!("{PREFIX}-")))
        .flat_map(|ns| {
            let out = Cmd::new("nft").args(["list", "tables"]).netns(&ns).stdout().unwrap_or_default();
            out.lines().filter(|l| l.contains("vmguard_def_")).map(|l| format!("{ns}: {l}")).collect::<Vec<_>>()
        })
        .collect()
}

fn http_ok() -> bool {
    Cmd::new("curl")
        .args(["-sf", "-m", "10", "-o", "/dev/null", &format!("http://{XEN_ADDR}/")])
        .netns(format!("{PREFIX}-cli"))
        .run()
        .is_ok()
}

#[test]
fn the_domu_floods_as_a_zombie_is_defended_and_the_agent_names_it_the_attacker() {
    common::require_xen_lab(
        "xen_zombie_live",
        &["nft", "wrk", "iperf3"],
        "a lab of namespaces, a tap, a qemu machine running Xen, floods",
    );
    let started = Instant::now();
    let run_dir = format!("/var/lib/vmguard/run/{PREFIX}");
    // LiveLab: `lab down` before, and again when dropped (also when an assertion fails).
    let lab = common::LiveLab::up(PREFIX, &format!("network = \"{NETWORK}\"\nvictims = [\"vanilla\", \"xen\"]\n"));
    eprintln!("xen_zombie_live: lab up {:.0} s", started.elapsed().as_secs_f64());
    let path = |name: &str| lab.dir.path().join(name).display().to_string();

    // 1. A bounded zombie flood from inside the domU; the vanilla victim's counters see it arrive.
    let report: serde_json::Value = serde_json::from_str(&lab.ok(&[
        "--json",
        "flood",
        "--from",
        "xen",
        "--target",
        "vanilla",
        "--rate",
        "1000",
        "--duration",
        "6s",
    ]))
    .unwrap();
    let sent = report["summary"]["sent"].as_u64().unwrap();
    let received = report["victim"]["rx_packets"].as_u64().unwrap();
    let cookies = report["victim"]["syncookies_sent"].as_u64().unwrap();
    eprintln!("xen_zombie_live: the domU sent {sent} SYNs, vanilla received {received}, sent {cookies} SYN cookies");
    assert_eq!(report["from"], "xen", "{report}");
    assert!(sent >= 500, "the domU's flood sent {sent} packets in 6 s: {report}");
    assert!(received >= sent * 9 / 10, "vanilla received {received} of {sent}: {report}");
    assert!(cookies > 0, "vanilla's listener answered the SYNs with cookies: {report}");
    let e = lab.fails(&["flood", "--from", "xen", "--target", "8.8.8.8", "--rate", "10", "--duration", "1s"]);
    assert!(e.contains("refusing public address"), "{e}");

    // 2. Defences on xen round-trip and leave nothing.
    let before = sysctls(&lab);
    let e = lab.fails(&["mitigate", "apply", "synproxy", "--victim", "xen", "--at", "victim"]);
    assert!(e.contains("--at gateway"), "{e}");
    let e = lab.fails(&["mitigate", "apply", "coalesce", "--victim", "xen", "--mode", "fixed"]);
    assert!(e.contains("qemu victim only"), "{e}");
    let applied: [&[&str]; 4] = [
        &["syncookies", "--victim", "xen", "--off", "--backlog", "64"],
        &["synproxy", "--victim", "xen"],
        &["syn-ratelimit", "--victim", "xen", "--rate", "50", "--burst", "100"],
        &["ingress-filter", "--victim", "xen"],
    ];
    for a in applied {
        lab.ok(&[&["mitigate", "apply"], a].concat());
    }
    let st: Vec<serde_json::Value> = serde_json::from_str(&lab.ok(&["mitigate", "status", "--json"])).unwrap();
    assert_eq!(st.len(), applied.len(), "{st:?}");
    assert!(
        st.iter().filter(|s| s["defence"]["defence"] != "syncookies").all(|s| s["table_present"] == true),
        "{st:?}"
    );
    let inside = |key: &str| lab.ok(&["lab", "exec", "xen", "--", "cat", &format!("/proc/sys/net/ipv4/{key}")]);
    assert_eq!(inside("tcp_syncookies").trim(), "0");
    assert_eq!(inside("tcp_max_syn_backlog").trim(), "64");
    assert!(http_ok(), "the domU answers HTTP through synproxy and the limits on the gateway");
    for a in applied.iter().rev() {
        lab.ok(&["mitigate", "remove", a[0], a[1], a[2]]);
    }
    assert!(lab.ok(&["mitigate", "status"]).contains("no defence applied"));
    assert_eq!(tables_left(), Vec::<String>::new(), "remove left vmguard tables");
    assert_eq!(sysctls(&lab), before, "every sysctl has its old value again");
    assert!(http_ok(), "the domU answers HTTP after remove");

    // 3. Training as documented, on the seed-004 scenario's short version.
    let scenarios = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios");
    let train = path("train.db");
    let rec = lab.ok(&[
        "--json",
        "record",
        "seed004-xen",
        "--scenario-dir",
        scenarios.to_str().unwrap(),
        "--store",
        &train,
        "--time-scale",
        "0.05",
    ]);
    let rec: serde_json::Value = serde_json::from_str(&rec).unwrap();
    // Every phase should run. Under heavy host load the domU's command channel has been seen silent
    // for 85 s during a zombie flood (README: open); such a phase is labelled `unknown` and left out
    // of training, so the test goes on if enough of each class ran, and says which phases failed.
    let failures = rec["failures"].as_array().cloned().unwrap_or_default();
    for f in &failures {
        eprintln!("xen_zombie_live: PHASE FAILED (left out of training, not of the checks below): {f}");
    }
    let labels = rec["labels"].as_array().cloned().unwrap_or_default();
    let ran = |label: &str| labels.iter().filter(|l| l[0] == "xen" && l[1] == label).count();
    assert!(
        ran("attack-zombie") >= 3 && ran("normal") >= 5,
        "too few phases ran to train on ({} zombie, {} normal of 6 and 7): {rec}",
        ran("attack-zombie"),
        ran("normal")
    );
    let model = path("model.json");
    lab.ok(&["detect", "train", "--store", &train, "--scenarios", "seed004-xen", "--out", &model]);

    // 4. The agent watches a fresh zombie flood from the domU and names it the attacker.
    let alerts = path("alerts.jsonl");
    let agent = Command::new(env!("CARGO_BIN_EXE_vmguard"))
        .arg("--config")
        .arg(&lab.config)
        .args(["agent", "--model", &model, "--alerts", &alerts, "--listen", "127.0.0.1:0", "--duration", "45s"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Stopped by PID also when the test fails below.
    struct Stop(u32);
    impl Drop for Stop {
        fn drop(&mut self) {
            // SAFETY: signalling our own child by its PID.
            unsafe { libc::kill(self.0 as i32, libc::SIGTERM) };
        }
    }
    let stop = Stop(agent.id());
    std::thread::sleep(Duration::from_secs(10));
    let flood_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    lab.ok(&["flood", "--from", "xen", "--target", "vanilla", "--rate", "800", "--duration", "15s"]);
    let out = agent.wait_with_output().unwrap();
    std::mem::forget(stop);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "agent: {log}");
    let text = std::fs::read_to_string(&alerts).unwrap_or_default();
    let events: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let raised = events
        .iter()
        .find(|e| e["event"] == "raised" && e["guest"] == "xen" && e["time_ms"].as_i64() >= Some(flood_ms))
        .unwrap_or_else(|| panic!("no alert on xen during its zombie flood: {text}\nagent log:\n{log}"));
    assert_eq!(raised["role"], "attacker", "the domU is named the attacker: {raised}");
    let after_s = (raised["time_ms"].as_i64().unwrap() - flood_ms) as f64 / 1e3;
    eprintln!("xen_zombie_live: agent alert on xen (attacker) {after_s:.1} s after the flood started: {raised}");
    assert!(after_s <= 15.0, "alert {after_s:.1} s after the flood started");

    // 5. Nothing left after lab down.
    let status: serde_json::Value = serde_json::from_str(&lab.ok(&["lab", "status", "--json"])).unwrap();
    let xen = status["victims"].as_array().unwrap().iter().find(|v| v["name"] == "xen").unwrap().clone();
    let qemu_pid = xen["pids"][0].as_u64().unwrap() as u32;
    let down = lab.run(&["lab", "down"]);
    assert!(down.status.success(), "lab down: {:?}", common::text(&down));
    let deadline = Instant::now() + Duration::from_secs(10);
    while exec::pid_alive(qemu_pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let left = common::lab_leftovers(PREFIX, &run_dir);
    assert!(left.is_empty(), "left behind after lab down: {left:#?}");
    eprintln!("xen_zombie_live: {:.0} s in all", started.elapsed().as_secs_f64());
}
