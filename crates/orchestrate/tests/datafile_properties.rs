//! The data file reader faces text from outside (a shipped file, one edited by hand, one cut short or
//! damaged): whatever it is given, it returns guests or an error naming a line of the input, and
//! never panics. What it writes it reads back unchanged.

use detect::truth::{Span, Truth};
use orchestrate::datafile::{read, write};
use orchestrate::dataset::GuestData;
use proptest::prelude::*;
use telemetry::{GuestKind, Kind, Sample, SourceId};

fn name() -> impl Strategy<Value = String> {
    "[a-z0-9._-]{1,12}"
}

fn guest() -> impl Strategy<Value = GuestData> {
    (
        name(),
        prop::sample::select(GuestKind::ALL.to_vec()),
        prop::collection::vec(
            (
                any::<i64>(),
                prop::sample::select(SourceId::ALL.to_vec()),
                name(),
                any::<u64>(),
                prop::sample::select(vec![Kind::Counter, Kind::Counter32, Kind::Gauge]),
            ),
            0..20,
        ),
        prop::collection::vec(
            (
                any::<i64>(),
                1..1_000_000_000_000i64,
                prop::sample::select(vec![Truth::Normal, Truth::AttackVictim, Truth::AttackZombie, Truth::Unknown]),
                name(),
            ),
            0..5,
        ),
    )
        .prop_map(|(name, kind, samples, spans)| GuestData {
            samples: samples
                .into_iter()
                .map(|(time_ns, source, counter, value, kind)| Sample {
                    time_ns,
                    guest: name.as_str().into(),
                    source,
                    counter: counter.into(),
                    value,
                    kind,
                })
                .collect(),
            spans: spans
                .into_iter()
                .map(|(start_ns, len, truth, scenario)| Span {
                    start_ns: start_ns.min(i64::MAX - len),
                    end_ns: start_ns.min(i64::MAX - len) + len,
                    truth,
                    scenario,
                })
                .collect(),
            name,
            kind,
        })
}

/// Guests with distinct names.
fn guests() -> impl Strategy<Value = Vec<GuestData>> {
    prop::collection::vec(guest(), 1..4).prop_map(|mut v| {
        let mut seen = std::collections::BTreeSet::new();
        v.retain(|g| seen.insert(g.name.clone()));
        v
    })
}

fn text(data: &[GuestData]) -> String {
    let mut out = Vec::new();
    write(&mut out, data, &["a comment".into()]).unwrap();
    String::from_utf8(out).unwrap()
}

/// The result of reading `input`: never a panic; an error names a line that exists (or the line after
/// the last one, for a file that ends too early) and says something.
fn check(input: &[u8]) -> Result<Vec<GuestData>, orchestrate::datafile::ParseError> {
    let r = read(input);
    if let Err(e) = &r {
        let lines = input.split(|&b| b == b'\n').count().max(1);
        assert!(e.line >= 1 && e.line <= lines, "line {} of {lines}: {e}", e.line);
        assert!(!e.message.is_empty());
    }
    r
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn what_is_written_reads_back(data in guests()) {
        let back = check(text(&data).as_bytes()).unwrap();
        prop_assert_eq!(back.len(), data.len());
        for (a, b) in back.iter().zip(&data) {
            prop_assert_eq!(&a.name, &b.name);
            prop_assert_eq!(a.kind, b.kind);
            prop_assert_eq!(&a.samples, &b.samples);
            prop_assert_eq!(&a.spans, &b.spans);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = check(&bytes);
        // And behind a valid start, so the section parsers see them too.
        let mut v = b"vmguard-dataset 1\n[guests]\nguest,kind\n".to_vec();
        v.extend_from_slice(&bytes);
        let _ = check(&v);
    }

    #[test]
    fn one_replaced_line_is_read_or_named(data in guests(), at in any::<prop::sample::Index>(), line in "\\PC{0,60}") {
        let t = text(&data);
        let mut lines: Vec<&str> = t.lines().collect();
        let i = at.index(lines.len());
        lines[i] = &line;
        let input = lines.join("\n");
        let _ = check(input.as_bytes());
        // A line replaced inside [samples] (after its header) is a sample, a comment, or an error
        // naming exactly that line.
        let header = lines.iter().position(|l| *l == "time_ns,guest,source,counter,kind,value");
        if let Some(h) = header
            && i > h
            && let Err(e) = check(input.as_bytes())
        {
            prop_assert_eq!(e.line, i + 1, "{}", e);
        }
    }

    #[test]
    fn mutated_bytes_never_panic(
        data in guests(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..8),
    ) {
        let mut bytes = text(&data).into_bytes();
        for (at, b, op) in edits {
            if bytes.is_empty() {
                break;
            }
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = b,
                1 => bytes.insert(i, b),
                _ => { bytes.remove(i); }
            }
        }
        let _ = check(&bytes);
    }

    #[test]
    fn cut_short_never_panics(data in guests(), at in any::<prop::sample::Index>()) {
        let t = text(&data);
        let cut = at.index(t.len() + 1);
        let _ = check(&t.as_bytes()[..cut]);
    }
}
