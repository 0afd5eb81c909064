//! Live test of `vmguard mitigate` on a real lab (own prefix `vmgm`): every defence round-trips
//! (`apply`, `status`, `remove`) on every victim it supports; the victims keep answering HTTP through
//! the gateway's synproxy; the ingress filter drops a spoofed flood; bad requests are refused with
//! what to do; afterwards no vmguard table is left in any lab namespace and every sysctl (the
//! namespaces' and the qemu guest's) has its old value again.
//!
//! Needs root. A missing prerequisite fails it with the reason; as non-root, `make test` leaves this
//! binary out and lists it. Cost: lab up (~10 s), ~25 vmguard calls, a 2 s flood.

use std::collections::BTreeMap;

use exec::Cmd;

mod common;

const PREFIX: &str = "vmgm";

fn prerequisites() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let missing: Vec<&str> = ["ip", "tc", "nft", "runc", "qemu-system-x86_64", "curl"]
        .into_iter()
        .filter(|p| exec::which(p).is_none())
        .collect();
    let reason = if !root {
        "needs root (a lab of namespaces, nftables in them, a flood)".to_string()
    } else if !missing.is_empty() {
        format!("missing tools: {} (run `make deps`)", missing.join(", "))
    } else {
        return;
    };
    panic!("NOT RUN: mitigate_live: {reason}: it did not run, so it fails (non-root `make test` leaves *_live out)");
}

const SYSCTLS: [&str; 3] =
    ["net/ipv4/tcp_syncookies", "net/ipv4/tcp_max_syn_backlog", "net/netfilter/nf_conntrack_tcp_loose"];

/// Every sysctl a defence may change, in every lab namespace and in the qemu guest.
fn sysctls(lab: &common::LiveLab) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for ns in netns::list().into_iter().filter(|n| n.starts_with(&format!("{PREFIX}-"))) {
        for key in SYSCTLS {
            let v = Cmd::new("cat").arg(format!("/proc/sys/{key}")).netns(&ns).stdout().unwrap_or_default();
            out.insert(format!("{ns}:{key}"), v.trim().to_string());
        }
    }
    for key in &SYSCTLS[..2] {
        let v = lab.ok(&["lab", "exec", "qemu", "--", "cat", &format!("/proc/sys/{key}")]);
        out.insert(format!("guest:{key}"), v.trim().to_string());
    }
    out
}

/// vmguard's defence tables left in any lab namespace.
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

fn status(lab: &common::LiveLab) -> Vec<serde_json::Value> {
    serde_json::from_str::<Vec<serde_json::Value>>(&lab.ok(&["mitigate", "status", "--json"])).expect("status JSON")
}

fn http_ok(address: &str) -> bool {
    Cmd::new("curl")
        .args(["-sf", "-m", "5", "-o", "/dev/null", &format!("http://{address}/")])
        .netns(format!("{PREFIX}-cli"))
        .run()
        .is_ok()
}

