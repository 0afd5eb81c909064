//! Recorded data as a text file: every labelled guest's samples (of the chosen sources) and its
//! ground truth, so a table computed from a store can be recomputed without it (seed 004's shipped
//! `data/seed004-xen.csv.xz`). [`export`] writes what [`crate::dataset::load`] reads from a store;
//! [`load`] reads it back into the same [`GuestData`], so evaluation after loading is one code path.
//!
//! The format (`docs/dataset.md`), UTF-8 lines, xz-compressed when the file name ends in `.xz`:
//! ```text
//! vmguard-dataset 1
//! # free comment lines start with '#'
//! [guests]
//! guest,kind
//! xen,xen
//! [labels]
//! guest,start_ns,end_ns,truth,scenario
//! xen,1764651234000000000,1764651414000000000,normal,seed004-xen
//! [samples]
//! time_ns,guest,source,counter,kind,value
//! 1764651231004123456,xen,xentrace,event_channel_op,counter,123
//! ```
//! Three sections in this order, each with its header line exactly as above (the column order is
//! fixed). Fields are plain: no quoting, so no field may hold a comma or a line break (export refuses
//! such names). Samples are grouped by guest, and a guest's by series (source, counter) in time order,
//! as the store returns them; samples and labels name a guest of `[guests]`. Times are nanoseconds since the Unix epoch; `value` is the counter's raw
//! reading (cumulative, or a gauge's level); `truth` is `normal`, `attack-victim`, `attack-zombie`
//! or `unknown`, as `record` labels phases.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::sync::Arc;

use detect::truth::{Span, Truth};
use telemetry::{GuestKind, Kind, Sample, SourceId};

use crate::dataset::GuestData;

/// The first line of every file of this format, with its version.
pub const MAGIC: &str = "vmguard-dataset 1";
const GUESTS_HEADER: &str = "guest,kind";
const LABELS_HEADER: &str = "guest,start_ns,end_ns,truth,scenario";
const SAMPLES_HEADER: &str = "time_ns,guest,source,counter,kind,value";
/// xz's stream header magic: how a compressed file is told apart, whatever its name.
const XZ_MAGIC: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0];

/// Why a data file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum DataFileError {
    /// Opening, reading, writing or (de)compressing the file failed.
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The text is not a valid data file; `line` is 1-based.
    #[error("{path}, line {line}: {message}")]
    Parse { path: String, line: usize, message: String },
    /// A name cannot be written in the format (it holds a comma or a line break, or is empty).
    #[error("cannot write {what} `{name}`: names in a data file must be non-empty, without commas or line breaks")]
    BadName { what: &'static str, name: String },
    /// Nothing to write.
    #[error("no samples to export: none of the selected guests has samples of the chosen sources ({0})")]
    Empty(String),
}

/// A parse failure of [`read`], before the caller names the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    pub message: String,
}

fn check_name(what: &'static str, name: &str) -> Result<(), DataFileError> {
    if name.is_empty() || name.contains([',', '\n', '\r']) {
        return Err(DataFileError::BadName { what, name: name.to_string() });
    }
    Ok(())
}

