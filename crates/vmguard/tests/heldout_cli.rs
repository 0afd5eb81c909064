//! `vmguard detect eval --leave-one-family-out` through the real binary on a small synthetic store
//! recorded before phase records (families from the scenario files, checked against the labels).

mod common;
use common::{record, temp_dir, text, vmguard};

/// The phases `common::record` labels: 2-60 s normal, 60-120 s a flood at `ct`, 120-215 s bulk load,
/// 215-230 s a failed phase, 230-238 s normal.
fn scenario(name: &str, tool: &str) -> String {
    format!(
        r#"name = "{name}"
[[phase]]
name = "base"
duration = "58s"
[[phase]]
name = "flood"
duration = "60s"
flood = [{{ target = "ct", tool = "{tool}", rate = "1000" }}]
[[phase]]
name = "bulk"
duration = "95s"
workload = [{{ kind = "bulk", target = "van" }}]
[[phase]]
name = "broken"
duration = "15s"
workload = [{{ kind = "web", target = "ct" }}]
[[phase]]
name = "tail"
duration = "8s"
"#
    )
}

#[test]
fn leave_one_family_out_on_a_store() {
    let d = temp_dir("lofo");
    let db = d.path().join("s.db");
    {
        let mut st = store::Store::open(&db).unwrap();
        record(&mut st, "train-syn", 5000, 1_700_000_000_000_000_000);
        record(&mut st, "heldout-syn", 800, 1_700_001_000_000_000_000);
    }
    let dbs = db.to_str().unwrap();
    let sdir = d.path().join("scn");
    std::fs::create_dir(&sdir).unwrap();
    let args = ["detect", "eval", "--leave-one-family-out", "--db", dbs, "--scenario-dir", sdir.to_str().unwrap()];

    // Without phase records or scenario files the families cannot be known: say so.
    let o = vmguard(d.path(), &args);
    let (_, stderr) = text(&o);
    assert!(
        !o.status.success() && stderr.contains("no phase records") && stderr.contains("record it again"),
        "{stderr}"
    );

    std::fs::write(sdir.join("train-syn.toml"), scenario("train-syn", "vmguard")).unwrap();
    std::fs::write(sdir.join("heldout-syn.toml"), scenario("heldout-syn", "hping3")).unwrap();
    let o = vmguard(d.path(), &[&["--json"][..], &args].concat());
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["families_from_files"].as_array().unwrap().len(), 2, "{v}");
    let run = &v["runs"][0];
    assert_eq!(run["window_secs"], 5.0);
    let fams: Vec<&str> = run["families"].as_array().unwrap().iter().map(|f| f["family"].as_str().unwrap()).collect();
    assert_eq!(fams, ["benign/bulk", "benign/idle", "benign/web", "hping3/syn/attacker", "vmguard/syn/attacker"]);
    let hping = &run["families"][3];
    assert!(!hping["trained_on_families"].as_array().unwrap().iter().any(|f| f == "hping3/syn/attacker"));
    assert_eq!(hping["held_out_summary"]["attacks"], 1);
    assert_eq!(hping["held_out_summary"]["alerted"], 1, "{hping}");
    assert_eq!(hping["in_family_summary"]["alerted"], 1);
    assert_eq!(run["overall_held_out"]["attacks"], 2);
    // Bulk load (thousands of packets/s, a rate the model otherwise only sees in floods) is a benign
    // family no other family looks like: false alerts when held out, none in-family.
    let bulk = &run["families"][0];
    assert!(bulk["benign"].as_bool().unwrap() && bulk["held_out_summary"]["attacks"] == 0);
    assert!(bulk["held_out_summary"]["false_alerts"].as_u64().unwrap() > 0, "{bulk}");
    assert_eq!(bulk["in_family_summary"]["false_alerts"], 0, "{bulk}");
    assert_eq!(run["overall_in_family"]["false_alerts"], 0, "{run}");

    // The table, and which families each model was trained on.
    let o = vmguard(d.path(), &args);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    assert!(stdout.contains("hping3/syn/attacker") && stdout.contains("overall"), "{stdout}");
    assert!(stdout.contains("without hping3/syn/attacker:") && stdout.contains("4 other families"), "{stdout}");
    // --model is for the ordinary evaluation.
    let o = vmguard(d.path(), &[&args[..], &["--model", "m.json"]].concat());
    assert!(!o.status.success());
}
