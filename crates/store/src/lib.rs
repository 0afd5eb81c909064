//! The embedded store: SQLite (WAL) holding samples, guests, ground-truth labels and benchmark results.
//!
//! - Samples are appended in batches, one transaction per batch ([`Store::append`]); the collector writes
//!   one batch per round. WAL with `synchronous=NORMAL`: a writer killed at any point (kill -9) loses at
//!   most the batch it had not committed; a power loss may also lose the last few committed ones.
//! - The schema carries its version in `PRAGMA user_version`; [`Store::open`] applies the migrations a
//!   file lacks, in order, each in its own transaction, and refuses a file newer than this code.
//! - Values are u64 stored bit for bit in SQLite's signed 64-bit INTEGER (values at or above 2^63 read
//!   back exactly but compare as negative inside SQL).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use telemetry::{GuestInfo, Kind, Sample, SourceId};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be opened or created.
    #[error("cannot open the store {path}: {source} (is the directory writable?)")]
    Open { path: PathBuf, source: rusqlite::Error },
    /// The file was written by a newer vmguard.
    #[error("the store {path} has schema version {found}, newer than this vmguard knows ({known}): upgrade vmguard")]
    TooNew { path: PathBuf, found: i64, known: i64 },
    /// A migration failed.
    #[error("migrating the store {path} to schema version {version} failed: {source}")]
    Migrate { path: PathBuf, version: i64, source: rusqlite::Error },
    /// An SQLite statement failed.
    #[error("store: {what} failed: {source}")]
    Sqlite { what: &'static str, source: rusqlite::Error },
    /// A row holds something this code cannot read (written by other software?).
    #[error("store: unreadable row: {detail}")]
    Corrupt { detail: String },
    /// JSON stored beside the rows could not be written or read.
    #[error("store: JSON of {what}: {source}")]
    Json { what: &'static str, source: serde_json::Error },
}

fn sql(what: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Sqlite { what, source }
}

/// Schema migrations; migration N (1-based) brings the file to `user_version` N.
const MIGRATIONS: &[&str] = &[
    // 1: samples, guests, labels, benchmark runs and results.
    "CREATE TABLE guests (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        info TEXT                      -- telemetry::GuestInfo as JSON, when the lab provided it
    );
    CREATE TABLE counters (
        id INTEGER PRIMARY KEY,
        source TEXT NOT NULL,
        name TEXT NOT NULL,
        kind TEXT NOT NULL,            -- counter | counter32 | gauge
        UNIQUE (source, name)
    );
    CREATE TABLE samples (
        guest_id INTEGER NOT NULL REFERENCES guests(id),
        counter_id INTEGER NOT NULL REFERENCES counters(id),
        time_ns INTEGER NOT NULL,      -- unix nanoseconds
        value INTEGER NOT NULL,        -- u64 bit pattern
        PRIMARY KEY (guest_id, counter_id, time_ns)
    ) WITHOUT ROWID;
    CREATE TABLE labels (
        id INTEGER PRIMARY KEY,
        guest TEXT NOT NULL,
        start_ns INTEGER NOT NULL,
        end_ns INTEGER NOT NULL,
        label TEXT NOT NULL,           -- normal | attack-victim | attack-zombie | ...
        scenario TEXT NOT NULL,
        CHECK (end_ns >= start_ns)
    );
    CREATE INDEX labels_by_guest ON labels (guest, start_ns);
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        started_ns INTEGER NOT NULL,
        meta TEXT NOT NULL             -- JSON: host, versions, configuration
    );
    CREATE TABLE bench_results (
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL REFERENCES runs(id),
        cell TEXT NOT NULL,            -- e.g. kvm/sysbench-cpu/attack/no-mitigation/rep2
        time_ns INTEGER NOT NULL,
        raw_output TEXT NOT NULL,
        figures TEXT NOT NULL          -- JSON object of parsed figures
    );
    CREATE INDEX bench_results_by_run ON bench_results (run_id, cell);",
];

/// The schema version this code writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// A ground-truth interval: what a guest was doing from `start_ns` to `end_ns`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub guest: String,
    pub start_ns: i64,
    pub end_ns: i64,
    /// `normal`, `attack-victim`, `attack-zombie`, ...
    pub label: String,
    pub scenario: String,
}

/// One cell of a benchmark run.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchResult {
    pub run_id: String,
    pub cell: String,
    pub time_ns: i64,
    pub raw_output: String,
    pub figures: serde_json::Value,
}

