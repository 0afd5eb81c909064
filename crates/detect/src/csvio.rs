//! Windows as CSV, over `impl Read` / `impl Write` or bytes in memory (no files here).
//!
//! Input layout (what `vmguard detect fit --input windows.csv` reads):
//! - a header line of column names, then one window per row;
//! - the label column (default `label`) is optional and used only for scoring, never as a feature;
//!   values `normal`/`benign`/`0` and `dos`/`attack`/`1` (any case), empty = unlabelled;
//! - id columns (default `guest`, `window_start`, `window_end`) are optional, kept verbatim as text and
//!   passed through to the output so each verdict can be traced back to its guest and window;
//! - every other column is a numeric feature (or only the columns in [`CsvOptions::features`], in that
//!   order, if given). A non-numeric value in a feature column is an error naming its line and column.
//!
//! Output layout ([`write_labels`]): the id columns, then `cluster`, then `predicted` (normal/dos) if a
//! mapping was applied; one row per input window, in input order.

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::{Label, Matrix};

mod parallel;

/// Which columns play which role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CsvOptions {
    /// Name of the optional ground-truth column.
    pub label_column: String,
    /// Names of optional pass-through identifier columns.
    pub id_columns: Vec<String>,
    /// If set, exactly these feature columns in this order (others are ignored); else every column that
    /// is neither the label nor an id column.
    pub features: Option<Vec<String>>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        Self {
            label_column: "label".into(),
            id_columns: vec!["guest".into(), "window_start".into(), "window_end".into()],
            features: None,
        }
    }
}

/// Windows read from CSV.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowTable {
    /// Feature names, in column order of `features`.
    pub feature_names: Vec<String>,
    /// One row per window.
    pub features: Matrix,
    /// Ground truth per window if the label column exists (`None` = unlabelled window).
    pub labels: Option<Vec<Option<Label>>>,
    /// Names of the id columns present in the input, in input order.
    pub id_names: Vec<String>,
    /// Id values: `ids[c][row]` for id column `c`.
    pub ids: Vec<Vec<String>>,
}

/// Why windows could not be read or written.
#[derive(Debug, Error)]
pub enum CsvError {
    /// The input is empty (no header line).
    #[error("the input is empty: expected a header line of feature names, then one window per row")]
    Empty,
    /// The CSV syntax is broken (unequal field counts, bad quoting, invalid UTF-8, I/O failure).
    #[error("CSV syntax error: {0} (every row needs the same number of fields as the header)")]
    Syntax(#[from] csv::Error),
    /// Two header columns have the same name.
    #[error("column '{0}' appears twice in the header: rename or drop one")]
    DuplicateColumn(String),
    /// A requested feature column is not in the header.
    #[error("feature column '{0}' is not in the header: check the name or the --features list")]
    MissingColumn(String),
    /// No feature column is left.
    #[error("no feature columns: the header has only label/id columns; add numeric feature columns")]
    NoFeatures,
    /// The header has no data rows after it.
    #[error("no windows: the input has a header but no data rows")]
    NoRows,
    /// A feature cell is not a number.
    #[error(
        "line {line}, column '{column}': '{value}' is not a number. Feature columns must be numeric; if this \
         is an identifier column, declare it as an id column"
    )]
    NotANumber { line: u64, column: String, value: String },
    /// A feature cell is NaN or infinite.
    #[error("line {line}, column '{column}': '{value}' is not finite; fix or drop that window")]
    NonFinite { line: u64, column: String, value: String },
    /// A label cell is not a known label.
    #[error("line {line}, column '{column}': label '{value}' is not normal/benign/0 or dos/attack/1 (empty = unknown)")]
    BadLabel { line: u64, column: String, value: String },
    /// The cluster ids (or predicted labels) to write do not match the number of windows.
    #[error("{got} values to write for {rows} windows: write exactly one per window")]
    LengthMismatch { rows: usize, got: usize },
}

