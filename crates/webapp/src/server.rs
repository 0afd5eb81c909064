//! Serve the bulletin board over HTTP (the `vmguard-webapp` binary and `vmguard webapp`).
//!
//! vmguard-webapp --db PATH [--listen ADDR:PORT] [--users N --threads N --comments N] [--seed-only]
//!
//! One thread per connection (wrk keeps a handful open), each with its own SQLite connection.

use std::io::BufReader;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::{Board, SeedSize, WebError, handle, read_request};

/// Connections served at once; more are closed at accept (a SYN flood never gets this far).
const MAX_CONNECTIONS: usize = 512;

struct Args {
    db: PathBuf,
    listen: String,
    size: SeedSize,
    seed_only: bool,
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let mut a = Args { db: PathBuf::new(), listen: "0.0.0.0:8080".into(), size: SeedSize::default(), seed_only: false };
    let mut it = args.into_iter();
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let num = |v: String| v.parse::<u32>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--db" => a.db = val()?.into(),
            "--listen" => a.listen = val()?,
            "--users" => a.size.users = num(val()?)?,
            "--threads" => a.size.threads = num(val()?)?,
            "--comments" => a.size.comments = num(val()?)?,
            "--seed-only" => a.seed_only = true,
            "-h" | "--help" => {
                return Err("usage: vmguard-webapp --db PATH [--listen ADDR:PORT] [--users N] [--threads N] [--comments N] [--seed-only]".into());
            }
            other => return Err(format!("unknown argument `{other}` (see --help)")),
        }
    }
    if a.db.as_os_str().is_empty() {
        return Err("--db PATH is required (the SQLite file; created and seeded when missing)".into());
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
    let threads =
        Board::open(&args.db).and_then(|mut b| b.init(args.size)).map_err(|e| format!("{}: {e}", args.db.display()))?;
    println!(
        "vmguard-webapp: {} threads in {} (ready in {:.2} s)",
        threads,
        args.db.display(),
        started.elapsed().as_secs_f64()
    );
    if args.seed_only {
        return Ok(());
    }
    let listener = TcpListener::bind(&args.listen).map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    println!("vmguard-webapp: listening on {}", args.listen);
    let db = Arc::new(args.db);
    let live = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        if live.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
            continue;
        }
        live.fetch_add(1, Ordering::Relaxed);
        let (db, live) = (Arc::clone(&db), Arc::clone(&live));
        std::thread::spawn(move || {
            let _ = serve(&db, stream);
            live.fetch_sub(1, Ordering::Relaxed);
        });
    }
    Ok(())
}

fn serve(db: &std::path::Path, stream: std::net::TcpStream) -> Result<(), WebError> {
    let io = |source| WebError::Io { what: "socket", source };
    stream.set_read_timeout(Some(Duration::from_secs(30))).map_err(io)?;
    let _ = stream.set_nodelay(true);
    let board = Board::open(db)?;
    let mut writer = stream.try_clone().map_err(io)?;
    let mut reader = BufReader::new(stream);
    while let Some(req) = read_request(&mut reader)? {
        let resp = handle(&board, &req);
        resp.write_to(&mut writer, req.keep_alive).map_err(io)?;
        if !req.keep_alive {
            break;
        }
    }
    Ok(())
}