/// A guest as stored: its name, and its description when the lab gave one.
#[derive(Debug, Clone, PartialEq)]
pub struct GuestRecord {
    pub name: String,
    pub info: Option<GuestInfo>,
}

/// An open store. One writer at a time (SQLite's rule); readers may use other `Store`s on the same file.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    guest_ids: HashMap<String, i64>,
    counter_ids: HashMap<SourceId, HashMap<String, i64>>,
}

impl Store {
    /// Open (or create) the store at `path` and bring its schema up to date.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let open_err = |source| StoreError::Open { path: path.clone(), source };
        let mut conn = Connection::open(&path).map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(open_err)?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).map_err(open_err)?;
        if !mode.eq_ignore_ascii_case("wal") && path != Path::new(":memory:") {
            tracing::warn!(path = %path.display(), mode, "store: WAL mode refused; using the rollback journal");
        }
        conn.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;").map_err(open_err)?;
        migrate(&mut conn, &path)?;
        Ok(Store { conn, path, guest_ids: HashMap::new(), counter_ids: HashMap::new() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the open file.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        self.conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(sql("reading the schema version"))
    }

    /// Append one batch of samples in one transaction: all of it is stored, or none. A sample with the
    /// same guest, source, counter and time as a stored one replaces it. Returns the number written.
    pub fn append(&mut self, samples: &[Sample]) -> Result<usize, StoreError> {
        let tx = self.conn.transaction().map_err(sql("starting a batch"))?;
        // Ids created inside this transaction are cached only once it commits.
        let mut new_guests: Vec<(String, i64)> = Vec::new();
        let mut new_counters: Vec<(SourceId, String, i64)> = Vec::new();
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO samples (guest_id, counter_id, time_ns, value) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(sql("preparing the sample insert"))?;
            for s in samples {
                let g = match self.guest_ids.get(&*s.guest) {
                    Some(&id) => id,
                    None => match new_guests.iter().find(|(n, _)| **n == *s.guest) {
                        Some((_, id)) => *id,
                        None => {
                            let id = guest_id(&tx, &s.guest, None)?;
                            new_guests.push((s.guest.to_string(), id));
                            id
                        }
                    },
                };
                let cached = self.counter_ids.get(&s.source).and_then(|m| m.get(s.counter.as_str())).copied();
                let c = match cached {
                    Some(id) => id,
                    None => match new_counters.iter().find(|(src, n, _)| *src == s.source && *n == *s.counter) {
                        Some((_, _, id)) => *id,
                        None => {
                            let id = counter_id(&tx, s.source, &s.counter, s.kind)?;
                            new_counters.push((s.source, s.counter.to_string(), id));
                            id
                        }
                    },
                };
                insert.execute(params![g, c, s.time_ns, s.value as i64]).map_err(sql("inserting a sample"))?;
            }
        }
        tx.commit().map_err(sql("committing a batch"))?;
        self.guest_ids.extend(new_guests);
        for (src, name, id) in new_counters {
            self.counter_ids.entry(src).or_default().insert(name, id);
        }
        Ok(samples.len())
    }

    /// Record (or update) a guest's description.
    pub fn put_guest(&mut self, info: &GuestInfo) -> Result<(), StoreError> {
        let json = serde_json::to_string(info).map_err(|source| StoreError::Json { what: "a guest", source })?;
        let tx = self.conn.transaction().map_err(sql("starting a transaction"))?;
        let id = guest_id(&tx, &info.name, Some(&json))?;
        tx.commit().map_err(sql("storing a guest"))?;
        self.guest_ids.insert(info.name.clone(), id);
        Ok(())
    }

    /// Every guest, by name.
    pub fn guests(&self) -> Result<Vec<GuestRecord>, StoreError> {
        let mut st = self.conn.prepare("SELECT name, info FROM guests ORDER BY name").map_err(sql("listing guests"))?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?)))
            .map_err(sql("listing guests"))?;
        let mut out = Vec::new();
        for row in rows {
            let (name, info) = row.map_err(sql("listing guests"))?;
            let info = match info {
                Some(j) => {
                    Some(serde_json::from_str(&j).map_err(|source| StoreError::Json { what: "a guest", source })?)
                }
                None => None,
            };
            out.push(GuestRecord { name, info });
        }
        Ok(out)
    }

    /// Every sample of a guest with `from_ns <= time < to_ns`, ordered by counter then time.
    pub fn samples(&self, guest: &str, from_ns: i64, to_ns: i64) -> Result<Vec<Sample>, StoreError> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT c.source, c.name, c.kind, s.time_ns, s.value
                 FROM samples s JOIN guests g ON g.id = s.guest_id JOIN counters c ON c.id = s.counter_id
                 WHERE g.name = ?1 AND s.time_ns >= ?2 AND s.time_ns < ?3
                 ORDER BY c.source, c.name, s.time_ns",
            )
            .map_err(sql("querying samples"))?;
        let guest_arc: Arc<str> = guest.into();
        let rows = st
            .query_map(params![guest, from_ns, to_ns], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })
            .map_err(sql("querying samples"))?;
        let mut out = Vec::new();
        for row in rows {
            let (source, counter, kind, time_ns, value) = row.map_err(sql("querying samples"))?;
            out.push(Sample {
                time_ns,
                guest: Arc::clone(&guest_arc),
                source: source.parse().map_err(|detail| StoreError::Corrupt { detail })?,
                counter: counter.into(),
                value: value as u64,
                kind: kind.parse().map_err(|detail| StoreError::Corrupt { detail })?,
            });
        }
        Ok(out)
    }

    /// One counter of a guest over `from_ns <= time < to_ns`: `(time_ns, value)` in time order.
    pub fn series(
        &self,
        guest: &str,
        source: SourceId,
        counter: &str,
        from_ns: i64,
        to_ns: i64,
    ) -> Result<Vec<(i64, u64)>, StoreError> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT s.time_ns, s.value
                 FROM samples s JOIN guests g ON g.id = s.guest_id JOIN counters c ON c.id = s.counter_id
                 WHERE g.name = ?1 AND c.source = ?2 AND c.name = ?3 AND s.time_ns >= ?4 AND s.time_ns < ?5
                 ORDER BY s.time_ns",
            )
            .map_err(sql("querying a series"))?;
        let rows = st
            .query_map(params![guest, source.as_str(), counter, from_ns, to_ns], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)? as u64))
            })
            .map_err(sql("querying a series"))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(sql("querying a series"))
    }

    /// The counters a guest has samples of.
    pub fn counters(&self, guest: &str) -> Result<Vec<(SourceId, String, Kind)>, StoreError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT DISTINCT c.source, c.name, c.kind FROM counters c
                 WHERE EXISTS (SELECT 1 FROM samples s JOIN guests g ON g.id = s.guest_id
                               WHERE g.name = ?1 AND s.counter_id = c.id)
                 ORDER BY c.source, c.name",
            )
            .map_err(sql("listing counters"))?;
        let rows = st
            .query_map([guest], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))
            .map_err(sql("listing counters"))?;
        let mut out = Vec::new();
        for row in rows {
            let (source, name, kind) = row.map_err(sql("listing counters"))?;
            out.push((
                source.parse().map_err(|detail| StoreError::Corrupt { detail })?,
                name,
                kind.parse().map_err(|detail| StoreError::Corrupt { detail })?,
            ));
        }
        Ok(out)
    }

    /// Store ground-truth intervals (one transaction).
    pub fn add_labels(&mut self, labels: &[Label]) -> Result<(), StoreError> {
        let tx = self.conn.transaction().map_err(sql("starting a transaction"))?;
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO labels (guest, start_ns, end_ns, label, scenario) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(sql("storing labels"))?;
            for l in labels {
                st.execute(params![l.guest, l.start_ns, l.end_ns, l.label, l.scenario])
                    .map_err(sql("storing labels"))?;
            }
        }
        tx.commit().map_err(sql("storing labels"))
    }

    /// Labels overlapping `[from_ns, to_ns)`, of one guest or all, by start time.
    pub fn labels(&self, guest: Option<&str>, from_ns: i64, to_ns: i64) -> Result<Vec<Label>, StoreError> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT guest, start_ns, end_ns, label, scenario FROM labels
                 WHERE (?1 IS NULL OR guest = ?1) AND end_ns > ?2 AND start_ns < ?3
                 ORDER BY start_ns, guest",
            )
            .map_err(sql("querying labels"))?;
        let rows = st
            .query_map(params![guest, from_ns, to_ns], |r| {
                Ok(Label {
                    guest: r.get(0)?,
                    start_ns: r.get(1)?,
                    end_ns: r.get(2)?,
                    label: r.get(3)?,
                    scenario: r.get(4)?,
                })
            })
            .map_err(sql("querying labels"))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(sql("querying labels"))
    }

    /// Record a benchmark run (its id must be new).
    pub fn add_run(&mut self, run_id: &str, started_ns: i64, meta: &serde_json::Value) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO runs (id, started_ns, meta) VALUES (?1, ?2, ?3)",
                params![run_id, started_ns, meta.to_string()],
            )
            .map(|_| ())
            .map_err(sql("storing a run"))
    }

    /// Record one cell's result of a run.
    pub fn add_bench_result(&mut self, r: &BenchResult) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO bench_results (run_id, cell, time_ns, raw_output, figures) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![r.run_id, r.cell, r.time_ns, r.raw_output, r.figures.to_string()],
            )
            .map(|_| ())
            .map_err(sql("storing a benchmark result (is the run recorded with add_run?)"))
    }

    /// Every result of a run, by cell then time.
    pub fn bench_results(&self, run_id: &str) -> Result<Vec<BenchResult>, StoreError> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT run_id, cell, time_ns, raw_output, figures FROM bench_results WHERE run_id = ?1 ORDER BY cell, time_ns, id",
            )
            .map_err(sql("querying benchmark results"))?;
        let rows = st
            .query_map([run_id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })
            .map_err(sql("querying benchmark results"))?;
        let mut out = Vec::new();
        for row in rows {
            let (run_id, cell, time_ns, raw_output, figures) = row.map_err(sql("querying benchmark results"))?;
            let figures = serde_json::from_str(&figures)
                .map_err(|source| StoreError::Json { what: "benchmark figures", source })?;
            out.push(BenchResult { run_id, cell, time_ns, raw_output, figures });
        }
        Ok(out)
    }

    /// Every recorded run as `(id, started_ns, meta)`, oldest first.
    pub fn runs(&self) -> Result<Vec<(String, i64, serde_json::Value)>, StoreError> {
        let mut st = self
            .conn
            .prepare_cached("SELECT id, started_ns, meta FROM runs ORDER BY started_ns, id")
            .map_err(sql("listing runs"))?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?)))
            .map_err(sql("listing runs"))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, started, meta) = row.map_err(sql("listing runs"))?;
            let meta =
                serde_json::from_str(&meta).map_err(|source| StoreError::Json { what: "run metadata", source })?;
            out.push((id, started, meta));
        }
        Ok(out)
    }

    /// Run `PRAGMA integrity_check`: `Ok(())` when SQLite finds the file sound.
    pub fn check_integrity(&self) -> Result<(), StoreError> {
        let verdict: String =
            self.conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).map_err(sql("checking integrity"))?;
        if verdict == "ok" { Ok(()) } else { Err(StoreError::Corrupt { detail: verdict }) }
    }
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let found: i64 =
        conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(sql("reading the schema version"))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew { path: path.to_path_buf(), found, known: SCHEMA_VERSION });
    }
    for (i, migration) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = i as i64 + 1;
        let err = |source| StoreError::Migrate { path: path.to_path_buf(), version, source };
        let tx = conn.transaction().map_err(err)?;
        tx.execute_batch(migration).map_err(err)?;
        tx.pragma_update(None, "user_version", version).map_err(err)?;
        tx.commit().map_err(err)?;
        tracing::info!(path = %path.display(), version, "store: schema migrated");
    }
    Ok(())
}

