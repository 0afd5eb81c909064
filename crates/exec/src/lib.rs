//! The one runner for external commands in vmguard.
//!
//! Every tool vmguard orchestrates (ip, tc, nft, qemu, runc, sysbench, ...) is started through [`Cmd`],
//! so that every failure is reported the same way: the command line, its exit status and its stderr.
//! A command always has a timeout; on expiry its whole process group is killed (by PID, never by name).

use std::ffi::OsString;
use std::fmt;
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use wait_timeout::ChildExt;

/// Default timeout of a command that does not set one: long enough for any lab set-up step.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// How much of stderr an error message quotes.
const STDERR_QUOTE_BYTES: usize = 2000;

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The program is not installed (not on PATH).
    #[error("`{program}` is not installed or not on PATH (needed for: {cmd}); run `make deps` to install it")]
    NotFound { program: String, cmd: String },
    /// The program exists but could not be started.
    #[error("could not start `{cmd}`: {source}")]
    Spawn { cmd: String, source: std::io::Error },
    /// Reading its output or waiting for it failed.
    #[error("lost contact with `{cmd}`: {source}")]
    Io { cmd: String, source: std::io::Error },
    /// It ran longer than allowed and was killed.
    #[error("`{cmd}` did not finish within {after:?} and was killed")]
    Timeout { cmd: String, after: Duration },
    /// It exited unsuccessfully.
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Failed { cmd: String, status: String, stderr: String, stdout: String },
}

impl ExecError {
    /// Stderr of a failed command (empty for other errors): lets callers accept known, harmless failures.
    pub fn stderr(&self) -> &str {
        match self {
            ExecError::Failed { stderr, .. } => stderr,
            _ => "",
        }
    }
}

/// What a finished command produced.
#[derive(Debug, Clone)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
    pub status: ExitStatus,
    pub elapsed: Duration,
}

/// A command to run: a builder over [`std::process::Command`] that always has a timeout.
#[derive(Debug, Clone)]
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    netns: Option<String>,
    envs: Vec<(OsString, OsString)>,
    cwd: Option<PathBuf>,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
}

