//! Property tests of Part B's online pieces: window rates, alert hysteresis.

use detect::online::{AlertParams, AlertState, Role, Tick, Verdict, WindowExtractor, base_index};
use proptest::prelude::*;

proptest! {
    /// A constant packet rate gives that rate whatever the sampling jitter.
    #[test]
    fn rate_is_jitter_invariant(rate in 0.0f64..1e6, intervals in prop::collection::vec(700i64..1300, 12..40)) {
        let c = base_index("netdev", "tx_packets").unwrap();
        let mut x = WindowExtractor::new(5000);
        let mut t = 0;
        let mut last = None;
        for iv in intervals {
            t += iv;
            let delta = rate * iv as f64 / 1000.0;
            if let Some(w) = x.push(Tick { time_ms: t, deltas: vec![(c, delta, iv as f64)] }) {
                last = Some(w);
            }
        }
        let w = last.expect("enough ticks for a window");
        let rx = w.values()[0].unwrap();
        prop_assert!((rx - rate).abs() <= 1e-6 * rate.max(1.0), "{rx} vs {rate}");
        prop_assert!(w.end_ms - w.start_ms == 5000);
    }

    /// An alert is never raised before `raise_after` alarming windows in a row, and raised/cleared
    /// events alternate, starting with a raise.
    #[test]
    fn alerts_alternate_and_need_runs(scores in prop::collection::vec(0.0f64..1.0, 1..200), n in 1u32..5, m in 1u32..6) {
        let p = AlertParams { raise_after: n, clear_after: m };
        let mut s = AlertState::new();
        let mut run = 0u32;
        let mut raised = false;
        for (t, sc) in scores.iter().enumerate() {
            let v = Verdict { score: *sc, role: Role::Victim, alarm: *sc >= 0.5, evidence: vec![], novelty: 0.0, by_novelty: false };
            run = if v.alarm { run + 1 } else { 0 };
            match s.update("g", t as i64, &v, 0.3, &p) {
                Some(detect::online::AlertEvent::Raised { .. }) => {
                    prop_assert!(!raised);
                    prop_assert!(run >= n);
                    raised = true;
                }
                Some(detect::online::AlertEvent::Cleared { .. }) => {
                    prop_assert!(raised);
                    raised = false;
                }
                None => {}
            }
            prop_assert_eq!(s.active().is_some(), raised);
        }
    }
}
