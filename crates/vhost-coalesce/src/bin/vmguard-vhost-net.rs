//! `vmguard-vhost-net`: the coalescing vhost-user-net backend as a process.
//!
//! Listens on `--socket` for QEMU's vhost-user netdev, forwards between the guest and the tap
//! `--tap`, and serves the control socket `--control`. Serves one QEMU connection at a time and
//! waits for the next when it ends (a guest reboot or a restarted QEMU reconnects).

use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::thread;

use clap::{Parser, ValueEnum};
use tracing_subscriber::EnvFilter;
use vhost::vhost_user::Listener;
use vhost_coalesce::backend::{Config, NetBackend};
use vhost_coalesce::coalesce::Mode;
use vhost_coalesce::control::{self, Controlled};
use vhost_coalesce::relay;
use vhost_coalesce::tap::Tap;
use vhost_user_backend::VhostUserDaemon;
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ModeArg {
    Off,
    Fixed,
    Adaptive,
}

/// vhost-user-net backend with RX interrupt coalescing (off | fixed | adaptive).
#[derive(Debug, Parser)]
#[command(name = "vmguard-vhost-net", version)]
struct Args {
    /// vhost-user socket to listen on (QEMU: -chardev socket,path=...).
    #[arg(long)]
    socket: PathBuf,
    /// Existing tap device to attach to (in the current network namespace).
    #[arg(long)]
    tap: String,
    /// Control socket (line-based JSON).
    #[arg(long)]
    control: Option<PathBuf>,
    /// Initial coalescing mode.
    #[arg(long, value_enum, default_value = "off")]
    mode: ModeArg,
    /// fixed/adaptive: longest hold of a notification, microseconds (0: no hold).
    #[arg(long, default_value_t = 200)]
    rx_usecs: u32,
    /// fixed/adaptive: notify once this many frames are pending (0: no frame limit).
    #[arg(long, default_value_t = 32)]
    rx_frames: u32,
    /// adaptive: RX rate (frames/s) above which notifications are coalesced.
    #[arg(long, default_value_t = 20_000)]
    pps_threshold: u64,
    /// Largest virtqueue size offered to the guest (power of two, 2..=32768).
    #[arg(long, default_value_t = 256, value_parser = parse_queue_size)]
    queue_size: u16,
}

fn parse_queue_size(s: &str) -> Result<u16, String> {
    let n: u16 = s.parse().map_err(|e| format!("{e}"))?;
    if n >= 2 && n.is_power_of_two() && n <= 32768 {
        Ok(n)
    } else {
        Err(format!("{n} is not a power of two in 2..=32768"))
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("vmguard-vhost-net: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let mode = match args.mode {
        ModeArg::Off => Mode::Off,
        ModeArg::Fixed => Mode::Fixed { rx_usecs: args.rx_usecs, rx_frames: args.rx_frames },
        ModeArg::Adaptive => {
            Mode::Adaptive { rx_usecs: args.rx_usecs, rx_frames: args.rx_frames, pps_threshold: args.pps_threshold }
        }
    };
    control::validate_mode(&mode)?;
    let tap = Tap::open(&args.tap).map_err(|e| e.to_string())?;
    let mem = GuestMemoryAtomic::new(GuestMemoryMmap::new());
    let config = Config { queue_size: args.queue_size, mode };
    let backend = Arc::new(NetBackend::new(tap, mem.clone(), &config).map_err(|e| format!("backend set-up: {e}"))?);
    if let Some(path) = &args.control {
        let target: Arc<dyn Controlled> = backend.clone();
        control::spawn_server(path, target).map_err(|e| format!("control socket {}: {e}", path.display()))?;
    }
    tracing::info!(
        socket = %args.socket.display(),
        tap = %args.tap,
        mode = mode.name(),
        queue_size = args.queue_size,
        "vmguard-vhost-net ready"
    );

    match std::fs::remove_file(&args.socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("stale socket {}: {e}", args.socket.display())),
    }
    let frontend =
        UnixListener::bind(&args.socket).map_err(|e| format!("vhost-user socket {}: {e}", args.socket.display()))?;
    let inner_path = args.socket.with_extension("backend");
    loop {
        let (qemu, _) = frontend.accept().map_err(|e| format!("accept on {}: {e}", args.socket.display()))?;
        tracing::info!("frontend connected");
        serve_one(&backend, &mem, qemu, &inner_path)?;
        let s = backend.stats();
        tracing::info!(
            rx_frames = s.rx_frames,
            tx_frames = s.tx_frames,
            rx_notify_sent = s.rx_notify_sent,
            rx_notify_coalesced = s.rx_notify_coalesced,
            "frontend disconnected; waiting for the next"
        );
    }
}

/// Serves one QEMU connection through the relay (see `vhost_coalesce::relay`) until it ends.
fn serve_one(
    backend: &Arc<NetBackend>,
    mem: &GuestMemoryAtomic<GuestMemoryMmap>,
    qemu: UnixStream,
    inner_path: &Path,
) -> Result<(), String> {
    let mut daemon = VhostUserDaemon::new("vmguard-vhost-net".into(), backend.clone(), mem.clone())
        .map_err(|e| format!("vhost-user daemon: {e}"))?;
    for handler in daemon.get_epoll_handlers() {
        for (fd, events, id) in backend.extra_events() {
            handler
                .register_listener(fd, events, u64::from(id))
                .map_err(|e| format!("epoll registration of event {id}: {e}"))?;
        }
        // One worker thread (no queue is mapped elsewhere): the tap is in this epoll set.
        backend.set_epoll_fd(Some(handler.as_raw_fd()));
    }
    let _ = std::fs::remove_file(inner_path);
    let inner = UnixListener::bind(inner_path).map_err(|e| format!("{}: {e}", inner_path.display()))?;
    // The connection is queued in the backlog, so connecting before the daemon accepts is fine.
    let to_daemon = UnixStream::connect(inner_path).map_err(|e| format!("{}: {e}", inner_path.display()))?;
    let mut listener = Listener::from(inner);
    let started = daemon.start(&mut listener);
    let _ = std::fs::remove_file(inner_path);
    started.map_err(|e| format!("vhost-user daemon start: {e}"))?;

    let (q2, d2) = (qemu.try_clone().map_err(|e| e.to_string())?, to_daemon.try_clone().map_err(|e| e.to_string())?);
    // Both directions write to QEMU's socket (the relay acknowledges held requests itself).
    let front_lock = Arc::new(Mutex::new(()));
    let lock2 = front_lock.clone();
    let up = thread::spawn(move || {
        if let Err(e) = relay::frontend_to_backend(&qemu, &to_daemon, &front_lock) {
            tracing::debug!(error = %e, "relay from QEMU ended");
        }
        let _ = to_daemon.shutdown(Shutdown::Both);
        let _ = qemu.shutdown(Shutdown::Both);
    });
    let down = thread::spawn(move || {
        if let Err(e) = relay::backend_to_frontend(&d2, &q2, &lock2) {
            tracing::debug!(error = %e, "relay to QEMU ended");
        }
        let _ = q2.shutdown(Shutdown::Both);
        let _ = d2.shutdown(Shutdown::Both);
    });
    let result = daemon.wait();
    backend.set_epoll_fd(None);
    let _ = up.join();
    let _ = down.join();
    // Dropping the daemon stops its worker thread (exit event) before the next connection.
    drop(daemon);
    match result {
        Ok(()) => Ok(()),
        Err(e) => {
            // A frontend that quits mid-message is a normal end, not a reason to exit.
            tracing::warn!(error = %e, "vhost-user connection ended with an error");
            Ok(())
        }
    }
}
