//! A guest's cgroup CPU use and throttling, cgroup v1 (`cpuacct.usage`, `cpu.stat`) or v2 (`cpu.stat`).
//!
//! Samples, in the same names and units for both versions: `cpu.usage_ns`, `cpu.user_ns`, `cpu.system_ns`,
//! `cpu.nr_periods`, `cpu.nr_throttled`, `cpu.throttled_ns`. Note that softirq work done for a flood is
//! charged to no cgroup: a victim's flood cost must also be measured on the host.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::file::KeptFile;
use crate::sample::{Emit, Kind, Sample, SourceId};
use crate::{Source, TelemetryError};

/// Where cgroup hierarchies are mounted.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Clock ticks per second of `cpuacct.stat` and `/proc/*/stat` (USER_HZ, fixed at 100 by the Linux ABI on
/// x86 and arm).
pub const USER_HZ: u64 = 100;

/// The files a cgroup's CPU figures are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupFiles {
    V1 { cpuacct: Option<PathBuf>, cpu: Option<PathBuf> },
    V2 { dir: PathBuf },
}

impl CgroupFiles {
    /// Find `rel` (e.g. `vmguard/ct1`) under `root`: v1 `cpuacct/`/`cpu/` first (hybrid hosts keep the CPU
    /// controllers there), else the v2 tree (`unified/` on hybrid hosts, the root itself on pure v2).
    pub fn find(root: &Path, rel: &str) -> Option<CgroupFiles> {
        let rel = rel.trim_start_matches('/');
        let dir_if = |p: PathBuf| p.is_dir().then_some(p);
        let cpuacct = dir_if(root.join("cpuacct").join(rel));
        // On some hosts cpu and cpuacct are co-mounted as `cpu,cpuacct` with symlinks; either name works.
        let cpu = dir_if(root.join("cpu").join(rel));
        if cpuacct.is_some() || cpu.is_some() {
            return Some(CgroupFiles::V1 { cpuacct, cpu });
        }
        [root.join("unified").join(rel), root.join(rel)]
            .into_iter()
            .find(|d| d.join("cpu.stat").is_file())
            .map(|dir| CgroupFiles::V2 { dir })
    }
}

/// v1 `cpu.stat`: nr_periods, nr_throttled, throttled_time (ns).
pub(crate) fn emit_v1_cpu_stat(text: &str, emit: &mut Emit<'_>) {
    for (k, v) in key_values(text) {
        match k {
            "nr_periods" => emit.push("cpu.nr_periods", v, Kind::Counter),
            "nr_throttled" => emit.push("cpu.nr_throttled", v, Kind::Counter),
            "throttled_time" => emit.push("cpu.throttled_ns", v, Kind::Counter),
            _ => {}
        }
    }
}

/// v1 `cpuacct.stat`: user and system in USER_HZ ticks.
pub(crate) fn emit_v1_cpuacct_stat(text: &str, emit: &mut Emit<'_>) {
    const NS_PER_TICK: u64 = 1_000_000_000 / USER_HZ;
    for (k, v) in key_values(text) {
        match k {
            "user" => emit.push("cpu.user_ns", v.saturating_mul(NS_PER_TICK), Kind::Counter),
            "system" => emit.push("cpu.system_ns", v.saturating_mul(NS_PER_TICK), Kind::Counter),
            _ => {}
        }
    }
}

/// v2 `cpu.stat`: microseconds, converted to nanoseconds.
pub(crate) fn emit_v2_cpu_stat(text: &str, emit: &mut Emit<'_>) {
    for (k, v) in key_values(text) {
        let name = match k {
            "usage_usec" => "cpu.usage_ns",
            "user_usec" => "cpu.user_ns",
            "system_usec" => "cpu.system_ns",
            "throttled_usec" => "cpu.throttled_ns",
            "nr_periods" => "cpu.nr_periods",
            "nr_throttled" => "cpu.nr_throttled",
            _ => continue,
        };
        let v = if k.ends_with("_usec") { v.saturating_mul(1000) } else { v };
        emit.push(name, v, Kind::Counter);
    }
}

/// `key value` lines; lines that do not parse are skipped.
pub fn key_values(text: &str) -> impl Iterator<Item = (&str, u64)> {
    text.lines().filter_map(|l| {
        let mut it = l.split_ascii_whitespace();
        let k = it.next()?;
        let v = it.next()?.parse().ok()?;
        Some((k, v))
    })
}

/// CPU use and throttling of one cgroup.
pub struct CgroupCpu {
    guest: Arc<str>,
    rel: String,
    root: PathBuf,
    files: Option<Kept>,
    buf: String,
    names: crate::sample::NameCache,
}

/// The open files of a located cgroup.
enum Kept {
    V1 { usage: Option<(KeptFile, KeptFile)>, cpu_stat: Option<KeptFile> },
    V2 { cpu_stat: KeptFile },
}

impl Kept {
    fn new(files: CgroupFiles) -> Kept {
        match files {
            CgroupFiles::V1 { cpuacct, cpu } => Kept::V1 {
                usage: cpuacct.map(|d| (KeptFile::new(d.join("cpuacct.usage")), KeptFile::new(d.join("cpuacct.stat")))),
                cpu_stat: cpu.map(|d| KeptFile::new(d.join("cpu.stat"))),
            },
            CgroupFiles::V2 { dir } => Kept::V2 { cpu_stat: KeptFile::new(dir.join("cpu.stat")) },
        }
    }
}

