//! The fast path of [`super::read_windows_bytes`]: plain CSV split at line ends, chunks parsed on the
//! rayon threads.
//!
//! It only has to be right when it succeeds: anything it does not handle (a `"` after the header, a
//! row wider or narrower than the header, a bad number or label) makes it give up with `None`, and
//! the caller reads the input again with the sequential reader, which then gives the same table or
//! the precise error (line, column, value). So nothing here tracks line numbers.
//!
//! Without quotes, the `csv` crate's dialect (comma, `\n`, `\r` or `\r\n` ends a record, blank
//! lines skipped, fields trimmed of ASCII whitespace) is: records are the non-empty runs between
//! `\n`/`\r` bytes, fields are what lies between commas. That is what makes the split safe: every
//! `\n` or `\r` ends a record.
//!
//! Floats: `fast-float2`, measured in this reader on the 1,000,000 x 8 file of
//! `scripts/detect-vs-sklearn.sh` (integer counters), one thread, best of 8: 0.121 s with
//! `fast-float2`, 0.131 s with `lexical-core`, 0.172 s with `str::parse::<f64>`; on 17-digit
//! decimals (what `write_windows` prints) `lexical-core` was faster in a micro-benchmark (24 vs
//! 39 ns), but this crate's inputs are counters, and `fast-float2` is one small crate where
//! `lexical-core` brings five. A hand-written integer path in front of it was slower, not faster.
//! Both accept exactly what `str::parse` accepts on the edge cases we checked (`inf`, `nan`, `1.`,
//! `.5`, `+`, `1e`, spaces) and round correctly, so values are bit-identical; whatever the fast
//! parser rejects still goes to `str::parse` through the fallback.

use memchr::{memchr, memchr2, memchr2_iter};
use rayon::prelude::*;

use super::{CsvOptions, Layout, WindowTable};
use crate::{Label, Matrix};

/// Below this, one chunk: spreading a small file over threads costs more than it saves.
pub(super) const MIN_CHUNK: usize = 1 << 20;
/// Chunks per thread: several, so a thread slowed by other work on the machine gets fewer.
const CHUNKS_PER_THREAD: usize = 8;

/// What one header column feeds.
struct Col {
    /// Positions in the feature row (a column named twice in `--features` feeds two).
    slots: Vec<usize>,
    label: bool,
    /// Index among the id columns.
    id: Option<usize>,
}

/// The table, or `None` for "read it with the sequential reader".
pub(super) fn read(bytes: &[u8], opts: &CsvOptions, min_chunk: usize) -> Option<WindowTable> {
    // The header goes through the csv crate itself (BOM, quotes in names, the same trimming).
    let mut rdr = super::csv_reader(bytes);
    let mut rec = csv::ByteRecord::new();
    if !rdr.read_byte_record(&mut rec).ok()? {
        return None;
    }
    let layout = Layout::resolve(&rec, opts).ok()?;
    let body = bytes.get(usize::try_from(rdr.position().byte()).ok()?..)?;
    if memchr(b'"', body).is_some() {
        return None;
    }
    let mut cols: Vec<Col> = (0..layout.header.len())
        .map(|j| Col {
            slots: Vec::new(),
            label: layout.label_idx == Some(j),
            id: layout.id_idx.iter().position(|&i| i == j),
        })
        .collect();
    for (slot, &j) in layout.feat_idx.iter().enumerate() {
        cols[j].slots.push(slot);
    }
    let nfeat = layout.feat_idx.len();
    let nids = layout.id_idx.len();
    let chunks = split(body, min_chunk.max(1));
    // Counting first lets every chunk write its rows straight into the one table: no per-chunk
    // vectors to concatenate (a second copy of every value, and twice the fresh pages to fault in).
    let counts: Vec<usize> = chunks.par_iter().map(|c| count_records(c)).collect();
    let rows: usize = counts.iter().sum();
    if rows == 0 {
        return None;
    }
    let mut data = vec![0.0; rows.checked_mul(nfeat)?];
    let mut labels = layout.label_idx.map(|_| vec![None; rows]);
    let mut jobs = Vec::with_capacity(chunks.len());
    let (mut data_rest, mut label_rest) = (data.as_mut_slice(), labels.as_deref_mut().unwrap_or_default());
    for (&chunk, &n) in chunks.iter().zip(&counts) {
        let (d, rest) = std::mem::take(&mut data_rest).split_at_mut(n * nfeat);
        data_rest = rest;
        let (l, rest) = std::mem::take(&mut label_rest).split_at_mut(if layout.label_idx.is_some() { n } else { 0 });
        label_rest = rest;
        jobs.push((chunk, d, l));
    }
    let id_parts: Vec<Option<Vec<Vec<String>>>> =
        jobs.into_par_iter().map(|(chunk, d, l)| parse_chunk(chunk, &cols, Out { data: d, labels: l }, nids)).collect();
    let mut ids: Vec<Vec<String>> = vec![Vec::with_capacity(rows); nids];
    for part in id_parts {
        for (all, mut part) in ids.iter_mut().zip(part?) {
            all.append(&mut part);
        }
    }
    Some(WindowTable {
        feature_names: layout.feat_idx.iter().map(|&j| layout.header[j].clone()).collect(),
        features: Matrix::new(rows, nfeat, data).ok()?,
        labels,
        id_names: layout.id_idx.iter().map(|&j| layout.header[j].clone()).collect(),
        ids,
    })
}

