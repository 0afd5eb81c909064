//! Ground truth of recorded runs and the rule that labels a window from it (the same rule for Part
//! A's and Part B's figures).
//!
//! A recorded run gives every guest one [`Span`] per phase: `attack-victim` when a flood of that phase
//! targets it, `attack-zombie` when a flood comes from it, `normal` otherwise, and `unknown` when a
//! workload or flood of the phase failed. A window is
//! - `dos` when attack spans of its guest cover at least half of it;
//! - `normal` when it lies within the recorded spans and no attack span touches it; the seconds
//!   between two normal phases of one run (the next phase's workloads starting) count as recorded:
//!   no flood runs there, as every flood is bounded by its own phase;
//! - unlabelled otherwise (partly under attack, touching an `unknown` phase, or outside every recorded
//!   run): nobody can say what the right answer for it is, so it is left out of the metrics.

use serde::{Deserialize, Serialize};

use crate::mapping::Label;
use crate::online::Role;

/// What a guest was doing during a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Truth {
    Normal,
    /// A flood of the phase targets the guest.
    AttackVictim,
    /// A flood of the phase comes from the guest (a zombie).
    AttackZombie,
    /// The phase's workload or flood failed: no reliable ground truth.
    Unknown,
}

impl Truth {
    /// The label as the store keeps it.
    pub fn as_str(self) -> &'static str {
        match self {
            Truth::Normal => "normal",
            Truth::AttackVictim => "attack-victim",
            Truth::AttackZombie => "attack-zombie",
            Truth::Unknown => "unknown",
        }
    }

    /// A stored label; labels of older recordings (`attack-attacker`, a bare `attack*`) are read as
    /// the role they meant; anything else is `unknown`, so it is never trained on.
    pub fn from_stored(label: &str) -> Truth {
        match label {
            "normal" => Truth::Normal,
            "attack-victim" => Truth::AttackVictim,
            "attack-zombie" | "attack-attacker" => Truth::AttackZombie,
            l if l.starts_with("attack") => Truth::AttackVictim,
            _ => Truth::Unknown,
        }
    }

    pub fn is_attack(self) -> bool {
        matches!(self, Truth::AttackVictim | Truth::AttackZombie)
    }

    /// The role of an attack label.
    pub fn role(self) -> Option<Role> {
        match self {
            Truth::AttackVictim => Some(Role::Victim),
            Truth::AttackZombie => Some(Role::Attacker),
            _ => None,
        }
    }
}

/// One phase of one guest in a recorded run: `[start_ns, end_ns)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub start_ns: i64,
    pub end_ns: i64,
    pub truth: Truth,
    pub scenario: String,
}

impl Span {
    fn overlap(&self, start_ns: i64, end_ns: i64) -> i64 {
        (self.end_ns.min(end_ns) - self.start_ns.max(start_ns)).max(0)
    }
}

/// Ground truth of the window `[start_ns, end_ns)` of a guest with these spans, by the module's rule.
pub fn window_truth(spans: &[Span], start_ns: i64, end_ns: i64) -> Option<Label> {
    let len = (end_ns - start_ns).max(1) as f64;
    let sum = |keep: &dyn Fn(&Span) -> bool| -> f64 {
        spans.iter().filter(|s| keep(s)).map(|s| s.overlap(start_ns, end_ns) as f64).sum()
    };
    let attack = sum(&|s| s.truth.is_attack());
    let unknown = sum(&|s| s.truth == Truth::Unknown);
    let covered = sum(&|_| true) + between_normal_phases(spans, start_ns, end_ns) as f64;
    if unknown > 0.0 {
        None
    } else if attack / len >= 0.5 {
        Some(Label::Dos)
    } else if attack == 0.0 && covered / len >= 0.999 {
        Some(Label::Normal)
    } else {
        None
    }
}

/// The longest pause between two phases of one run that is taken as part of the run: a phase's
/// set-up (workloads and floods starting) takes seconds; a longer pause is a separate recording.
pub const PHASE_TRANSITION_NS: i64 = 60_000_000_000;

