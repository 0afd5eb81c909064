//! Live tests of `vmguard collect` on a real lab (own prefix `vmgc`): every victim stored from at least
//! three sources and served on /metrics with its guest label; kill -9 loses at most the last round;
//! SIGTERM stops cleanly with everything committed; a real Prometheus scrapes the endpoint and answers a
//! PromQL query for a guest's counter.
//!
//! They need root. A missing prerequisite fails them with the reason (a test that did not run never
//! passes); as non-root, `make test` leaves this binary out and lists it.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use exec::Cmd;

const BIN: &str = env!("CARGO_BIN_EXE_vmguard");
const PREFIX: &str = "vmgc";
const VICTIMS: [&str; 3] = ["vanilla", "container", "qemu"];

/// True if the test can run; panics with the reason when it cannot (also outside CI).
fn prerequisites(extra: &[&str]) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let missing: Vec<&str> = ["ip", "tc", "nft", "runc", "qemu-system-x86_64"]
        .iter()
        .chain(extra)
        .copied()
        .filter(|p| exec::which(p).is_none())
        .collect();
    let reason = if !root {
        "needs root (a lab of namespaces, taps, cgroups; perf and /proc of the victims)".to_string()
    } else if !missing.is_empty() {
        format!("missing tools: {} (run `make deps`)", missing.join(", "))
    } else {
        return true;
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("collect_live cannot run under CI: {reason}");
    }
    panic!("NOT RUN: collect_live test: {reason}: it did not run, so it fails (non-root `make test` leaves *_live out)")
}

/// A lab with this file's prefix in a temp dir, torn down (and the dir removed) on drop, also when the
/// test fails.
struct TestLab {
    config: PathBuf,
    /// Removed when dropped, which is after `Drop::drop` has run `lab down`.
    dir: tempfile::TempDir,
}

impl TestLab {
    fn up(name: &str) -> TestLab {
        let dir = tempfile::Builder::new().prefix(&format!("vmguard-test-{PREFIX}-{name}-")).tempdir().unwrap();
        let config = dir.path().join("vmguard.toml");
        std::fs::write(&config, format!("[lab]\nprefix = \"{PREFIX}\"\n")).unwrap();
        let lab = TestLab { config, dir };
        // A previous crashed run may have left this prefix behind.
        lab.vmguard(&["lab", "down"]).run().expect("lab down before the test");
        lab.vmguard(&["lab", "up"]).run().unwrap_or_else(|e| panic!("lab up: {e}"));
        lab
    }

    fn vmguard(&self, args: &[&str]) -> Cmd {
        Cmd::new(BIN).arg("--config").arg(&self.config).args(args).timeout(Duration::from_secs(300))
    }

    /// Start `vmguard --config C ARGS` in the background (its stdout captured, stderr inherited).
    fn spawn(&self, args: &[&str]) -> Proc {
        let child = Command::new(BIN)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start vmguard");
        Proc(Some(child))
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        if let Err(e) = self.vmguard(&["lab", "down"]).run() {
            eprintln!("lab down after the test failed: {e}");
        }
        // The temp dir goes with the fields, after this.
    }
}

/// A child process killed (by its PID) if still running when dropped.
struct Proc(Option<Child>);

impl Proc {
    fn pid(&self) -> i32 {
        self.0.as_ref().expect("running").id() as i32
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the PID of our own child, which has not been reaped yet.
        assert_eq!(unsafe { libc::kill(self.pid(), sig) }, 0, "kill({}, {sig})", self.pid());
    }

