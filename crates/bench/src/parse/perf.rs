//! `perf stat -x,` (CSV) output: `value,unit,event,run_time,percent,...` per line.

use std::collections::BTreeMap;

use super::ParseError;

const TOOL: &str = "perf stat -x,";

/// One counted event: `None` when perf printed `<not supported>` or `<not counted>`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PerfCount {
    pub value: Option<f64>,
    pub unit: String,
}

/// Event name → count. Lines that are not CSV counter lines (perf's own messages) are skipped; no
/// counter line at all is an error.
pub fn parse_stat_csv(text: &str) -> Result<BTreeMap<String, PerfCount>, ParseError> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() < 3 {
            continue;
        }
        let (value, unit, event) = (fields[0].trim(), fields[1].trim(), fields[2].trim());
        if event.is_empty() || event.contains(' ') {
            continue;
        }
        let value = if value.starts_with('<') {
            None
        } else {
            match value.parse::<f64>() {
                Ok(v) if v.is_finite() => Some(v),
                _ => continue,
            }
        };
        out.insert(event.to_string(), PerfCount { value, unit: unit.to_string() });
    }
    if out.is_empty() {
        let reason = if text.contains("Permission") || text.contains("perf_event_paranoid") {
            "perf was refused access to the counters (run as root or lower kernel.perf_event_paranoid)"
        } else {
            "no `value,unit,event,...` lines (was perf run with -x,?)"
        };
        return Err(ParseError::new(TOOL, reason, text));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CSV: &str = include_str!("../../tests/fixtures/perf-stat.csv");

    #[test]
    fn real_output() {
        let m = parse_stat_csv(CSV).unwrap();
        assert_eq!(m["context-switches"].value, Some(100.0));
        assert_eq!(m["task-clock"].unit, "msec");
        assert_eq!(m["cycles"].value, None);
        assert_eq!(m["kvm:kvm_exit"].value, Some(0.0));
        let e = parse_stat_csv(
            "Error:\nAccess to performance monitoring and observability operations is limited.\nPermission denied",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("refused"), "{e}");
    }

    proptest! {
        #[test]
        fn never_panics(s in "(?s).{0,400}") {
            let _ = parse_stat_csv(&s);
        }
    }
}