/// Reads windows from CSV (see the module documentation for the layout).
///
/// Reads the whole input into memory, then parses it with [`read_windows_bytes`] (in parallel).
pub fn read_windows<R: Read>(mut input: R, opts: &CsvOptions) -> Result<WindowTable, CsvError> {
    let mut bytes = Vec::new();
    input.read_to_end(&mut bytes).map_err(|e| CsvError::Syntax(e.into()))?;
    read_windows_bytes(&bytes, opts)
}

/// Reads windows from CSV held in memory, splitting the rows over the rayon threads.
///
/// Gives exactly what [`read_windows_sequential`] gives, errors included: rows are split at line
/// ends and parsed in parallel only while the input is plain (no `"` after the header, every row as
/// wide as the header, every value valid); at the first thing the fast path does not handle, the
/// whole input is read again by [`read_windows_sequential`], which reports it with its line number.
pub fn read_windows_bytes(bytes: &[u8], opts: &CsvOptions) -> Result<WindowTable, CsvError> {
    read_windows_bytes_chunked(bytes, opts, parallel::MIN_CHUNK)
}

/// [`read_windows_bytes`] with chunks of at least `min_chunk` bytes: lets tests split small inputs
/// anywhere (between `\r` and `\n`, before a blank line, ...).
#[doc(hidden)]
pub fn read_windows_bytes_chunked(bytes: &[u8], opts: &CsvOptions, min_chunk: usize) -> Result<WindowTable, CsvError> {
    match parallel::read(bytes, opts, min_chunk) {
        Some(table) => Ok(table),
        None => read_windows_sequential(bytes, opts),
    }
}

/// Reads windows from CSV one record at a time with the `csv` crate: the reference reader (quoting,
/// precise errors), and the fallback of [`read_windows_bytes`].
pub fn read_windows_sequential(bytes: &[u8], opts: &CsvOptions) -> Result<WindowTable, CsvError> {
    let mut rdr = csv_reader(bytes);
    let mut rec = csv::ByteRecord::new();
    if !rdr.read_byte_record(&mut rec)? {
        return Err(CsvError::Empty);
    }
    let Layout { header, label_idx, id_idx, feat_idx } = Layout::resolve(&rec, opts)?;
    let mut data = Vec::new();
    let mut labels = label_idx.map(|_| Vec::new());
    let mut ids: Vec<Vec<String>> = vec![Vec::new(); id_idx.len()];
    let mut rows = 0usize;
    while rdr.read_byte_record(&mut rec)? {
        // Only errors need it, and counting is O(input): computed then.
        let line = || rec.position().map_or(rows as u64 + 2, |p| line_of(bytes, p));
        for &j in &feat_idx {
            let raw = rec.get(j).unwrap_or_default();
            let text = std::str::from_utf8(raw).ok();
            let v = text.and_then(|t| t.parse::<f64>().ok()).ok_or_else(|| CsvError::NotANumber {
                line: line(),
                column: header[j].clone(),
                value: String::from_utf8_lossy(raw).into_owned(),
            })?;
            if !v.is_finite() {
                return Err(CsvError::NonFinite {
                    line: line(),
                    column: header[j].clone(),
                    value: String::from_utf8_lossy(raw).into_owned(),
                });
            }
            data.push(v);
        }
        if let (Some(li), Some(labels)) = (label_idx, labels.as_mut()) {
            let raw = String::from_utf8_lossy(rec.get(li).unwrap_or_default());
            let l = if raw.is_empty() {
                None
            } else {
                Some(Label::parse(&raw).ok_or_else(|| CsvError::BadLabel {
                    line: line(),
                    column: header[li].clone(),
                    value: raw.clone().into_owned(),
                })?)
            };
            labels.push(l);
        }
        for (c, &j) in id_idx.iter().enumerate() {
            ids[c].push(String::from_utf8_lossy(rec.get(j).unwrap_or_default()).into_owned());
        }
        rows += 1;
    }
    if rows == 0 {
        return Err(CsvError::NoRows);
    }
    Ok(WindowTable {
        feature_names: feat_idx.iter().map(|&j| header[j].clone()).collect(),
        features: Matrix::new(rows, feat_idx.len(), data).expect("rows x features"),
        labels,
        id_names: id_idx.iter().map(|&j| header[j].clone()).collect(),
        ids,
    })
}

