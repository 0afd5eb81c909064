//! Parsers of what the benchmark tools print. Every parser is pure, never panics on any input
//! (property-tested), and says clearly what it missed when the text is not what it expects. The kernel's
//! counters (`/proc/stat`, `/proc/softirqs`) are parsed by `telemetry::procfs`.

pub mod iperf;
pub mod sysbench;
pub mod wrk;

use std::collections::BTreeMap;

/// Named figures of one tool run: `events_per_sec`, `p99_ms`, ...
pub type Figures = BTreeMap<String, f64>;

/// A tool's output could not be understood: the one parse error of vmguard's text parsers.
pub use telemetry::ParseError;

/// The number that starts `s` (after whitespace), e.g. `591.09` in ` 591.09 MiB/s`. Rejects NaN and
/// infinities so figures stay plottable.
pub(crate) fn leading_number(s: &str) -> Option<f64> {
    let s = s.trim_start();
    let end =
        s.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+' || c == 'e')).unwrap_or(s.len());
    let v: f64 = s[..end].parse().ok()?;
    v.is_finite().then_some(v)
}

/// The value after `label` on the first line that contains it (`label` includes its colon).
pub(crate) fn value_after(text: &str, label: &str) -> Option<f64> {
    text.lines().find_map(|l| l.find(label).and_then(|i| leading_number(&l[i + label.len()..])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_read_from_the_start() {
        assert_eq!(leading_number("  591.09 MiB/s"), Some(591.09));
        assert_eq!(leading_number("1.0040s"), Some(1.004));
        assert_eq!(leading_number("abc"), None);
        assert_eq!(leading_number("1e999"), None);
        assert_eq!(value_after("x\n    reads/s:  12.5\n", "reads/s:"), Some(12.5));
    }
}