impl Cmd {
    pub fn new(program: impl Into<OsString>) -> Self {
        Cmd {
            program: program.into(),
            args: Vec::new(),
            netns: None,
            envs: Vec::new(),
            cwd: None,
            stdin: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Run inside the named network namespace (through `ip netns exec`, which also remounts /sys).
    pub fn netns(mut self, ns: impl Into<String>) -> Self {
        self.netns = Some(ns.into());
        self
    }

    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    pub fn cwd(mut self, dir: impl AsRef<Path>) -> Self {
        self.cwd = Some(dir.as_ref().to_path_buf());
        self
    }

    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(input.into());
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The command line as a user would type it, for messages.
    pub fn display(&self) -> String {
        let mut words: Vec<String> = Vec::new();
        if let Some(ns) = &self.netns {
            words.extend(["ip", "netns", "exec", ns].map(String::from));
        }
        words.push(self.program.to_string_lossy().into_owned());
        words.extend(self.args.iter().map(|a| shell_quote(&a.to_string_lossy())));
        words.join(" ")
    }

    fn command(&self) -> Command {
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&self.program);
                c
            }
            None => Command::new(&self.program),
        };
        cmd.args(&self.args);
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        cmd
    }

    fn spawn_error(&self, source: std::io::Error) -> ExecError {
        if source.kind() == std::io::ErrorKind::NotFound {
            let program = if self.netns.is_some() { "ip".into() } else { self.program.to_string_lossy().into_owned() };
            ExecError::NotFound { program, cmd: self.display() }
        } else {
            ExecError::Spawn { cmd: self.display(), source }
        }
    }

    /// Run to completion; a non-zero exit is an error that quotes stderr.
    pub fn run(&self) -> Result<Output, ExecError> {
        let out = self.run_unchecked()?;
        if out.status.success() {
            Ok(out)
        } else {
            Err(ExecError::Failed {
                cmd: self.display(),
                status: describe_status(out.status),
                stderr: quote_tail(&out.stderr),
                stdout: out.stdout,
            })
        }
    }

    /// Run to completion and return stdout, trimmed of the final newline.
    pub fn stdout(&self) -> Result<String, ExecError> {
        let mut s = self.run()?.stdout;
        while s.ends_with('\n') {
            s.pop();
        }
        Ok(s)
    }

    /// Run to completion; the caller judges the exit status.
    pub fn run_unchecked(&self) -> Result<Output, ExecError> {
        let started = Instant::now();
        let mut cmd = self.command();
        cmd.stdin(if self.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Own process group, so a timeout kills the command's children too.
            .process_group(0);
        tracing::debug!(cmd = %self.display(), "run");
        let mut child = cmd.spawn().map_err(|e| self.spawn_error(e))?;
        let io_err = |source| ExecError::Io { cmd: self.display(), source };

        // Feed stdin and drain both pipes on threads: a full pipe must never block the child.
        let stdin_thread = match (child.stdin.take(), self.stdin.clone()) {
            (Some(mut pipe), Some(data)) => Some(thread::spawn(move || pipe.write_all(&data))),
            _ => None,
        };
        let stdout_thread = drain(child.stdout.take());
        let stderr_thread = drain(child.stderr.take());

        let status = match child.wait_timeout(self.timeout).map_err(io_err)? {
            Some(status) => status,
            None => {
                kill_group(&mut child);
                return Err(ExecError::Timeout { cmd: self.display(), after: self.timeout });
            }
        };
        if let Some(t) = stdin_thread {
            // A child that exits without reading its input is not an error of ours.
            let _ = t.join();
        }
        let stdout = join_drain(stdout_thread);
        let stderr = join_drain(stderr_thread);
        Ok(Output { stdout, stderr, status, elapsed: started.elapsed() })
    }

    /// Run to completion with stdout and stderr appended to `log` (for programs whose children
    /// inherit their output and outlive them, like `runc run -d`). A failure quotes the log's tail.
    pub fn run_logged(&self, log: &Path) -> Result<(), ExecError> {
        let io_err = |source| ExecError::Io { cmd: self.display(), source };
        let start_len = std::fs::metadata(log).map(|m| m.len()).unwrap_or(0);
        let log_file = std::fs::OpenOptions::new().create(true).append(true).open(log).map_err(io_err)?;
        let log_err = log_file.try_clone().map_err(io_err)?;
        let mut cmd = self.command();
        cmd.stdin(Stdio::null()).stdout(log_file).stderr(log_err).process_group(0);
        tracing::debug!(cmd = %self.display(), log = %log.display(), "run (logged)");
        let mut child = cmd.spawn().map_err(|e| self.spawn_error(e))?;
        let status = match child.wait_timeout(self.timeout).map_err(io_err)? {
            Some(status) => status,
            None => {
                kill_group(&mut child);
                return Err(ExecError::Timeout { cmd: self.display(), after: self.timeout });
            }
        };
        if status.success() {
            return Ok(());
        }
        let written = std::fs::read(log).unwrap_or_default();
        let tail = String::from_utf8_lossy(written.get(start_len as usize..).unwrap_or_default()).into_owned();
        Err(ExecError::Failed {
            cmd: self.display(),
            status: describe_status(status),
            stderr: quote_tail(&tail),
            stdout: String::new(),
        })
    }

    /// Start in the background, detached in its own session, output appended to `log`.
    /// Returns the child's PID; the caller records it to stop the process later by PID.
    pub fn spawn_detached(&self, log: &Path) -> Result<u32, ExecError> {
        let io_err = |source| ExecError::Io { cmd: self.display(), source };
        let log_file = std::fs::OpenOptions::new().create(true).append(true).open(log).map_err(io_err)?;
        let log_err = log_file.try_clone().map_err(io_err)?;
        let mut cmd = self.command();
        cmd.stdin(Stdio::null()).stdout(log_file).stderr(log_err);
        // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        tracing::debug!(cmd = %self.display(), log = %log.display(), "spawn");
        let child = cmd.spawn().map_err(|e| self.spawn_error(e))?;
        let pid = child.id();
        // Reap it when it exits so it does not linger as a zombie in our process table.
        thread::spawn(move || {
            let mut child = child;
            let _ = child.wait();
        });
        Ok(pid)
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display())
    }
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> Option<thread::JoinHandle<String>> {
    pipe.map(|mut p| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = p.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    })
}

fn join_drain(handle: Option<thread::JoinHandle<String>>) -> String {
    handle.and_then(|h| h.join().ok()).unwrap_or_default()
}

fn kill_group(child: &mut Child) {
    let pid = child.id() as i32;
    // SAFETY: plain syscall; a negative PID names the process group this child leads.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => status.to_string(),
    }
}

fn quote_tail(stderr: &str) -> String {
    let s = stderr.trim();
    if s.is_empty() {
        return "(no stderr)".into();
    }
    if s.len() <= STDERR_QUOTE_BYTES {
        return s.to_string();
    }
    let mut start = s.len() - STDERR_QUOTE_BYTES;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("...{}", &s[start..])
}

/// Quote one word for a POSIX shell: words of plain characters stay as they are, anything else is
/// single-quoted (`'` becomes `'\''`), so `sh -c "cmd $(shell_quote(w))"` passes `w` to `cmd` unchanged.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Is `program` on PATH?
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| std::fs::metadata(p).map(|m| m.is_file()).unwrap_or(false))
}

/// The kernel's largest PID plus one (`/proc/sys/kernel/pid_max`); 4194304 (the 64-bit ceiling) if unreadable.
pub fn pid_max() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/pid_max").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(4_194_304)
}

/// Is `pid` one process that may be signalled? Refuses 0 (the caller's process group), 1 (init),
/// anything that is negative as an `i32` (-1 is every process, -N a process group) and anything the
/// kernel cannot hand out (`>= pid_max`), so a bad PID from a state file never widens a kill.
pub fn check_pid(pid: u32) -> std::io::Result<i32> {
    let max = pid_max();
    let why = match pid {
        0 => "0 would signal the caller's whole process group",
        1 => "1 is init",
        p if p > i32::MAX as u32 => "it is negative as a kernel PID and would signal a process group or every process",
        p if p >= max => "it is above the kernel's pid_max",
        p => return Ok(p as i32),
    };
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!("refusing to signal PID {pid}: {why} (pid_max {max})"),
    ))
}

