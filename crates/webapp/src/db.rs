//! The bulletin board's database: users, threads, comments; schema, deterministic seed data, queries.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use crate::WebError;

/// How many rows the seed writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedSize {
    pub users: u32,
    pub threads: u32,
    pub comments: u32,
}

impl Default for SeedSize {
    fn default() -> Self {
        SeedSize { users: 200, threads: 500, comments: 10_000 }
    }
}

pub const PAGE_SIZE: u32 = 20;

/// One open connection to the board (one per server thread).
pub struct Board {
    conn: Connection,
}

fn db(what: &'static str) -> impl FnOnce(rusqlite::Error) -> WebError {
    move |source| WebError::Db { what, source }
}

/// A thread in the list page.
#[derive(Debug, Clone, PartialEq)]
pub struct ThreadSummary {
    pub id: i64,
    pub title: String,
    pub author: String,
    pub created: i64,
    pub comments: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Comment {
    pub id: i64,
    pub author: String,
    pub body: String,
    pub created: i64,
    pub rating: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ThreadPage {
    pub id: i64,
    pub title: String,
    pub body: String,
    pub author: String,
    pub comments: Vec<Comment>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, joined INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS threads (
    id INTEGER PRIMARY KEY, author INTEGER NOT NULL REFERENCES users(id),
    title TEXT NOT NULL, body TEXT NOT NULL, created INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS comments (
    id INTEGER PRIMARY KEY, thread INTEGER NOT NULL REFERENCES threads(id),
    author INTEGER NOT NULL REFERENCES users(id), body TEXT NOT NULL,
    created INTEGER NOT NULL, rating INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS comments_by_thread ON comments (thread, id);
CREATE INDEX IF NOT EXISTS threads_by_created ON threads (created);
";

const WORDS: [&str; 24] = [
    "flood",
    "packet",
    "kernel",
    "guest",
    "virtio",
    "queue",
    "interrupt",
    "cookie",
    "backlog",
    "router",
    "latency",
    "thread",
    "socket",
    "buffer",
    "driver",
    "timer",
    "host",
    "bridge",
    "tap",
    "syn",
    "ack",
    "window",
    "vcpu",
    "page",
];

/// A small deterministic generator, so every victim gets the same rows.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u32) -> u32 {
        (self.next() % u64::from(n.max(1))) as u32
    }

    fn words(&mut self, n: u32) -> String {
        (0..n).map(|_| WORDS[self.below(WORDS.len() as u32) as usize]).collect::<Vec<_>>().join(" ")
    }
}

impl Board {
    /// Open (creating if needed) the database at `path`, WAL mode, waiting on locks rather than failing.
    pub fn open(path: &Path) -> Result<Board, WebError> {
        let conn = Connection::open(path).map_err(db("open"))?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(db("busy timeout"))?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(db("WAL mode"))?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(db("synchronous"))?;
        Ok(Board { conn })
    }

    /// Create the schema and, when the board is empty, the seed rows. Returns the number of threads.
    pub fn init(&mut self, size: SeedSize) -> Result<i64, WebError> {
        self.conn.execute_batch(SCHEMA).map_err(db("schema"))?;
        let existing: i64 =
            self.conn.query_row("SELECT count(*) FROM threads", [], |r| r.get(0)).map_err(db("count"))?;
        if existing > 0 {
            return Ok(existing);
        }
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let tx = self.conn.transaction().map_err(db("seed transaction"))?;
        {
            let mut u = tx.prepare("INSERT INTO users (id, name, joined) VALUES (?1, ?2, ?3)").map_err(db("seed"))?;
            for id in 1..=size.users {
                u.execute(params![id, format!("user{id}"), 1_600_000_000 + i64::from(id) * 3600])
                    .map_err(db("seed users"))?;
            }
            let mut t = tx
                .prepare("INSERT INTO threads (id, author, title, body, created) VALUES (?1, ?2, ?3, ?4, ?5)")
                .map_err(db("seed"))?;
            for id in 1..=size.threads {
                let (title, body) = (rng.words(6), rng.words(60));
                t.execute(params![id, 1 + rng.below(size.users), title, body, 1_650_000_000 + i64::from(id) * 600])
                    .map_err(db("seed threads"))?;
            }
            let mut c = tx
                .prepare("INSERT INTO comments (thread, author, body, created, rating) VALUES (?1, ?2, ?3, ?4, ?5)")
                .map_err(db("seed"))?;
            for i in 0..size.comments {
                let n = 8 + rng.below(30);
                let body = rng.words(n);
                c.execute(params![
                    1 + rng.below(size.threads),
                    1 + rng.below(size.users),
                    body,
                    1_650_000_000 + i64::from(i) * 30,
                    i64::from(rng.below(11)) - 5
                ])
                .map_err(db("seed comments"))?;
            }
        }
        tx.commit().map_err(db("seed commit"))?;
        Ok(i64::from(size.threads))
    }

    /// One page of threads, newest first, with author and comment count.
    pub fn list(&self, page: u32) -> Result<Vec<ThreadSummary>, WebError> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT t.id, t.title, u.name, t.created,
                        (SELECT count(*) FROM comments c WHERE c.thread = t.id)
                 FROM threads t JOIN users u ON u.id = t.author
                 ORDER BY t.created DESC LIMIT ?1 OFFSET ?2",
            )
            .map_err(db("list"))?;
        let rows = st
            .query_map(params![PAGE_SIZE, i64::from(page) * i64::from(PAGE_SIZE)], |r| {
                Ok(ThreadSummary {
                    id: r.get(0)?,
                    title: r.get(1)?,
                    author: r.get(2)?,
                    created: r.get(3)?,
                    comments: r.get(4)?,
                })
            })
            .map_err(db("list"))?;
        rows.collect::<Result<_, _>>().map_err(db("list"))
    }

    /// A thread with its comments (oldest first, at most 200), or `None`.
    pub fn thread(&self, id: i64) -> Result<Option<ThreadPage>, WebError> {
        let head = self
            .conn
            .prepare_cached(
                "SELECT t.title, t.body, u.name FROM threads t JOIN users u ON u.id = t.author WHERE t.id = ?1",
            )
            .map_err(db("thread"))?
            .query_row([id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))
            .optional()
            .map_err(db("thread"))?;
        let Some((title, body, author)) = head else { return Ok(None) };
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT c.id, u.name, c.body, c.created, c.rating FROM comments c JOIN users u ON u.id = c.author
                 WHERE c.thread = ?1 ORDER BY c.id LIMIT 200",
            )
            .map_err(db("comments"))?;
        let comments = st
            .query_map([id], |r| {
                Ok(Comment { id: r.get(0)?, author: r.get(1)?, body: r.get(2)?, created: r.get(3)?, rating: r.get(4)? })
            })
            .map_err(db("comments"))?
            .collect::<Result<_, _>>()
            .map_err(db("comments"))?;
        Ok(Some(ThreadPage { id, title, body, author, comments }))
    }

