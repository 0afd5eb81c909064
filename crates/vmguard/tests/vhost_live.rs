//! Live test of the qemu victim on vmguard's vhost-user backend (own prefix `vmgv`): `lab up` with
//! `[lab.qemu] net_backend = "vhost-user"` starts `vmguard-vhost-net` on the tap and qemu on it; the
//! guest answers HTTP from the client namespace with coalescing off, fixed and adaptive (switched
//! with `vmguard mitigate apply|remove coalesce`); `mitigate status --json` shows the backend's
//! counters moving; `lab down` leaves neither the backend nor qemu (by the PIDs the lab recorded)
//! nor a namespace.
//!
//! Needs root, and `vmguard-vhost-net` built next to the vmguard binary (`cargo build -p
//! vhost-coalesce`). Non-root `make test` leaves *_live out. Cost: one qemu lab up, ~15 calls.

use exec::Cmd;

mod common;

const PREFIX: &str = "vmgv";

fn prerequisites() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let missing: Vec<&str> =
        ["ip", "nft", "qemu-system-x86_64", "curl"].into_iter().filter(|p| exec::which(p).is_none()).collect();
    let backend = std::path::Path::new(env!("CARGO_BIN_EXE_vmguard")).with_file_name("vmguard-vhost-net");
    let reason = if !root {
        "needs root (a lab of namespaces, a tap, a qemu guest)".to_string()
    } else if !missing.is_empty() {
        format!("missing tools: {} (run `make deps`)", missing.join(", "))
    } else if !backend.is_file() {
        format!("{} is missing: run `cargo build -p vhost-coalesce` first", backend.display())
    } else {
        return;
    };
    panic!("NOT RUN: vhost_live: {reason}: it did not run, so it fails (non-root `make test` leaves *_live out)");
}

fn http_ok(address: &str) -> bool {
    Cmd::new("curl")
        .args(["-sf", "-m", "10", "-o", "/dev/null", &format!("http://{address}/")])
        .netns(format!("{PREFIX}-cli"))
        .run()
        .is_ok()
}

/// The coalesce entry of `mitigate status --json`.
fn coalesce_status(lab: &common::LiveLab) -> serde_json::Value {
    let all: Vec<serde_json::Value> = serde_json::from_str(&lab.ok(&["mitigate", "status", "--json"])).unwrap();
    // `defence` is the applied defence with its parameters, tagged by `defence` itself.
    all.into_iter().find(|s| s["defence"]["defence"] == "coalesce").expect("coalesce is applied")
}

fn counter(status: &serde_json::Value, name: &str) -> u64 {
    status["backend"]["stats"][name].as_u64().unwrap_or_else(|| panic!("no counter {name}: {status}"))
}

#[test]
fn the_guest_serves_on_vhost_user_in_every_coalescing_mode_and_lab_down_removes_it() {
    prerequisites();
    let lab = common::LiveLab::up(PREFIX, "victims = [\"qemu\"]\n\n[lab.qemu]\nnet_backend = \"vhost-user\"\n");
    let status: serde_json::Value = serde_json::from_str(&lab.ok(&["lab", "status", "--json"])).unwrap();
    let qemu = &status["victims"][0];
    assert_eq!(qemu["name"], "qemu", "{status}");
    let address = qemu["address"].as_str().unwrap().to_string();
    let pids: Vec<u32> = qemu["pids"].as_array().unwrap().iter().map(|p| p.as_u64().unwrap() as u32).collect();
    assert_eq!(pids.len(), 2, "qemu and vmguard-vhost-net are recorded: {qemu}");
    let comm = |pid: u32| std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_string();
    assert!(comm(pids[0]).starts_with("qemu"), "{}", comm(pids[0]));
    // comm is cut at 15 characters.
    assert!(comm(pids[1]).starts_with("vmguard-vhost"), "{}", comm(pids[1]));

    // Off: the backend as lab up started it.
    assert!(http_ok(&address), "the guest answers HTTP through the backend (coalescing off)");

    let e = lab.fails(&["mitigate", "apply", "coalesce", "--victim", "qemu"]);
    assert!(e.contains("--mode"), "{e}");
    let e = lab.fails(&["mitigate", "apply", "coalesce", "--victim", "qemu", "--mode", "fixed", "--at", "gateway"]);
    assert!(e.contains("--at victim"), "{e}");

    lab.ok(&["mitigate", "apply", "coalesce", "--victim", "qemu", "--mode", "fixed", "--rx-usecs", "300"]);
    let fixed = coalesce_status(&lab);
    assert_eq!(fixed["backend"]["coalesce"]["mode"], "fixed", "{fixed}");
    assert_eq!(fixed["backend"]["coalesce"]["rx_usecs"], 300, "{fixed}");
    assert_eq!(fixed["previous_mode"], r#"{"mode":"off"}"#, "{fixed}");
    for _ in 0..5 {
        assert!(http_ok(&address), "the guest answers HTTP with fixed coalescing");
    }
    let after_fixed = coalesce_status(&lab);
    for c in ["rx_frames", "rx_notify_sent"] {
        assert!(counter(&after_fixed, c) > counter(&fixed, c), "{c} moved: {fixed} -> {after_fixed}");
    }
    let held = |s: &serde_json::Value| counter(s, "rx_notify_coalesced") + counter(s, "timer_fired");
    assert!(held(&after_fixed) > held(&fixed), "fixed mode held notifications: {after_fixed}");
    let text = lab.ok(&["mitigate", "status"]);
    assert!(text.contains("RX notifications:"), "{text}");

    let e = lab.fails(&["mitigate", "apply", "coalesce", "--victim", "qemu", "--mode", "adaptive"]);
    assert!(e.contains("already applied"), "{e}");
    lab.ok(&["mitigate", "remove", "coalesce", "--victim", "qemu"]);
    lab.ok(&["mitigate", "apply", "coalesce", "--victim", "qemu", "--mode", "adaptive", "--pps-threshold", "5000"]);
    let adaptive = coalesce_status(&lab);
    assert_eq!(adaptive["backend"]["coalesce"]["mode"], "adaptive", "{adaptive}");
    assert_eq!(adaptive["backend"]["coalesce"]["pps_threshold"], 5000, "{adaptive}");
    for _ in 0..3 {
        assert!(http_ok(&address), "the guest answers HTTP with adaptive coalescing");
    }
    assert!(counter(&coalesce_status(&lab), "rx_notify_sent") > counter(&adaptive, "rx_notify_sent"));

    // Remove sets the backend back to off, and the guest still answers.
    lab.ok(&["mitigate", "remove", "coalesce", "--victim", "qemu"]);
    assert!(lab.ok(&["mitigate", "status"]).contains("no defence applied"));
    assert!(http_ok(&address), "the guest answers HTTP after remove");

    // A mode left applied goes with lab down, and so do both processes and the namespaces.
    lab.ok(&["mitigate", "apply", "coalesce", "--victim", "qemu", "--mode", "fixed"]);
    lab.ok(&["lab", "down"]);
    for pid in &pids {
        assert!(!exec::pid_alive(*pid), "process {pid} ({}) survived lab down", comm(*pid));
    }
    assert!(netns::list().iter().all(|n| !n.starts_with(&format!("{PREFIX}-"))), "lab down removed the namespaces");
}