/// Send `signal` to one process by PID; `Ok(false)` if it no longer exists. A PID that is not one
/// ordinary process ([`check_pid`]) is an `InvalidInput` error and nothing is sent.
pub fn signal_pid(pid: u32, signal: i32) -> std::io::Result<bool> {
    let pid = check_pid(pid)?;
    // SAFETY: plain syscall on one positive PID, checked above.
    let rc = unsafe { libc::kill(pid, signal) };
    if rc == 0 {
        return Ok(true);
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ESRCH) { Ok(false) } else { Err(err) }
}

/// Is a process with this PID alive (and not a zombie)?
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state letter follows the ")" that closes the command name.
        Ok(stat) => stat.rsplit_once(')').map(|(_, rest)| !rest.trim_start().starts_with('Z')).unwrap_or(false),
        Err(_) => false,
    }
}

/// Stop a process by PID: SIGTERM, then SIGKILL after `grace`. Returns once it is gone.
pub fn stop_pid(pid: u32, grace: Duration) -> std::io::Result<()> {
    if !signal_pid(pid, libc::SIGTERM)? {
        return Ok(());
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if !pid_alive(pid) {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(20));
    }
    signal_pid(pid, libc::SIGKILL)?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while pid_alive(pid) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

pub use libc::{SIGKILL, SIGTERM};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_stdout_and_status() {
        let out = Cmd::new("sh").args(["-c", "echo hi; echo err >&2"]).run().unwrap();
        assert_eq!(out.stdout, "hi\n");
        assert_eq!(out.stderr, "err\n");
    }

    #[test]
    fn failure_names_command_status_and_stderr() {
        let err = Cmd::new("sh").args(["-c", "echo broken >&2; exit 3"]).run().unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("sh -c"), "{msg}");
        assert!(msg.contains("exit status 3"), "{msg}");
        assert!(msg.contains("broken"), "{msg}");
    }

    #[test]
    fn missing_program_is_named() {
        let err = Cmd::new("vmguard-no-such-tool").run().unwrap_err();
        assert!(matches!(err, ExecError::NotFound { ref program, .. } if program == "vmguard-no-such-tool"));
    }

    #[test]
    fn timeout_kills_the_whole_group() {
        let started = Instant::now();
        let err =
            Cmd::new("sh").args(["-c", "sleep 30 & sleep 30"]).timeout(Duration::from_millis(200)).run().unwrap_err();
        assert!(matches!(err, ExecError::Timeout { .. }));
        // The pipes closed, so the grandchild holding them is dead too.
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn stdin_is_fed() {
        let out = Cmd::new("cat").stdin("abc").run().unwrap();
        assert_eq!(out.stdout, "abc");
    }

    #[test]
    fn quoting_round_trips_for_display() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote("10.0.0.1/24"), "10.0.0.1/24");
        assert_eq!(shell_quote(""), "''");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// What `sh` gets back from a quoted word is the word (any text but NUL, which argv cannot hold).
        #[test]
        fn quoting_round_trips_through_sh(word in "[^\\x00]{0,40}") {
            let out = Cmd::new("sh").args(["-c", &format!("printf %s {}", shell_quote(&word))]).run().unwrap();
            proptest::prop_assert_eq!(out.stdout, word);
        }
    }

    #[test]
    fn signal_pid_refuses_pids_that_are_not_one_process() {
        let max = pid_max();
        let child = Cmd::new("sleep").arg("30").spawn_detached(Path::new("/dev/null")).unwrap();
        let cases: [(&str, u32, bool); 8] = [
            ("0: own process group", 0, false),
            ("1: init", 1, false),
            ("-1 as u32: every process", -1i32 as u32, false),
            ("i32::MAX + 1: negative as i32", i32::MAX as u32 + 1, false),
            ("u32::MAX", u32::MAX, false),
            ("pid_max", max, false),
            ("pid_max + 1", max + 1, false),
            ("a real child", child, true),
        ];
        for (what, pid, ok) in cases {
            // Signal 0 only checks; nothing is delivered even where it is allowed.
            match signal_pid(pid, 0) {
                Ok(alive) => assert!(ok && alive, "{what}: PID {pid} was accepted"),
                Err(e) => {
                    assert!(!ok, "{what}: {e}");
                    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{what}: {e}");
                    assert!(e.to_string().contains(&format!("PID {pid}")), "{what}: {e}");
                }
            }
            assert_eq!(stop_pid(pid, Duration::from_millis(100)).is_ok(), ok, "{what}: stop_pid");
        }
        assert!(!pid_alive(child));
    }

    #[test]
    fn stop_pid_ends_a_process() {
        let pid = Cmd::new("sleep").arg("30").spawn_detached(Path::new("/dev/null")).unwrap();
        assert!(pid_alive(pid));
        stop_pid(pid, Duration::from_secs(2)).unwrap();
        assert!(!pid_alive(pid));
    }
}
