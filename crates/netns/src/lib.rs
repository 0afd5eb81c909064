//! Named network namespaces (the `ip netns` convention: a bind mount under `/var/run/netns/NAME`).
//!
//! A "name" that is an absolute path (`/proc/1234/ns/net`, a bind mount elsewhere) is that path: this is
//! how a namespace nobody named (a container's, a qemu started in its own namespace) is passed around.
//! Such a path names whatever namespace the process has *now*: a PID that is reused points elsewhere, so
//! whoever builds the path re-checks it (telemetry's discovery does so on every refresh).
//!
//! Code that must act inside a lab host (connect to a victim from the client, send a flood from the
//! attacker) runs a closure on a fresh thread that has entered the namespace: the namespace is a
//! per-thread property, so the rest of the process stays where it was.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use nix::sched::{CloneFlags, setns};

/// Where `ip netns` keeps its named namespaces.
pub const NETNS_DIR: &str = "/var/run/netns";

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The namespace does not exist.
    #[error("network namespace `{name}` does not exist ({path}): {}", if is_path(name) { "has its process exited?" } else { "is the lab up? (`vmguard lab status`)" })]
    Missing { name: String, path: PathBuf },
    /// Opening or entering it failed (usually: not root).
    #[error("cannot enter network namespace `{name}`: {source} (vmguard's lab needs root)")]
    Enter { name: String, source: std::io::Error },
    /// The worker thread panicked.
    #[error("the thread working inside namespace `{name}` panicked")]
    Panicked { name: String },
}

/// Where the namespace `name` is: `/var/run/netns/NAME`, or `name` itself when it is an absolute path.
pub fn path(name: &str) -> PathBuf {
    if is_path(name) { PathBuf::from(name) } else { PathBuf::from(NETNS_DIR).join(name) }
}

/// Whether `name` is an absolute path (`/proc/PID/ns/net`) rather than a name under [`NETNS_DIR`].
pub fn is_path(name: &str) -> bool {
    name.starts_with('/')
}

pub fn exists(name: &str) -> bool {
    path(name).exists()
}

/// Names of all named namespaces on the host.
pub fn list() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(NETNS_DIR)
        .map(|rd| rd.filter_map(|e| e.ok()).filter_map(|e| e.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// Inode of a named namespace: the identity the kernel shows as `/proc/PID/ns/net -> net:[INODE]`.
pub fn inode(name: &str) -> Option<u64> {
    std::fs::metadata(path(name)).ok().map(|m| m.ino())
}

/// PIDs of every process whose network namespace is the named one.
pub fn pids_in(name: &str) -> Vec<u32> {
    let Some(ino) = inode(name) else { return Vec::new() };
    let Ok(rd) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut pids: Vec<u32> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
        .filter(|pid| std::fs::metadata(format!("/proc/{pid}/ns/net")).map(|m| m.ino() == ino).unwrap_or(false))
        .collect();
    pids.sort_unstable();
    pids
}

/// Run `f` on a new thread inside the named namespace and return its result.
pub fn run_in<T, F>(name: &str, f: F) -> Result<T, NetnsError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    spawn_in(name, f)?.join()
}

/// A thread working inside a network namespace.
pub struct InNetns<T> {
    name: String,
    // None only if the closure never ran, which spawn_in rules out before returning.
    handle: std::thread::JoinHandle<Option<T>>,
}

impl<T> InNetns<T> {
    pub fn join(self) -> Result<T, NetnsError> {
        match self.handle.join() {
            Ok(Some(value)) => Ok(value),
            _ => Err(NetnsError::Panicked { name: self.name }),
        }
    }

    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}

/// Start `f` on a new thread inside the named namespace. Returns once the thread has entered it
/// (or failed to, in which case `f` never runs).
pub fn spawn_in<T, F>(name: &str, f: F) -> Result<InNetns<T>, NetnsError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let p = path(name);
    if !p.exists() {
        return Err(NetnsError::Missing { name: name.to_string(), path: p });
    }
    let file = File::open(&p).map_err(|source| NetnsError::Enter { name: name.to_string(), source })?;
    let (entered_tx, entered_rx) = std::sync::mpsc::channel::<Result<(), std::io::Error>>();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<F>();
    let handle = std::thread::spawn(move || -> Option<T> {
        let entered = setns(&file, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from);
        let ok = entered.is_ok();
        let _ = entered_tx.send(entered);
        // The closure is handed over only after a successful setns, so it never runs outside.
        if ok { go_rx.recv().ok().map(|f| f()) } else { None }
    });
    match entered_rx.recv() {
        Ok(Ok(())) => {
            let _ = go_tx.send(f);
            Ok(InNetns { name: name.to_string(), handle })
        }
        Ok(Err(source)) => Err(NetnsError::Enter { name: name.to_string(), source }),
        Err(_) => Err(NetnsError::Panicked { name: name.to_string() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_namespace_is_a_clear_error() {
        let err = run_in("vmguard-test-no-such-ns", || 1).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
    }

    #[test]
    fn absolute_paths_are_namespaces_too() {
        assert_eq!(path("ns1"), PathBuf::from("/var/run/netns/ns1"));
        assert_eq!(path("/proc/1234/ns/net"), PathBuf::from("/proc/1234/ns/net"));
        assert!(is_path("/proc/self/ns/net") && !is_path("ns1"));
        // Our own namespace, by path: its inode is the one /proc/self/ns/net shows, and we are in it.
        let me = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
        assert_eq!(inode("/proc/self/ns/net"), Some(me));
        assert!(pids_in("/proc/self/ns/net").contains(&std::process::id()));
        let err = run_in("/proc/4294967295/ns/net", || 1).unwrap_err().to_string();
        assert!(err.contains("does not exist") && err.contains("exited"), "{err}");
    }

    #[test]
    fn pids_in_missing_namespace_is_empty() {
        assert!(pids_in("vmguard-test-no-such-ns").is_empty());
    }
}
