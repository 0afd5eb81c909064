//! The text `xenperf` prints (tools/misc/xenperf.c), in its three forms:
//!
//! - plain: `NAME` left-aligned in 35 columns, a space, `T=` and the sum right-aligned in 10, a space, then
//!   the values (each ` %10u`) only when the counter has at most 4 of them; a newline.
//! - `-f`: the same, with every value of every counter.
//! - `-p`: like `-f`, except the `hypercalls` array: its line ends after `T=...`, followed by one line per
//!   non-zero hypercall, `NAME` (or `[N]` for a number without a name) in 35 columns and the count in 12.
//!
//! Single counters have one value per CPU; arrays one per element (summed over CPUs by Xen); values are
//! 32-bit and wrap.

use crate::TelemetryError;
use crate::sample::{Emit, Kind};
use crate::xen::{hypercall_name, hypercall_number};

/// One counter of a xenperf listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PerfCounter {
    /// Xen's name for it (may contain spaces).
    pub name: String,
    /// The `T=` sum over its values (32-bit, as xenperf prints it).
    pub total: u32,
    /// Its values when printed (per CPU for single counters, per element for arrays); empty otherwise.
    /// For the pretty `hypercalls` listing: indexed by hypercall number, zero where not printed.
    pub values: Vec<u32>,
}

/// Parse a xenperf listing of any of the three forms.
pub fn parse_xenperf(text: &str) -> Result<Vec<PerfCounter>, TelemetryError> {
    let mut counters: Vec<PerfCounter> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |detail: &str| TelemetryError::parse(format!("xenperf output line {}", n + 1), detail.to_string());
        if let Some(at) = line.find("T=") {
            let name = line[..at].trim_end();
            if name.is_empty() {
                return Err(bad("a counter without a name"));
            }
            let mut rest = line[at + 2..].split_ascii_whitespace();
            let total = rest.next().and_then(|t| t.parse().ok()).ok_or_else(|| bad("`T=` without a number"))?;
            let values = rest
                .map(|v| v.parse::<u32>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| bad("a value that is not a 32-bit number"))?;
            counters.push(PerfCounter { name: name.to_string(), total, values });
        } else {
            // A line of the pretty hypercall listing: `NAME count` under the last counter.
            let (name, count) = line
                .trim_end()
                .rsplit_once(|c: char| c.is_ascii_whitespace())
                .ok_or_else(|| bad("neither a counter nor a hypercall line"))?;
            let count: u32 = count.parse().map_err(|_| bad("a hypercall line without a count"))?;
            let name = name.trim();
            let index = match name.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
                Some(num) => num.parse::<u32>().ok(),
                None => hypercall_number(name),
            }
            .filter(|&i| i < 4096)
            .ok_or_else(|| bad("an unknown hypercall name"))? as usize;
            let last = counters.last_mut().ok_or_else(|| bad("a hypercall line before any counter"))?;
            if last.values.len() <= index {
                last.values.resize(index + 1, 0);
            }
            last.values[index] = count;
        }
    }
    Ok(counters)
}

/// Samples of a listing: every counter's total as `<name>` (spaces become `_`), and for the `hypercalls`
/// array one `hypercalls.<hypercall>` per non-zero element. All 32-bit counters.
pub(crate) fn emit_xenperf(counters: &[PerfCounter], emit: &mut Emit<'_>) {
    for c in counters {
        emit.push(c.name.replace(' ', "_"), u64::from(c.total), Kind::Counter32);
        if c.name == "hypercalls" {
            for (op, &v) in c.values.iter().enumerate() {
                if v == 0 {
                    continue;
                }
                let name = match hypercall_name(op as u32) {
                    Some(n) => format!("hypercalls.{n}"),
                    None => format!("hypercalls.{op}"),
                };
                emit.push(name, u64::from(v), Kind::Counter32);
            }
        }
    }
}

/// Host-wide Xen perf counters: runs `xenperf -f` in dom0 every round.
#[cfg(feature = "sources")]
pub struct XenPerf {
    guest: std::sync::Arc<str>,
    cmd: exec::Cmd,
}

#[cfg(feature = "sources")]
impl XenPerf {
    /// `guest`: the name the host-wide figures are filed under (e.g. the Xen host's name).
    pub fn new(guest: &str) -> Self {
        XenPerf {
            guest: guest.into(),
            cmd: exec::Cmd::new("xenperf").arg("-f").timeout(std::time::Duration::from_secs(5)),
        }
    }
}

