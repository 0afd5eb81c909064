//! From cell records to what people read: median, min and max per cell, the degradation under attack
//! per victim kind and benchmark, and the seed's Table 1 (CPU use of the idle victim under attack) and
//! Table 2 (profiling counters under attack vs idle). Pure functions of the records.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::matrix::{Benchmark, CellRecord, Phase};

/// Median, min and max of a figure over repetitions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Spread {
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
        Some(Spread { median, min: v[0], max: v[n - 1], n })
    }
}

/// One row of the main table: a cell group (victim, benchmark, settings) idle and under attack.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub group: String,
    pub victim: String,
    pub benchmark: Benchmark,
    pub syncookies: bool,
    pub attack_rate: String,
    pub backend: String,
    /// The defence the cells ran with (`none`: the victim as the lab set it up).
    pub mitigation: String,
    pub metric: String,
    pub unit: String,
    pub idle: Option<Spread>,
    pub attack: Option<Spread>,
    /// For throughput benchmarks: how much is lost under attack, in % of the idle median (positive:
    /// worse). For `idle-cpu`: extra host CPU under attack, in percentage points.
    pub degradation: Option<f64>,
    pub failed: usize,
    pub errors: Vec<String>,
}

/// Group records by everything but phase and repetition; rows in matrix order.
pub fn rows(records: &[CellRecord]) -> Vec<Row> {
    let mut order: Vec<String> = Vec::new();
    let mut groups: BTreeMap<String, Vec<&CellRecord>> = BTreeMap::new();
    for r in records {
        let g = r.cell.group_key();
        if !groups.contains_key(&g) {
            order.push(g.clone());
        }
        groups.entry(g).or_default().push(r);
    }
    order
        .into_iter()
        .map(|g| {
            let rs = &groups[&g];
            let c = rs[0].cell;
            let values = |p: Phase| -> Vec<f64> {
                rs.iter().filter(|r| r.cell.phase == p && r.ok).filter_map(|r| r.value).collect()
            };
            let idle = Spread::of(&values(Phase::Idle));
            let attack = Spread::of(&values(Phase::Attack));
            let degradation = match (idle, attack) {
                (Some(i), Some(a)) if c.benchmark.higher_is_better() && i.median > 0.0 => {
                    Some(100.0 * (i.median - a.median) / i.median)
                }
                (Some(i), Some(a)) if !c.benchmark.higher_is_better() => Some(a.median - i.median),
                _ => None,
            };
            let mut errors: Vec<String> = rs.iter().filter_map(|r| r.error.clone()).collect();
            errors.dedup();
            let (metric, unit) = c.benchmark.metric();
            Row {
                group: g.clone(),
                victim: c.victim.to_string(),
                benchmark: c.benchmark,
                syncookies: c.syncookies,
                attack_rate: c.attack_rate.to_string(),
                backend: c.backend.map(|b| b.as_str().to_string()).unwrap_or_else(|| "-".into()),
                mitigation: c.mitigation.to_string(),
                metric: metric.into(),
                unit: unit.into(),
                idle,
                attack,
                degradation,
                failed: rs.iter().filter(|r| !r.ok).count(),
                errors,
            }
        })
        .collect()
}

/// Table 1: CPU use of the idle system under attack, per victim (medians over `idle-cpu` cells).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CpuRow {
    pub victim: String,
    pub phase: Phase,
    pub host_busy_pct: f64,
    pub softirq_pct: f64,
    pub system_pct: f64,
    pub user_pct: f64,
    /// The victim's host-side processes (qemu, container init, server), % of one core.
    pub victim_cpu_pct: f64,
    /// Busiest host-side threads of the victim (qemu's vCPU and I/O threads), % of one core.
    pub top_threads: Vec<(String, f64)>,
    pub flood_pps: Option<f64>,
}

fn median_of<'a>(rs: impl Iterator<Item = &'a CellRecord>, f: impl Fn(&CellRecord) -> Option<f64>) -> Option<f64> {
    Spread::of(&rs.filter_map(f).collect::<Vec<_>>()).map(|s| s.median)
}

/// The victims of the records, in the order they first appear.
fn victims_in_order(records: &[CellRecord]) -> Vec<String> {
    let mut victims: Vec<String> = Vec::new();
    for r in records {
        let v = r.cell.victim.to_string();
        if !victims.contains(&v) {
            victims.push(v);
        }
    }
    victims
}

