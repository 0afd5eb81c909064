//! The split and the per-family figures on small synthetic recordings.

use detect::online::{BASE_COUNTERS, FEATURES, FeatureWindow, base_index, features::Rates, training_examples};

use super::*;

const S: i64 = 1_000_000_000;

/// The families of the synthetic recording, by phase: (start s, end s, family, truth).
const PHASES: [(i64, i64, &str, Truth); 7] = [
    (0, 30, "benign/web", Truth::Normal),
    (30, 60, "vmguard/syn/attacker", Truth::AttackVictim),
    (60, 90, "benign/web", Truth::Normal),
    (90, 120, "hping3/syn/attacker", Truth::AttackVictim),
    (120, 150, "benign/idle", Truth::Normal),
    // A flood that moves a counter no other family moves: caught only by a model that saw it.
    (150, 180, "vmguard/udp/zombie", Truth::AttackZombie),
    (180, 210, "benign/idle", Truth::Normal),
];

fn idx(c: &str) -> usize {
    let (src, name) = c.split_once('/').unwrap();
    base_index(src, name).unwrap_or_else(|| panic!("{c} is not a base counter"))
}

/// One window every second (5 s long) with the guest's received packets `rx(t)` and failed connection
/// attempts `fails(t)` per second.
fn windows(rx: impl Fn(i64) -> f64, fails: impl Fn(i64) -> f64, secs: i64) -> Vec<FeatureWindow> {
    let (tx_i, rx_i, fails_i) = (idx("netdev/rx_packets"), idx("netdev/tx_packets"), idx("snmp/Tcp.AttemptFails"));
    (5..secs)
        .map(|t| {
            let mut r = [None; BASE_COUNTERS.len()];
            r[tx_i] = Some(10.0);
            r[rx_i] = Some(rx(t));
            r[fails_i] = Some(fails(t));
            FeatureWindow { start_ms: (t - 5) * 1000, end_ms: t * 1000, rates: Rates(r) }
        })
        .collect()
}

fn family_of(t: i64) -> &'static str {
    PHASES.iter().find(|p| t > p.0 && t <= p.1).map_or("", |p| p.2)
}

fn guest() -> FamilyGuest {
    let rx = |t: i64| match family_of(t) {
        "vmguard/syn/attacker" => 5000.0 + t as f64,
        "hping3/syn/attacker" => 8000.0 + t as f64,
        _ => 20.0 + (t % 7) as f64,
    };
    let fails = |t: i64| if family_of(t) == "vmguard/udp/zombie" { 3000.0 } else { 1.0 };
    let spans =
        PHASES.iter().map(|p| Span { start_ns: p.0 * S, end_ns: p.1 * S, truth: p.3, scenario: "s".into() }).collect();
    let tags = PHASES.iter().enumerate().map(|(i, p)| Tag { phase: format!("p{i}"), family: p.2.into() }).collect();
    FamilyGuest {
        guest: LabelledGuest { name: "v".into(), kind: "vanilla".into(), windows: windows(rx, fails, 210), spans },
        tags,
    }
}

const ALERT: AlertParams = AlertParams { raise_after: 2, clear_after: 3 };

#[test]
fn held_out_windows_never_reach_training() {
    let g = guest();
    let held = "vmguard/syn/attacker";
    let train = without_family(std::slice::from_ref(&g), held);
    let ex = training_examples(&train);
    // Exactly the labelled windows that touch no held-out phase.
    let expected = g
        .guest
        .windows
        .iter()
        .filter(|w| {
            let (s, e) = (w.start_ms * 1_000_000, w.end_ms * 1_000_000);
            window_truth(&g.guest.spans, s, e).is_some() && !(s < 60 * S && e > 30 * S)
        })
        .count();
    assert_eq!(ex.len(), expected);
    assert!(expected > 0 && expected < training_examples(std::slice::from_ref(&g.guest)).len());
    // The held-out flood's packet rate (5000-5100/s, no other phase has it) is in no training example.
    let rx = FEATURES.iter().position(|f| f.name == "rx_pps").unwrap();
    assert!(!ex.iter().any(|(_, v, _)| v[rx].is_some_and(|x| (4000.0..6000.0).contains(&x))));
    assert!(ex.iter().any(|(_, v, _)| v[rx].is_some_and(|x| x > 7000.0)), "the other family is still there");
    // The phases of the family are gone for every guest, the rest untouched.
    assert!(train[0].spans.iter().zip(&g.tags).all(|(s, t)| (s.truth == Truth::Unknown) == (t.family == held)));
}

