//! Pure value types that every vmguard crate shares, each with one parser:
//!
//! - [`Rate`]: packets per second, bits per second, or unlimited. A bit rate counts each packet's
//!   Ethernet frame (the IP packet plus the 14-byte Ethernet header, no preamble or FCS), as `tc`'s
//!   rates do, so `10mbit` means the same to the attacker link's shaper, the flood's token bucket and a
//!   scenario file.
//! - [`parse_duration`]: `5` (seconds), `5s`, `500ms`, `2m`, `2min`, `1h`, `1.5s`.
//!
//! ```
//! use units::Rate;
//! let r: Rate = "10mbit".parse().unwrap();
//! assert_eq!(r, Rate::BitsPerSec(10_000_000));
//! // A 74-byte SYN frame (60-byte IP packet) at 10 Mbit/s:
//! assert_eq!(r.pps(60).unwrap().round(), 16_892.0);
//! assert_eq!(units::parse_duration("500ms").unwrap(), std::time::Duration::from_millis(500));
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Bytes of Ethernet header a bit rate counts on top of the IP packet (as `tc` does: the skb's length
/// at the qdisc, which has no preamble, inter-frame gap or FCS).
pub const ETHERNET_HEADER_LEN: u64 = 14;

/// Highest packet rate accepted: far beyond what one host sends, low enough to catch unit mistakes.
pub const MAX_PPS: u64 = 100_000_000;

/// Highest bit rate accepted (100 Gbit/s).
pub const MAX_BPS: u64 = 100_000_000_000;

/// A rate that a text did not describe, with what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error(
        "`{0}` is not a rate: write packets/s (`20000`, `20kpps`, `1mpps`), bits/s on Ethernet frames (`10mbit`, `500kbit`, `1gbit`) or `unlimited`"
    )]
    BadRate(String),
    #[error("rate unit `{unit}` in `{text}` is unknown: use pps, kpps, mpps, bit, kbit, mbit or gbit")]
    RateUnit { text: String, unit: String },
    #[error("rate `{0}` must be above 0 (use `unlimited` for no limit)")]
    ZeroRate(String),
    #[error("rate `{text}` is above the maximum of {max}")]
    RateTooHigh { text: String, max: String },
    #[error("`{0}` is not a duration: write e.g. `10` or `10s`, `500ms`, `2m`, `1h`")]
    BadDuration(String),
    #[error("duration unit `{unit}` in `{text}` is unknown: use ms, s, m (min) or h")]
    DurationUnit { text: String, unit: String },
    #[error("duration `{0}` must be longer than zero")]
    ZeroDuration(String),
}

/// How fast: packets per second, bits per second on Ethernet frames, or without a limit.
///
/// Text form (also in TOML and JSON): `unlimited`, `20000` or `20000pps`, `20kpps`, `1mpps`,
/// `10mbit` (`10Mbit/s`, `10mbps`), `500kbit`, `1gbit`, `8000bit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Rate {
    /// As fast as the sender (or link) can go.
    #[default]
    Unlimited,
    /// Exactly this many packets per second.
    PacketsPerSec(u64),
    /// This many bits per second, counting each packet's Ethernet frame (IP packet + 14 bytes).
    BitsPerSec(u64),
}

impl Rate {
    /// Packets per second as an exact fraction (numerator, denominator) for packets of `ip_len` bytes;
    /// `None` for unlimited.
    pub fn packets_per_sec(&self, ip_len: usize) -> Option<(u128, u128)> {
        match *self {
            Rate::Unlimited => None,
            Rate::PacketsPerSec(p) => Some((u128::from(p), 1)),
            Rate::BitsPerSec(b) => Some((u128::from(b), u128::from(frame_bits(ip_len)))),
        }
    }

    /// Packets per second for packets of `ip_len` bytes; `None` for unlimited.
    pub fn pps(&self, ip_len: usize) -> Option<f64> {
        self.packets_per_sec(ip_len).map(|(n, d)| n as f64 / d as f64)
    }