pub fn cpu_table(records: &[CellRecord]) -> Vec<CpuRow> {
    let mut out = Vec::new();
    for v in victims_in_order(records) {
        for phase in [Phase::Idle, Phase::Attack] {
            let sel = || {
                records.iter().filter(|r| {
                    r.cell.victim.as_str() == v
                        && r.cell.phase == phase
                        && r.cell.benchmark == Benchmark::IdleCpu
                        && r.ok
                })
            };
            let Some(busy) = median_of(sel(), |r| r.host.as_ref().map(|h| h.busy_pct)) else { continue };
            let mut threads: BTreeMap<String, Vec<f64>> = BTreeMap::new();
            for r in sel() {
                for (t, pct) in r.host.iter().flat_map(|h| h.victim_threads_pct.iter()) {
                    threads.entry(t.clone()).or_default().push(*pct);
                }
            }
            let mut top: Vec<(String, f64)> =
                threads.into_iter().filter_map(|(t, v)| Spread::of(&v).map(|s| (t, s.median))).collect();
            top.sort_by(|a, b| b.1.total_cmp(&a.1));
            top.truncate(3);
            out.push(CpuRow {
                victim: v.clone(),
                phase,
                host_busy_pct: busy,
                softirq_pct: median_of(sel(), |r| r.host.as_ref().map(|h| h.softirq_pct)).unwrap_or(0.0),
                system_pct: median_of(sel(), |r| r.host.as_ref().map(|h| h.system_pct)).unwrap_or(0.0),
                user_pct: median_of(sel(), |r| r.host.as_ref().map(|h| h.user_pct)).unwrap_or(0.0),
                victim_cpu_pct: median_of(sel(), |r| r.host.as_ref().map(|h| h.victim_cpu_pct)).unwrap_or(0.0),
                top_threads: top,
                flood_pps: median_of(sel(), |r| r.flood.as_ref().map(|f| f.achieved_pps)),
            });
        }
    }
    out
}

/// Web loss under attack for one victim kind and defence (the seed's conclusion, checked per kind).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DefenceRow {
    pub victim: String,
    pub mitigation: String,
    pub idle_rps: Option<f64>,
    pub attack_rps: Option<f64>,
    /// Requests/s lost under attack, % of the idle median with the same defence.
    pub web_loss_pct: Option<f64>,
    /// The reason the defence could not run here, if it could not.
    pub unavailable: Option<String>,
}

/// Victim kind x defence -> web loss, from the web rows; empty when the run had no defence.
pub fn defence_table(records: &[CellRecord]) -> Vec<DefenceRow> {
    let web: Vec<Row> = rows(records).into_iter().filter(|r| r.benchmark == Benchmark::Web).collect();
    if web.iter().all(|r| r.mitigation == "none") {
        return Vec::new();
    }
    web.into_iter()
        .map(|r| DefenceRow {
            unavailable: (r.idle.is_none() && r.attack.is_none()).then(|| r.errors.first().cloned()).flatten(),
            victim: r.victim,
            mitigation: r.mitigation,
            idle_rps: r.idle.map(|s| s.median),
            attack_rps: r.attack.map(|s| s.median),
            web_loss_pct: r.degradation,
        })
        .collect()
}

/// The two-tier web benchmark of one victim in one phase: medians over its repetitions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WebTierRow {
    pub victim: String,
    pub phase: Phase,
    pub requests_per_sec: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// CPU of the web tier and of the database tier (MariaDB), % of one core, as the victim counts it.
    pub web_tier_cpu_pct: Option<f64>,
    pub db_tier_cpu_pct: Option<f64>,
}

/// The web cells per victim and phase, with each tier's CPU.
pub fn web_tiers(records: &[CellRecord]) -> Vec<WebTierRow> {
    let mut out = Vec::new();
    for v in victims_in_order(records) {
        for phase in [Phase::Idle, Phase::Attack] {
            let sel = || {
                records.iter().filter(|r| {
                    r.ok && r.cell.victim.as_str() == v && r.cell.phase == phase && r.cell.benchmark == Benchmark::Web
                })
            };
            if sel().next().is_none() {
                continue;
            }
            let fig = |k: &'static str| median_of(sel(), move |r| r.figures.get(k).copied());
            out.push(WebTierRow {
                victim: v.clone(),
                phase,
                requests_per_sec: fig("requests_per_sec"),
                p50_ms: fig("p50_ms"),
                p99_ms: fig("p99_ms"),
                web_tier_cpu_pct: fig("web_tier_cpu_pct"),
                db_tier_cpu_pct: fig("db_tier_cpu_pct"),
            });
        }
    }
    out
}

