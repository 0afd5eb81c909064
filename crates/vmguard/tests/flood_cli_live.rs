//! `vmguard flood` on a live lab: exact counts against the victim's interface, floods from inside a
//! container and the qemu guest (zombies), and refusals that send nothing.
//!
//! Root only. Without root the test fails with the reason (a test that did not run never passes); as
//! non-root, `make test` leaves this binary out and lists it.

use std::path::PathBuf;
use std::time::Duration;

use exec::Cmd;

const BIN: &str = env!("CARGO_BIN_EXE_vmguard");

fn prerequisites() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("flood_cli_live cannot run under CI: needs root");
    }
    panic!(
        "NOT RUN: flood_cli_live: needs root (network namespaces): it did not run, so it fails (non-root `make test` leaves *_live out)"
    )
}

struct TestLab {
    config: PathBuf,
    /// Holds `config`; removed when dropped, which is after `Drop::drop` has run `lab down`.
    _dir: tempfile::TempDir,
}

impl TestLab {
    fn up(prefix: &str, rate: &str) -> TestLab {
        let dir = tempfile::Builder::new().prefix(&format!("vmguard-test-{prefix}-")).tempdir().unwrap();
        let config = dir.path().join("vmguard.toml");
        std::fs::write(&config, format!("[lab]\nprefix = \"{prefix}\"\nattacker_rate = \"{rate}\"\n")).unwrap();
        let lab = TestLab { config, _dir: dir };
        lab.cmd(&["lab", "down"]).run().unwrap();
        lab.cmd(&["lab", "up"]).run().unwrap_or_else(|e| panic!("lab up: {e}"));
        lab
    }

    fn cmd(&self, args: &[&str]) -> Cmd {
        Cmd::new(BIN).arg("--config").arg(&self.config).args(args).timeout(Duration::from_secs(300))
    }

    fn flood(&self, args: &[&str]) -> serde_json::Value {
        let out = self.cmd(&[&["--json", "flood"], args].concat()).stdout().unwrap_or_else(|e| panic!("{e}"));
        serde_json::from_str(&out).unwrap()
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        let _ = self.cmd(&["lab", "down"]).run();
        // The temp dir goes with the fields, after this.
    }
}

#[test]
fn flood_is_exact_reaches_only_victims_and_runs_from_zombies() {
    if !prerequisites() {
        return;
    }
    // 20 kpps of 74-byte frames is 11.8 Mbit/s: above the seed's 10 Mbit/s, so shape at 100 Mbit/s.
    let lab = TestLab::up("vmgf", "100mbit");

    let r = lab.flood(&["--target", "vanilla", "--rate", "20000", "--duration", "5"]);
    let sent = r["summary"]["sent"].as_u64().unwrap();
    let received = r["victim"]["rx_packets"].as_u64().unwrap();
    eprintln!("sent {sent}, victim interface received {received}");
    assert!((98_000..=100_000).contains(&sent), "about 100 000 packets, got {sent}");
    let error = (received as f64 - sent as f64).abs() / sent as f64;
    assert!(error <= 0.02, "victim counters disagree by {:.2}%", error * 100.0);
    assert!(r["victim"]["syncookies_sent"].as_u64().unwrap() > sent / 2, "{r}");

    // Zombies: a container and the qemu guest flood another victim.
    for (from, to) in [("container", "vanilla"), ("qemu", "container")] {
        let r = lab.flood(&["--from", from, "--target", to, "--rate", "1000", "--duration", "2"]);
        let sent = r["summary"]["sent"].as_u64().unwrap();
        let received = r["victim"]["rx_packets"].as_u64().unwrap();
        eprintln!("{from} -> {to}: sent {sent}, received {received}");
        assert!(sent > 1000, "{from} sent only {sent}");
        assert!(received >= sent * 98 / 100, "{from} -> {to}: {received} of {sent} arrived");
    }

    // Refused targets: nothing leaves the attacker.
    let before = Cmd::new("cat").arg("/proc/thread-self/net/dev").netns("vmgf-att").stdout().unwrap();
    for target in
        ["8.8.8.8", "192.168.1.1", "10.213.1.1", "224.0.0.1", "255.255.255.255", "localhost", "::1", "qemu.example"]
    {
        let err = lab.cmd(&["flood", "--target", target, "--duration", "1"]).run().unwrap_err().to_string();
        assert!(err.contains("refusing"), "{target}: {err}");
    }
    let err =
        lab.cmd(&["flood", "--from", "qemu", "--target", "qemu", "--duration", "1"]).run().unwrap_err().to_string();
    assert!(err.contains("refusing"), "a victim may not flood itself: {err}");
    let after = Cmd::new("cat").arg("/proc/thread-self/net/dev").netns("vmgf-att").stdout().unwrap();
    let tx = |dev: &str| {
        dev.lines()
            .find(|l| l.trim_start().starts_with("vmgf-att0:"))
            .map(|l| l.split_whitespace().nth(10).unwrap().to_string())
    };
    assert_eq!(tx(&before), tx(&after), "refused floods sent packets");
}