/// The 1-based line a record starts on. The csv crate's own `Position::line` is the line where its
/// reader *was* when the record began: before the `\n` of a CRLF, before skipped blank lines, and it
/// never counts a lone `\r`; so a bad cell in a CRLF file was reported one line too early.
fn line_of(bytes: &[u8], pos: &csv::Position) -> u64 {
    let start = usize::try_from(pos.byte()).unwrap_or(usize::MAX).min(bytes.len());
    let skipped = bytes[start..].iter().take_while(|&&b| b == b'\n' || b == b'\r').count();
    let before = &bytes[..start + skipped];
    let ends =
        before.iter().enumerate().filter(|&(i, &b)| b == b'\n' || (b == b'\r' && before.get(i + 1) != Some(&b'\n')));
    1 + ends.count() as u64
}

/// The one CSV dialect both readers use (the parallel one for the header).
fn csv_reader<R: Read>(input: R) -> csv::Reader<R> {
    csv::ReaderBuilder::new().has_headers(false).trim(csv::Trim::All).from_reader(input)
}

/// Which header column plays which role.
struct Layout {
    header: Vec<String>,
    label_idx: Option<usize>,
    /// Id columns, in header order.
    id_idx: Vec<usize>,
    /// Feature columns, in output order (a column may appear twice if `--features` names it twice).
    feat_idx: Vec<usize>,
}

impl Layout {
    fn resolve(rec: &csv::ByteRecord, opts: &CsvOptions) -> Result<Self, CsvError> {
        let header: Vec<String> = rec.iter().map(|f| String::from_utf8_lossy(f).into_owned()).collect();
        for (i, h) in header.iter().enumerate() {
            if header[..i].contains(h) {
                return Err(CsvError::DuplicateColumn(h.clone()));
            }
        }
        let label_idx = header.iter().position(|h| *h == opts.label_column);
        let id_idx: Vec<usize> = (0..header.len()).filter(|&i| opts.id_columns.contains(&header[i])).collect();
        let feat_idx: Vec<usize> = match &opts.features {
            Some(names) => names
                .iter()
                .map(|n| header.iter().position(|h| h == n).ok_or_else(|| CsvError::MissingColumn(n.clone())))
                .collect::<Result<_, _>>()?,
            None => (0..header.len()).filter(|&i| Some(i) != label_idx && !id_idx.contains(&i)).collect(),
        };
        if feat_idx.is_empty() {
            return Err(CsvError::NoFeatures);
        }
        Ok(Self { header, label_idx, id_idx, feat_idx })
    }
}

/// Writes one row per window: the table's id columns, `cluster`, and `predicted` if given.
pub fn write_labels<W: Write>(
    out: W,
    table: &WindowTable,
    clusters: &[usize],
    predicted: Option<&[Label]>,
) -> Result<(), CsvError> {
    let rows = table.features.nrows();
    if clusters.len() != rows {
        return Err(CsvError::LengthMismatch { rows, got: clusters.len() });
    }
    if let Some(p) = predicted
        && p.len() != rows
    {
        return Err(CsvError::LengthMismatch { rows, got: p.len() });
    }
    let mut w = csv::Writer::from_writer(out);
    let mut header: Vec<&str> = table.id_names.iter().map(String::as_str).collect();
    header.push("cluster");
    if predicted.is_some() {
        header.push("predicted");
    }
    w.write_record(&header)?;
    let mut buf = itoa_buf();
    let mut rec = csv::ByteRecord::new();
    for (i, &c) in clusters.iter().enumerate() {
        rec.clear();
        for col in &table.ids {
            rec.push_field(col[i].as_bytes());
        }
        rec.push_field(fmt_usize(&mut buf, c));
        if let Some(p) = predicted {
            rec.push_field(p[i].as_str().as_bytes());
        }
        w.write_byte_record(&rec)?;
    }
    w.flush().map_err(|e| CsvError::Syntax(e.into()))?;
    Ok(())
}

