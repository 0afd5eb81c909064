//! `vmguard collect` on bad input: clear errors, no lab or root needed.

use std::net::TcpListener;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_vmguard");

/// Runs `vmguard --config <no lab> collect ARGS`; returns (success, stderr).
fn collect(dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let config = dir.join("vmguard.toml");
    // A prefix no lab uses.
    std::fs::write(&config, "[lab]\nprefix = \"vmgcx\"\n").unwrap();
    let out = Command::new(BIN).arg("--config").arg(&config).arg("collect").args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A scratch directory of this test's, removed when dropped.
fn temp_dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(&format!("vmguard-collect-cli-{name}-")).tempdir().unwrap()
}

#[test]
fn bad_input_gets_a_clear_error() {
    let dir = temp_dir("bad");
    let db = dir.path().join("t.db").display().to_string();

    let (ok, err) = collect(dir.path(), &["--interval", "fast", "--db", &db]);
    assert!(!ok && err.contains("`fast` is not a duration"), "{err}");
    let (ok, err) = collect(dir.path(), &["--interval", "1ms", "--db", &db]);
    assert!(!ok && err.contains("shorter than the 10ms minimum"), "{err}");
    let (ok, err) = collect(dir.path(), &["--duration", "0s", "--db", &db]);
    assert!(!ok && err.contains("must be longer than zero"), "{err}");

    let (ok, err) = collect(dir.path(), &["--db", "/nonexistent-vmguard-dir/t.db"]);
    assert!(!ok && err.contains("cannot store samples in /nonexistent-vmguard-dir/t.db"), "{err}");

    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (ok, err) = collect(dir.path(), &["--db", &db, "--listen", &addr]);
    assert!(!ok && err.contains(&format!("cannot listen on {addr}")) && err.contains("--listen"), "{err}");
    let (ok, err) = collect(dir.path(), &["--db", &db, "--listen", "localhost-ish"]);
    assert!(!ok && err.contains("--listen"), "{err}");

    // Good input, but no lab.
    let (ok, err) = collect(dir.path(), &["--db", &db]);
    assert!(!ok && err.contains("nothing to collect from") && err.contains("vmgcx"), "{err}");
}
