//! Serve the bulletin board over HTTP (the `vmguard-webapp` binary and `vmguard webapp`).
//!
//! vmguard-webapp --db-socket PATH [--database NAME] [--listen ADDR:PORT]
//!                [--users N --threads N --comments N] [--reseed] [--seed-only]
//!
//! One thread per HTTP connection (wrk keeps a handful open); each request checks a database
//! connection out of a pool, so a flash crowd waits for the database tier instead of failing.

use std::io::BufReader;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::http::Response;
use crate::{DEFAULT_DATABASE, Database, SeedSize, WebError, handle, read_request};

/// Connections served at once; more are closed at accept (a SYN flood never gets this far).
const MAX_CONNECTIONS: usize = 512;

/// How long to wait for the database tier at start (it may still be starting, slowly under TCG).
const DB_WAIT: Duration = Duration::from_secs(120);

const USAGE: &str = "usage: vmguard-webapp --db-socket PATH [--database NAME] [--listen ADDR:PORT] [--users N] [--threads N] [--comments N] [--reseed] [--seed-only]";

#[derive(Debug)]
struct Args {
    socket: PathBuf,
    database: String,
    listen: String,
    size: SeedSize,
    reseed: bool,
    seed_only: bool,
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        socket: PathBuf::new(),
        database: DEFAULT_DATABASE.into(),
        listen: "0.0.0.0:8080".into(),
        size: SeedSize::default(),
        reseed: false,
        seed_only: false,
    };
    let mut it = args.into_iter();
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let num = |v: String| v.parse::<u32>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--db-socket" => a.socket = val()?.into(),
            "--database" => a.database = val()?,
            "--listen" => a.listen = val()?,
            "--users" => a.size.users = num(val()?)?,
            "--threads" => a.size.threads = num(val()?)?,
            "--comments" => a.size.comments = num(val()?)?,
            "--reseed" => a.reseed = true,
            "--seed-only" => a.seed_only = true,
            "--db" => {
                return Err("--db (an SQLite file) is gone: the board lives in MariaDB; pass --db-socket PATH".into());
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument `{other}` ({USAGE})")),
        }
    }
    if a.socket.as_os_str().is_empty() {
        return Err(format!("--db-socket PATH is required (the MariaDB server's unix socket); {USAGE}"));
    }
    if a.size.users == 0 || a.size.threads == 0 {
        return Err("--users and --threads must be at least 1".into());
    }
    Ok(a)
}

/// Parse `args` (without the program name), seed the database, serve until killed.
pub fn run(args: impl IntoIterator<Item = String>) -> Result<(), String> {
    let args = parse_args(args)?;
    let started = std::time::Instant::now();
    let db = Database::connect(&args.socket, &args.database, DB_WAIT).map_err(|e| e.to_string())?;
    let threads = db
        .board()
        .and_then(|mut b| b.init(args.size, args.reseed))
        .map_err(|e| format!("{} on {}: {e}", args.database, args.socket.display()))?;
    println!(
        "vmguard-webapp: {threads} threads in database {} on {} (ready in {:.2} s)",
        args.database,
        args.socket.display(),
        started.elapsed().as_secs_f64()
    );
    if args.seed_only {
        return Ok(());
    }
    let listener = TcpListener::bind(&args.listen).map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    println!("vmguard-webapp: listening on {}", args.listen);
    let live = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        if live.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
            continue;
        }
        live.fetch_add(1, Ordering::Relaxed);
        let (db, live) = (db.clone(), Arc::clone(&live));
        std::thread::spawn(move || {
            let _ = serve(&db, stream);
            live.fetch_sub(1, Ordering::Relaxed);
        });
    }
    Ok(())
}

fn serve(db: &Database, stream: std::net::TcpStream) -> Result<(), WebError> {
    let io = |source| WebError::Io { what: "socket", source };
    stream.set_read_timeout(Some(Duration::from_secs(30))).map_err(io)?;
    let _ = stream.set_nodelay(true);
    let mut writer = stream.try_clone().map_err(io)?;
    let mut reader = BufReader::new(stream);
    while let Some(req) = read_request(&mut reader)? {
        let resp = match db.board() {
            Ok(mut board) => handle(&mut board, &req),
            Err(e) => Response::unavailable(e.to_string()),
        };
        resp.write_to(&mut writer, req.keep_alive).map_err(io)?;
        if !req.keep_alive {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(a: &[&str]) -> Result<Args, String> {
        parse_args(a.iter().map(|s| s.to_string()))
    }

    #[test]
    fn arguments_are_checked() {
        let a = parse(&["--db-socket", "/run/m.sock", "--reseed", "--users", "3"]).unwrap();
        assert_eq!(
            (a.socket, a.database.as_str(), a.reseed, a.size.users),
            ("/run/m.sock".into(), "vmguard_board", true, 3)
        );
        assert!(parse(&[]).unwrap_err().contains("--db-socket PATH is required"));
        assert!(parse(&["--db", "x.db"]).unwrap_err().contains("MariaDB"));
        assert!(parse(&["--db-socket", "s", "--users", "0"]).unwrap_err().contains("at least 1"));
        assert!(parse(&["--db-socket", "s", "--users", "x"]).unwrap_err().contains("--users"));
        assert!(parse(&["--bogus"]).unwrap_err().contains("unknown argument `--bogus`"));
    }
}
