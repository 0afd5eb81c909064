//! `vmguard-xen-relay`: the Xen machine's stream relay as a process (`lab::relay`).
//!
//! The only client of qemu's chardev sockets for dom0's trace and stats ports: serves any number of
//! readers on `LISTEN` (with none, the trace stream is held and the stats lines are dropped), and
//! runs until SIGTERM or SIGINT, then removes its sockets and status file. The lab starts one per Xen machine right after qemu.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use lab::relay::{ChannelSpec, Framing, Limits, Relay, RelaySpec, Unread};

/// Fan-out relay for qemu's one-client chardev sockets (xentrace bytes, dom0's stats lines).
#[derive(Debug, Parser)]
#[command(name = "vmguard-xen-relay", version)]
struct Args {
    /// A byte stream (xentrace): qemu's socket and the socket readers connect to.
    #[arg(long, num_args = 2, value_names = ["UPSTREAM", "LISTEN"])]
    trace: Vec<PathBuf>,
    /// A line stream (dom0's /proc/net/dev blocks): forwarded in whole lines only.
    #[arg(long, num_args = 2, value_names = ["UPSTREAM", "LISTEN"])]
    stats: Vec<PathBuf>,
    /// Write the counters here every second (JSON).
    #[arg(long)]
    status: Option<PathBuf>,
    /// Bytes queued per reader before what comes is dropped for it.
    #[arg(long, default_value_t = Limits::default().queue_bytes)]
    queue_bytes: usize,
    /// Readers served at once per stream.
    #[arg(long, default_value_t = Limits::default().max_readers)]
    max_readers: usize,
    /// Longest line of a line stream.
    #[arg(long, default_value_t = Limits::default().max_line)]
    max_line: usize,
}

/// Block the stop signals in every thread (the relay's threads inherit the mask) and return them.
fn block_stop_signals() -> libc::sigset_t {
    // SAFETY: a zeroed sigset_t is a valid argument to sigemptyset, which initialises it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, initialised signal set; the mask change affects this thread only.
    unsafe {
        libc::sigemptyset(&mut set);
        for s in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    set
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // The lab sends its stderr to relay.log: colours only on a terminal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    let args = Args::parse();
    let mut channels = Vec::new();
    let streams =
        [("trace", Framing::Bytes, Unread::Hold, &args.trace), ("stats", Framing::Lines, Unread::Drop, &args.stats)];
    for (name, framing, unread, paths) in streams {
        for (i, pair) in paths.chunks(2).enumerate() {
            let name = if i == 0 { name.to_string() } else { format!("{name}{i}") };
            channels.push(ChannelSpec { name, upstream: pair[0].clone(), listen: pair[1].clone(), framing, unread });
        }
    }
    let spec = RelaySpec {
        channels,
        limits: Limits { queue_bytes: args.queue_bytes, max_readers: args.max_readers, max_line: args.max_line },
        status: args.status,
    };
    let set = block_stop_signals();
    let relay = match Relay::start(&spec) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vmguard-xen-relay: {e}");
            return ExitCode::FAILURE;
        }
    };
    for c in &spec.channels {
        tracing::info!("{}: relaying {} to readers on {}", c.name, c.upstream.display(), c.listen.display());
    }
    let mut sig: libc::c_int = 0;
    // SAFETY: `set` is initialised and `sig` is a valid out pointer.
    unsafe { libc::sigwait(&set, &mut sig) };
    tracing::info!("signal {sig}: stopping");
    let last = relay.shutdown();
    for c in &last.channels {
        tracing::info!(
            "{}: {} bytes from qemu ({} connects), {} dropped for want of a reader, {} dropped for slow readers ({} readers overflowed), {} readers in all",
            c.name,
            c.upstream_bytes,
            c.upstream_connects,
            c.unread_bytes,
            c.reader_dropped_bytes,
            c.readers_overflowed,
            c.readers_total
        );
    }
    ExitCode::SUCCESS
}
