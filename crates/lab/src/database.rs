//! The victims' database tier: Debian's MariaDB (the seed's MySQL), one server in every victim,
//! started by `lab up` and reached by the web tier over a local unix socket, as in the seed's
//! two-tier setup.
//!
//! The data directory is made once per MariaDB build with `mariadb-install-db` and cached; each
//! victim gets a copy on its own disk (the guest's on its ext4 virtio disk, made from the copy at
//! `lab up`), so no victim bootstraps MariaDB itself (that takes tens of seconds under TCG).
//! The server's command line is here only, the same in every victim.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use exec::Cmd;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::LabError;

/// The directory (inside a victim's data area) holding the data directory, socket, pid file and log.
pub const DIR_NAME: &str = "mariadb";

/// Files the server reads besides its binary and libraries: the error messages it refuses to start
/// without, and the character set definitions.
pub const SHARE_DIR: &str = "/usr/share/mysql";

/// Settings every victim's server runs with. Small buffers: the board's data is a few MB and the
/// guest has a few hundred MB. No networking: the web tier talks over the socket only. Native AIO
/// off: io_uring and libaio behave differently in the guest, the container and on the host, and the
/// database must not be what differs between victims.
const SERVER_SETTINGS: [&str; 10] = [
    "--skip-networking",
    "--skip-name-resolve",
    "--performance-schema=OFF",
    "--innodb-buffer-pool-size=16M",
    "--innodb-log-file-size=8M",
    "--innodb-use-native-aio=0",
    "--key-buffer-size=1M",
    "--max-connections=64",
    "--lc-messages=en_US",
    "--lc-messages-dir=/usr/share/mysql",
];

/// Where a victim's server keeps its files, as the victim sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    /// The directory holding everything below.
    pub dir: String,
    pub datadir: String,
    pub socket: String,
    pub pid_file: String,
    pub log: String,
}

impl Layout {
    /// The layout under a victim's data area (`/data` in the container and the guest, a directory on
    /// the host's disk for the vanilla victim).
    pub fn under(data_area: &str) -> Layout {
        let dir = format!("{}/{DIR_NAME}", data_area.trim_end_matches('/'));
        Layout {
            datadir: format!("{dir}/data"),
            socket: format!("{dir}/mariadb.sock"),
            pid_file: format!("{dir}/mariadb.pid"),
            log: format!("{dir}/mariadb.log"),
            dir,
        }
    }
}

/// The running database tier of one victim, recorded in the lab state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatabaseTier {
    pub layout: Layout,
    /// The server's PID as the victim sees it (the host's for the vanilla victim).
    pub pid: u32,
    /// Seconds from the start command to the socket accepting.
    pub start_secs: f64,
}