/// How much of `[start_ns, end_ns)` lies in pauses between two consecutive normal spans of the same
/// scenario (a phase transition inside one run, at most [`PHASE_TRANSITION_NS`] long).
fn between_normal_phases(spans: &[Span], start_ns: i64, end_ns: i64) -> i64 {
    let mut normal: Vec<&Span> = spans
        .iter()
        .filter(|s| {
            s.truth == Truth::Normal
                && s.end_ns > start_ns - PHASE_TRANSITION_NS
                && s.start_ns < end_ns + PHASE_TRANSITION_NS
        })
        .collect();
    normal.sort_by_key(|s| s.start_ns);
    normal
        .windows(2)
        .filter(|p| p[0].scenario == p[1].scenario)
        .map(|p| (p[0].end_ns, p[1].start_ns))
        .filter(|&(a, b)| b > a && b - a <= PHASE_TRANSITION_NS)
        // Another guest's spans are not here, but one of this guest's (an attack) may lie between.
        .filter(|&(a, b)| !spans.iter().any(|s| s.start_ns < b && s.end_ns > a && s.truth != Truth::Normal))
        .map(|(a, b)| (b.min(end_ns) - a.max(start_ns)).max(0))
        .sum()
}

/// The role under attack in `[start_ns, end_ns)`: that of the attack span covering most of it.
pub fn window_role(spans: &[Span], start_ns: i64, end_ns: i64) -> Option<Role> {
    spans
        .iter()
        .filter_map(|s| {
            let o = s.overlap(start_ns, end_ns);
            (o > 0).then_some((o, s.truth.role()?))
        })
        .max_by_key(|(o, _)| *o)
        .map(|(_, r)| r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(s: i64, e: i64, truth: Truth) -> Span {
        Span { start_ns: s, end_ns: e, truth, scenario: "t".into() }
    }

    #[test]
    fn window_rule() {
        let spans = [span(0, 100, Truth::Normal), span(100, 200, Truth::AttackVictim), span(200, 300, Truth::Unknown)];
        assert_eq!(window_truth(&spans, 10, 60), Some(Label::Normal));
        assert_eq!(window_truth(&spans, 120, 170), Some(Label::Dos));
        // Half under attack counts as dos, less does not (and is not normal either).
        assert_eq!(window_truth(&spans, 50, 150), Some(Label::Dos));
        assert_eq!(window_truth(&spans, 60, 130), None);
        // Touching an unknown phase, or outside the recording: unlabelled.
        assert_eq!(window_truth(&spans, 190, 210), None);
        assert_eq!(window_truth(&spans, 400, 450), None);
        assert_eq!(window_role(&spans, 120, 170), Some(Role::Victim));
        assert_eq!(window_role(&spans, 10, 60), None);
    }

    #[test]
    fn pauses_between_normal_phases_of_a_run_are_normal() {
        let s = 1_000_000_000; // 1 s in ns
        let other = |a: i64, b: i64| Span { scenario: "u".into(), ..span(a, b, Truth::Normal) };
        // Two normal phases with 7 s of set-up between them: a window across both is normal.
        let spans = [span(0, 100 * s, Truth::Normal), span(107 * s, 200 * s, Truth::Normal)];
        assert_eq!(window_truth(&spans, 50 * s, 150 * s), Some(Label::Normal));
        // The pause alone is normal too (nothing but set-up runs there).
        assert_eq!(window_truth(&spans, 101 * s, 106 * s), Some(Label::Normal));
        // A pause longer than a transition is a separate recording: not known.
        let far = [span(0, 100 * s, Truth::Normal), span(100 * s + PHASE_TRANSITION_NS + s, 300 * s, Truth::Normal)];
        assert_eq!(window_truth(&far, 50 * s, 150 * s), None);
        // Two different scenarios back to back: the pause between runs is not bridged.
        let runs = [span(0, 100 * s, Truth::Normal), other(107 * s, 200 * s)];
        assert_eq!(window_truth(&runs, 50 * s, 150 * s), None);
        // Next to an attack phase the rule is unchanged: less than half under attack is unlabelled.
        let attack = [span(0, 100 * s, Truth::Normal), span(107 * s, 200 * s, Truth::AttackVictim)];
        assert_eq!(window_truth(&attack, 50 * s, 150 * s), None);
        assert_eq!(window_truth(&attack, 90 * s, 106 * s), None);
    }

    #[test]
    fn stored_labels() {
        for t in [Truth::Normal, Truth::AttackVictim, Truth::AttackZombie, Truth::Unknown] {
            assert_eq!(Truth::from_stored(t.as_str()), t);
        }
        assert_eq!(Truth::from_stored("attack-attacker"), Truth::AttackZombie);
        assert_eq!(Truth::from_stored("attack"), Truth::AttackVictim);
        assert_eq!(Truth::from_stored("garbage"), Truth::Unknown);
    }
}
