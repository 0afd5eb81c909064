//! The order of checks, without root: the guard and the configuration check refuse before anything
//! touches the OS (a missing namespace is only noticed after both passed).

use std::net::Ipv4Addr;
use std::time::Duration;

use flood::{Flood, FloodConfig, FloodError, Rate, SourceChoice, TargetPolicy};

fn policy() -> TargetPolicy {
    TargetPolicy {
        lab_targets: vec![("process".into(), Ipv4Addr::new(10, 213, 10, 2))],
        spoof_subnet: "10.213.128.0/17".parse().unwrap(),
        lab_network: "10.213.0.0/16".parse().unwrap(),
        allow_loopback: true,
    }
}

fn config() -> FloodConfig {
    FloodConfig { netns: Some("vmgt-no-such-namespace".into()), ..FloodConfig::default() }
}

#[test]
fn bad_bounds_and_settings_are_refused_before_any_socket() {
    let target = || policy().resolve("process", SourceChoice::Spoof).unwrap();
    let cases: Vec<(FloodConfig, &str)> = vec![
        (FloodConfig { duration: Duration::ZERO, ..config() }, "duration is zero"),
        (FloodConfig { duration: Duration::from_secs(86_400), ..config() }, "exceeds the limit"),
        (FloodConfig { count: Some(0), ..config() }, "count is zero"),
        (FloodConfig { count: Some(u64::MAX), ..config() }, "exceeds the limit"),
        (FloodConfig { rate: Rate::PacketsPerSec(0), ..config() }, "rate is zero"),
        (FloodConfig { rate: Rate::BitsPerSec(0), ..config() }, "rate is zero"),
        (FloodConfig { rate: Rate::PacketsPerSec(1_000_000_000), ..config() }, "exceeds the limit"),
        (FloodConfig { threads: 0, ..config() }, "threads"),
        (FloodConfig { batch: 0, ..config() }, "batch"),
        (FloodConfig { dst_port: Some(0), ..config() }, "port 0"),
        (FloodConfig { ttl: 0, ..config() }, "ttl"),
        (FloodConfig { udp_payload_len: 9000, ..config() }, "MTU"),
    ];
    for (cfg, words) in cases {
        let err = Flood::new(target(), cfg.clone()).expect_err(&format!("{cfg:?} must be refused"));
        assert!(matches!(err, FloodError::Config { .. }), "{err:?}");
        assert!(err.to_string().contains(words), "`{err}` should say `{words}`");
    }
}

#[test]
fn default_config_is_bounded() {
    let cfg = FloodConfig::default();
    assert_eq!(cfg.duration, Duration::from_secs(10));
    cfg.check().unwrap();
}

#[test]
fn missing_namespace_is_reported_after_the_guard() {
    let target = policy().resolve("127.0.0.1", SourceChoice::Spoof).unwrap();
    let err = Flood::new(target, config()).unwrap().run(|_| {}).unwrap_err();
    assert!(matches!(err, FloodError::Netns(_)), "{err:?}");
    assert!(err.to_string().contains("does not exist"), "{err}");
}

#[test]
fn config_roundtrips_through_json() {
    let cfg = FloodConfig { rate: Rate::BitsPerSec(10_000_000), count: Some(5), ..FloodConfig::default() };
    let json = serde_json::to_string(&cfg).unwrap();
    let back: FloodConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back, cfg);
}
