//! Samples to the detector's ticks, live and offline, through the one [`detect::online::ticks`]:
//! the agent hands over each collection round's deltas ([`ticks_of_round`]); training and evaluation
//! replay a recorded run's samples through the same delta tracker the pipeline uses
//! ([`ticks_of_samples`]). The test below feeds one recorded run through both and gets the same
//! windows.

use std::collections::BTreeMap;

use detect::online::{CounterDelta, FeatureWindow, Tick, WindowExtractor};
use telemetry::pipeline::RoundReport;
use telemetry::{Delta, DeltaTracker, Sample};

fn counter_delta<'a>(s: &'a Sample, d: &Delta) -> CounterDelta<'a> {
    CounterDelta {
        time_ns: d.time_ns,
        source: s.source.as_str(),
        counter: &s.counter,
        delta: d.delta,
        interval_ns: d.interval_ns,
    }
}

/// Each guest's ticks of one collection round (normally one tick per guest).
pub fn ticks_of_round(round: &RoundReport<'_>) -> BTreeMap<String, Vec<Tick>> {
    let mut by_guest: BTreeMap<&str, Vec<CounterDelta<'_>>> = BTreeMap::new();
    for (s, d) in round.samples.iter().zip(round.deltas) {
        if let Some(d) = d {
            by_guest.entry(&s.guest).or_default().push(counter_delta(s, d));
        }
    }
    by_guest.into_iter().map(|(g, ds)| (g.to_string(), detect::online::ticks(ds))).collect()
}

/// One guest's ticks from its recorded samples (any order).
pub fn ticks_of_samples(samples: &[Sample]) -> Vec<Tick> {
    let mut sorted: Vec<&Sample> = samples.iter().collect();
    sorted.sort_by_key(|s| s.time_ns);
    let mut tracker = DeltaTracker::new();
    let deltas: Vec<(&Sample, Delta)> = sorted.into_iter().filter_map(|s| tracker.observe(s).map(|d| (s, d))).collect();
    detect::online::ticks(deltas.iter().map(|(s, d)| counter_delta(s, d)))
}

/// Sliding windows of one guest's recorded samples.
pub fn windows_of(samples: &[Sample], window_ms: u64) -> Vec<FeatureWindow> {
    let mut x = WindowExtractor::new(window_ms);
    ticks_of_samples(samples).into_iter().filter_map(|t| x.push(t)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use telemetry::{Kind, SourceId};

    /// A run as the pipeline records it: rounds every second, each guest's sources read a few ms
    /// apart, a counter reset (guest restart) and a collector pause of 8 s in the middle, a gauge,
    /// and counters the detector does not use.
    fn recorded_run() -> Vec<Vec<Sample>> {
        let mut rounds = Vec::new();
        let mut rx = 0u64;
        let mut segs = 0u64;
        for r in 0..120i64 {
            if (60..68).contains(&r) {
                continue; // collector paused
            }
            if r == 90 {
                rx = 0; // guest restarted: its counters start again
            }
            let base = 1_700_000_000_000_000_000 + r * 1_000_000_000;
            rx += if (30..50).contains(&r) { 16_000 } else { 40 + (r as u64 * 7) % 13 };
            segs += 30 + (r as u64 % 5);
            let mut round = Vec::new();
            for (gi, guest) in ["qemu", "container"].into_iter().enumerate() {
                let t = |ms: i64| base + gi as i64 * 2_000_000 + ms * 1_000_000;
                let mut push = |time_ns, source, counter: &str, value, kind| {
                    round.push(Sample { time_ns, guest: guest.into(), source, counter: counter.into(), value, kind })
                };
                push(t(0), SourceId::Netdev, "tx_packets", rx, Kind::Counter);
                push(t(0), SourceId::Netdev, "rx_packets", rx / 3, Kind::Counter);
                push(t(1), SourceId::Netdev, "tx_bytes", rx * 60, Kind::Counter);
                push(t(3), SourceId::Snmp, "Tcp.InSegs", segs, Kind::Counter);
                push(t(3), SourceId::Snmp, "Tcp.CurrEstab", 5, Kind::Gauge);
                push(t(4), SourceId::Snmp, "Ip.Forwarding", 1, Kind::Counter);
            }
            rounds.push(round);
        }
        rounds
    }

    #[test]
    fn training_ticks_equal_live_ticks_on_one_recorded_run() {
        let rounds = recorded_run();
        // Live: the pipeline's delta tracker round by round, then the agent's per-round ticks.
        let mut tracker = DeltaTracker::new();
        let mut live: BTreeMap<String, WindowExtractor> = BTreeMap::new();
        let mut live_windows: BTreeMap<String, Vec<FeatureWindow>> = BTreeMap::new();
        let mut all = Vec::new();
        for (i, samples) in rounds.iter().enumerate() {
            let deltas: Vec<Option<Delta>> = samples.iter().map(|s| tracker.observe(s)).collect();
            let report = RoundReport {
                index: i as u64,
                time_ns: samples[0].time_ns,
                samples,
                deltas: &deltas,
                failures: &[],
                new_guests: &[],
                duration: Duration::ZERO,
                guests: 2,
            };
            for (g, ticks) in ticks_of_round(&report) {
                let x = live.entry(g.clone()).or_insert_with(|| WindowExtractor::new(5000));
                for t in ticks {
                    if let Some(w) = x.push(t) {
                        live_windows.entry(g.clone()).or_default().push(w);
                    }
                }
            }
            all.extend(samples.iter().cloned());
        }
        // Offline: the stored samples of each guest, through a real store (order as it returns them).
        let dir = tempfile::tempdir().unwrap();
        let mut st = store::Store::open(dir.path().join("run.db")).unwrap();
        st.append(&all).unwrap();
        for guest in ["qemu", "container"] {
            let stored = st.samples(guest, i64::MIN, i64::MAX).unwrap();
            let offline = windows_of(&stored, 5000);
            let online = &live_windows[guest];
            assert!(offline.len() > 80, "{guest}: {} windows", offline.len());
            assert_eq!(&offline, online, "{guest}: training and live windows differ");
        }
    }
}