    /// Wait for the exit (at most `limit`); returns success and stdout.
    fn wait(mut self, limit: Duration) -> (bool, String) {
        let mut child = self.0.take().expect("running");
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let mut out = String::new();
                std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
                return (status.success(), out);
            }
            if start.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                panic!("vmguard did not exit within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// GET /metrics until it answers (the collector binds before it starts its rounds) and holds `want`.
fn metrics_with(addr: SocketAddr, want: &str, limit: Duration) -> String {
    let start = Instant::now();
    loop {
        match telemetry::export::http_get(addr, "/metrics") {
            Ok(body) if body.contains(want) => return body,
            Ok(body) if start.elapsed() > limit => panic!("/metrics never held {want}:\n{body}"),
            Err(e) if start.elapsed() > limit => panic!("/metrics on {addr}: {e}"),
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// The time of the newest sample of every victim in the store, and how many rounds it has.
fn newest_samples(db: &str) -> Vec<(String, i64, usize)> {
    let store = store::Store::open(db).unwrap();
    VICTIMS
        .iter()
        .map(|v| {
            let samples = store.samples(v, 0, i64::MAX).unwrap();
            let newest = samples.iter().map(|s| s.time_ns).max().unwrap_or(0);
            // Rounds are 1 s apart; the sources of one round are read within milliseconds.
            let mut times: Vec<i64> = samples.iter().map(|s| s.time_ns).collect();
            times.sort_unstable();
            let rounds =
                times.windows(2).filter(|w| w[1] - w[0] > 500_000_000).count() + usize::from(!times.is_empty());
            (v.to_string(), newest, rounds)
        })
        .collect()
}

#[test]
fn collect_stores_every_victim_serves_metrics_and_survives_kill() {
    if !prerequisites(&[]) {
        return;
    }
    let lab = TestLab::up("collect");

    // 1. Ten seconds, with /metrics checked half-way.
    let db = lab.path("t.db");
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let listen = addr.to_string();
    let p = lab.spawn(&["--json", "collect", "--duration", "10s", "--db", &db, "--listen", &listen]);
    let body = metrics_with(addr, "vmguard_collector_rounds_total 3", Duration::from_secs(20));
    for v in VICTIMS {
        let needle = format!("vmguard_counter_total{{guest=\"{v}\",");
        assert!(body.contains(&needle), "/metrics has no counter of guest {v}:\n{body}");
    }
    assert!(body.contains(r#"kind="qemu",source="netdev",counter="rx_packets"}"#), "{body}");
    assert!(body.contains("vmguard_collector_round_duration_seconds_count"), "{body}");
    let (ok, out) = p.wait(Duration::from_secs(30));
    assert!(ok, "collect failed: {out}");
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("bad JSON {e}: {out}"));
    assert!(summary["rounds"].as_u64().unwrap() >= 9, "{summary}");
    assert_eq!(summary["interrupted"], false);
    let store = store::Store::open(&db).unwrap();
    for v in VICTIMS {
        let sources: std::collections::BTreeSet<_> =
            store.counters(v).unwrap().into_iter().map(|(source, _, _)| source).collect();
        assert!(sources.len() >= 3, "guest {v} has samples from {} sources only: {sources:?}", sources.len());
        let by_source = &summary["samples_by_guest"][v];
        assert!(by_source.as_object().is_some_and(|m| m.len() >= 3), "summary for {v}: {by_source}");
        let rx = store.series(v, telemetry::SourceId::Netdev, "rx_packets", 0, i64::MAX).unwrap();
        assert!(rx.len() >= 9, "guest {v}: {} rx_packets samples", rx.len());
    }
    assert!(store.guests().unwrap().iter().all(|g| g.info.is_some()), "guests stored with their description");
    drop(store);

    // 2. kill -9: the store keeps every round committed before the kill (at most the round in progress
    // is lost: its samples are stamped at most one interval before the kill).
    let db = lab.path("k.db");
    let p = lab.spawn(&["collect", "--db", &db]);
    std::thread::sleep(Duration::from_millis(4500));
    let kill_ns = telemetry::unix_now_ns();
    p.signal(libc::SIGKILL);
    let (ok, _) = p.wait(Duration::from_secs(10));
    assert!(!ok);
    for (v, newest, rounds) in newest_samples(&db) {
        let lost_ms = (kill_ns - newest) / 1_000_000;
        assert!(rounds >= 3, "guest {v}: {rounds} rounds stored before the kill");
        assert!(lost_ms <= 1500, "guest {v}: newest sample {lost_ms} ms before the kill");
        eprintln!("kill -9: guest {v}: {rounds} rounds stored, newest sample {lost_ms} ms before the kill");
    }

    // 3. SIGTERM: a clean stop, the summary says interrupted, and every round it counted is stored.
    let db = lab.path("s.db");
    let p = lab.spawn(&["--json", "collect", "--db", &db]);
    std::thread::sleep(Duration::from_millis(3500));
    p.signal(libc::SIGTERM);
    let (ok, out) = p.wait(Duration::from_secs(10));
    assert!(ok, "SIGTERM is a clean stop: {out}");
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(summary["interrupted"], true, "{summary}");
    let rounds = summary["rounds"].as_u64().unwrap() as usize;
    for (v, _, stored) in newest_samples(&db) {
        assert_eq!(stored, rounds, "guest {v}: rounds stored vs counted");
    }
}

#[test]
fn prometheus_scrapes_the_collector() {
    if !prerequisites(&["prometheus", "promtool", "curl"]) {
        return;
    }
    let lab = TestLab::up("prom");
    let db = lab.path("p.db");
    let collect_addr = format!("127.0.0.1:{}", free_port());
    let collector = lab.spawn(&["collect", "--db", &db, "--listen", &collect_addr]);

    // Our own Prometheus: temp config and data dir, a free loopback port, killed by PID on drop.
    let prom_port = free_port();
    let config = Path::new(&lab.path("prometheus.yml")).to_path_buf();
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: vmguard\n    static_configs:\n      - targets: ['{collect_addr}']\n"
        ),
    )
    .unwrap();
    let check = Cmd::new("promtool").arg("check").arg("config").arg(&config).run();
    assert!(check.is_ok(), "promtool check config: {check:?}");
    let prometheus = Proc(Some(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", lab.path("prom-data")))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    ));

    // PromQL through the HTTP API: the qemu guest's tap counter, once Prometheus has scraped it.
    let query = "vmguard_counter_total{guest=\"qemu\",source=\"netdev\",counter=\"rx_packets\"}";
    let url = format!("http://127.0.0.1:{prom_port}/api/v1/query");
    let start = Instant::now();
    let result = loop {
        let out = Cmd::new("curl")
            .args(["-sf", "--max-time", "5", "--data-urlencode"])
            .arg(format!("query={query}"))
            .arg(&url)
            .run();
        if let Ok(out) = out
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(&out.stdout)
            && v["data"]["result"].as_array().is_some_and(|r| !r.is_empty())
        {
            break v;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "Prometheus never returned {query}");
        std::thread::sleep(Duration::from_millis(500));
    };
    let series = &result["data"]["result"][0];
    assert_eq!(series["metric"]["guest"], "qemu");
    assert_eq!(series["metric"]["kind"], "qemu");
    assert_eq!(series["metric"]["job"], "vmguard");
    let value: f64 = series["value"][1].as_str().unwrap().parse().unwrap();
    assert!(value >= 0.0, "{series}");
    eprintln!("Prometheus answered {query} = {value} after {:?}", start.elapsed());

    // The self-metrics are scraped too, and the target is healthy.
    let out = Cmd::new("curl")
        .args(["-sf", "--max-time", "5", "--data-urlencode", "query=up{job=\"vmguard\"}"])
        .arg(&url)
        .stdout()
        .unwrap();
    let up: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(up["data"]["result"][0]["value"][1], "1", "target up: {out}");
    drop(prometheus);
    collector.signal(libc::SIGTERM);
    let (ok, _) = collector.wait(Duration::from_secs(10));
    assert!(ok);
}