impl CgroupCpu {
    /// The cgroup `rel` (relative to the hierarchy root) under /sys/fs/cgroup; located on the first round.
    pub fn new(guest: &str, rel: &str) -> Self {
        Self::with_root(guest, rel, CGROUP_ROOT)
    }

    /// The same under another root (a recorded copy of a cgroup tree).
    pub fn with_root(guest: &str, rel: &str, root: impl Into<PathBuf>) -> Self {
        CgroupCpu {
            guest: guest.into(),
            rel: rel.to_string(),
            root: root.into(),
            files: None,
            buf: String::new(),
            names: Default::default(),
        }
    }

    fn read(&mut self, time_ns: i64, out: &mut Vec<Sample>) -> Result<(), TelemetryError> {
        if self.files.is_none() {
            self.files = CgroupFiles::find(&self.root, &self.rel).map(Kept::new);
        }
        let files = self.files.as_mut().ok_or_else(|| TelemetryError::CgroupMissing { cgroup: self.rel.clone() })?;
        let mut emit = Emit::new(out, &self.guest, SourceId::Cgroup, time_ns).with_names(&mut self.names);
        match files {
            Kept::V1 { usage, cpu_stat } => {
                if let Some((usage, stat)) = usage {
                    usage.read(&mut self.buf)?;
                    let v = self
                        .buf
                        .trim()
                        .parse()
                        .map_err(|_| TelemetryError::parse(usage.path().display().to_string(), "not a number"))?;
                    emit.push("cpu.usage_ns", v, Kind::Counter);
                    stat.read(&mut self.buf)?;
                    emit_v1_cpuacct_stat(&self.buf, &mut emit);
                }
                if let Some(f) = cpu_stat {
                    f.read(&mut self.buf)?;
                    emit_v1_cpu_stat(&self.buf, &mut emit);
                }
            }
            Kept::V2 { cpu_stat } => {
                cpu_stat.read(&mut self.buf)?;
                emit_v2_cpu_stat(&self.buf, &mut emit);
            }
        }
        Ok(())
    }
}

impl Source for CgroupCpu {
    fn id(&self) -> SourceId {
        SourceId::Cgroup
    }

    fn guest(&self) -> &str {
        &self.guest
    }

    fn sample(&mut self, time_ns: i64, out: &mut Vec<Sample>) -> Result<(), TelemetryError> {
        let r = self.read(time_ns, out);
        if r.is_err() {
            // The cgroup may be recreated (container restarted): look it up again next round.
            self.files = None;
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tmpdir(tag: &str) -> tempfile::TempDir {
        tempfile::Builder::new().prefix(&format!("vmgt-cgroup-{tag}-")).tempdir().unwrap()
    }

    fn run(src: &mut CgroupCpu) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        src.sample(1, &mut out).unwrap();
        out.into_iter().map(|s| (s.counter.to_string(), s.value)).collect()
    }

    #[test]
    fn v1_hybrid_layout() {
        let tmp = tmpdir("v1");
        let root = tmp.path();
        let acct = root.join("cpuacct/vmguard/ct1");
        let cpu = root.join("cpu/vmguard/ct1");
        std::fs::create_dir_all(&acct).unwrap();
        std::fs::create_dir_all(&cpu).unwrap();
        std::fs::write(acct.join("cpuacct.usage"), "123456789\n").unwrap();
        std::fs::write(acct.join("cpuacct.stat"), "user 10\nsystem 3\n").unwrap();
        std::fs::write(cpu.join("cpu.stat"), "nr_periods 50\nnr_throttled 7\nthrottled_time 99000\n").unwrap();
        let got = run(&mut CgroupCpu::with_root("ct1", "/vmguard/ct1", root));
        let want = [
            ("cpu.usage_ns", 123456789),
            ("cpu.user_ns", 100_000_000),
            ("cpu.system_ns", 30_000_000),
            ("cpu.nr_periods", 50),
            ("cpu.nr_throttled", 7),
            ("cpu.throttled_ns", 99000),
        ];
        assert_eq!(got, want.map(|(k, v)| (k.to_string(), v)));
    }

    #[test]
    fn v2_layout() {
        let tmp = tmpdir("v2");
        let root = tmp.path();
        let dir = root.join("unified/vmguard/ct1");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("cpu.stat"),
            "usage_usec 2000\nuser_usec 1500\nsystem_usec 500\nnr_periods 4\nnr_throttled 1\nthrottled_usec 30\nnr_bursts 0\n",
        )
        .unwrap();
        let got = run(&mut CgroupCpu::with_root("ct1", "vmguard/ct1", root));
        assert_eq!(got[0], ("cpu.usage_ns".to_string(), 2_000_000));
        assert!(got.contains(&("cpu.throttled_ns".to_string(), 30_000)));
        assert!(got.contains(&("cpu.nr_throttled".to_string(), 1)));
    }

    #[test]
    fn missing_cgroup_is_an_error_not_a_panic() {
        let tmp = tmpdir("none");
        let root = tmp.path();
        let err = CgroupCpu::with_root("g", "nope", root).sample(0, &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("cgroup `nope` not found"), "{err}");
    }

    proptest! {
        #[test]
        fn never_panics(text in "\\PC*") {
            let guest: Arc<str> = "g".into();
            let mut out = Vec::new();
            let mut emit = Emit::new(&mut out, &guest, SourceId::Cgroup, 0);
            emit_v1_cpu_stat(&text, &mut emit);
            emit_v1_cpuacct_stat(&text, &mut emit);
            emit_v2_cpu_stat(&text, &mut emit);
        }
    }
}
