//! The parallel CSV reader gives exactly what the sequential `csv`-crate reader gives: the same
//! table (bit for bit) or the same error message, on random CSVs with quoting, CRLF / CR line ends,
//! blank lines, missing label or id columns, padded cells, bad cells and ragged rows, split into
//! chunks at every possible place.

use detect::csvio::{read_windows_bytes, read_windows_bytes_chunked, read_windows_sequential};
use detect::{CsvError, CsvOptions, WindowTable};
use proptest::prelude::*;

const NAMES: [&str; 7] = ["a", "b", "c", "d", "label", "guest", "window_start"];
const LABELS: [&str; 8] = ["normal", "dos", "0", "1", "", "Benign", " attack ", "DOS"];
/// Cells that the fast path must hand over to the sequential reader.
const JUNK: [&str; 14] =
    ["NaN", "inf", "oops", "", "\"5\"", "\"a,b\"", "\"x\ny\"", "1,2", "1e400", "\"\"", "1\"2", "wat", " ", "\u{e9}"];
const LINE_ENDS: [&str; 3] = ["\n", "\r\n", "\r"];

#[derive(Debug, Clone)]
struct Spec {
    cols: Vec<&'static str>,
    /// Per row, per column: a kind and a value, rendered by the column's role.
    rows: Vec<Vec<(u8, i64)>>,
    /// Per row: line end (index into LINE_ENDS) and a blank line after it or not.
    ends: Vec<(usize, bool)>,
    trailing_end: bool,
    /// (row, column, junk index): one bad cell; or a row with one field fewer.
    junk: Option<(usize, usize, usize)>,
    short_row: Option<usize>,
    bom: bool,
    quoted_header: bool,
    /// `--features`: indices into `cols` (may repeat), or one unknown name.
    features: Option<Vec<usize>>,
    unknown_feature: bool,
    min_chunk: usize,
}

fn feature_cell(kind: u8, v: i64) -> String {
    match kind % 6 {
        0 | 1 => v.to_string(),
        2 => (v as f64 / 1000.0).to_string(),
        3 => format!("{:e}", v as f64 * 1.5),
        4 => format!(" {v}\t"),
        _ => format!("{v}.5"),
    }
}

fn render(s: &Spec) -> Vec<u8> {
    let mut out = String::new();
    if s.bom {
        out.push('\u{feff}');
    }
    let header: Vec<String> =
        s.cols.iter().map(|c| if s.quoted_header { format!("\"{c}\"") } else { c.to_string() }).collect();
    out.push_str(&header.join(","));
    out.push_str(if s.rows.is_empty() && !s.trailing_end { "" } else { "\n" });
    for (r, row) in s.rows.iter().enumerate() {
        let mut cells: Vec<String> = s
            .cols
            .iter()
            .zip(row)
            .map(|(&c, &(k, v))| match c {
                "label" => LABELS[k as usize % LABELS.len()].to_string(),
                "guest" | "window_start" => {
                    if k % 7 == 0 {
                        String::new()
                    } else {
                        format!("g{}{}", v.rem_euclid(100), if k % 3 == 0 { " x" } else { "" })
                    }
                }
                _ => feature_cell(k, v),
            })
            .collect();
        if let Some((jr, jc, j)) = s.junk
            && jr == r
        {
            cells[jc % s.cols.len()] = JUNK[j % JUNK.len()].to_string();
        }
        if s.short_row == Some(r) {
            cells.pop();
        }
        out.push_str(&cells.join(","));
        let (end, blank) = s.ends[r];
        let last = r + 1 == s.rows.len();
        if !last || s.trailing_end {
            out.push_str(LINE_ENDS[end]);
        }
        if blank && !last {
            out.push_str(LINE_ENDS[(end + 1) % 3]);
        }
    }
    out.into_bytes()
}