/// The MariaDB server binary on this host.
pub fn server_binary() -> Result<PathBuf, LabError> {
    ["/usr/sbin/mariadbd", "/usr/bin/mariadbd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .or_else(|| exec::which("mariadbd"))
        .ok_or_else(|| LabError::Missing("mariadbd (Debian package mariadb-server-core): run `make deps`".into()))
}

/// The server's argument list for `layout`. `as_root`: the server runs as uid 0 (every victim;
/// mariadbd refuses that unless told `--user=root`).
pub fn server_args(layout: &Layout, as_root: bool) -> Vec<String> {
    let mut args = vec![
        "--no-defaults".to_string(),
        format!("--datadir={}", layout.datadir),
        format!("--socket={}", layout.socket),
        format!("--pid-file={}", layout.pid_file),
        format!("--log-error={}", layout.log),
    ];
    if as_root {
        args.push("--user=root".into());
    }
    args.extend(SERVER_SETTINGS.iter().map(|s| s.to_string()));
    args
}

/// A shell script that starts the server in the background, waits up to `wait` for its socket and
/// prints its PID; it fails (printing the log's end) if the server exits or the socket never comes.
pub fn start_script(binary: &str, layout: &Layout, wait: Duration) -> String {
    let q = exec::shell_quote;
    let args: Vec<String> = server_args(layout, true).iter().map(|a| q(a)).collect();
    let tenths = wait.as_millis().div_ceil(100);
    format!(
        "mkdir -p {dir}\n\
         {bin} {args} < /dev/null > {dir}/mariadbd.out 2>&1 &\n\
         pid=$!\n\
         i=0\n\
         while [ ! -S {sock} ] && [ $i -lt {tenths} ] && kill -0 $pid 2>/dev/null; do sleep 0.1; i=$((i+1)); done\n\
         if [ -S {sock} ]; then echo \"VMGUARD_DB_PID $pid\"; exit 0; fi\n\
         echo \"mariadbd did not open {sock}:\"; tail -n 5 {log} {dir}/mariadbd.out 2>/dev/null; exit 1\n",
        dir = q(&layout.dir),
        bin = q(binary),
        args = args.join(" "),
        sock = q(&layout.socket),
        log = q(&layout.log),
    )
}

/// The PID the start script printed.
pub fn parse_started(output: &str) -> Option<u32> {
    output.lines().find_map(|l| l.trim().strip_prefix("VMGUARD_DB_PID ")?.trim().parse().ok())
}

/// How many cached data directories to keep (one per MariaDB build seen).
const KEEP_TEMPLATES: usize = 2;

/// The initialised data directory for this host's MariaDB, built once and cached under `cache_dir`
/// by a key of the server binary and the settings.
pub fn template(cache_dir: &Path, progress: &dyn Fn(&str)) -> Result<PathBuf, LabError> {
    let binary = server_binary()?;
    let mut hasher = Sha256::new();
    hasher.update(std::fs::read(&binary).map_err(|e| LabError::io(format!("reading {}", binary.display()), e))?);
    for s in SERVER_SETTINGS {
        hasher.update(s.as_bytes());
        hasher.update([0]);
    }
    let key = hex::encode(&hasher.finalize()[..8]);
    let dir = cache_dir.join(format!("mariadb-{key}"));
    let datadir = dir.join("data");
    if dir.join("ready").exists() {
        return Ok(datadir);
    }
    progress("initialising the MariaDB data directory (once per MariaDB build)");
    let install = ["/usr/bin/mariadb-install-db", "/usr/bin/mysql_install_db"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| {
            LabError::Missing("mariadb-install-db (Debian package mariadb-server-core): run `make deps`".into())
        })?;
    // Built beside its final place and renamed: a concurrent `lab up` or a kill never leaves half a
    // template under the real name.
    let building = cache_dir.join(format!("building-mariadb-{key}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&building);
    std::fs::create_dir_all(&building).map_err(|e| LabError::io(format!("creating {}", building.display()), e))?;
    let mut cmd = Cmd::new(install)
        .arg("--no-defaults")
        .arg(format!("--datadir={}", building.join("data").display()))
        .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
        .args(SERVER_SETTINGS.iter().filter(|s| s.starts_with("--innodb") || s.starts_with("--lc-messages")))
        .timeout(Duration::from_secs(180));
    if crate::lab::is_root() {
        cmd = cmd.arg("--user=root");
    }
    let log = building.join("install.log");
    if let Err(e) = cmd.run_logged(&log) {
        let tail = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_dir_all(&building);
        return Err(LabError::Image(format!(
            "mariadb-install-db failed: {e}; its output ended: {}",
            tail.lines().rev().take(3).collect::<Vec<_>>().join(" | ")
        )));
    }
    std::fs::write(building.join("ready"), b"").map_err(|e| LabError::io("marking the MariaDB template", e))?;
    if std::fs::rename(&building, &dir).is_err() {
        // Another process finished the same template first: use theirs.
        let _ = std::fs::remove_dir_all(&building);
        if !dir.join("ready").exists() {
            return Err(LabError::Image(format!("could not move the MariaDB template into {}", dir.display())));
        }
    }
    crate::image::prune_cache(cache_dir, "mariadb-", KEEP_TEMPLATES);
    Ok(datadir)
}

/// Copy the template data directory to `layout`'s place on the host (`host_dir` is `layout.dir` as
/// the host sees it).
pub fn place(template: &Path, host_dir: &Path) -> Result<(), LabError> {
    let _ = std::fs::remove_dir_all(host_dir);
    std::fs::create_dir_all(host_dir).map_err(|e| LabError::io(format!("creating {}", host_dir.display()), e))?;
    Cmd::new("cp").arg("-a").arg(template).arg(host_dir.join("data")).run()?;
    Ok(())
}

/// Start the database tier inside a victim (the template already placed) and wait for its socket.
pub fn start(state: &crate::LabState, victim: &str, layout: &Layout, wait: Duration) -> Result<DatabaseTier, LabError> {
    let binary = server_binary()?;
    let script = start_script(&binary.to_string_lossy(), layout, wait);
    let started = Instant::now();
    let argv = ["sh".to_string(), "-c".to_string(), format!("exec 3>&-; {script}")];
    let out = crate::victim::run_in(state, victim, &argv, wait + Duration::from_secs(30))?;
    match parse_started(&out.output) {
        Some(pid) if out.status == 0 => {
            Ok(DatabaseTier { layout: layout.clone(), pid, start_secs: started.elapsed().as_secs_f64() })
        }
        _ => Err(LabError::Victim {
            victim: victim.to_string(),
            reason: format!("its database tier (MariaDB) did not start: {}", out.output.trim()),
            log: PathBuf::from(&layout.log),
        }),
    }
}

/// A MariaDB server of its own on this host, in a temporary directory, stopped when dropped: what
/// the web tier's tests talk to, run with the same recipe as the victims'.
pub struct LocalServer {
    dir: tempfile::TempDir,
    layout: Layout,
    pid: u32,
}

impl LocalServer {
    pub fn start() -> Result<LocalServer, LabError> {
        let dir = tempfile::Builder::new()
            .prefix("vmguard-mariadb-")
            .tempdir()
            .map_err(|e| LabError::io("creating a directory for MariaDB", e))?;
        let template = template(&dir.path().join("cache"), &|_| {})?;
        let layout = Layout::under(&dir.path().to_string_lossy());
        place(&template, Path::new(&layout.dir))?;
        let log = dir.path().join("mariadbd.log");
        let pid = Cmd::new(server_binary()?).args(server_args(&layout, crate::lab::is_root())).spawn_detached(&log)?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while !Path::new(&layout.socket).exists() {
            if !exec::pid_alive(pid) || Instant::now() > deadline {
                let _ = exec::stop_pid(pid, Duration::from_secs(2));
                let tail = std::fs::read_to_string(&layout.log).unwrap_or_default();
                return Err(LabError::Victim {
                    victim: "local MariaDB".into(),
                    reason: format!("mariadbd did not open its socket: {}", tail.lines().last().unwrap_or("")),
                    log: PathBuf::from(&layout.log),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(LocalServer { dir, layout, pid })
    }

    pub fn socket(&self) -> &Path {
        Path::new(&self.layout.socket)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        let _ = exec::stop_pid(self.pid, Duration::from_secs(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_command_line() {
        let l = Layout::under("/data/");
        assert_eq!(l.socket, "/data/mariadb/mariadb.sock");
        assert_eq!(l.datadir, "/data/mariadb/data");
        let args = server_args(&l, true);
        assert_eq!(args[0], "--no-defaults", "no my.cnf of the victim may change the settings");
        assert!(args.contains(&"--user=root".to_string()));
        assert!(args.contains(&"--skip-networking".to_string()));
        assert!(!server_args(&l, false).contains(&"--user=root".to_string()));
    }

    #[test]
    fn start_script_is_valid_shell_and_reports_the_pid() {
        let script = start_script("/usr/sbin/mariadbd", &Layout::under("/data"), Duration::from_secs(30));
        let out = Cmd::new("sh").arg("-n").stdin(script.as_str()).run_unchecked().unwrap();
        assert!(out.status.success(), "{}", out.stderr);
        assert!(script.contains("$i -lt 300"), "{script}");
        assert_eq!(parse_started("noise\nVMGUARD_DB_PID 42\n"), Some(42));
        assert_eq!(parse_started("VMGUARD_DB_PID x"), None);
    }

    #[test]
    fn a_local_server_starts_from_the_template_and_stops_when_dropped() {
        let server = LocalServer::start().expect("MariaDB (`make deps` installs mariadb-server-core)");
        assert!(server.socket().exists());
        let pid = server.pid;
        let out = Cmd::new("mariadb")
            .arg("-S")
            .arg(server.socket())
            .args(["-uroot", "-N", "-e", "SELECT @@innodb_buffer_pool_size, @@skip_networking"])
            .stdout()
            .unwrap();
        assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["16777216", "1"], "{out}");
        drop(server);
        assert!(!exec::pid_alive(pid), "the server is stopped with its owner");
    }
}