#[test]
fn every_defence_round_trips_on_every_victim_and_leaves_nothing_behind() {
    prerequisites();
    let lab = common::LiveLab::up(PREFIX, "");
    let lab_status: serde_json::Value = serde_json::from_str(&lab.ok(&["lab", "status", "--json"])).unwrap();
    let address = |victim: &str| -> String {
        lab_status["victims"].as_array().unwrap().iter().find(|v| v["name"] == victim).unwrap()["address"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let before = sysctls(&lab);

    // Refusals say what was wrong and what to do.
    let e = lab.fails(&["mitigate", "apply", "cookies", "--victim", "vanilla"]);
    assert!(e.contains("syncookies, synproxy, syn-ratelimit, ingress-filter, coalesce"), "{e}");
    let e = lab.fails(&["mitigate", "apply", "syn-ratelimit", "--victim", "vanilla", "--rate", "0"]);
    assert!(e.contains("at least 1"), "{e}");
    let e = lab.fails(&["mitigate", "apply", "synproxy", "--victim", "nosuch"]);
    assert!(e.contains("no victim `nosuch`") && e.contains("vanilla"), "{e}");
    let e = lab.fails(&["mitigate", "apply", "synproxy", "--victim", "qemu", "--at", "victim"]);
    assert!(e.contains("--at gateway"), "{e}");
    let e = lab.fails(&["mitigate", "apply", "syncookies", "--victim", "qemu", "--at", "gateway"]);
    assert!(e.contains("--at victim"), "{e}");
    let e = lab.fails(&["mitigate", "apply", "coalesce", "--victim", "qemu", "--mode", "fixed"]);
    assert!(e.contains("net_backend = \"vhost-user\"") && e.contains("lab up again"), "{e}");
    let e = lab.fails(&["mitigate", "remove", "synproxy", "--victim", "vanilla"]);
    assert!(e.contains("not applied"), "{e}");

    // Every supported (defence, victim, place), all applied at once.
    let mut applied: Vec<Vec<&str>> = Vec::new();
    for victim in ["vanilla", "container", "qemu"] {
        applied.push(vec!["syncookies", "--victim", victim, "--off", "--backlog", "64"]);
        applied.push(vec!["synproxy", "--victim", victim, "--at", "gateway"]);
        applied.push(vec!["syn-ratelimit", "--victim", victim, "--at", "gateway", "--rate", "50", "--burst", "100"]);
        applied.push(vec!["ingress-filter", "--victim", victim]);
        if victim != "qemu" {
            applied.push(vec!["synproxy", "--victim", victim, "--at", "victim"]);
            applied.push(vec!["syn-ratelimit", "--victim", victim, "--at", "victim"]);
        }
    }
    for a in &applied {
        lab.ok(&[&["mitigate", "apply"], &a[..]].concat());
    }
    let st = status(&lab);
    assert_eq!(st.len(), applied.len(), "{st:?}");
    for s in &st {
        if s["defence"]["defence"] != "syncookies" {
            assert_eq!(s["table_present"], true, "{s}");
        }
    }
    assert_eq!(lab.ok(&["lab", "exec", "qemu", "--", "cat", "/proc/sys/net/ipv4/tcp_syncookies"]).trim(), "0");
    assert!(lab.ok(&["lab", "status"]).contains("defences applied"), "lab status lists the defences");

    // Applying the same again changes nothing; other parameters are refused.
    lab.ok(&["mitigate", "apply", "ingress-filter", "--victim", "vanilla"]);
    assert_eq!(status(&lab).len(), applied.len(), "not doubled");
    let e = lab.fails(&["mitigate", "apply", "syn-ratelimit", "--victim", "qemu", "--rate", "10"]);
    assert!(e.contains("already applied") && e.contains("mitigate remove"), "{e}");

    // The victims still serve through synproxy (gateway and victim side) and the limits.
    for victim in ["vanilla", "container", "qemu"] {
        assert!(http_ok(&address(victim)), "{victim} answers HTTP with its defences on");
    }

    // The ingress filter drops the spoofed flood to vanilla before anything else sees it.
    lab.ok(&["flood", "--target", "vanilla", "--rate", "2000", "--duration", "2", "--json"]);
    let st = status(&lab);
    let ingress = st.iter().find(|s| s["defence"]["defence"] == "ingress-filter" && s["victim"] == "vanilla").unwrap();
    let dropped = ingress["counted_packets"].as_u64().unwrap();
    assert!(dropped > 3000, "the spoofed flood was dropped by BCP 38: {ingress}");

    // Remove everything, in another order than applied.
    for a in applied.iter().rev() {
        let mut args = vec!["mitigate", "remove", a[0], a[1], a[2]];
        if let Some(i) = a.iter().position(|x| *x == "--at") {
            args.extend([a[i], a[i + 1]]);
        }
        lab.ok(&args);
    }
    assert!(status(&lab).is_empty());
    assert!(lab.ok(&["mitigate", "status"]).contains("no defence applied"));
    assert_eq!(tables_left(), Vec::<String>::new(), "remove left vmguard tables");
    assert_eq!(sysctls(&lab), before, "every sysctl has its old value again");
    for victim in ["vanilla", "container", "qemu"] {
        assert!(http_ok(&address(victim)), "{victim} answers HTTP after remove");
    }

    // A defence left applied goes with `lab down`.
    lab.ok(&["mitigate", "apply", "synproxy", "--victim", "qemu"]);
    lab.ok(&["lab", "down"]);
    assert!(netns::list().iter().all(|n| !n.starts_with(&format!("{PREFIX}-"))), "lab down removed the namespaces");
    assert!(lab.fails(&["mitigate", "status"]).contains("lab up"), "no lab, no status");
}
