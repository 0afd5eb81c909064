//! Cumulative readings to per-interval deltas, across resets and 32-bit wraparound.

use std::collections::HashMap;
use std::sync::Arc;

use crate::sample::{Kind, Sample, SourceId};

/// The change of a cumulative counter between two readings.
///
/// - 64-bit counters: a decrease is a reset (the guest or its owner restarted); the delta is the new value.
/// - 32-bit counters: a decrease is taken as one wraparound when that gives a delta below 2^31 (less than
///   half the range: the counter cannot plausibly have moved further between two readings a second
///   apart), else as a reset.
/// - Gauges have no delta: `None`.
pub fn delta(prev: u64, cur: u64, kind: Kind) -> Option<u64> {
    match kind {
        Kind::Gauge => None,
        Kind::Counter => Some(if cur >= prev { cur - prev } else { cur }),
        Kind::Counter32 => {
            if cur >= prev {
                return Some(cur - prev);
            }
            if prev <= u64::from(u32::MAX) && cur <= u64::from(u32::MAX) {
                let wrapped = (1u64 << 32) - prev + cur;
                if wrapped < (1u64 << 31) {
                    return Some(wrapped);
                }
            }
            Some(cur)
        }
    }
}

/// One interval's change of one counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delta {
    /// End of the interval (time of the newer reading), unix nanoseconds.
    pub time_ns: i64,
    /// Length of the interval in nanoseconds (0 if the clock did not move).
    pub interval_ns: i64,
    pub delta: u64,
}

impl Delta {
    /// Events per second over the interval (`None` for a zero-length interval).
    pub fn rate(&self) -> Option<f64> {
        (self.interval_ns > 0).then(|| self.delta as f64 * 1e9 / self.interval_ns as f64)
    }
}

/// Counter name -> (time, value) of its last reading.
type LastReadings = HashMap<crate::sample::Name, (i64, u64)>;

/// Remembers the last reading of every cumulative counter and turns each new one into a [`Delta`].
#[derive(Debug, Default)]
pub struct DeltaTracker {
    // guest -> source -> counter -> (time, value): nested so a lookup borrows `&str` and allocates nothing.
    last: HashMap<Arc<str>, HashMap<SourceId, LastReadings>>,
}

impl DeltaTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed one sample. Returns its delta from the previous reading of the same counter; `None` for the
    /// first reading, for gauges and for readings older than the last one (out of order).
    pub fn observe(&mut self, s: &Sample) -> Option<Delta> {
        if !s.kind.is_cumulative() {
            return None;
        }
        let by_source = match self.last.get_mut(&*s.guest) {
            Some(m) => m,
            None => self.last.entry(Arc::clone(&s.guest)).or_default(),
        };
        let by_counter = by_source.entry(s.source).or_default();
        let Some((t, v)) = by_counter.get_mut(s.counter.as_str()) else {
            by_counter.insert(s.counter.clone(), (s.time_ns, s.value));
            return None;
        };
        if s.time_ns < *t {
            return None;
        }
        let d = delta(*v, s.value, s.kind)?;
        let out = Delta { time_ns: s.time_ns, interval_ns: s.time_ns - *t, delta: d };
        *t = s.time_ns;
        *v = s.value;
        Some(out)
    }

    /// Forget a guest (it was torn down): its next readings start fresh.
    pub fn forget_guest(&mut self, guest: &str) {
        self.last.remove(guest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(t: i64, v: u64, kind: Kind) -> Sample {
        Sample { time_ns: t, guest: "g".into(), source: SourceId::Kvm, counter: "exits".into(), value: v, kind }
    }

    #[test]
    fn plain_increase_reset_and_wrap() {
        assert_eq!(delta(10, 25, Kind::Counter), Some(15));
        assert_eq!(delta(1000, 7, Kind::Counter), Some(7), "a decrease is a reset");
        assert_eq!(delta(u64::from(u32::MAX) - 4, 10, Kind::Counter32), Some(15), "32-bit wrap");
        assert_eq!(delta(100, 7, Kind::Counter32), Some(7), "far from the top: a reset, not a wrap");
        assert_eq!(delta(1, 2, Kind::Gauge), None);
    }

    #[test]
    fn tracker_gives_rates() {
        let mut t = DeltaTracker::new();
        assert_eq!(t.observe(&sample(0, 100, Kind::Counter)), None);
        let d = t.observe(&sample(1_000_000_000, 350, Kind::Counter)).unwrap();
        assert_eq!(d.delta, 250);
        assert_eq!(d.rate(), Some(250.0));
        assert_eq!(t.observe(&sample(500, 1, Kind::Counter)), None, "out of order is ignored");
        assert_eq!(t.observe(&sample(2_000_000_000, 5, Kind::Counter)).unwrap().delta, 5);
        assert_eq!(t.observe(&sample(3_000_000_000, 5, Kind::Gauge)), None);
        t.forget_guest("g");
        assert_eq!(t.observe(&sample(4_000_000_000, 9, Kind::Counter)), None);
    }

    proptest! {
        #[test]
        fn delta_never_panics_and_is_bounded(prev: u64, cur: u64) {
            let d = delta(prev, cur, Kind::Counter).unwrap();
            prop_assert!(d <= cur.max(cur.wrapping_sub(prev)));
            let d32 = delta(prev, cur, Kind::Counter32).unwrap();
            prop_assert!(cur >= prev || d32 <= cur.max(1 << 31));
        }

        #[test]
        fn wrap_recovers_the_true_increment(start in 0u64..=u64::from(u32::MAX), inc in 0u64..(1 << 31)) {
            let cur = (start + inc) & u64::from(u32::MAX);
            prop_assert_eq!(delta(start, cur, Kind::Counter32), Some(inc));
        }
    }
}