fn itoa_buf() -> [u8; 20] {
    [0; 20]
}

fn fmt_usize(buf: &mut [u8; 20], mut v: usize) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &buf[i..]
}

/// Writes a feature matrix as CSV with a header (e.g. scaled windows); `labels` adds a `label` column.
pub fn write_windows<W: Write>(
    out: W,
    feature_names: &[String],
    features: &Matrix,
    labels: Option<&[Option<Label>]>,
) -> Result<(), CsvError> {
    if let Some(l) = labels
        && l.len() != features.nrows()
    {
        return Err(CsvError::LengthMismatch { rows: features.nrows(), got: l.len() });
    }
    let mut w = csv::Writer::from_writer(out);
    let mut header: Vec<&str> = feature_names.iter().map(String::as_str).collect();
    if labels.is_some() {
        header.push("label");
    }
    w.write_record(&header)?;
    for (i, r) in features.rows().enumerate() {
        let mut rec: Vec<String> = r.iter().map(|v| v.to_string()).collect();
        if let Some(l) = labels {
            rec.push(l[i].map_or(String::new(), |l| l.to_string()));
        }
        w.write_record(&rec)?;
    }
    w.flush().map_err(|e| CsvError::Syntax(e.into()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_features_labels_and_ids() {
        let text = "guest,window_start,a,b,label\nvm1,0,1,2,normal\nvm2,60, 3 ,4e0,DoS\nvm3,120,5,6,\n";
        let t = read_windows(text.as_bytes(), &CsvOptions::default()).unwrap();
        assert_eq!(t.feature_names, ["a", "b"]);
        assert_eq!(t.features.as_slice(), &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(t.labels.as_deref(), Some(&[Some(Label::Normal), Some(Label::Dos), None][..]));
        assert_eq!(t.id_names, ["guest", "window_start"]);
        assert_eq!(t.ids[0], ["vm1", "vm2", "vm3"]);
        let mut out = Vec::new();
        write_labels(&mut out, &t, &[0, 1, 1], Some(&[Label::Normal, Label::Dos, Label::Dos])).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "guest,window_start,cluster,predicted\nvm1,0,0,normal\nvm2,60,1,dos\nvm3,120,1,dos\n"
        );
        assert!(matches!(write_labels(Vec::new(), &t, &[0], None), Err(CsvError::LengthMismatch { .. })));
    }

    #[test]
    fn selected_features_in_given_order() {
        let opts = CsvOptions { features: Some(vec!["b".into(), "a".into()]), ..Default::default() };
        let t = read_windows("a,b,c\n1,2,x\n".as_bytes(), &opts).unwrap();
        assert_eq!(t.features.as_slice(), &[2.0, 1.0]);
        let opts = CsvOptions { features: Some(vec!["z".into()]), ..Default::default() };
        assert!(matches!(read_windows("a\n1\n".as_bytes(), &opts), Err(CsvError::MissingColumn(c)) if c == "z"));
    }

    #[test]
    fn errors_name_line_and_column() {
        let err = read_windows("a,b\n1,2\n3,oops\n".as_bytes(), &CsvOptions::default()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("line 3") && msg.contains("'b'") && msg.contains("oops"), "{msg}");
        let err = read_windows("a,b\n1,NaN\n".as_bytes(), &CsvOptions::default()).unwrap_err();
        assert!(matches!(err, CsvError::NonFinite { line: 2, .. }), "{err}");
        let err = read_windows("a,label\n1,what\n".as_bytes(), &CsvOptions::default()).unwrap_err();
        assert!(matches!(err, CsvError::BadLabel { line: 2, .. }), "{err}");
        assert!(matches!(read_windows("".as_bytes(), &CsvOptions::default()), Err(CsvError::Empty)));
        assert!(matches!(read_windows("a,b\n".as_bytes(), &CsvOptions::default()), Err(CsvError::NoRows)));
        assert!(matches!(read_windows("label\n1\n".as_bytes(), &CsvOptions::default()), Err(CsvError::NoFeatures)));
        assert!(matches!(
            read_windows("a,a\n1,2\n".as_bytes(), &CsvOptions::default()),
            Err(CsvError::DuplicateColumn(_))
        ));
        let err = read_windows("a,b\n1,2\n3\n".as_bytes(), &CsvOptions::default()).unwrap_err();
        assert!(matches!(err, CsvError::Syntax(_)), "{err}");
        let err = read_windows("a,b\n1,\n".as_bytes(), &CsvOptions::default()).unwrap_err();
        assert!(matches!(err, CsvError::NotANumber { .. }), "{err}");
    }

    #[test]
    fn error_lines_count_crlf_cr_blank_and_quoted_lines() {
        let cases = [
            ("a,b\n1,2\n3,x\n", 3),
            ("a,b\r\n1,2\r\n3,x\r\n", 3),
            ("a,b\n\n\r\n3,x\n", 4),
            ("a,b\r1,2\r3,x\r", 3),
            ("a,b\n\"1\n\",2\n3,x\n", 4),
        ];
        for (text, want) in cases {
            let err = read_windows(text.as_bytes(), &CsvOptions::default()).unwrap_err();
            assert!(matches!(err, CsvError::NotANumber { line, .. } if line == want), "{text:?}: {err}");
        }
    }

    #[test]
    fn plain_input_takes_the_parallel_path() {
        let opts = CsvOptions::default();
        // CRLF, a lone CR, blank lines, spaces, an id and a label: all still plain.
        let text = "\u{feff}\"guest\",a , b,label\r\n\r\nvm1, 1,2.5e1 ,dos\rvm2,3,4,\n\n vm 3 ,-0,.5,0";
        for min_chunk in [1, 3, 1 << 20] {
            let fast = parallel::read(text.as_bytes(), &opts, min_chunk).expect("plain input");
            assert_eq!(fast, read_windows_sequential(text.as_bytes(), &opts).unwrap());
        }
        let t = read_windows(text.as_bytes(), &opts).unwrap();
        assert_eq!(t.ids[0], ["vm1", "vm2", "vm 3"]);
        assert_eq!(t.features.as_slice(), &[1.0, 25.0, 3.0, 4.0, -0.0, 0.5]);
        // Quotes in the body, or a bad cell: the sequential reader decides.
        assert!(parallel::read("a\n\"1\"\n".as_bytes(), &opts, 1).is_none());
        assert!(parallel::read("a,b\n1,x\n".as_bytes(), &opts, 1).is_none());
        assert!(parallel::read("a,b\n1,2,3\n".as_bytes(), &opts, 1).is_none());
    }

    #[test]
    fn write_windows_round_trips() {
        let m = Matrix::from_rows(&[[0.5, 1.0], [0.0, 0.25]]).unwrap();
        let names = vec!["x".to_string(), "y".to_string()];
        let mut out = Vec::new();
        write_windows(&mut out, &names, &m, Some(&[Some(Label::Dos), None])).unwrap();
        let t = read_windows(out.as_slice(), &CsvOptions::default()).unwrap();
        assert_eq!(t.features, m);
        assert_eq!(t.labels.unwrap(), vec![Some(Label::Dos), None]);
    }
}