/// Writes `data` in the format above; `comments` become `#` lines after the magic line.
pub fn write(mut w: impl Write, data: &[GuestData], comments: &[String]) -> Result<(), DataFileError> {
    for g in data {
        check_name("guest name", &g.name)?;
        for s in &g.spans {
            check_name("scenario name", &s.scenario)?;
        }
        for s in &g.samples {
            check_name("counter name", &s.counter)?;
        }
    }
    let io = |source| DataFileError::Io { what: "writing", path: String::new(), source };
    let mut out = String::with_capacity(1 << 16);
    out.push_str(MAGIC);
    out.push('\n');
    for c in comments {
        for line in c.lines() {
            out.push_str("# ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str("[guests]\n");
    out.push_str(GUESTS_HEADER);
    out.push('\n');
    for g in data {
        out.push_str(&format!("{},{}\n", g.name, g.kind.as_str()));
    }
    out.push_str("[labels]\n");
    out.push_str(LABELS_HEADER);
    out.push('\n');
    for g in data {
        for s in &g.spans {
            out.push_str(&format!("{},{},{},{},{}\n", g.name, s.start_ns, s.end_ns, s.truth.as_str(), s.scenario));
        }
    }
    out.push_str("[samples]\n");
    out.push_str(SAMPLES_HEADER);
    out.push('\n');
    w.write_all(out.as_bytes()).map_err(io)?;
    for g in data {
        // In the guest's order (the store's: by source, counter, then time), so the file loads back
        // into the very same sample vector; one series after another also compresses well.
        out.clear();
        for s in &g.samples {
            use std::fmt::Write as _;
            let _ =
                writeln!(out, "{},{},{},{},{},{}", s.time_ns, g.name, s.source, s.counter, s.kind.as_str(), s.value);
            if out.len() > 1 << 16 {
                w.write_all(out.as_bytes()).map_err(io)?;
                out.clear();
            }
        }
        w.write_all(out.as_bytes()).map_err(io)?;
    }
    w.flush().map_err(io)
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Section {
    Start,
    Guests,
    Labels,
    Samples,
}

impl Section {
    fn name(self) -> &'static str {
        match self {
            Section::Start => "(before any section)",
            Section::Guests => "[guests]",
            Section::Labels => "[labels]",
            Section::Samples => "[samples]",
        }
    }
    fn header(self) -> &'static str {
        match self {
            Section::Start => "",
            Section::Guests => GUESTS_HEADER,
            Section::Labels => LABELS_HEADER,
            Section::Samples => SAMPLES_HEADER,
        }
    }
}

/// `n` comma-separated fields of a line, or what is wrong with it.
fn fields<'a>(line: &'a str, header: &str) -> Result<Vec<&'a str>, String> {
    let want = header.split(',').count();
    let f: Vec<&str> = line.split(',').collect();
    if f.len() != want {
        return Err(format!("{} fields where `{header}` needs {want}: `{}`", f.len(), shorten(line)));
    }
    if let Some(i) = f.iter().position(|x| x.is_empty()) {
        return Err(format!("column {} is empty", header.split(',').nth(i).unwrap_or("?")));
    }
    Ok(f)
}

/// At most 80 characters of a line, for messages.
fn shorten(line: &str) -> String {
    match line.char_indices().nth(80) {
        Some((i, _)) => format!("{}...", &line[..i]),
        None => line.to_string(),
    }
}

fn int<T: std::str::FromStr>(column: &str, text: &str, what: &str) -> Result<T, String> {
    text.parse().map_err(|_| format!("column {column}: `{}` is not {what}", shorten(text)))
}

fn truth(text: &str) -> Result<Truth, String> {
    [Truth::Normal, Truth::AttackVictim, Truth::AttackZombie, Truth::Unknown]
        .into_iter()
        .find(|t| t.as_str() == text)
        .ok_or_else(|| {
            format!("column truth: `{}` is not one of normal, attack-victim, attack-zombie, unknown", shorten(text))
        })
}

