//! Ground truth of recorded runs and the rule that labels a window from it (the same rule for Part
//! A's and Part B's figures).
//!
//! A recorded run gives every guest one [`Span`] per phase: `attack-victim` when a flood of that phase
//! targets it, `attack-zombie` when a flood comes from it, `normal` otherwise, and `unknown` when a
//! workload or flood of the phase failed. A window is
//! - `dos` when attack spans of its guest cover at least half of it;
//! - `normal` when it lies within the recorded spans and no attack span touches it;
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
    let covered = sum(&|_| true);
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
    fn stored_labels() {
        for t in [Truth::Normal, Truth::AttackVictim, Truth::AttackZombie, Truth::Unknown] {
            assert_eq!(Truth::from_stored(t.as_str()), t);
        }
        assert_eq!(Truth::from_stored("attack-attacker"), Truth::AttackZombie);
        assert_eq!(Truth::from_stored("attack"), Truth::AttackVictim);
        assert_eq!(Truth::from_stored("garbage"), Truth::Unknown);
    }
}
