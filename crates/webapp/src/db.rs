//! The bulletin board's database tier: a MariaDB server reached over its local (unix) socket, as in
//! the seed's two-tier setup. Schema, deterministic seed data, queries.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use mysql::{Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts, PooledConn, TxOpts, Value};

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

/// The database the board lives in, unless told otherwise.
pub const DEFAULT_DATABASE: &str = "vmguard_board";

/// Connections the web tier keeps to the database tier at most. Requests check one out each, so
/// more HTTP connections than this wait for a free one instead of failing; the lab's MariaDB
/// allows 64 (`lab::database`).
const POOL_MAX: usize = 32;

fn db(what: &'static str) -> impl FnOnce(mysql::Error) -> WebError {
    move |source| WebError::Db { what, source: Box::new(source) }
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

const SCHEMA: [&str; 3] = [
    "CREATE TABLE IF NOT EXISTS users (
        id INT PRIMARY KEY, name VARCHAR(64) NOT NULL, joined BIGINT NOT NULL) ENGINE=InnoDB",
    "CREATE TABLE IF NOT EXISTS threads (
        id INT PRIMARY KEY, author INT NOT NULL, title VARCHAR(255) NOT NULL, body TEXT NOT NULL,
        created BIGINT NOT NULL, KEY threads_by_created (created),
        FOREIGN KEY (author) REFERENCES users (id)) ENGINE=InnoDB",
    "CREATE TABLE IF NOT EXISTS comments (
        id INT AUTO_INCREMENT PRIMARY KEY, thread INT NOT NULL, author INT NOT NULL, body TEXT NOT NULL,
        created BIGINT NOT NULL, rating INT NOT NULL, KEY comments_by_thread (thread, id),
        FOREIGN KEY (thread) REFERENCES threads (id), FOREIGN KEY (author) REFERENCES users (id)) ENGINE=InnoDB",
];

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

/// Rows per multi-row INSERT while seeding: few round trips (they dominate under TCG), far below
/// the protocol's 65 535 placeholders.
const SEED_BATCH: usize = 500;

/// Insert `rows` (each `cols` values) into `table` in multi-row statements.
fn insert_rows(
    tx: &mut mysql::Transaction<'_>,
    table: &str,
    columns: &str,
    rows: Vec<Vec<Value>>,
) -> Result<(), WebError> {
    for chunk in rows.chunks(SEED_BATCH) {
        let width = chunk[0].len();
        let one = format!("({})", vec!["?"; width].join(","));
        let sql = format!("INSERT INTO {table} ({columns}) VALUES {}", vec![one; chunk.len()].join(","));
        let params: Vec<Value> = chunk.iter().flatten().cloned().collect();
        tx.exec_drop(sql, params).map_err(db("seed"))?;
    }
    Ok(())
}

/// The web tier's handle on the database tier: a pool of connections over the server's socket.
#[derive(Clone)]
pub struct Database {
    pool: Pool,
    socket: PathBuf,
}

