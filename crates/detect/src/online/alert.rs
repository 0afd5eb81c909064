//! The per-guest alert state machine: raise after N alarming windows in a row, clear after M calm ones
//! (score below the lower clear threshold), so one noisy window neither raises nor clears an alert.

use serde::{Deserialize, Serialize};

use super::model::{AlertParams, Evidence, Role, Verdict};

/// What changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum AlertEvent {
    /// An alert starts.
    Raised { guest: String, time_ms: i64, role: Role, score: f64, evidence: Vec<Evidence> },
    /// The alert ends (the attack stopped).
    Cleared { guest: String, time_ms: i64, role: Role, since_ms: i64, peak_score: f64 },
}

/// One guest's alert state.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AlertState {
    active: Option<(i64, Role)>,
    high_run: u32,
    calm_run: u32,
    peak: f64,
}

impl AlertState {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether an alert is raised, and since when with which role.
    pub fn active(&self) -> Option<(i64, Role)> {
        self.active
    }

    /// Feeds the verdict on the window ending at `time_ms`.
    pub fn update(
        &mut self,
        guest: &str,
        time_ms: i64,
        v: &Verdict,
        clear_threshold: f64,
        p: &AlertParams,
    ) -> Option<AlertEvent> {
        if v.alarm {
            self.high_run += 1;
        } else {
            self.high_run = 0;
        }
        if v.score < clear_threshold {
            self.calm_run += 1;
        } else {
            self.calm_run = 0;
        }
        match self.active {
            None if self.high_run >= p.raise_after.max(1) => {
                self.active = Some((time_ms, v.role));
                self.peak = v.score;
                self.calm_run = 0;
                Some(AlertEvent::Raised {
                    guest: guest.into(),
                    time_ms,
                    role: v.role,
                    score: v.score,
                    evidence: v.evidence.clone(),
                })
            }
            Some((since, role)) => {
                self.peak = self.peak.max(v.score);
                if self.calm_run >= p.clear_after.max(1) {
                    self.active = None;
                    self.high_run = 0;
                    Some(AlertEvent::Cleared {
                        guest: guest.into(),
                        time_ms,
                        role,
                        since_ms: since,
                        peak_score: self.peak,
                    })
                } else {
                    None
                }
            }
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(score: f64) -> Verdict {
        Verdict { score, role: Role::Victim, alarm: score >= 0.5, evidence: vec![], novelty: 0.0, by_novelty: false }
    }

    #[test]
    fn hysteresis() {
        let p = AlertParams { raise_after: 2, clear_after: 3 };
        let mut s = AlertState::new();
        let mut events = Vec::new();
        // One spike does not raise; two in a row do; a dip to 0.4 (above clear 0.3) does not count as
        // calm; three calm windows clear.
        for (t, sc) in [0.9, 0.1, 0.9, 0.95, 0.4, 0.2, 0.4, 0.2, 0.1, 0.1, 0.1].iter().enumerate() {
            if let Some(e) = s.update("g", t as i64, &v(*sc), 0.3, &p) {
                events.push((t, e));
            }
        }
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(events[0].0, 3);
        assert!(matches!(events[0].1, AlertEvent::Raised { .. }));
        assert_eq!(events[1].0, 9);
        match &events[1].1 {
            AlertEvent::Cleared { since_ms, peak_score, .. } => assert_eq!((*since_ms, *peak_score), (3, 0.95)),
            e => panic!("{e:?}"),
        }
        assert!(s.active().is_none());
    }
}
