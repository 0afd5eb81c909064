//! sysbench 1.0 text output: `cpu`, `memory` and `fileio` tests.

use super::{Figures, ParseError, leading_number, value_after};

const TOOL_CPU: &str = "sysbench cpu";
const TOOL_MEM: &str = "sysbench memory";
const TOOL_FILE: &str = "sysbench fileio";

/// Figures every sysbench test prints in its "General statistics" and "Latency" sections.
fn general(text: &str, f: &mut Figures) {
    if let Some(v) = value_after(text, "total time:") {
        f.insert("total_time_s".into(), v);
    }
    if let Some(v) = value_after(text, "total number of events:") {
        f.insert("events".into(), v);
    }
    if let Some(v) = value_after(text, "avg:") {
        f.insert("latency_avg_ms".into(), v);
    }
    if let Some(v) = value_after(text, "95th percentile:") {
        f.insert("latency_p95_ms".into(), v);
    }
}

/// `sysbench cpu run`: `events_per_sec` (the CPU speed figure), plus the general statistics.
pub fn parse_cpu(text: &str) -> Result<Figures, ParseError> {
    let eps = value_after(text, "events per second:")
        .ok_or_else(|| ParseError::new(TOOL_CPU, "no `events per second:` line (did the test run?)", text))?;
    let mut f = Figures::new();
    f.insert("events_per_sec".into(), eps);
    general(text, &mut f);
    Ok(f)
}

/// `sysbench memory run`: `mib_per_sec` from `X MiB transferred (Y MiB/sec)`, and operations per second.
pub fn parse_memory(text: &str) -> Result<Figures, ParseError> {
    let line = text
        .lines()
        .find(|l| l.contains("transferred (") && l.contains("/sec)"))
        .ok_or_else(|| ParseError::new(TOOL_MEM, "no `MiB transferred (... MiB/sec)` line", text))?;
    let (before, after) = line.split_once('(').unwrap_or((line, ""));
    let per_sec =
        leading_number(after).ok_or_else(|| ParseError::new(TOOL_MEM, "no rate in the transfer line", text))?;
    // Older releases print MB; scale to MiB.
    let scale = if after.contains("MiB") { 1.0 } else { 1e6 / 1_048_576.0 };
    let mut f = Figures::new();
    f.insert("mib_per_sec".into(), per_sec * scale);
    if let Some(total) = leading_number(before) {
        f.insert("mib_transferred".into(), total * scale);
    }
    if let Some(l) = text.lines().find(|l| l.contains("Total operations:"))
        && let Some((_, rate)) = l.split_once('(')
        && let Some(v) = leading_number(rate)
    {
        f.insert("ops_per_sec".into(), v);
    }
    general(text, &mut f);
    Ok(f)
}

/// `sysbench fileio run`: reads, writes and fsyncs per second and the read and write throughput;
/// `mib_per_sec` is read plus written.
pub fn parse_fileio(text: &str) -> Result<Figures, ParseError> {
    let mut f = Figures::new();
    for (label, key) in [
        ("reads/s:", "reads_per_sec"),
        ("writes/s:", "writes_per_sec"),
        ("fsyncs/s:", "fsyncs_per_sec"),
        ("read, MiB/s:", "read_mib_per_sec"),
        ("written, MiB/s:", "written_mib_per_sec"),
    ] {
        if let Some(v) = value_after(text, label) {
            f.insert(key.into(), v);
        }
    }
    let (Some(r), Some(w)) = (f.get("read_mib_per_sec"), f.get("written_mib_per_sec")) else {
        return Err(ParseError::new(TOOL_FILE, "no `read, MiB/s:` and `written, MiB/s:` lines", text));
    };
    f.insert("mib_per_sec".into(), r + w);
    general(text, &mut f);
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CPU: &str = include_str!("../../tests/fixtures/sysbench-cpu.txt");
    const MEM: &str = include_str!("../../tests/fixtures/sysbench-memory.txt");
    const FILE: &str = include_str!("../../tests/fixtures/sysbench-fileio.txt");

    #[test]
    fn real_outputs() {
        let c = parse_cpu(CPU).unwrap();
        assert_eq!(c["events_per_sec"], 3010.33);
        assert_eq!(c["events"], 3024.0);
        assert_eq!(c["latency_p95_ms"], 0.27);
        let m = parse_memory(MEM).unwrap();
        assert_eq!(m["mib_per_sec"], 4643.76);
        assert_eq!(m["ops_per_sec"], 4755207.31);
        let f = parse_fileio(FILE).unwrap();
        assert_eq!(f["reads_per_sec"], 37829.85);
        assert!((f["mib_per_sec"] - (591.09 + 394.06)).abs() < 1e-9);
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let e = parse_cpu("sysbench: command not found").unwrap_err().to_string();
        assert!(e.contains("sysbench cpu") && e.contains("events per second") && e.contains("not found"), "{e}");
        assert!(parse_memory(CPU).is_err());
        assert!(parse_fileio(MEM).is_err());
    }

    proptest! {
        #[test]
        fn never_panics(s in "(?s).{0,600}") {
            let _ = parse_cpu(&s);
            let _ = parse_memory(&s);
            let _ = parse_fileio(&s);
        }

        #[test]
        fn never_panics_on_mangled_real_output(cut in 0usize..2000, junk in ".{0,20}") {
            for text in [CPU, MEM, FILE] {
                let mut t: String = text.chars().take(cut).collect();
                t.push_str(&junk);
                let _ = parse_cpu(&t);
                let _ = parse_memory(&t);
                let _ = parse_fileio(&t);
            }
        }
    }
}