impl Database {
    /// Connect to the MariaDB server listening on `socket`, creating database `name` if needed.
    /// The server may still be starting: connecting is retried until `wait` has passed.
    pub fn connect(socket: &Path, name: &str, wait: Duration) -> Result<Database, WebError> {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(WebError::BadConfig(format!(
                "database name `{name}`: use letters, digits and underscores only"
            )));
        }
        let base = OptsBuilder::new()
            .socket(Some(socket.to_string_lossy()))
            .user(Some("root"))
            .prefer_socket(true)
            .tcp_connect_timeout(Some(Duration::from_secs(5)));
        let deadline = Instant::now() + wait;
        let mut admin = loop {
            match mysql::Conn::new(base.clone()) {
                Ok(c) => break c,
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!("database at {} not ready yet: {e}", socket.display());
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(source) => {
                    return Err(WebError::Unreachable {
                        socket: socket.to_path_buf(),
                        waited: wait,
                        source: Box::new(source),
                    });
                }
            }
        };
        admin
            .query_drop(format!("CREATE DATABASE IF NOT EXISTS {name} CHARACTER SET utf8mb4"))
            .map_err(db("create database"))?;
        drop(admin);
        // A request checks a connection out and back in: no reset round trip on return (the board
        // keeps no session state), and no health ping on checkout (a dead one fails the request,
        // and the pool replaces it).
        let pool_opts = PoolOpts::default()
            .with_constraints(PoolConstraints::new(1, POOL_MAX).expect("1 <= max"))
            .with_reset_connection(false);
        let opts: Opts = base.db_name(Some(name)).pool_opts(pool_opts).into();
        let pool = Pool::new(opts).map_err(db("connection pool"))?;
        Ok(Database { pool, socket: socket.to_path_buf() })
    }

    /// A board on a connection of its own (returned to the pool when dropped).
    pub fn board(&self) -> Result<Board, WebError> {
        let conn = self.pool.try_get_conn(Duration::from_secs(30)).map_err(db("connect"))?;
        Ok(Board { conn })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

/// One connection's view of the board.
pub struct Board {
    conn: PooledConn,
}

impl Board {
    /// Create the schema and, when the board is empty, the seed rows; `reseed` drops the board's
    /// tables first, so every benchmark run starts from the same rows. Returns the number of threads.
    pub fn init(&mut self, size: SeedSize, reseed: bool) -> Result<i64, WebError> {
        if reseed {
            self.conn.query_drop("DROP TABLE IF EXISTS comments, threads, users").map_err(db("drop tables"))?;
        }
        for table in SCHEMA {
            self.conn.query_drop(table).map_err(db("schema"))?;
        }
        let existing: i64 = self.conn.query_first("SELECT count(*) FROM threads").map_err(db("count"))?.unwrap_or(0);
        if existing > 0 {
            return Ok(existing);
        }
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut tx = self.conn.start_transaction(TxOpts::default()).map_err(db("seed transaction"))?;
        let users = (1..=size.users)
            .map(|id| vec![id.into(), format!("user{id}").into(), (1_600_000_000 + i64::from(id) * 3600).into()])
            .collect();
        insert_rows(&mut tx, "users", "id, name, joined", users)?;
        let threads = (1..=size.threads)
            .map(|id| {
                let (title, body) = (rng.words(6), rng.words(60));
                let author = 1 + rng.below(size.users);
                vec![id.into(), author.into(), title.into(), body.into(), (1_650_000_000 + i64::from(id) * 600).into()]
            })
            .collect();
        insert_rows(&mut tx, "threads", "id, author, title, body, created", threads)?;
        let comments = (0..size.comments)
            .map(|i| {
                let n = 8 + rng.below(30);
                let body = rng.words(n);
                let (thread, author) = (1 + rng.below(size.threads), 1 + rng.below(size.users));
                let rating = i64::from(rng.below(11)) - 5;
                vec![
                    thread.into(),
                    author.into(),
                    body.into(),
                    (1_650_000_000 + i64::from(i) * 30).into(),
                    rating.into(),
                ]
            })
            .collect();
        insert_rows(&mut tx, "comments", "thread, author, body, created, rating", comments)?;
        tx.commit().map_err(db("seed commit"))?;
        Ok(i64::from(size.threads))
    }

    /// One page of threads, newest first, with author and comment count.
    pub fn list(&mut self, page: u32) -> Result<Vec<ThreadSummary>, WebError> {
        self.conn
            .exec_map(
                "SELECT t.id, t.title, u.name, t.created,
                        (SELECT count(*) FROM comments c WHERE c.thread = t.id)
                 FROM threads t JOIN users u ON u.id = t.author
                 ORDER BY t.created DESC LIMIT ? OFFSET ?",
                (PAGE_SIZE, i64::from(page) * i64::from(PAGE_SIZE)),
                |(id, title, author, created, comments)| ThreadSummary { id, title, author, created, comments },
            )
            .map_err(db("list"))
    }

    /// A thread with its comments (oldest first, at most 200), or `None`.
    pub fn thread(&mut self, id: i64) -> Result<Option<ThreadPage>, WebError> {
        let head: Option<(String, String, String)> = self
            .conn
            .exec_first(
                "SELECT t.title, t.body, u.name FROM threads t JOIN users u ON u.id = t.author WHERE t.id = ?",
                (id,),
            )
            .map_err(db("thread"))?;
        let Some((title, body, author)) = head else { return Ok(None) };
        let comments = self
            .conn
            .exec_map(
                "SELECT c.id, u.name, c.body, c.created, c.rating FROM comments c JOIN users u ON u.id = c.author
                 WHERE c.thread = ? ORDER BY c.id LIMIT 200",
                (id,),
                |(id, author, body, created, rating)| Comment { id, author, body, created, rating },
            )
            .map_err(db("comments"))?;
        Ok(Some(ThreadPage { id, title, body, author, comments }))
    }

    /// Add a comment; `Ok(None)` when the thread or the author does not exist.
    pub fn post(&mut self, thread: i64, author: i64, body: &str) -> Result<Option<i64>, WebError> {
        let exists: Option<i64> = self
            .conn
            .exec_first(
                "SELECT EXISTS(SELECT 1 FROM threads WHERE id = ?) AND EXISTS(SELECT 1 FROM users WHERE id = ?)",
                (thread, author),
            )
            .map_err(db("post"))?;
        if exists != Some(1) {
            return Ok(None);
        }
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        self.conn
            .exec_drop(
                "INSERT INTO comments (thread, author, body, created, rating) VALUES (?, ?, ?, ?, 0)",
                (thread, author, body, now),
            )
            .map_err(db("post"))?;
        Ok(Some(self.conn.last_insert_id() as i64))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A MariaDB server of the test's own (the lab's recipe) and a board seeded in it.
    pub(crate) fn temp_board(size: SeedSize) -> (Board, lab::database::LocalServer) {
        let server = lab::database::LocalServer::start().expect("MariaDB for the test (`make deps` installs it)");
        let db = Database::connect(server.socket(), DEFAULT_DATABASE, Duration::from_secs(30)).unwrap();
        let mut b = db.board().unwrap();
        b.init(size, false).unwrap();
        (b, server)
    }

    #[test]
    fn seed_list_read_post_and_reseed() {
        let size = SeedSize { users: 10, threads: 45, comments: 300 };
        let (mut b, server) = temp_board(size);
        assert_eq!(b.init(SeedSize::default(), false).unwrap(), 45, "a seeded board is not seeded again");
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
        // Reseeding gives back exactly the seed's rows.
        assert_eq!(b.init(size, true).unwrap(), 45);
        let total: i64 = (0..3).flat_map(|p| b.list(p).unwrap()).map(|t| t.comments).sum();
        assert_eq!(total, 300, "the posted comment is gone after a reseed");
        drop(b);
        drop(server);
    }

    #[test]
    fn a_database_that_is_not_there_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("no.sock");
        let err = Database::connect(&sock, DEFAULT_DATABASE, Duration::from_millis(300)).err().unwrap().to_string();
        assert!(err.contains("no.sock"), "{err}");
        let err = Database::connect(&sock, "a;drop", Duration::ZERO).err().unwrap().to_string();
        assert!(err.contains("letters, digits"), "{err}");
    }
}