/// Reads a data file's text (already decompressed) into guests, in the file's order.
pub fn read(r: impl BufRead) -> Result<Vec<GuestData>, ParseError> {
    let mut guests: Vec<GuestData> = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    let mut section = Section::Start;
    let mut want_header = false;
    let mut last_line = 0;
    let mut names: BTreeMap<String, telemetry::Name> = BTreeMap::new();
    for (i, line) in r.split(b'\n').enumerate() {
        let n = i + 1;
        last_line = n;
        let err = |message: String| ParseError { line: n, message };
        let bytes = line.map_err(|e| err(format!("cannot read (damaged xz data or a disk error?): {e}")))?;
        let text = std::str::from_utf8(&bytes).map_err(|e| err(format!("not UTF-8 text ({e})")))?;
        let text = text.strip_suffix('\r').unwrap_or(text);
        if n == 1 {
            if text != MAGIC {
                return Err(err(format!(
                    "`{}` is not a vmguard data file's first line (`{MAGIC}`): write the file with `vmguard detect export`",
                    shorten(text)
                )));
            }
            continue;
        }
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        if want_header {
            if text != section.header() {
                return Err(err(format!(
                    "the {} section's header must be `{}`, not `{}`",
                    section.name(),
                    section.header(),
                    shorten(text)
                )));
            }
            want_header = false;
            continue;
        }
        if text.starts_with('[') {
            let next = match text {
                "[guests]" => Section::Guests,
                "[labels]" => Section::Labels,
                "[samples]" => Section::Samples,
                _ => {
                    return Err(err(format!(
                        "unknown section `{}` (known: [guests], [labels], [samples])",
                        shorten(text)
                    )));
                }
            };
            let expected = match section {
                Section::Start => Some(Section::Guests),
                Section::Guests => Some(Section::Labels),
                Section::Labels => Some(Section::Samples),
                Section::Samples => None,
            };
            if Some(next) != expected {
                return Err(err(format!(
                    "section {} where {} was expected: the sections are [guests], [labels], [samples], in this order, each once",
                    next.name(),
                    expected.map_or("no other section", Section::name)
                )));
            }
            section = next;
            want_header = true;
            continue;
        }
        let guest_of = |name: &str| {
            index.get(name).copied().ok_or_else(|| format!("guest `{}` is not listed in [guests]", shorten(name)))
        };
        match section {
            Section::Start => return Err(err("data before the [guests] section".into())),
            Section::Guests => {
                let f = fields(text, GUESTS_HEADER).map_err(err)?;
                let kind: GuestKind = f[1].parse().map_err(|e| err(format!("column kind: {e}")))?;
                if index.contains_key(f[0]) {
                    return Err(err(format!("guest `{}` is listed twice", f[0])));
                }
                index.insert(f[0].to_string(), guests.len());
                guests.push(GuestData { name: f[0].to_string(), kind, samples: Vec::new(), spans: Vec::new() });
            }
            Section::Labels => {
                let f = fields(text, LABELS_HEADER).map_err(err)?;
                let g = guest_of(f[0]).map_err(err)?;
                let start_ns: i64 = int("start_ns", f[1], "a time in nanoseconds").map_err(err)?;
                let end_ns: i64 = int("end_ns", f[2], "a time in nanoseconds").map_err(err)?;
                if end_ns <= start_ns {
                    return Err(err(format!("the label ends ({end_ns}) before it starts ({start_ns})")));
                }
                let truth = truth(f[3]).map_err(err)?;
                guests[g].spans.push(Span { start_ns, end_ns, truth, scenario: f[4].to_string() });
            }
            Section::Samples => {
                let f = fields(text, SAMPLES_HEADER).map_err(err)?;
                let time_ns: i64 = int("time_ns", f[0], "a time in nanoseconds").map_err(err)?;
                let g = guest_of(f[1]).map_err(err)?;
                let source: SourceId = f[2].parse().map_err(|e| err(format!("column source: {e}")))?;
                let kind: Kind = f[4].parse().map_err(|e| err(format!("column kind: {e}")))?;
                let value: u64 = int("value", f[5], "an unsigned 64-bit integer").map_err(err)?;
                // One allocation per distinct counter name, as the sources share theirs.
                let counter = names.entry(f[3].to_string()).or_insert_with(|| f[3].into()).clone();
                let guest: Arc<str> = match guests[g].samples.last() {
                    Some(s) => s.guest.clone(),
                    None => guests[g].name.as_str().into(),
                };
                guests[g].samples.push(Sample { time_ns, guest, source, counter, value, kind });
            }
        }
    }
    if last_line == 0 {
        return Err(ParseError { line: 1, message: format!("the file is empty: expected `{MAGIC}`") });
    }
    if want_header || section < Section::Samples {
        let missing = if want_header {
            format!("the {} section's header", section.name())
        } else {
            "its [samples] section".into()
        };
        return Err(ParseError {
            line: last_line,
            message: format!("the file ends before {missing}: is it cut short?"),
        });
    }
    if guests.is_empty() {
        return Err(ParseError { line: last_line, message: "no guest in [guests]".into() });
    }
    Ok(guests)
}

