//! The real xentrace recording (Xen 4.17, PV dom0 + domU, hypercall flood) against what the reference
//! parser (recipes/xen/parse_trace.py) printed for it.

use std::collections::BTreeMap;
use std::io::Read;

use telemetry::xen::xentrace::{Attribution, Domain, HypercallKey};
use telemetry::xen::{SEED_FEATURES, hypercall_number};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/docs/fixtures/xen");
const NAME: &str = "pv-dom0-domU-hypercall-flood";
const TSC_MHZ: f64 = 2596.149;

fn trace() -> Vec<u8> {
    let file = std::fs::File::open(format!("{DIR}/{NAME}.xentrace.xz")).expect("fixture present");
    let mut data = Vec::new();
    xz2::read::XzDecoder::new(file).read_to_end(&mut data).expect("valid xz");
    data
}

/// The reference's hypercall key: its name (or `hcN` for numbers its table lacks), `(sub)` for subcalls.
fn reference_key(name: &str) -> HypercallKey {
    let (base, subcall) = match name.strip_suffix("(sub)") {
        Some(b) => (b, true),
        None => (name, false),
    };
    let op = match base.strip_prefix("hc").and_then(|n| n.parse().ok()) {
        Some(op) => op,
        None => hypercall_number(base).unwrap_or_else(|| panic!("unknown hypercall name {base}")),
    };
    HypercallKey { op, subcall }
}

fn domain(s: &str) -> Domain {
    match s {
        "unk" => Domain::Unknown,
        "idle" => Domain::Idle,
        n => Domain::Id(n.parse().unwrap()),
    }
}

struct Expected {
    records: u64,
    switches: u64,
    totals: BTreeMap<Domain, u64>,
    all: BTreeMap<Domain, BTreeMap<HypercallKey, u64>>,
    windows: BTreeMap<(Domain, u64), [u64; 5]>,
}

fn expected() -> Expected {
    let text = std::fs::read_to_string(format!("{DIR}/{NAME}.expected.txt")).unwrap();
    let mut e =
        Expected { records: 0, switches: 0, totals: BTreeMap::new(), all: BTreeMap::new(), windows: BTreeMap::new() };
    let mut current = Domain::Unknown;
    for line in text.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("records=") {
            let (r, s) = rest.split_once(" sched_switches=").unwrap();
            e.records = r.parse().unwrap();
            e.switches = s.parse().unwrap();
        } else if let Some(rest) = t.strip_prefix("dom ") {
            let mut w = rest.split_whitespace();
            let dom = w.next().unwrap().trim_end_matches(':');
            current = domain(dom);
            let second = w.next().unwrap();
            if let Some(total) = second.strip_prefix("total=") {
                e.totals.insert(current, total.parse().unwrap());
            } else {
                let index: u64 = second.trim_start_matches('w').parse().unwrap();
                let v: Vec<u64> = w.map(|x| x.parse().unwrap()).collect();
                e.windows.insert((current, index), v.try_into().unwrap());
            }
        } else if let Some(dict) = t.strip_prefix("all: {") {
            let map = e.all.entry(current).or_default();
            for item in dict.trim_end_matches('}').split(", ") {
                let (k, v) = item.split_once(": ").unwrap();
                map.insert(reference_key(k.trim_matches('\'')), v.parse().unwrap());
            }
        }
    }
    e
}

#[test]
fn matches_the_reference_parser_on_the_real_recording() {
    let data = trace();
    assert_eq!(data.len(), 25_789_556);
    let started = std::time::Instant::now();
    let a = Attribution::of_trace(&data, Some((TSC_MHZ, 5.0))).unwrap();
    eprintln!("attributed {} records in {:?}", a.records, started.elapsed());
    let e = expected();

    assert_eq!(a.records, e.records);
    assert_eq!(a.sched_switches, e.switches);

    // Every hypercall of every domain, by number: identical.
    let got: BTreeMap<Domain, BTreeMap<HypercallKey, u64>> = a.counts().clone();
    assert_eq!(got.keys().collect::<Vec<_>>(), e.all.keys().collect::<Vec<_>>());
    for (dom, want) in &e.all {
        assert_eq!(&got[dom], want, "domain {dom}");
        assert_eq!(got[dom].values().sum::<u64>(), e.totals[dom], "total of domain {dom}");
    }

    // The seed-004 features per 5 s window: identical.
    // The reference prints every (domain, window) in which the domain made any hypercall.
    let windows: BTreeMap<(Domain, u64), [u64; 5]> = a
        .window_counts()
        .iter()
        .map(|(key, counts)| (*key, SEED_FEATURES.map(|f| Attribution::direct(counts, f))))
        .collect();
    assert_eq!(windows, e.windows);

    // The flood the recording was made for: 20000 calls of each of the five by domain 1 (the PV domU;
    // hvm_op fails with EINVAL but is still a hypercall). The domU's other traffic adds the rest.
    let dom1 = &got[&Domain::Id(1)];
    for f in SEED_FEATURES {
        assert!(Attribution::direct(dom1, f) >= 20_000, "{f}");
    }
}

#[test]
fn streamed_in_chunks_it_counts_as_the_whole_file_and_a_late_join_resynchronises() {
    use telemetry::xen::xentrace::TraceParser;
    let data = trace();
    let whole = Attribution::of_trace(&data, None).unwrap();
    // Chunks of odd, varying sizes (what a socket hands over), from a fixed pseudo-random sequence.
    let mut p = TraceParser::new();
    let (mut at, mut x) = (0usize, 12345u64);
    while at < data.len() {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let n = ((x >> 33) as usize % 70_000 + 1).min(data.len() - at);
        p.feed(&data[at..at + n]);
        at += n;
    }
    assert!(p.finish().is_ok());
    assert_eq!(p.attribution.counts(), whole.counts());
    assert_eq!((p.stats().skipped_bytes, p.stats().resyncs, p.stats().windows), (0, 0, 995));
    assert_eq!(p.attribution.records, whole.records);
    assert_eq!(p.attribution.lost_records, 0, "the recording lost nothing (its 0x1f002 records are wrap padding)");

    // Joined 10 MB in, in the middle of a record: bytes up to the next window are skipped, no
    // resync is needed after that, and every later window is followed.
    let start = 10_000_001;
    let mut late = TraceParser::new();
    late.feed(&data[start..]);
    assert!(late.finish().is_ok());
    let st = late.stats();
    assert!(st.skipped_bytes > 0 && st.skipped_bytes < 400_000, "{st:?}");
    assert_eq!(st.resyncs, 0, "{st:?}");
    assert!(st.windows > 500 && st.windows < 995, "{st:?}");
    let dom1 = &late.attribution.counts()[&Domain::Id(1)];
    assert!(Attribution::direct(dom1, "event_channel_op") >= 20_000, "the flood came late in the recording");
}