fn guest_id(tx: &Transaction<'_>, name: &str, info: Option<&str>) -> Result<i64, StoreError> {
    let existing: Option<i64> = tx
        .query_row("SELECT id FROM guests WHERE name = ?1", [name], |r| r.get(0))
        .optional()
        .map_err(sql("looking up a guest"))?;
    match (existing, info) {
        (Some(id), None) => Ok(id),
        (Some(id), Some(json)) => {
            tx.execute("UPDATE guests SET info = ?2 WHERE id = ?1", params![id, json])
                .map_err(sql("updating a guest"))?;
            Ok(id)
        }
        (None, _) => {
            tx.execute("INSERT INTO guests (name, info) VALUES (?1, ?2)", params![name, info])
                .map_err(sql("adding a guest"))?;
            Ok(tx.last_insert_rowid())
        }
    }
}

fn counter_id(tx: &Transaction<'_>, source: SourceId, name: &str, kind: Kind) -> Result<i64, StoreError> {
    tx.execute(
        "INSERT OR IGNORE INTO counters (source, name, kind) VALUES (?1, ?2, ?3)",
        params![source.as_str(), name, kind.as_str()],
    )
    .map_err(sql("adding a counter"))?;
    tx.query_row("SELECT id FROM counters WHERE source = ?1 AND name = ?2", params![source.as_str(), name], |r| {
        r.get(0)
    })
    .map_err(sql("looking up a counter"))
}

#[cfg(test)]
mod tests;