/// Reads a data file (xz-compressed or plain, told apart by its first bytes).
pub fn load(path: &Path) -> Result<Vec<GuestData>, DataFileError> {
    let shown = path.display().to_string();
    let io = |what| {
        let path = shown.clone();
        move |source| DataFileError::Io { what, path, source }
    };
    let mut file = BufReader::new(File::open(path).map_err(io("cannot open the data file"))?);
    let compressed = file.fill_buf().map_err(io("reading"))?.starts_with(XZ_MAGIC);
    let reader: Box<dyn Read> =
        if compressed { Box::new(xz2::bufread::XzDecoder::new_multi_decoder(file)) } else { Box::new(file) };
    // Damaged xz data or a disk error surfaces as a "cannot read" at the line it cut.
    read(BufReader::with_capacity(1 << 16, reader)).map_err(|e| DataFileError::Parse {
        path: shown.clone(),
        line: e.line,
        message: e.message,
    })
}

/// Writes a data file at `path`, xz-compressed when its name ends in `.xz`.
pub fn save(path: &Path, data: &[GuestData], comments: &[String]) -> Result<(), DataFileError> {
    let shown = path.display().to_string();
    let with_path = |e: DataFileError| match e {
        DataFileError::Io { what, source, .. } => DataFileError::Io { what, path: shown.clone(), source },
        e => e,
    };
    if data.iter().all(|g| g.samples.is_empty()) {
        return Err(DataFileError::Empty(shown));
    }
    let file = File::create(path).map_err(|source| DataFileError::Io {
        what: "cannot create the data file",
        path: shown.clone(),
        source,
    })?;
    let file = BufWriter::new(file);
    if path.extension().is_some_and(|e| e == "xz") {
        // Preset 6 (xz's default): a few MB of memory to decompress, most of level 9's ratio.
        let mut enc = xz2::write::XzEncoder::new(file, 6);
        write(&mut enc, data, comments).map_err(with_path)?;
        let mut file =
            enc.finish().map_err(|source| DataFileError::Io { what: "compressing", path: shown.clone(), source })?;
        file.flush().map_err(|source| DataFileError::Io { what: "writing", path: shown.clone(), source })
    } else {
        write(file, data, comments).map_err(with_path)
    }
}

/// What [`export`] wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExportReport {
    pub path: String,
    pub guests: Vec<String>,
    pub scenarios: Vec<String>,
    pub sources: Vec<String>,
    pub samples: usize,
    pub labels: usize,
    /// Distinct counters per guest.
    pub counters: BTreeMap<String, usize>,
    pub bytes: u64,
}

/// Writes the labelled data of `store` ([`crate::dataset::load`]: the selected scenarios' labels,
/// the samples of their runs) restricted to `sources` (all when empty) to `path`. The file loads
/// back into the same guests, samples and labels.
pub fn export(
    store: &store::Store,
    sel: &crate::dataset::Selection,
    sources: &[SourceId],
    path: &Path,
) -> Result<ExportReport, ExportError> {
    let data = crate::dataset::keep_sources(crate::dataset::load(store, sel)?, sources);
    let shown = |v: &[SourceId]| v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
    if data.is_empty() {
        return Err(DataFileError::Empty(format!(
            "{}; sources {}",
            store.path().display(),
            if sources.is_empty() { "all".into() } else { shown(sources) }
        ))
        .into());
    }
    let mut scenarios: Vec<String> = data.iter().flat_map(|g| g.scenarios()).collect();
    scenarios.sort();
    scenarios.dedup();
    let comments = vec![
        format!(
            "exported by vmguard {} (`vmguard detect export`) from {}",
            env!("CARGO_PKG_VERSION"),
            store.path().display()
        ),
        format!("scenarios: {}", scenarios.join(", ")),
        format!("sources: {}", if sources.is_empty() { "all".into() } else { shown(sources) }),
        "format: docs/dataset.md".to_string(),
    ];
    save(path, &data, &comments)?;
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    Ok(ExportReport {
        path: path.display().to_string(),
        guests: data.iter().map(|g| g.name.clone()).collect(),
        scenarios,
        sources: if sources.is_empty() { vec!["all".into()] } else { sources.iter().map(|s| s.to_string()).collect() },
        samples: data.iter().map(|g| g.samples.len()).sum(),
        labels: data.iter().map(|g| g.spans.len()).sum(),
        counters: data
            .iter()
            .map(|g| {
                let names: std::collections::BTreeSet<(SourceId, &str)> =
                    g.samples.iter().map(|s| (s.source, s.counter.as_str())).collect();
                (g.name.clone(), names.len())
            })
            .collect(),
        bytes,
    })
}