    /// Bits per second on Ethernet frames for packets of `ip_len` bytes; `None` for unlimited.
    pub fn bps(&self, ip_len: usize) -> Option<f64> {
        match *self {
            Rate::Unlimited => None,
            Rate::PacketsPerSec(p) => Some(p as f64 * frame_bits(ip_len) as f64),
            Rate::BitsPerSec(b) => Some(b as f64),
        }
    }

    /// The bit rate, if this rate is written in bits (what a link shaper such as tc tbf takes).
    pub fn bits_per_sec(&self) -> Option<u64> {
        match *self {
            Rate::BitsPerSec(b) => Some(b),
            _ => None,
        }
    }

    pub fn is_unlimited(&self) -> bool {
        matches!(self, Rate::Unlimited)
    }
}

fn frame_bits(ip_len: usize) -> u64 {
    (ip_len as u64 + ETHERNET_HEADER_LEN) * 8
}

/// Splits `12.5kpps` into (`12.5`, `kpps`).
fn split_number(t: &str) -> (&str, &str) {
    let at = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(at);
    (num, unit.trim())
}

impl std::str::FromStr for Rate {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().to_ascii_lowercase();
        if t == "unlimited" {
            return Ok(Rate::Unlimited);
        }
        let (num, unit) = split_number(&t);
        let n: f64 = num.parse().map_err(|_| ParseError::BadRate(s.to_string()))?;
        if !n.is_finite() {
            return Err(ParseError::BadRate(s.to_string()));
        }
        let unit = unit.strip_suffix("/s").unwrap_or(unit);
        let (value, bits) = match unit {
            "" | "pps" => (n, false),
            "kpps" => (n * 1e3, false),
            "mpps" => (n * 1e6, false),
            "bit" | "bps" => (n, true),
            "kbit" | "kbps" => (n * 1e3, true),
            "mbit" | "mbps" => (n * 1e6, true),
            "gbit" | "gbps" => (n * 1e9, true),
            other => return Err(ParseError::RateUnit { text: s.to_string(), unit: other.to_string() }),
        };
        let value = value.round();
        if value < 1.0 {
            return Err(ParseError::ZeroRate(s.to_string()));
        }
        let (max, max_text) = if bits { (MAX_BPS, "100gbit") } else { (MAX_PPS, "100mpps") };
        if value > max as f64 {
            return Err(ParseError::RateTooHigh { text: s.to_string(), max: max_text.to_string() });
        }
        Ok(if bits { Rate::BitsPerSec(value as u64) } else { Rate::PacketsPerSec(value as u64) })
    }
}

impl std::fmt::Display for Rate {
    /// The canonical text, which parses back to the same rate.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Rate::Unlimited => f.write_str("unlimited"),
            Rate::PacketsPerSec(p) if p >= 1000 && p.is_multiple_of(1000) => write!(f, "{}kpps", p / 1000),
            Rate::PacketsPerSec(p) => write!(f, "{p}pps"),
            Rate::BitsPerSec(b) if b.is_multiple_of(1_000_000_000) => write!(f, "{}gbit", b / 1_000_000_000),
            Rate::BitsPerSec(b) if b.is_multiple_of(1_000_000) => write!(f, "{}mbit", b / 1_000_000),
            Rate::BitsPerSec(b) if b.is_multiple_of(1000) => write!(f, "{}kbit", b / 1000),
            Rate::BitsPerSec(b) => write!(f, "{b}bit"),
        }
    }
}