/// Cuts `body` into chunks that each end just after a `\n` or `\r` (or at the end).
fn split(body: &[u8], min_chunk: usize) -> Vec<&[u8]> {
    let pieces = (body.len() / min_chunk).clamp(1, rayon::current_num_threads() * CHUNKS_PER_THREAD);
    let mut out = Vec::with_capacity(pieces);
    let mut start = 0;
    for i in 1..pieces {
        let target = (body.len() / pieces * i).max(start);
        let Some(off) = memchr2(b'\n', b'\r', &body[target..]) else { break };
        let end = target + off + 1;
        out.push(&body[start..end]);
        start = end;
    }
    out.push(&body[start..]);
    out
}

/// Records in a chunk: runs of bytes other than `\n` and `\r` (chunks start after a line end).
fn count_records(chunk: &[u8]) -> usize {
    let ends = |b: &u8| matches!(b, b'\n' | b'\r');
    let first = chunk.first().is_some_and(|b| !ends(b));
    // Line ends are tens of bytes apart: there a SIMD search pays.
    first as usize + memchr2_iter(b'\n', b'\r', chunk).filter(|&p| chunk.get(p + 1).is_some_and(|b| !ends(b))).count()
}

/// Where one chunk's rows go: its rows of the feature matrix and of the labels (empty if none).
struct Out<'a> {
    data: &'a mut [f64],
    labels: &'a mut [Option<Label>],
}

/// Parses one chunk into `out` (exactly as many rows as [`count_records`] found); returns its ids.
fn parse_chunk(chunk: &[u8], cols: &[Col], out: Out<'_>, nids: usize) -> Option<Vec<Vec<String>>> {
    let nfeat = cols.iter().map(|c| c.slots.len()).sum::<usize>();
    let mut rows = out.data.chunks_exact_mut(nfeat.max(1));
    let mut labels = out.labels.iter_mut();
    let mut ids = vec![Vec::new(); nids];
    let mut i = 0;
    while i < chunk.len() {
        if matches!(chunk[i], b'\n' | b'\r') {
            // A line end, or a blank line: no record, as in the csv crate.
            i += 1;
            continue;
        }
        let row = rows.next()?;
        let mut col = 0;
        loop {
            // Fields are a few bytes long: a plain loop beats a SIMD search that stops every few bytes.
            let start = i;
            while i < chunk.len() && !matches!(chunk[i], b',' | b'\n' | b'\r') {
                i += 1;
            }
            let c = cols.get(col)?;
            let field = chunk[start..i].trim_ascii();
            if !c.slots.is_empty() {
                let v = fast_float2::parse::<f64, _>(field).ok().filter(|v| v.is_finite())?;
                for &s in &c.slots {
                    row[s] = v;
                }
            }
            if c.label {
                let label = if field.is_empty() { None } else { Some(Label::parse(std::str::from_utf8(field).ok()?)?) };
                *labels.next()? = label;
            }
            if let Some(k) = c.id {
                ids[k].push(String::from_utf8_lossy(field).into_owned());
            }
            col += 1;
            if i < chunk.len() && chunk[i] == b',' {
                i += 1;
            } else {
                break;
            }
        }
        if col != cols.len() {
            return None;
        }
    }
    // Every counted row filled (the counts and the parse agree on what a record is).
    (rows.next().is_none() && labels.next().is_none()).then_some(ids)
}
