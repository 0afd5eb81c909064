//! kill -9 of a writer loses at most the batch it had not committed.
//!
//! The test re-runs its own binary as the writer (selected by an environment variable), lets it commit
//! batches, kills it by PID with SIGKILL mid-stream, then checks the file: intact, and holding only whole
//! batches, at least as many as the writer reported committed.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use store::Store;
use telemetry::{Kind, Sample, SourceId};

const CHILD_ENV: &str = "VMGT_STORE_CRASH_WRITER_DB";
const BATCH: usize = 500;

fn batch(round: u64) -> Vec<Sample> {
    let guest: Arc<str> = "vm1".into();
    (0..BATCH)
        .map(|i| Sample {
            time_ns: round as i64 * 1_000_000_000,
            guest: Arc::clone(&guest),
            source: SourceId::Kvm,
            counter: format!("c{i}").into(),
            value: round,
            kind: Kind::Counter,
        })
        .collect()
}

/// The writer: appends batches forever, printing each committed round. Does nothing unless started by
/// the test below.
#[test]
fn crash_writer_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else { return };
    let mut st = Store::open(&path).unwrap();
    for round in 0.. {
        st.append(&batch(round)).unwrap();
        println!("committed {round}");
    }
}

#[test]
fn kill_9_loses_at_most_the_uncommitted_batch() {
    let dir = tempfile::Builder::new().prefix("vmgt-store-crash-").tempdir().unwrap();
    let path = dir.path().join("vmguard.db");

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_writer_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    // If anything below panics, the endless writer still dies (by PID).
    let mut guard = KillOnDrop(Some(pid));
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut committed = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("committed ") {
            let n: u64 = n.parse().unwrap();
            committed = Some(n);
            if n >= 20 {
                break;
            }
        }
    }
    // SAFETY: plain syscall on the PID of the child we just started and have not reaped.
    let rc = unsafe { libc_kill(pid as i32, 9) };
    assert_eq!(rc, 0, "kill -9 {pid}");
    child.wait().unwrap();
    guard.0 = None;
    let committed = committed.expect("the writer committed batches");

    let st = Store::open(&path).unwrap();
    st.check_integrity().unwrap();
    let samples = st.samples("vm1", i64::MIN, i64::MAX).unwrap();
    assert_eq!(samples.len() % BATCH, 0, "only whole batches: {} samples", samples.len());
    let rounds = (samples.len() / BATCH) as u64;
    assert!(rounds > committed, "{rounds} batches stored, writer reported {} committed", committed + 1);
    eprintln!("writer killed after reporting {} commits; {rounds} whole batches in the file", committed + 1);
    drop(st);
    dir.close().unwrap();
}

struct KillOnDrop(Option<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            // SAFETY: plain syscall on our own, not yet reaped child.
            unsafe { libc_kill(pid as i32, 9) };
        }
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}