#[test]
fn per_family_figures() {
    let g = vec![guest()];
    assert_eq!(
        families(&g),
        ["benign/idle", "benign/web", "hping3/syn/attacker", "vmguard/syn/attacker", "vmguard/udp/zombie"]
    );
    let r = leave_one_family_out(&g, 5000, ALERT).unwrap();
    let row = |f: &str| r.families.iter().find(|x| x.family == f).unwrap();

    // A SYN flood of one tool, held out, is caught by the model trained on the other tool's.
    let syn = row("vmguard/syn/attacker");
    assert!(!syn.benign && syn.scenarios == ["s"]);
    assert!(!syn.trained_on_families.contains(&syn.family) && syn.trained_on_families.len() == 4);
    let h = syn.held_out.as_ref().unwrap();
    assert_eq!((h.phases, h.attacks.len(), h.alerted(), h.role_right()), (1, 1, 1, 1), "{h:?}");
    let (median, max) = h.time_to_alert().unwrap();
    assert!(median == max && max < 10.0, "{h:?}");
    assert!(h.windows.tp > 0 && h.windows.fn_ <= 3 && h.windows.fp == 0, "{:?}", h.windows);
    assert!(h.false_alerts.is_empty());

    // The flood only its own family moves: caught in-family, missed when held out.
    let z = row("vmguard/udp/zombie");
    let h = z.held_out.as_ref().unwrap();
    assert_eq!((h.attacks.len(), h.alerted()), (1, 0), "{h:?}");
    assert!(h.time_to_alert().is_none() && h.windows.tp == 0 && h.windows.fn_ > 0);
    assert_eq!(z.in_family.alerted(), 1, "{:?}", z.in_family);
    let zs = z.held_out_summary.as_ref().unwrap();
    assert_eq!((zs.attacks, zs.alerted, zs.median_alert_s), (1, 0, None));

    // Benign families: phases of both runs of the family, no attack, no false alert, windows all TN.
    let web = row("benign/web");
    let h = web.held_out.as_ref().unwrap();
    assert!(web.benign && h.phases == 2 && h.attacks.is_empty() && h.false_alerts.is_empty());
    assert!(h.windows.tn > 40 && h.windows.tp + h.windows.fp + h.windows.fn_ == 0, "{:?}", h.windows);

    // Every labelled window counts in exactly one family, in both figures.
    let labelled = g[0]
        .guest
        .windows
        .iter()
        .filter(|w| window_truth(&g[0].guest.spans, w.start_ms * 1_000_000, w.end_ms * 1_000_000).is_some())
        .count() as u64;
    assert_eq!(r.overall_in_family.windows.total(), labelled);
    assert_eq!(r.overall_held_out.windows.total(), labelled);
    assert_eq!((r.overall_held_out.attacks, r.overall_held_out.alerted), (3, 2));
    assert_eq!((r.overall_in_family.attacks, r.overall_in_family.alerted), (3, 3));
    assert_eq!(r.overall_held_out.phases, PHASES.len());
    assert_eq!(r.in_family_trained_on, ["s"]);
}

#[test]
fn false_alerts_are_alerts_on_guests_labelled_normal() {
    let g = [guest()];
    let model = crate::evaluate::train_labelled(&[g[0].guest.clone()], 5000, ALERT, vec![]).unwrap().model;
    // Another guest, labelled normal all along, gets a burst in the first benign/idle phase.
    let busy = |t: i64| (125..140).contains(&t);
    let w = FamilyGuest {
        guest: LabelledGuest {
            name: "w".into(),
            kind: "vanilla".into(),
            windows: windows(|t| if busy(t) { 6000.0 } else { 20.0 }, |_| 1.0, 210),
            spans: PHASES
                .iter()
                .map(|p| Span { start_ns: p.0 * S, end_ns: p.1 * S, truth: Truth::Normal, scenario: "s".into() })
                .collect(),
        },
        tags: g[0].tags.clone(),
    };
    let s = score_family(&model, std::slice::from_ref(&w), "benign/idle");
    assert_eq!(s.false_alerts.len(), 1, "{s:?}");
    assert_eq!(s.false_alerts[0].phase, "p4");
    assert!(s.windows.fp > 0 && s.attacks.is_empty());
    assert!(score_family(&model, std::slice::from_ref(&w), "benign/web").false_alerts.is_empty());
}