/// Why [`export`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The store's labelled data could not be loaded.
    #[error(transparent)]
    Dataset(#[from] crate::dataset::DatasetError),
    /// The file could not be written.
    #[error(transparent)]
    File(#[from] DataFileError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t: i64, guest: &str, counter: &str, value: u64) -> Sample {
        Sample {
            time_ns: t,
            guest: guest.into(),
            source: SourceId::Xentrace,
            counter: counter.into(),
            value,
            kind: Kind::Counter,
        }
    }

    fn data() -> Vec<GuestData> {
        let span = |s, e, truth| Span { start_ns: s, end_ns: e, truth, scenario: "seed004-xen".into() };
        vec![GuestData {
            name: "xen".into(),
            kind: GuestKind::Xen,
            // Series after series, as the store returns them.
            samples: (0..5)
                .map(|t| sample(t * 1_000_000_000, "xen", "event_channel_op", 10 * t as u64))
                .chain(
                    (0..5).map(|t| Sample {
                        kind: Kind::Gauge,
                        ..sample(t * 1_000_000_000, "xen", "trace.connected", 1)
                    }),
                )
                .collect(),
            spans: vec![span(0, 2_000_000_000, Truth::Normal), span(2_000_000_000, 5_000_000_000, Truth::AttackZombie)],
        }]
    }

    fn text(d: &[GuestData]) -> String {
        let mut out = Vec::new();
        write(&mut out, d, &["exported for a test".into()]).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn round_trip_keeps_every_field() {
        let d = data();
        let t = text(&d);
        assert!(
            t.starts_with("vmguard-dataset 1\n# exported for a test\n[guests]\nguest,kind\nxen,xen\n[labels]\n"),
            "{t}"
        );
        assert!(t.contains("\n1000000000,xen,xentrace,event_channel_op,counter,10\n2000000000,xen,xentrace,event_channel_op,counter,20\n"), "{t}");
        let back = read(t.as_bytes()).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!((back[0].name.as_str(), back[0].kind), ("xen", GuestKind::Xen));
        assert_eq!(back[0].spans, d[0].spans);
        assert_eq!(back[0].samples, d[0].samples);
        // CRLF line ends and blank lines are read as well.
        assert_eq!(read(t.replace('\n', "\r\n\r\n").as_bytes()).unwrap()[0].samples, d[0].samples);
    }

    #[test]
    fn compressed_and_plain_files() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["d.csv.xz", "d.csv"] {
            let p = dir.path().join(name);
            save(&p, &data(), &[]).unwrap();
            let raw = std::fs::read(&p).unwrap();
            assert_eq!(raw.starts_with(XZ_MAGIC), name.ends_with(".xz"));
            assert_eq!(load(&p).unwrap()[0].samples, data()[0].samples);
        }
        let mut empty = data();
        empty[0].samples.clear();
        assert!(matches!(save(&dir.path().join("e.csv"), &empty, &[]), Err(DataFileError::Empty(_))));
        let e = load(&dir.path().join("missing.csv.xz")).unwrap_err().to_string();
        assert!(e.contains("cannot open the data file") && e.contains("missing.csv.xz"), "{e}");
        // Damaged xz data is an error naming the file, not a panic.
        let p = dir.path().join("d.csv.xz");
        let mut raw = std::fs::read(&p).unwrap();
        let mid = raw.len() / 2;
        raw[mid] ^= 0xff;
        std::fs::write(&p, &raw).unwrap();
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains("d.csv.xz"), "{e}");
    }

    #[test]
    fn export_from_a_store_loads_back_as_the_store_loads() {
        let dir = tempfile::tempdir().unwrap();
        let mut st = store::Store::open(dir.path().join("s.db")).unwrap();
        let d = data();
        let mut samples = d[0].samples.clone();
        let mut other = sample(1_000_000_000, "xen", "rx_packets", 5);
        other.source = SourceId::Netdev;
        samples.push(other);
        st.append(&samples).unwrap();
        let labels: Vec<store::Label> = d[0]
            .spans
            .iter()
            .map(|s| store::Label {
                guest: "xen".into(),
                start_ns: s.start_ns,
                end_ns: s.end_ns,
                label: s.truth.as_str().into(),
                scenario: s.scenario.clone(),
            })
            .collect();
        st.add_labels(&labels).unwrap();
        let sel = crate::dataset::Selection::default();
        let out = dir.path().join("x.csv.xz");
        let r = export(&st, &sel, &[SourceId::Xentrace], &out).unwrap();
        assert_eq!((r.samples, r.labels, r.counters["xen"]), (10, 2, 2));
        let from_store = crate::dataset::keep_sources(crate::dataset::load(&st, &sel).unwrap(), &[SourceId::Xentrace]);
        let from_file = load(&out).unwrap();
        assert_eq!(from_file.len(), 1);
        assert_eq!(from_file[0].spans, from_store[0].spans);
        assert_eq!(from_file[0].samples, from_store[0].samples);
        // A source nobody recorded is an error that says so.
        let e = export(&st, &sel, &[SourceId::Kvm], &out).unwrap_err().to_string();
        assert!(e.contains("no samples to export") && e.contains("kvm"), "{e}");
    }

    #[test]
    fn names_that_cannot_be_written_are_refused() {
        let mut d = data();
        d[0].samples[0].counter = "a,b".into();
        let e = write(Vec::new(), &d, &[]).unwrap_err();
        assert!(matches!(e, DataFileError::BadName { what: "counter name", .. }), "{e}");
    }

    #[test]
    fn errors_name_the_line_and_what_to_do() {
        let good = text(&data());
        let lines: Vec<&str> = good.lines().collect();
        let with = |i: usize, replacement: &str| {
            let mut l = lines.clone();
            l[i] = replacement;
            l.join("\n")
        };
        let cases = [
            (with(0, "time_ns,guest"), 1, "not a vmguard data file"),
            (with(3, "guest,kind,extra"), 4, "header must be `guest,kind`"),
            (with(4, "xen,hyperv"), 5, "column kind"),
            (with(7, "xen,5,1,normal,s"), 8, "ends (1) before it starts (5)"),
            (with(7, "xen,0,1,benign,s"), 8, "column truth"),
            (with(7, "dom9,0,1,normal,s"), 8, "not listed in [guests]"),
            (with(11, "x,xen,xentrace,a,counter,1"), 12, "column time_ns"),
            (with(11, "0,xen,xenstat,a,counter,1"), 12, "column source"),
            (with(11, "0,xen,xentrace,a,counter,-1"), 12, "column value"),
            (with(11, "0,xen,xentrace,a,counter"), 12, "5 fields where"),
            (with(11, "0,xen,xentrace,,counter,1"), 12, "column counter is empty"),
            (with(11, "0,xen,xentrace,a,gauge32,1"), 12, "column kind"),
            (with(5, "[samples]"), 6, "where [labels] was expected"),
            (with(2, "[labels]"), 3, "where [guests] was expected"),
            (with(4, "[samples]"), 5, "where [labels] was expected"),
            (lines[..6].join("\n"), 6, "ends before the [labels] section's header"),
            (lines[..5].join("\n"), 5, "ends before its [samples] section"),
            (String::new(), 1, "the file is empty"),
        ];
        for (input, line, needle) in cases {
            let e = read(input.as_bytes()).unwrap_err();
            assert_eq!(e.line, line, "{e} for\n{input}");
            assert!(e.to_string().contains(needle), "`{e}` lacks `{needle}`");
        }
    }
}
