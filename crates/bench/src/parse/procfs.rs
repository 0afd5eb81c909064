//! Host-wide kernel counters: `/proc/stat`, `/proc/softirqs`, `/proc/interrupts`, and the context
//! switches of `/proc/PID/status`.

use std::collections::BTreeMap;

use super::ParseError;

/// CPU time of the whole host (the `cpu` line of `/proc/stat`) in USER_HZ ticks, and the global counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProcStat {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
    /// Context switches since boot.
    pub ctxt: u64,
    /// Interrupts serviced since boot (first field of `intr`).
    pub intr: u64,
    /// Softirqs since boot (first field of `softirq`).
    pub softirqs: u64,
}

impl ProcStat {
    pub fn total(&self) -> u64 {
        [self.user, self.nice, self.system, self.idle, self.iowait, self.irq, self.softirq, self.steal]
            .iter()
            .fold(0u64, |a, &b| a.saturating_add(b))
    }
}

/// Shares of CPU time between two `/proc/stat` readings, in percent of all CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct CpuShare {
    pub busy_pct: f64,
    pub user_pct: f64,
    pub system_pct: f64,
    pub irq_pct: f64,
    pub softirq_pct: f64,
}

/// CPU shares and counter rates between two readings (`after` later than `before`). Counters that went
/// backwards count as zero.
pub fn cpu_share(before: &ProcStat, after: &ProcStat) -> CpuShare {
    let total = after.total().saturating_sub(before.total());
    if total == 0 {
        return CpuShare::default();
    }
    let pct = |a: u64, b: u64| 100.0 * a.saturating_sub(b) as f64 / total as f64;
    let idle = pct(after.idle.saturating_add(after.iowait), before.idle.saturating_add(before.iowait));
    CpuShare {
        busy_pct: (100.0 - idle).max(0.0),
        user_pct: pct(after.user.saturating_add(after.nice), before.user.saturating_add(before.nice)),
        system_pct: pct(after.system, before.system),
        irq_pct: pct(after.irq, before.irq),
        softirq_pct: pct(after.softirq, before.softirq),
    }
}

pub fn parse_stat(text: &str) -> Result<ProcStat, ParseError> {
    const TOOL: &str = "/proc/stat";
    let cpu = text
        .lines()
        .find_map(|l| l.strip_prefix("cpu "))
        .ok_or_else(|| ParseError::new(TOOL, "no aggregate `cpu ` line", text))?;
    let v: Vec<u64> = cpu.split_whitespace().map_while(|w| w.parse().ok()).collect();
    if v.len() < 4 {
        return Err(ParseError::new(
            TOOL,
            format!("the `cpu` line has {} numbers, expected at least 4", v.len()),
            text,
        ));
    }
    let at = |i: usize| v.get(i).copied().unwrap_or(0);
    let first = |prefix: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|w| w.parse().ok())
            .unwrap_or(0)
    };
    Ok(ProcStat {
        user: at(0),
        nice: at(1),
        system: at(2),
        idle: at(3),
        iowait: at(4),
        irq: at(5),
        softirq: at(6),
        steal: at(7),
        ctxt: first("ctxt "),
        intr: first("intr "),
        softirqs: first("softirq "),
    })
}

/// A table of per-CPU counters as `/proc/softirqs` and `/proc/interrupts` print it: row name → total
/// over all CPUs.
pub type CounterTable = BTreeMap<String, u64>;

/// `/proc/softirqs`: `NET_RX` → sum over CPUs.
pub fn parse_softirqs(text: &str) -> Result<CounterTable, ParseError> {
    parse_cpu_table(text, "/proc/softirqs")
}

/// `/proc/interrupts`: IRQ number or name (`LOC`, `NMI`, ...) → sum over CPUs.
pub fn parse_interrupts(text: &str) -> Result<CounterTable, ParseError> {
    parse_cpu_table(text, "/proc/interrupts")
}

fn parse_cpu_table(text: &str, tool: &'static str) -> Result<CounterTable, ParseError> {
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let cpus = header.split_whitespace().filter(|w| w.starts_with("CPU")).count();
    if cpus == 0 {
        return Err(ParseError::new(tool, "no `CPU0 CPU1 ...` header", text));
    }
    let mut table = CounterTable::new();
    for line in lines {
        let Some((name, rest)) = line.split_once(':') else { continue };
        let name = name.trim();
        if name.is_empty() {
            continue;
        }
        // Rows like `ERR:` carry one number only; IRQ rows end in a description.
        let total = rest
            .split_whitespace()
            .take(cpus)
            .map_while(|w| w.parse::<u64>().ok())
            .fold(0u64, |a, b| a.saturating_add(b));
        table.insert(name.to_string(), total);
    }
    if table.is_empty() {
        return Err(ParseError::new(tool, "no `NAME: count ...` rows", text));
    }
    Ok(table)
}