/// Table 2: one profiling counter of one victim, idle and under attack (per second, medians over
/// `idle-cpu` cells), with the ratio.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProfileRow {
    pub victim: String,
    pub counter: String,
    pub idle: Option<f64>,
    pub attack: Option<f64>,
    pub ratio: Option<f64>,
}

/// Reads one figure of a record.
type Figure = Box<dyn Fn(&CellRecord) -> Option<f64>>;

/// Counters of Table 2, in order: host-wide ones, the victim's processes, then KVM exits and
/// tracepoints where telemetry has them (none under TCG).
pub fn profile_table(records: &[CellRecord]) -> Vec<ProfileRow> {
    let mut out = Vec::new();
    for v in victims_in_order(records) {
        let sel = |phase: Phase| {
            records
                .iter()
                .filter(|r| {
                    r.cell.victim.as_str() == v && r.cell.phase == phase && r.cell.benchmark == Benchmark::IdleCpu
                })
                .filter(|r| r.ok)
                .collect::<Vec<_>>()
        };
        let (idle, attack) = (sel(Phase::Idle), sel(Phase::Attack));
        if idle.is_empty() && attack.is_empty() {
            continue;
        }
        let mut counters: Vec<(String, Figure)> = vec![
            ("context switches/s (host)".into(), Box::new(|r| r.host.as_ref().map(|h| h.ctxt_per_sec))),
            ("interrupts/s (host)".into(), Box::new(|r| r.host.as_ref().map(|h| h.intr_per_sec))),
            ("NET_RX softirqs/s (host)".into(), Box::new(|r| r.host.as_ref().map(|h| h.net_rx_per_sec))),
            ("softirq CPU % (host)".into(), Box::new(|r| r.host.as_ref().map(|h| h.softirq_pct))),
            (
                "victim processes: context switches/s".into(),
                Box::new(|r| r.host.as_ref().map(|h| h.victim_ctxt_per_sec)),
            ),
            ("victim processes: CPU % of a core".into(), Box::new(|r| r.host.as_ref().map(|h| h.victim_cpu_pct))),
        ];
        let mut extra: Vec<String> = attack
            .iter()
            .chain(idle.iter())
            .flat_map(|r| r.host.iter().flat_map(|h| h.telemetry_per_sec.keys().cloned()))
            .filter(|k| k.starts_with("kvm.") || k.starts_with("tracepoint.") || k.contains("rx_packets"))
            .collect();
        extra.sort();
        extra.dedup();
        for k in extra {
            let key = k.clone();
            counters.push((
                format!("{k}/s"),
                Box::new(move |r| r.host.as_ref().and_then(|h| h.telemetry_per_sec.get(&key).copied())),
            ));
        }
        for (name, f) in counters {
            let i = median_of(idle.iter().copied(), &f);
            let a = median_of(attack.iter().copied(), &f);
            let ratio = match (i, a) {
                (Some(i), Some(a)) if i > 0.0 => Some(a / i),
                _ => None,
            };
            out.push(ProfileRow { victim: v.clone(), counter: name, idle: i, attack: a, ratio });
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::matrix::{HostFigures, MatrixSpec};

    /// Records for a quick matrix with made-up figures: attack halves throughput on qemu.
    pub(crate) fn fake_records() -> Vec<CellRecord> {
        let m = MatrixSpec::quick(lab::Rate::BitsPerSec(10_000_000));
        m.cells()
            .into_iter()
            .map(|cell| {
                let attack = cell.phase == Phase::Attack;
                let hit = if attack && cell.victim == lab::VictimKind::Qemu {
                    0.5
                } else if attack {
                    0.95
                } else {
                    1.0
                };
                let host = HostFigures {
                    secs: 2.0,
                    busy_pct: if attack { 60.0 } else { 5.0 },
                    softirq_pct: if attack { 30.0 } else { 0.5 },
                    ctxt_per_sec: if attack { 9000.0 } else { 3000.0 },
                    intr_per_sec: 1000.0,
                    net_rx_per_sec: if attack { 20000.0 } else { 10.0 },
                    victim_cpu_pct: if attack { 40.0 } else { 1.0 },
                    victim_threads_pct: [("CPU 0/TCG".to_string(), 35.0)].into(),
                    ..Default::default()
                };
                let ok = cell.benchmark != Benchmark::Fileio || cell.victim != lab::VictimKind::Container;
                let value = if cell.benchmark == Benchmark::IdleCpu { host.busy_pct } else { 100.0 * hit };
                CellRecord {
                    cell,
                    ok,
                    error: (!ok).then(|| "no space".to_string()),
                    metric: cell.benchmark.metric().0.into(),
                    value: ok.then_some(value),
                    figures: Default::default(),
                    host: Some(host),
                    flood: None,
                    accelerator: None,
                    elapsed_secs: 2.0,
                    runs: 1,
                }
            })
            .collect()
    }

    #[test]
    fn spread_and_rows() {
        assert_eq!(Spread::of(&[3.0, 1.0, 2.0]).unwrap().median, 2.0);
        assert_eq!(Spread::of(&[4.0, 1.0]).unwrap().median, 2.5);
        assert!(Spread::of(&[f64::NAN]).is_none());
        let rows = rows(&fake_records());
        assert_eq!(rows.len(), 3 * Benchmark::ALL.len());
        let q = rows.iter().find(|r| r.victim == "qemu" && r.benchmark == Benchmark::Web).unwrap();
        assert!((q.degradation.unwrap() - 50.0).abs() < 1e-9);
        let c = rows.iter().find(|r| r.victim == "container" && r.benchmark == Benchmark::Fileio).unwrap();
        assert_eq!((c.failed, c.degradation), (2, None));
        let idle = rows.iter().find(|r| r.benchmark == Benchmark::IdleCpu).unwrap();
        assert_eq!(idle.degradation, Some(55.0));
    }

    #[test]
    fn tables() {
        let recs = fake_records();
        let t1 = cpu_table(&recs);
        assert_eq!(t1.len(), 6);
        assert_eq!(t1[1].phase, Phase::Attack);
        assert_eq!(t1[1].top_threads[0].0, "CPU 0/TCG");
        let t2 = profile_table(&recs);
        let rx = t2.iter().find(|r| r.victim == "qemu" && r.counter.starts_with("NET_RX")).unwrap();
        assert_eq!(rx.ratio, Some(2000.0));
    }

    #[test]
    fn the_defence_table_compares_each_defence_with_its_own_idle() {
        let recs = fake_records();
        assert!(defence_table(&recs).is_empty(), "no defence in the run: no table");
        let mut with = recs.clone();
        with.extend(recs.iter().filter(|r| r.cell.benchmark == Benchmark::Web).map(|r| {
            let mut r = r.clone();
            r.cell.mitigation = crate::Mitigation::IngressFilter;
            // The filter keeps qemu's attack throughput at its idle level.
            if r.cell.victim == lab::VictimKind::Qemu {
                r.value = Some(100.0);
            }
            r
        }));
        let t = defence_table(&with);
        assert_eq!(t.len(), 6, "3 victims x 2 defences");
        let q = |m: &str| t.iter().find(|d| d.victim == "qemu" && d.mitigation == m).unwrap().web_loss_pct;
        assert_eq!((q("none"), q("ingress-filter")), (Some(50.0), Some(0.0)));
    }

    #[test]
    fn web_tiers_take_medians_and_leave_out_what_is_missing() {
        let mut recs = fake_records();
        for r in recs.iter_mut().filter(|r| r.cell.benchmark == Benchmark::Web) {
            r.figures.insert("requests_per_sec".into(), r.value.unwrap());
            if r.cell.victim != lab::VictimKind::Qemu {
                r.figures.insert("db_tier_cpu_pct".into(), 40.0);
            }
        }
        let t = web_tiers(&recs);
        assert_eq!(t.len(), 6, "3 victims x 2 phases");
        let q = t.iter().find(|r| r.victim == "qemu" && r.phase == Phase::Attack).unwrap();
        assert_eq!((q.requests_per_sec, q.db_tier_cpu_pct), (Some(50.0), None));
        let v = t.iter().find(|r| r.victim == "vanilla" && r.phase == Phase::Idle).unwrap();
        assert_eq!(v.db_tier_cpu_pct, Some(40.0));
    }
}
