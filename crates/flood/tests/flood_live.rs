//! Live floods between two network namespaces this test creates (prefix `vmgt`), joined by a veth
//! pair. Needs root; without it the tests fail with the reason (a test that did not run never passes),
//! also outside CI. As non-root, `make test` leaves this binary out and lists it.
//! Every namespace is removed on drop, also when a test fails.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use exec::Cmd;
use flood::{Backend, Flood, FloodConfig, FloodKind, Rate, SourceChoice, StopReason, TargetPolicy};
use telemetry::snmp::SynCounters;

const SENDER_ADDR: Ipv4Addr = Ipv4Addr::new(10, 98, 0, 1);
const RECEIVER_ADDR: Ipv4Addr = Ipv4Addr::new(10, 98, 0, 2);

/// Two namespaces `vmgt-TAG-a` (sender) and `vmgt-TAG-b` (receiver) on one veth pair.
struct Pair {
    a: String,
    b: String,
    if_b: String,
}

fn prerequisites() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("not root: creating network namespaces and raw sockets needs root".into());
    }
    if exec::which("ip").is_none() {
        return Err("`ip` (iproute2) is not installed: run `make deps`".into());
    }
    Ok(())
}

fn ip(args: &[&str]) {
    Cmd::new("ip").args(args).timeout(Duration::from_secs(20)).run().unwrap_or_else(|e| panic!("{e}"));
}

impl Pair {
    /// Panics when a prerequisite is missing (the test did not run, so it must not pass); `Option`
    /// for the callers' `let ... else`.
    fn new(tag: &str) -> Option<Pair> {
        if let Err(why) = prerequisites() {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("flood_live needs its prerequisites in CI: {why}");
            }
            panic!(
                "NOT RUN: flood_live test `{tag}`: {why}: it did not run, so it fails (non-root `make test` leaves *_live out)"
            );
        }
        let p = Pair { a: format!("vmgt-{tag}-a"), b: format!("vmgt-{tag}-b"), if_b: format!("vmgt-{tag}b0") };
        let if_a = format!("vmgt-{tag}a0");
        p.remove();
        ip(&["netns", "add", &p.a]);
        ip(&["netns", "add", &p.b]);
        // No IPv6: its link-local chatter (DAD, MLD, router solicitations) would add to the counters.
        for ns in [&p.a, &p.b] {
            // /proc/sys/net shows the network namespace of the thread that opens it.
            netns::run_in(ns, || {
                for which in ["all", "default"] {
                    std::fs::write(format!("/proc/sys/net/ipv6/conf/{which}/disable_ipv6"), "1").unwrap();
                }
            })
            .unwrap();
        }
        ip(&["link", "add", &if_a, "netns", &p.a, "type", "veth", "peer", "name", &p.if_b, "netns", &p.b]);
        ip(&["-n", &p.a, "addr", "add", &format!("{SENDER_ADDR}/24"), "dev", &if_a]);
        ip(&["-n", &p.b, "addr", "add", &format!("{RECEIVER_ADDR}/24"), "dev", &p.if_b]);
        for (ns, dev) in [(&p.a, &if_a), (&p.b, &p.if_b)] {
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        Some(p)
    }

    fn remove(&self) {
        for ns in [&self.a, &self.b] {
            if netns::exists(ns) {
                let _ = Cmd::new("ip").args(["netns", "del", ns]).run();
            }
        }
    }

    fn policy(&self) -> TargetPolicy {
        TargetPolicy {
            lab_targets: vec![("receiver".into(), RECEIVER_ADDR)],
            spoof_subnet: "10.98.128.0/17".parse().unwrap(),
            lab_network: "10.98.0.0/16".parse().unwrap(),
            allow_loopback: true,
        }
    }

    fn config(&self) -> FloodConfig {
        FloodConfig { netns: Some(self.a.clone()), ..FloodConfig::default() }
    }

    fn counter(&self, ns: &str, dev: &str, name: &str) -> u64 {
        Cmd::new("cat")
            .arg(format!("/sys/class/net/{dev}/statistics/{name}"))
            .netns(ns)
            .stdout()
            .unwrap_or_else(|e| panic!("{e}"))
            .trim()
            .parse()
            .unwrap()
    }

    fn rx(&self) -> u64 {
        self.counter(&self.b, &self.if_b, "rx_packets")
    }

    fn flood(&self, target: &str, cfg: FloodConfig) -> flood::Summary {
        let t = self.policy().resolve(target, SourceChoice::Spoof).unwrap();
        Flood::new(t, cfg).unwrap().run(|_| {}).unwrap_or_else(|e| panic!("{e}"))
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        self.remove();
    }
}

#[test]
fn exact_packet_rate_agrees_with_the_receiver() {
    let Some(p) = Pair::new("exact") else { return };
    let before = p.rx();
    let mut ticks = 0;
    let t = p.policy().resolve("receiver", SourceChoice::Spoof).unwrap();
    let cfg = FloodConfig { rate: Rate::PacketsPerSec(20_000), duration: Duration::from_secs(5), ..p.config() };
    let s = Flood::new(t, cfg).unwrap().run(|_| ticks += 1).unwrap();
    let rx = p.rx() - before;
    let err = (rx as f64 - s.sent as f64).abs() / s.sent as f64;
    eprintln!(
        "exactness: 20000 pps x 5 s -> sent {} ({} errors, {} forfeited), receiver rx_packets +{rx} ({:.3}% apart), \
         {:.0} pps, backend {:?}",
        s.sent,
        s.errors,
        s.forfeited,
        err * 100.0,
        s.achieved_pps,
        s.backend
    );
    assert!((99_000..=100_001).contains(&s.sent), "sent {}", s.sent);
    assert_eq!(s.errors, 0);
    assert!(err < 0.02, "receiver saw {rx}, sender sent {}", s.sent);
    assert_eq!(s.stopped_by, StopReason::Duration);
    assert!(ticks >= 5, "progress ran {ticks} times");
}