fn spec() -> impl Strategy<Value = Spec> {
    (prop::sample::subsequence(NAMES.to_vec(), 1..=NAMES.len()).prop_shuffle(), 0usize..25).prop_flat_map(
        |(cols, nrows)| {
            let ncols = cols.len();
            (
                Just(cols),
                prop::collection::vec(prop::collection::vec((any::<u8>(), -100_000i64..100_000), ncols), nrows),
                prop::collection::vec((0usize..3, prop::bool::weighted(0.15)), nrows),
                any::<bool>(),
                prop::option::weighted(0.3, (0..nrows.max(1), 0..ncols, 0..JUNK.len())),
                prop::option::weighted(0.05, 0..nrows.max(1)),
                (prop::bool::weighted(0.1), prop::bool::weighted(0.2)),
                prop::option::weighted(0.2, prop::collection::vec(0..ncols, 1..4)),
                prop::bool::weighted(0.03),
                prop_oneof![Just(1usize), 1usize..64, Just(1 << 20)],
            )
                .prop_map(
                    |(
                        cols,
                        rows,
                        ends,
                        trailing_end,
                        junk,
                        short_row,
                        (bom, quoted_header),
                        features,
                        unknown_feature,
                        min_chunk,
                    )| Spec {
                        cols,
                        rows,
                        ends,
                        trailing_end,
                        junk,
                        short_row,
                        bom,
                        quoted_header,
                        features,
                        unknown_feature,
                        min_chunk,
                    },
                )
        },
    )
}

fn options(s: &Spec) -> CsvOptions {
    let mut features: Option<Vec<String>> =
        s.features.as_ref().map(|f| f.iter().map(|&i| s.cols[i].to_string()).collect());
    if s.unknown_feature {
        features.get_or_insert_with(Vec::new).push("zz".into());
    }
    CsvOptions { features, ..CsvOptions::default() }
}

/// Tables compare bit for bit (so `-0.0` vs `0.0` would show); errors by their message.
fn same(a: &Result<WindowTable, CsvError>, b: &Result<WindowTable, CsvError>) -> Result<(), String> {
    match (a, b) {
        (Ok(x), Ok(y)) => {
            let bits = |t: &WindowTable| t.features.as_slice().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            if x == y && bits(x) == bits(y) { Ok(()) } else { Err(format!("tables differ:\n{x:?}\n{y:?}")) }
        }
        (Err(x), Err(y)) if x.to_string() == y.to_string() => Ok(()),
        _ => Err(format!("{a:?}\nvs\n{b:?}")),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn parallel_reader_matches_sequential(s in spec()) {
        let bytes = render(&s);
        let opts = options(&s);
        let want = read_windows_sequential(bytes.as_slice(), &opts);
        let got = read_windows_bytes_chunked(&bytes, &opts, s.min_chunk);
        if let Err(e) = same(&got, &want) {
            return Err(TestCaseError::fail(format!("{e}\ninput: {:?}", String::from_utf8_lossy(&bytes))));
        }
    }

    #[test]
    fn parallel_reader_matches_sequential_on_any_bytes(
        bytes in prop::collection::vec(prop::sample::select(b"a,b1.e-\"\r\n label0 ".to_vec()), 0..200),
        min_chunk in 1usize..16,
    ) {
        let opts = CsvOptions::default();
        let want = read_windows_sequential(bytes.as_slice(), &opts);
        let got = read_windows_bytes_chunked(&bytes, &opts, min_chunk);
        if let Err(e) = same(&got, &want) {
            return Err(TestCaseError::fail(format!("{e}\ninput: {:?}", String::from_utf8_lossy(&bytes))));
        }
    }
}

/// A few MiB, so the default chunking splits it over the threads; an error near the end must still
/// name its line.
#[test]
fn large_input_splits_and_errors_keep_their_line() {
    let mut text = String::from("guest,a,b,c,label\r\n");
    let rows = 200_000;
    for i in 0..rows {
        text.push_str(&format!("vm{},{},{}.25,{:e},{}\r\n", i % 7, i, i % 1000, i as f64 * 3.5, i % 2));
    }
    let opts = CsvOptions::default();
    let t = read_windows_bytes(text.as_bytes(), &opts).unwrap();
    assert_eq!(t.features.nrows(), rows);
    assert_eq!(t, read_windows_sequential(text.as_bytes(), &opts).unwrap());
    text.push_str("vm1,1,2,x3,0\r\n");
    let err = read_windows_bytes(text.as_bytes(), &opts).unwrap_err();
    assert!(
        matches!(&err, CsvError::NotANumber { line, column, .. } if *line == rows as u64 + 2 && column == "c"),
        "{err}"
    );
}
