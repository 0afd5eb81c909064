//! Live test of `vmguard bench --quick` and `vmguard report` on a real lab (own prefix `vmgb`): every
//! victim kind x benchmark x {idle, attack} yields a stored cell, and the HTML report renders its SVG
//! plots in headless Chromium.
//!
//! Needs root. A missing prerequisite fails it with the reason (a test that did not run never passes);
//! as non-root, `make test` leaves this binary out and lists it.
//! Cost: lab up (~10 s), the quick matrix (36 cells, ~2-3 min), Chromium (~5 s).

use std::path::PathBuf;
use std::time::Duration;

use exec::Cmd;

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_vmguard");
const PREFIX: &str = "vmgb";

fn prerequisites() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let missing: Vec<&str> =
        ["ip", "tc", "nft", "runc", "qemu-system-x86_64", "sysbench", "iperf3", "wrk", "curl", "chromium"]
            .into_iter()
            .filter(|p| exec::which(p).is_none())
            .collect();
    let reason = if !root {
        "needs root (a lab of namespaces, taps, cgroups, and a SYN flood)".to_string()
    } else if !missing.is_empty() {
        format!("missing tools: {} (run `make deps`)", missing.join(", "))
    } else {
        return true;
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("bench_live cannot run under CI: {reason}");
    }
    panic!("NOT RUN: bench_live test: {reason}: it did not run, so it fails (non-root `make test` leaves *_live out)")
}

/// A lab with this file's prefix in a temp dir; `lab down` and the dir removed on drop, also on failure.
struct TestLab {
    config: PathBuf,
    /// Removed when dropped, which is after `Drop::drop` has run `lab down`.
    dir: tempfile::TempDir,
}

impl TestLab {
    fn up() -> TestLab {
        let dir = tempfile::Builder::new().prefix(&format!("vmguard-test-{PREFIX}-")).tempdir().unwrap();
        let config = dir.path().join("vmguard.toml");
        std::fs::write(
            &config,
            format!("[lab]\nprefix = \"{PREFIX}\"\n\n[lab.qemu]\nguest_programs = [\"sysbench\", \"iperf3\"]\n"),
        )
        .unwrap();
        let lab = TestLab { config, dir };
        lab.vmguard(&["lab", "down"]).run().expect("lab down before the test");
        lab.vmguard(&["lab", "up"]).timeout(Duration::from_secs(600)).run().unwrap_or_else(|e| panic!("lab up: {e}"));
        lab
    }

    fn vmguard(&self, args: &[&str]) -> Cmd {
        Cmd::new(BIN).arg("--config").arg(&self.config).args(args).cwd(self.dir.path())
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        if let Err(e) = self.vmguard(&["lab", "down"]).run() {
            eprintln!("bench_live: lab down failed: {e}");
        }
        // The temp dir goes with the fields, after this.
    }
}

#[test]
fn quick_matrix_covers_every_cell_and_the_report_renders() {
    if !prerequisites() {
        return;
    }
    let lab = TestLab::up();
    let db = lab.dir.path().join("bench.db");
    let db_arg = db.to_str().unwrap();
    let out = lab
        .vmguard(&["bench", "--quick", "--json", "--db", db_arg])
        .timeout(Duration::from_secs(900))
        .run()
        .unwrap_or_else(|e| panic!("vmguard bench --quick: {e}"));
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("bench --json prints JSON");
    let records = v["records"].as_array().expect("records");
    eprintln!("bench --quick: {} cells in {:.0} s", records.len(), v["elapsed_secs"].as_f64().unwrap_or(0.0));
    let mut failed = Vec::new();
    for victim in ["vanilla", "container", "qemu"] {
        for benchmark in ["cpu", "memory", "fileio", "network", "web", "idle-cpu"] {
            for phase in ["idle", "attack"] {
                let cell = records
                    .iter()
                    .find(|r| {
                        r["cell"]["victim"] == victim
                            && r["cell"]["benchmark"] == benchmark
                            && r["cell"]["phase"] == phase
                    })
                    .unwrap_or_else(|| panic!("no cell {victim}/{benchmark}/{phase}"));
                if cell["ok"] != true {
                    failed.push(format!("{victim}/{benchmark}/{phase}: {}", cell["error"]));
                } else {
                    assert!(cell["value"].as_f64().is_some_and(|x| x >= 0.0), "{cell}");
                    assert!(cell["host"]["busy_pct"].as_f64().is_some(), "{cell}");
                }
                if benchmark == "web" && cell["ok"] == true {
                    // Two tiers: the web application and MariaDB, each with its own CPU figure.
                    for tier in ["web_tier_cpu_pct", "db_tier_cpu_pct"] {
                        assert!(cell["figures"][tier].as_f64().is_some(), "{victim}/{phase}: no {tier}: {cell}");
                    }
                    if phase == "idle" {
                        assert!(
                            cell["figures"]["db_tier_cpu_pct"].as_f64().unwrap() > 0.0,
                            "{victim}: the database tier did work under the web load: {cell}"
                        );
                    }
                }
                if phase == "attack" && cell["ok"] == true {
                    assert!(cell["flood"]["sent"].as_u64().unwrap_or(0) > 0, "the attack cell flooded: {cell}");
                }
            }
        }
    }
    assert!(failed.is_empty(), "failed cells:\n{}", failed.join("\n"));
    assert_eq!(v["table1_cpu"].as_array().map(Vec::len), Some(6), "Table 1: 3 victims x 2 phases");

    let html = lab.dir.path().join("report.html");
    lab.vmguard(&["report", "--db", db_arg, "--out", html.to_str().unwrap()]).run().expect("vmguard report");
    let dom = common::headless(lab.dir.path(), &html, &["--dump-dom"]);
    assert!(dom.matches("<svg").count() >= 3, "degradation, CPU and profiling plots in the DOM");
    assert!(
        dom.contains("id=\"degradation-0\"")
            && dom.contains("id=\"cpu-under-attack\"")
            && dom.contains("id=\"profiling\"")
    );
    assert!(dom.matches("class=\"bar\"").count() >= 10, "bars are drawn");
}
