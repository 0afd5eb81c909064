//! Seed 004's table recomputed from the shipped data files, without Xen: for every
//! `data/NAME.expected.json` (written by `scripts/seed004-data.sh`), `vmguard detect eval --samples
//! data/NAME.csv.xz` with the arguments the expected file records must give the same Part A cells:
//! window length, step, method, windows fitted, confusion matrix and accuracy. The README's seed-004
//! figures are these files' figures.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data")
}

/// The fields of one Part A cell that must not change, as text for a readable diff.
fn cells(part_a: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for t in part_a.as_array().expect("part_a is an array") {
        for r in t["report"]["rows"].as_array().expect("a table has rows") {
            let c = &r["metrics"]["confusion"];
            out.push(format!(
                "{} on {}: {} s step {} {}: fitted {} TP {} FP {} TN {} FN {} accuracy {:.6}",
                t["feature_set"],
                t["guests"],
                r["window_secs"],
                r["step_secs"],
                r["method"],
                r["fitted_windows"],
                c["true_positive"],
                c["false_positive"],
                c["true_negative"],
                c["false_negative"],
                r["metrics"]["accuracy"].as_f64().expect("accuracy is a number"),
            ));
        }
    }
    out
}

#[test]
fn seed004_table_from_the_shipped_data_matches_the_expected_file() {
    let dir = data_dir();
    let mut expected: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".expected.json"))
        .collect();
    expected.sort();
    assert!(!expected.is_empty(), "no *.expected.json in {}: run scripts/seed004-data.sh STORE", dir.display());
    for exp_path in expected {
        let exp: Value = serde_json::from_str(&std::fs::read_to_string(&exp_path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", exp_path.display()));
        let data = dir.join(exp["data"].as_str().expect("the expected file names its data file"));
        let args: Vec<&str> =
            exp["args"].as_array().expect("args").iter().map(|a| a.as_str().expect("args are strings")).collect();
        let out = Command::new(env!("CARGO_BIN_EXE_vmguard"))
            .args(["--json", "detect", "eval", "--samples"])
            .arg(&data)
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "detect eval --samples {} {args:?} failed: {stderr}", data.display());
        let got: Value = serde_json::from_slice(&out.stdout).unwrap();
        let (want, have) = (cells(&exp["part_a"]), cells(&got["part_a"]));
        assert!(!want.is_empty(), "{} has no Part A cells", exp_path.display());
        assert_eq!(
            have,
            want,
            "the table from {} differs from {}: if the change is intended, regenerate it with \
             scripts/seed004-data.sh and update the README's figures",
            data.display(),
            exp_path.display()
        );
    }
}