impl TryFrom<String> for Rate {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Rate> for String {
    fn from(r: Rate) -> String {
        r.to_string()
    }
}

/// `5` (seconds), `5s`, `500ms`, `2m`, `2min`, `1h`, `1.5s`: a positive duration.
pub fn parse_duration(s: &str) -> Result<Duration, ParseError> {
    let t = s.trim().to_ascii_lowercase();
    let (num, unit) = split_number(&t);
    let n: f64 = num.parse().map_err(|_| ParseError::BadDuration(s.to_string()))?;
    let secs = match unit {
        "" | "s" | "sec" | "secs" => n,
        "ms" => n / 1e3,
        "m" | "min" | "mins" => n * 60.0,
        "h" => n * 3600.0,
        other => return Err(ParseError::DurationUnit { text: s.to_string(), unit: other.to_string() }),
    };
    // Durations beyond a year are unit mistakes, and would overflow Duration from f64 far later.
    if !secs.is_finite() || secs > 366.0 * 86_400.0 {
        return Err(ParseError::BadDuration(s.to_string()));
    }
    let d = Duration::from_secs_f64(secs);
    if d.is_zero() {
        return Err(ParseError::ZeroDuration(s.to_string()));
    }
    Ok(d)
}

/// A duration that reads and writes as text (`10s`, `500ms`) in config and scenario files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Span(pub Duration);

impl Span {
    pub fn duration(self) -> Duration {
        self.0
    }
}

impl std::str::FromStr for Span {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_duration(s).map(Span)
    }
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = self.0.as_millis();
        if !self.0.subsec_nanos().is_multiple_of(1_000_000) {
            write!(f, "{}s", self.0.as_secs_f64())
        } else if !ms.is_multiple_of(1000) {
            write!(f, "{ms}ms")
        } else {
            write!(f, "{}s", ms / 1000)
        }
    }
}

impl TryFrom<String> for Span {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Span> for String {
    fn from(s: Span) -> String {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rates() {
        let ok = [
            ("20000", Rate::PacketsPerSec(20_000)),
            ("20000pps", Rate::PacketsPerSec(20_000)),
            ("20kpps", Rate::PacketsPerSec(20_000)),
            ("2.5kpps", Rate::PacketsPerSec(2_500)),
            ("1mpps", Rate::PacketsPerSec(1_000_000)),
            ("10mbit", Rate::BitsPerSec(10_000_000)),
            ("10Mbit/s", Rate::BitsPerSec(10_000_000)),
            ("10mbps", Rate::BitsPerSec(10_000_000)),
            ("500kbit", Rate::BitsPerSec(500_000)),
            ("1gbit", Rate::BitsPerSec(1_000_000_000)),
            (" unlimited ", Rate::Unlimited),
        ];
        for (text, want) in ok {
            assert_eq!(text.parse::<Rate>(), Ok(want), "{text}");
        }
        for bad in ["fast", "10 furlongs", "0", "0.2pps", "-5", "", "1e9999", "200mpps", "kpps"] {
            let e = bad.parse::<Rate>().unwrap_err().to_string();
            assert!(!e.is_empty(), "{bad}");
        }
        // The seed's link: 74-byte SYN frames at 10 Mbit/s.
        assert_eq!(Rate::BitsPerSec(10_000_000).pps(60).unwrap().round(), 16_892.0);
        assert_eq!(Rate::PacketsPerSec(1000).bps(60), Some(592_000.0));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("2min"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        for bad in ["0", "0s", "-1", "soon", "5 parsecs", "", "1e400"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn serde_as_text() {
        let r: Rate = serde_json::from_str("\"10mbit\"").unwrap();
        assert_eq!(serde_json::to_string(&r).unwrap(), "\"10mbit\"");
        let s: Span = serde_json::from_str("\"1500ms\"").unwrap();
        assert_eq!(s.0, Duration::from_millis(1500));
        assert!(serde_json::from_str::<Rate>("\"fast\"").is_err());
    }

    proptest! {
        #[test]
        fn rate_display_round_trips(p in 1u64..=MAX_PPS, b in 1u64..=MAX_BPS, which in 0u8..3) {
            let r = match which { 0 => Rate::PacketsPerSec(p), 1 => Rate::BitsPerSec(b), _ => Rate::Unlimited };
            prop_assert_eq!(r.to_string().parse::<Rate>(), Ok(r));
        }

        #[test]
        fn span_display_round_trips(ms in 1u64..10_000_000u64, ns in 0u32..1_000_000u32) {
            let s = Span(Duration::from_millis(ms) + Duration::from_nanos(u64::from(ns)));
            let back: Span = s.to_string().parse().unwrap();
            // Sub-millisecond parts go through f64 seconds: equal to the nanosecond's rounding.
            prop_assert!((back.0.as_nanos() as i128 - s.0.as_nanos() as i128).abs() <= 1);
        }

        #[test]
        fn parsers_never_panic(s in "\\PC{0,20}") {
            let _ = s.parse::<Rate>();
            let _ = parse_duration(&s);
        }
    }
}
