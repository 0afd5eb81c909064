//! vmguard-webapp: the seed's "comprehensive benchmark", a two-tier web application in the spirit of
//! RUBBoS (a bulletin board: list threads, read a thread with its comments, post a comment), served by
//! a small HTTP/1.1 server of ours in front of an SQLite database.
//!
//! Why this and not Apache + PHP + MySQL as in the seed: the same binary (with its few shared
//! libraries) runs unchanged in all three victims, including the busybox guest whose image holds only
//! what vmguard copies in; a MySQL server would not fit there and would dominate the guest's boot.
//! The tiers are still real: every page is SQL (joins, an aggregate, an insert with a write lock) on a
//! database seeded with thousands of rows, on the victim's disk. See README.md.

pub mod db;
pub mod http;
pub mod server;

pub use db::{Board, SeedSize};
pub use http::{Request, Response, handle, read_request};

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// The database failed (open, schema, query).
    #[error("database {what}: {source}")]
    Db { what: &'static str, source: rusqlite::Error },
    /// The socket failed.
    #[error("{what}: {source}")]
    Io { what: &'static str, source: std::io::Error },
    /// The client sent something that is not an HTTP request we serve.
    #[error("bad request: {0}")]
    BadRequest(String),
}
