//! vmguard-webapp: the seed's "comprehensive benchmark", a two-tier web application in the spirit of
//! RUBBoS (a bulletin board: list threads, read a thread with its comments, post a comment), served by
//! a small HTTP/1.1 server of ours (the web tier) in front of a MariaDB server (the database tier,
//! Debian's, the seed's MySQL) reached over its local unix socket, as in the seed.
//!
//! Why our own web tier and not Apache + PHP: the same binary (with its few shared libraries) runs
//! unchanged in every victim, including the busybox guest whose image holds only what vmguard copies
//! in. The tiers are real and separate processes: every page is SQL (joins, an aggregate, an insert)
//! sent across a local socket to mariadbd, on a database seeded with thousands of rows on the
//! victim's disk. See README.md.

pub mod db;
pub mod http;
pub mod server;

pub use db::{Board, DEFAULT_DATABASE, Database, SeedSize};
pub use http::{Request, Response, handle, read_request};

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// The database failed (open, schema, query).
    #[error("database {what}: {source}")]
    Db { what: &'static str, source: Box<mysql::Error> },
    /// The database server did not accept a connection in time.
    #[error(
        "no MariaDB server answers on {} (waited {waited:?}): {source}; is the victim's database tier up (`vmguard lab status`)?",
        socket.display()
    )]
    Unreachable { socket: std::path::PathBuf, waited: std::time::Duration, source: Box<mysql::Error> },
    /// A setting the server cannot use.
    #[error("{0}")]
    BadConfig(String),
    /// The socket failed.
    #[error("{what}: {source}")]
    Io { what: &'static str, source: std::io::Error },
    /// The client sent something that is not an HTTP request we serve.
    #[error("bad request: {0}")]
    BadRequest(String),
}