/// Counter-wise difference `after - before` (missing or decreasing counters give 0).
pub fn table_delta(before: &CounterTable, after: &CounterTable) -> CounterTable {
    after.iter().map(|(k, v)| (k.clone(), v.saturating_sub(before.get(k).copied().unwrap_or(0)))).collect()
}

/// `(voluntary, nonvoluntary)` context switches from `/proc/PID/status` (or a thread's).
pub fn parse_status_ctxt(text: &str) -> Result<(u64, u64), ParseError> {
    const TOOL: &str = "/proc/PID/status";
    let field = |name: &str| text.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse::<u64>().ok());
    match (field("voluntary_ctxt_switches:"), field("nonvoluntary_ctxt_switches:")) {
        (Some(v), Some(n)) => Ok((v, n)),
        _ => Err(ParseError::new(TOOL, "no `voluntary_ctxt_switches:` and `nonvoluntary_ctxt_switches:` lines", text)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const STAT: &str = include_str!("../../tests/fixtures/proc-stat.txt");
    const SOFTIRQS: &str = include_str!("../../tests/fixtures/proc-softirqs.txt");
    const INTERRUPTS: &str = include_str!("../../tests/fixtures/proc-interrupts.txt");
    const STATUS: &str = include_str!("../../tests/fixtures/proc-status.txt");

    #[test]
    fn real_files() {
        let s = parse_stat(STAT).unwrap();
        assert_eq!((s.user, s.system, s.idle, s.softirq), (243887, 56939, 121766, 21018));
        assert_eq!(s.ctxt, 3493059);
        assert_eq!(s.softirqs, 93013013);
        assert!(s.intr > 0);
        let t = parse_softirqs(SOFTIRQS).unwrap();
        assert_eq!(t["NET_RX"], 29034277 + 61152437);
        assert_eq!(t.len(), 10);
        let i = parse_interrupts(INTERRUPTS).unwrap();
        assert_eq!(i["26"], 14);
        assert_eq!(i["ERR"], 0);
        assert_eq!(i["HYP"], 39 + 78);
        let (v, n) = parse_status_ctxt(STATUS).unwrap();
        assert!(v + n > 0);
    }

    #[test]
    fn shares_and_deltas() {
        let a = ProcStat { user: 100, idle: 100, ..Default::default() };
        let b = ProcStat { user: 150, idle: 120, softirq: 30, ..Default::default() };
        let c = cpu_share(&a, &b);
        assert_eq!(c.busy_pct, 80.0);
        assert_eq!(c.softirq_pct, 30.0);
        assert_eq!(cpu_share(&b, &a), CpuShare::default());
        let before: CounterTable = [("NET_RX".to_string(), 5)].into();
        let after: CounterTable = [("NET_RX".to_string(), 9), ("X".to_string(), 2)].into();
        assert_eq!(table_delta(&before, &after)["NET_RX"], 4);
        assert_eq!(table_delta(&after, &before)["NET_RX"], 0);
    }

    #[test]
    fn garbage_is_a_clear_error() {
        assert!(parse_stat("").unwrap_err().to_string().contains("/proc/stat"));
        assert!(parse_stat("cpu  1 2").unwrap_err().to_string().contains("at least 4"));
        assert!(parse_softirqs("hello").unwrap_err().to_string().contains("header"));
        assert!(parse_interrupts("   CPU0\n").unwrap_err().to_string().contains("rows"));
        assert!(parse_status_ctxt("Name: x").is_err());
    }

    proptest! {
        #[test]
        fn never_panics(s in "(?s).{0,600}") {
            let _ = parse_stat(&s);
            let _ = parse_softirqs(&s);
            let _ = parse_interrupts(&s);
            let _ = parse_status_ctxt(&s);
        }

        #[test]
        fn never_panics_on_mangled_real_files(cut in 0usize..2500, junk in ".{0,20}") {
            for text in [STAT, SOFTIRQS, INTERRUPTS, STATUS] {
                let mut t: String = text.chars().take(cut).collect();
                t.push_str(&junk);
                let _ = parse_stat(&t);
                let _ = parse_softirqs(&t);
                let _ = parse_interrupts(&t);
                let _ = parse_status_ctxt(&t);
            }
        }

        #[test]
        fn huge_numbers_do_not_overflow(a in any::<u64>(), b in any::<u64>()) {
            let text = format!("   CPU0 CPU1\nNET_RX: {a} {b}\n");
            let _ = parse_softirqs(&text);
        }
    }
}