    /// Add a comment; `Ok(None)` when the thread or the author does not exist.
    pub fn post(&self, thread: i64, author: i64, body: &str) -> Result<Option<i64>, WebError> {
        let exists: bool = self
            .conn
            .prepare_cached(
                "SELECT EXISTS(SELECT 1 FROM threads WHERE id = ?1) AND EXISTS(SELECT 1 FROM users WHERE id = ?2)",
            )
            .map_err(db("post"))?
            .query_row(params![thread, author], |r| r.get(0))
            .map_err(db("post"))?;
        if !exists {
            return Ok(None);
        }
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        self.conn
            .prepare_cached("INSERT INTO comments (thread, author, body, created, rating) VALUES (?1, ?2, ?3, ?4, 0)")
            .map_err(db("post"))?
            .execute(params![thread, author, body, now])
            .map_err(db("post"))?;
        Ok(Some(self.conn.last_insert_rowid()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn temp_board(size: SeedSize) -> (Board, tempfile::TempDir) {
        let dir = tempfile::Builder::new().prefix("vmguard-webapp-").tempdir().unwrap();
        let mut b = Board::open(&dir.path().join("board.db")).unwrap();
        b.init(size).unwrap();
        (b, dir)
    }

    #[test]
    fn seed_list_read_post() {
        let (mut b, dir) = temp_board(SeedSize { users: 10, threads: 45, comments: 300 });
        assert_eq!(b.init(SeedSize::default()).unwrap(), 45, "a seeded board is not seeded again");
        let p0 = b.list(0).unwrap();
        assert_eq!(p0.len(), 20);
        assert!(p0[0].created > p0[19].created);
        assert_eq!(b.list(2).unwrap().len(), 5);
        let total: i64 = (0..3).flat_map(|p| b.list(p).unwrap()).map(|t| t.comments).sum();
        assert_eq!(total, 300);
        let t = b.thread(7).unwrap().unwrap();
        let before = t.comments.len();
        let id = b.post(7, 3, "hello").unwrap().unwrap();
        let t = b.thread(7).unwrap().unwrap();
        assert_eq!(t.comments.len(), before + 1);
        assert_eq!(t.comments.last().unwrap().id, id);
        assert_eq!(b.post(999, 1, "x").unwrap(), None);
        assert_eq!(b.post(1, 999, "x").unwrap(), None);
        assert!(b.thread(999).unwrap().is_none());
        drop(b);
        dir.close().unwrap();
    }
}
