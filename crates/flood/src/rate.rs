//! Rate control: a token bucket driven by elapsed nanoseconds (pure: the caller passes the time).

use std::time::Duration;

/// The one rate type of vmguard (packets/s, bits/s on Ethernet frames as tc counts them, unlimited).
pub use units::{ETHERNET_HEADER_LEN, MAX_PPS, Rate};

/// How far behind its schedule a sender may fall and still catch up: on a busy host a thread is
/// often descheduled for a few milliseconds, and forfeiting those packets would make the rate inexact.
pub const BURST_WINDOW: Duration = Duration::from_millis(20);

/// Token bucket: packet `i` (counting from 0) becomes due at `i / rate` seconds after the start; at
/// most `burst` packets may be owed at once (after a stall, older tokens are forfeited rather than
/// sent in one burst). All arithmetic is integer nanoseconds, so a long flood keeps its exact rate.
#[derive(Debug, Clone)]
pub struct Pacer {
    /// Packets per second = num / den.
    num: u128,
    den: u128,
    burst: u64,
    /// Tokens used: packets sent plus tokens forfeited after stalls.
    taken: u64,
    forfeited: u64,
}

impl Pacer {
    /// A pacer for `num / den` packets per second (num > 0) allowing bursts of `burst` packets.
    pub fn new(num: u128, den: u128, burst: u64) -> Pacer {
        assert!(num > 0 && den > 0, "a pacer needs a positive rate");
        Pacer { num, den, burst: burst.max(1), taken: 0, forfeited: 0 }
    }

    /// The burst a rate gets: [`BURST_WINDOW`] worth of packets, at least 1. A sender that was
    /// descheduled for less than that catches up (in back-to-back batches); longer stalls forfeit.
    pub fn default_burst(num: u128, den: u128) -> u64 {
        let per_window = num * BURST_WINDOW.as_nanos() / (den * 1_000_000_000);
        u64::try_from(per_window).unwrap_or(u64::MAX).max(1)
    }

    /// Packets that may be sent at `elapsed_ns` after the start.
    pub fn available(&mut self, elapsed_ns: u64) -> u64 {
        let earned = 1 + (u128::from(elapsed_ns) * self.num / (self.den * 1_000_000_000)) as u64;
        let avail = earned.saturating_sub(self.taken);
        if avail > self.burst {
            let lost = avail - self.burst;
            self.taken += lost;
            self.forfeited += lost;
            return self.burst;
        }
        avail
    }

    /// Record that `n` packets were sent (or attempted).
    pub fn take(&mut self, n: u64) {
        self.taken += n;
    }

    /// When (ns after the start) the next packet becomes due.
    pub fn next_due_ns(&self) -> u64 {
        // Smallest t with floor(t * num / (den * 1e9)) >= taken.
        let t = (u128::from(self.taken) * self.den * 1_000_000_000).div_ceil(self.num);
        u64::try_from(t).unwrap_or(u64::MAX)
    }

    /// Tokens forfeited because the sender fell behind by more than a burst.
    pub fn forfeited(&self) -> u64 {
        self.forfeited
    }
}

/// Split `total` into `parts` shares that differ by at most one.
pub fn split(total: u64, parts: usize) -> Vec<u64> {
    let parts = parts.max(1) as u64;
    (0..parts).map(|i| total / parts + u64::from(i < total % parts)).collect()
}

/// Duration from a number of nanoseconds.
pub fn ns(d: u64) -> Duration {
    Duration::from_nanos(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drive a pacer with a perfect clock that jumps to each due time: it sends exactly rate * T.
    #[test]
    fn exact_count_over_a_period() {
        let mut p = Pacer::new(20_000, 1, 20);
        let end = 5_000_000_000u64;
        let mut sent = 0u64;
        let mut now = 0u64;
        while now < end {
            let n = p.available(now);
            p.take(n);
            sent += n;
            now = p.next_due_ns().max(now + 1);
        }
        assert_eq!(sent, 100_000);
        assert_eq!(p.forfeited(), 0);
    }

    #[test]
    fn coarse_clock_still_exact_within_burst() {
        // Waking only every 0.7 ms at 20 kpps: 14 packets owed each time, below the burst of 20.
        let mut p = Pacer::new(20_000, 1, 20);
        let mut sent = 0;
        let mut now = 0;
        while now < 1_000_000_000 {
            let n = p.available(now);
            p.take(n);
            sent += n;
            now += 700_000;
        }
        assert!((19_990..=20_001).contains(&sent), "{sent}");
    }

    #[test]
    fn stalls_forfeit_tokens_instead_of_bursting() {
        let mut p = Pacer::new(1000, 1, 5);
        assert_eq!(p.available(0), 1);
        p.take(1);
        // 100 ms stall: 100 packets owed, only 5 allowed.
        assert_eq!(p.available(100_000_000), 5);
        assert_eq!(p.forfeited(), 95);
    }

    #[test]
    fn bit_rate_counts_ethernet_frames() {
        // 60-byte SYN + 14 = 74 bytes = 592 bits; 10 Mbit/s = 16891.9 packets/s.
        let (n, d) = Rate::BitsPerSec(10_000_000).packets_per_sec(60).unwrap();
        let mut p = Pacer::new(n, d, 17);
        let mut sent = 0;
        let mut now = 0;
        while now < 1_000_000_000 {
            let k = p.available(now);
            p.take(k);
            sent += k;
            now = p.next_due_ns().max(now + 1);
        }
        assert_eq!(sent, 16_892);
    }

    #[test]
    fn next_due_is_the_next_token() {
        let mut p = Pacer::new(1000, 1, 10);
        let n = p.available(0);
        p.take(n);
        assert_eq!(p.next_due_ns(), 1_000_000);
        assert_eq!(p.available(999_999), 0);
        assert_eq!(p.available(1_000_000), 1);
    }

    #[test]
    fn split_is_fair() {
        assert_eq!(split(10, 3), vec![4, 3, 3]);
        assert_eq!(split(2, 4), vec![1, 1, 0, 0]);
        assert_eq!(split(7, 0), vec![7]);
    }
}