#[cfg(feature = "sources")]
impl crate::Source for XenPerf {
    fn id(&self) -> crate::SourceId {
        crate::SourceId::Xenperf
    }

    fn guest(&self) -> &str {
        &self.guest
    }

    fn sample(&mut self, time_ns: i64, out: &mut Vec<crate::Sample>) -> Result<(), TelemetryError> {
        let text = self.cmd.stdout()?;
        let counters = parse_xenperf(&text)?;
        emit_xenperf(&counters, &mut Emit::new(out, &self.guest, crate::SourceId::Xenperf, time_ns));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Lines as xenperf's printf formats lay them out (2 CPUs).
    fn plain() -> String {
        let mut s = String::new();
        s += &format!("{:<35} T={:>10}  {:>10} {:>10}\n", "exceptions", 300, 100, 200);
        s += &format!("{:<35} T={:>10} \n", "hypercalls", 80009);
        s += &format!("{:<35} T={:>10}  {:>10} {:>10}\n", "calls to multicall", 7, 3, 4);
        s
    }

    fn full() -> String {
        let mut hc = vec![0u32; 64];
        hc[1] = 9;
        hc[32] = 20000;
        hc[34] = 20000;
        hc[24] = 40000;
        let mut s = format!("{:<35} T={:>10}  {:>10} {:>10}\n", "exceptions", 300, 100, 200);
        s += &format!("{:<35} T={:>10} ", "hypercalls", 80009);
        for v in &hc {
            s += &format!(" {v:>10}");
        }
        s += "\n";
        s
    }

    fn pretty() -> String {
        let mut s = format!("{:<35} T={:>10}  {:>10} {:>10}\n", "exceptions", 300, 100, 200);
        s += &format!("{:<35} T={:>10} \n", "hypercalls", 80009);
        for (name, v) in
            [("mmu_update", 9), ("vcpu_op", 40000), ("event_channel_op", 20000), ("hvm_op", 20000), ("[60]", 5)]
        {
            s += &format!("{name:<35} {v:>12}\n");
        }
        s += &format!("{:<35} T={:>10}  {:>10} {:>10}\n", "calls to multicall", 7, 3, 4);
        s
    }

    #[test]
    fn plain_form() {
        let c = parse_xenperf(&plain()).unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(c[0], PerfCounter { name: "exceptions".into(), total: 300, values: vec![100, 200] });
        assert_eq!((c[1].total, c[1].values.len()), (80009, 0));
        assert_eq!(c[2].name, "calls to multicall");
    }

    #[test]
    fn full_and_pretty_agree_on_hypercalls() {
        let f = parse_xenperf(&full()).unwrap();
        let p = parse_xenperf(&pretty()).unwrap();
        assert_eq!(f[1].values.len(), 64);
        for op in [1usize, 24, 32, 34] {
            assert_eq!(f[1].values[op], p[1].values[op], "hypercall {op}");
        }
        assert_eq!(p[1].values[60], 5);
        assert_eq!(p[2].name, "calls to multicall");
        let guest: std::sync::Arc<str> = "xen".into();
        let mut out = Vec::new();
        emit_xenperf(&f, &mut Emit::new(&mut out, &guest, crate::SourceId::Xenperf, 0));
        let get = |n: &str| out.iter().find(|s| s.counter == n).map(|s| s.value);
        assert_eq!(get("hypercalls.event_channel_op"), Some(20000));
        assert_eq!(get("hypercalls.vcpu_op"), Some(40000));
        assert_eq!(get("hypercalls.grant_table_op"), None);
        assert_eq!(get("calls_to_multicall"), None, "not in the -f sample");
        assert!(out.iter().all(|s| s.kind == Kind::Counter32));
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse_xenperf("hello\n").is_err());
        assert!(parse_xenperf("x T=abc\n").is_err());
        assert!(parse_xenperf("mmu_update 5\n").is_err(), "hypercall line before any counter");
    }

    proptest! {
        #[test]
        fn never_panics(text in "\\PC*") {
            let _ = parse_xenperf(&text);
        }

        #[test]
        fn never_panics_on_near_misses(lines in proptest::collection::vec("[a-z_ \\[\\]0-9]{0,20}( T= *[0-9]{0,11})?( [0-9]{0,11}){0,3}", 0..8)) {
            let _ = parse_xenperf(&lines.join("\n"));
        }
    }
}