#[test]
fn bit_rate_and_threads_are_exact() {
    let Some(p) = Pair::new("bits") else { return };
    // 60-byte SYN = 74-byte frame = 592 bits; 10 Mbit/s for 2 s = 33784 frames.
    let s = p.flood(
        "receiver",
        FloodConfig { rate: Rate::BitsPerSec(10_000_000), duration: Duration::from_secs(2), ..p.config() },
    );
    eprintln!("10 Mbit/s x 2 s -> {} packets, {:.0} bit/s", s.sent, s.achieved_bps);
    assert!((33_400..=33_785).contains(&s.sent), "sent {}", s.sent);
    // Two threads share the rate.
    let s = p.flood(
        "receiver",
        FloodConfig { rate: Rate::PacketsPerSec(10_000), threads: 2, duration: Duration::from_secs(2), ..p.config() },
    );
    eprintln!("10 kpps x 2 threads x 2 s -> {} packets", s.sent);
    assert!((19_800..=20_002).contains(&s.sent), "sent {}", s.sent);
}

#[test]
fn count_bounds_every_kind_on_every_backend() {
    let Some(p) = Pair::new("kinds") else { return };
    for backend in [Backend::Raw, Backend::Packet] {
        for kind in [FloodKind::Syn, FloodKind::SynClosed, FloodKind::Ack, FloodKind::Udp] {
            let before = p.rx();
            let s = p.flood("receiver", FloodConfig { kind, backend, count: Some(3000), ..p.config() });
            let rx = p.rx() - before;
            eprintln!("{backend:?} {kind:?}: sent {} in {:.3}s, receiver +{rx}", s.sent, s.elapsed_secs);
            assert_eq!(s.backend, backend);
            assert_eq!(s.sent, 3000, "{s:?}");
            assert_eq!(s.stopped_by, StopReason::Count);
            // The receiver may also see an ARP packet or two.
            assert!((2970..=3005).contains(&rx), "{backend:?} {kind:?}: receiver saw {rx}");
        }
    }
}

#[test]
fn syn_flood_makes_the_victim_send_cookies() {
    let Some(p) = Pair::new("cook") else { return };
    // As in the lab, the victim has a way back toward the spoofed sources (the lab's gateway
    // blackholes them); without a route it would drop every SYN (ListenDrops) instead of answering.
    ip(&["-n", &p.b, "route", "add", "default", "via", &SENDER_ADDR.to_string()]);
    // A listener in the receiver namespace, alive until the flood is over.
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    let listener = netns::spawn_in(&p.b, move || {
        let l = std::net::TcpListener::bind((RECEIVER_ADDR, 80)).unwrap();
        while !d.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(l);
    })
    .unwrap();
    let read = |ns: &str| {
        netns::run_in(ns, || {
            SynCounters::from_netstat(&std::fs::read_to_string("/proc/thread-self/net/netstat").unwrap()).unwrap()
        })
        .unwrap()
    };
    let before = read(&p.b);
    let s = p.flood("receiver", FloodConfig { count: Some(20_000), ..p.config() });
    let delta = read(&p.b).since(&before);
    done.store(true, Ordering::Relaxed);
    listener.join().unwrap();
    eprintln!("{} SYNs -> victim {delta:?}", s.sent);
    assert!(delta.syncookies_sent > 1000, "{delta:?}");
}

#[test]
fn stop_handle_and_loopback() {
    let Some(p) = Pair::new("stop") else { return };
    let t = p.policy().resolve("receiver", SourceChoice::Own).unwrap();
    let flood = Flood::new(t, FloodConfig { rate: Rate::PacketsPerSec(50_000), ..p.config() }).unwrap();
    let stop = flood.stop_handle();
    let started = Instant::now();
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        stop.stop();
    });
    let s = flood.run(|_| {}).unwrap();
    stopper.join().unwrap();
    assert_eq!(s.stopped_by, StopReason::Stopped);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(s.source, format!("own {SENDER_ADDR}"));

    // Loopback inside the sender namespace (allowed by this test policy).
    let lo_before = p.counter(&p.a, "lo", "rx_packets");
    let s = p.flood("127.0.0.1", FloodConfig { count: Some(1000), ..p.config() });
    let lo = p.counter(&p.a, "lo", "rx_packets") - lo_before;
    assert_eq!(s.backend, Backend::Raw);
    assert_eq!(s.sent, 1000);
    assert!(lo >= 1000, "lo saw {lo}");
}

#[test]
fn refused_targets_send_nothing() {
    let Some(p) = Pair::new("guard") else { return };
    let before = (p.rx(), p.counter(&p.a, &format!("vmgt-{}a0", "guard"), "tx_packets"));
    let strict = TargetPolicy { allow_loopback: false, ..p.policy() };
    for target in [SENDER_ADDR.to_string().as_str(), "10.98.1.1", "8.8.8.8", "10.98.255.255", "::1", "127.0.0.1", "x"] {
        assert!(strict.resolve(target, SourceChoice::Spoof).is_err(), "{target} must be refused");
    }
    std::thread::sleep(Duration::from_millis(200));
    let after = (p.rx(), p.counter(&p.a, "vmgt-guarda0", "tx_packets"));
    assert_eq!(before, after, "a refused target must not cause a single packet");
}
