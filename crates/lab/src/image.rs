//! The qemu guest image: a Debian cloud kernel and a busybox initramfs that vmguard builds, cached
//! under a content key (kernel package and version, busybox, init script, modules, extra programs).
//!
//! Why an initramfs and not the host root over virtio-9p: Debian's cloud kernel has no 9p, and under
//! TCG an initramfs guest reaches userspace in seconds. Host programs the guest needs (benchmarks)
//! are copied in with their shared-library closure.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use exec::Cmd;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::LabError;

pub const INIT_SCRIPT: &str = include_str!("guest-init.sh");

/// Modules the guest loads (with their dependencies, from the kernel's modules.dep). virtio_pci is the
/// transport: no device driver depends on it, so it is named here.
pub const GUEST_MODULES: [&str; 4] = ["virtio_pci", "virtio_net", "virtio_blk", "virtio_console"];

/// The metapackage whose dependency names the current cloud kernel.
const KERNEL_METAPACKAGE: &str = "linux-image-cloud-amd64";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuestImage {
    pub key: String,
    pub kernel_package: String,
    pub kernel_version: String,
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    pub initramfs_bytes: u64,
    /// Seconds spent building, or `None` when the cached image was used.
    pub build_secs: Option<f64>,
}

/// Where the vmguard binary lives inside victims (guest image and container), for floods from a
/// victim acting as a zombie.
pub const TOOL_PATH: &str = "/opt/vmguard/vmguard";

/// How many built guest images the cache keeps (each vmguard build makes a new one).
const KEEP_IMAGES: usize = 4;

/// Get the guest image, building it if the cache has none for its content key. `tool` is the
/// vmguard binary to place at [`TOOL_PATH`] in the guest.
pub fn ensure(
    cache_dir: &Path,
    kernel_package: &str,
    programs: &[String],
    data_dirs: &[PathBuf],
    tool: Option<&Path>,
    progress: &dyn Fn(&str),
) -> Result<GuestImage, LabError> {
    let started = Instant::now();
    let (package, version) = resolve_kernel(kernel_package, cache_dir)?;
    let busybox = crate::victim::busybox()?;
    let mut hasher = Sha256::new();
    for part in [package.as_bytes(), version.as_bytes(), INIT_SCRIPT.as_bytes(), GUEST_MODULES.join(",").as_bytes()] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hasher.update(file_digest(&busybox)?);
    // Sorted and deduplicated by path: the same set of programs is the same image in any order.
    let programs = resolve_programs(programs)?;
    for p in &programs {
        let path = p.as_os_str().as_encoded_bytes();
        hasher.update((path.len() as u64).to_le_bytes());
        hasher.update(path);
        hasher.update(file_digest(p)?);
    }
    let data_files = files_under(data_dirs)?;
    for f in &data_files {
        let path = f.as_os_str().as_encoded_bytes();
        hasher.update((path.len() as u64).to_le_bytes());
        hasher.update(path);
        hasher.update(file_digest(f)?);
    }
    if let Some(tool) = tool {
        hasher.update(file_digest(tool)?);
    }
    let key = hex::encode(&hasher.finalize()[..8]);
    let dir = cache_dir.join(format!("guest-{key}"));
    let manifest = dir.join("manifest.json");
    if let Ok(text) = std::fs::read_to_string(&manifest)
        && let Ok(mut image) = serde_json::from_str::<GuestImage>(&text)
        && image.kernel.exists()
        && image.initramfs.exists()
    {
        image.build_secs = None;
        return Ok(image);
    }

    let kernel_root = extract_kernel(cache_dir, &package, &version, progress)?;
    progress(&format!("building guest initramfs {key}"));
    let building = cache_dir.join(format!("building-{key}"));
    let _ = std::fs::remove_dir_all(&building);
    mkdir(&building)?;
    let kernel_src = find_one(&kernel_root.join("boot"), "vmlinuz-")?;
    std::fs::copy(&kernel_src, building.join("vmlinuz")).map_err(|e| LabError::io("copying the guest kernel", e))?;
    let modules_dir = find_one(&kernel_root.join("lib/modules"), "")?;
    let cpio_path = building.join("initramfs.cpio");
    let stripped_tool = match tool {
        Some(tool) => {
            // Debug sections are most of the binary; the guest unpacks every byte under emulation.
            let out = building.join("vmguard.stripped");
            Cmd::new("objcopy").arg("--strip-debug").arg(tool).arg(&out).run()?;
            Some(out)
        }
        None => None,
    };
    let content = Initramfs {
        init: INIT_SCRIPT,
        modules: &GUEST_MODULES,
        programs: &programs,
        data_files: &data_files,
        tool: stripped_tool.as_deref(),
    };
    let bytes = write_initramfs(&cpio_path, &busybox, &modules_dir, &content)?;
    if let Some(p) = &stripped_tool {
        let _ = std::fs::remove_file(p);
    }
    let image = GuestImage {
        key: key.clone(),
        kernel_package: package,
        kernel_version: version,
        kernel: dir.join("vmlinuz"),
        initramfs: dir.join("initramfs.cpio"),
        initramfs_bytes: bytes,
        build_secs: Some(started.elapsed().as_secs_f64()),
    };
    crate::state::write_atomic(
        &building.join("manifest.json"),
        serde_json::to_string_pretty(&image).expect("json").as_bytes(),
    )?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&building, &dir)
        .map_err(|e| LabError::io(format!("moving the image into {}", dir.display()), e))?;
    prune_cache(cache_dir, "guest-", KEEP_IMAGES);
    Ok(image)
}

/// Remove all but the `keep` most recently built cache entries whose names start with `prefix`
/// (guest images, MariaDB data directories).
pub(crate) fn prune_cache(cache_dir: &Path, prefix: &str, keep: usize) {
    let mut entries: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(cache_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    entries.sort();
    let excess = entries.len().saturating_sub(keep);
    for (_, dir) in entries.into_iter().take(excess) {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// The kernel package and version: the configured one, or the one apt's cloud metapackage names.
fn resolve_kernel(configured: &str, cache_dir: &Path) -> Result<(String, String), LabError> {
    resolve_kernel_from(configured, cache_dir, KERNEL_METAPACKAGE, "-cloud-amd64")
}

/// The configured kernel package, or the one `metapackage` depends on (a name ending in `suffix`),
/// with its version.
pub(crate) fn resolve_kernel_from(
    configured: &str,
    cache_dir: &Path,
    metapackage: &str,
    suffix: &str,
) -> Result<(String, String), LabError> {
    let package = if configured.is_empty() {
        match apt_field(metapackage, "Depends") {
            Some(dep) => dep
                .split(|c: char| c == ',' || c == '|' || c.is_whitespace())
                .find(|w| w.starts_with("linux-image-") && w.ends_with(suffix) && w != &metapackage)
                .map(str::to_string)
                .ok_or_else(|| LabError::Image(format!("cannot read the kernel package from `{dep}`")))?,
            None => return cached_kernel(cache_dir, metapackage, suffix),
        }
    } else {
        configured.to_string()
    };
    let version = apt_field(&package, "Version").ok_or_else(|| {
        LabError::Image(format!(
            "apt knows no package `{package}`: run `apt-get update`, or set [lab.qemu] kernel_package"
        ))
    })?;
    Ok((package, version))
}

/// Without apt's lists (offline), use the newest kernel already in the cache.
fn cached_kernel(cache_dir: &Path, metapackage: &str, suffix: &str) -> Result<(String, String), LabError> {
    let newest = std::fs::read_dir(cache_dir.join("kernels"))
        .ok()
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|n| n.split_once('_').map(|(p, v)| (p.to_string(), v.to_string())))
        // The standard kernel's name is a suffix of the cloud kernel's: tell them apart.
        .filter(|(p, _)| p.ends_with(suffix) && (suffix.contains("cloud") || !p.contains("cloud")))
        .max_by(|a, b| a.1.cmp(&b.1));
    newest.ok_or_else(|| {
        LabError::Image(format!(
            "apt-cache knows no `{metapackage}` and no kernel is cached: run `apt-get update` (make deps does)"
        ))
    })
}

pub(crate) fn apt_field(package: &str, field: &str) -> Option<String> {
    let out = Cmd::new("apt-cache").args(["show", package]).stdout().ok()?;
    let prefix = format!("{field}: ");
    out.lines().find_map(|l| l.strip_prefix(&prefix)).map(|s| s.trim().to_string())
}

/// Download and unpack the kernel package once (cached by package and version).
pub(crate) fn extract_kernel(
    cache_dir: &Path,
    package: &str,
    version: &str,
    progress: &dyn Fn(&str),
) -> Result<PathBuf, LabError> {
    let root = cache_dir.join("kernels").join(format!("{package}_{version}"));
    if root.join("boot").exists() {
        return Ok(root);
    }
    progress(&format!("downloading {package} {version}"));
    let tmp = cache_dir.join(format!("building-kernel-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    mkdir(&tmp)?;
    Cmd::new("apt-get")
        .args(["download", &format!("{package}={version}")])
        .cwd(&tmp)
        .timeout(std::time::Duration::from_secs(600))
        .run()?;
    let deb = find_one(&tmp, package)?;
    progress(&format!("unpacking {package}"));
    Cmd::new("dpkg-deb").arg("-x").arg(&deb).arg(tmp.join("root")).run()?;
    // modules.dep is made by depmod at install time, not shipped: make it for the unpacked tree.
    let kver_dir = find_one(&tmp.join("root/lib/modules"), "")?;
    let kver = kver_dir.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
    Cmd::new(depmod()?).arg("-b").arg(tmp.join("root")).arg(&kver).run()?;
    mkdir(root.parent().expect("has parent"))?;
    std::fs::rename(tmp.join("root"), &root)
        .map_err(|e| LabError::io("moving the unpacked kernel into the cache", e))?;
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(root)
}

fn depmod() -> Result<PathBuf, LabError> {
    ["/usr/sbin/depmod", "/sbin/depmod"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .or_else(|| exec::which("depmod"))
        .ok_or_else(|| LabError::Missing("depmod (Debian package kmod): run `make deps`".into()))
}

/// Host programs to copy into the guest, by name on PATH or absolute path: sorted, each path once.
pub(crate) fn resolve_programs(programs: &[String]) -> Result<Vec<PathBuf>, LabError> {
    let paths: BTreeSet<PathBuf> = programs
        .iter()
        .map(|p| {
            let path = if p.contains('/') { Some(PathBuf::from(p)) } else { exec::which(p) };
            path.filter(|p| p.exists())
                .ok_or_else(|| LabError::Missing(format!("guest program `{p}` is not installed on the host")))
        })
        .collect::<Result<_, _>>()?;
    Ok(paths.into_iter().collect())
}

/// Every regular file below `dirs` (data a guest program reads, e.g. MariaDB's messages), sorted.
pub(crate) fn files_under(dirs: &[PathBuf]) -> Result<Vec<PathBuf>, LabError> {
    fn walk(dir: &Path, out: &mut BTreeSet<PathBuf>) -> Result<(), LabError> {
        let entries = std::fs::read_dir(dir).map_err(|e| LabError::io(format!("listing {}", dir.display()), e))?;
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(&path, out)?;
            } else if path.is_file() {
                out.insert(path);
            }
        }
        Ok(())
    }
    let mut out = BTreeSet::new();
    for d in dirs {
        if !d.is_dir() {
            return Err(LabError::Missing(format!("guest data directory {} is not on the host", d.display())));
        }
        walk(d, &mut out)?;
    }
    Ok(out.into_iter().collect())
}

/// Shared libraries (and the loader) a dynamically linked program needs, from `ldd`.
pub fn library_closure(program: &Path) -> Result<BTreeSet<PathBuf>, LabError> {
    let out = Cmd::new("ldd").arg(program).run_unchecked()?;
    Ok(parse_ldd(&out.stdout))
}

/// Paths in `ldd` output: `libx.so => /path (0x...)` and the loader line `/lib64/ld-linux... (0x...)`.
pub fn parse_ldd(output: &str) -> BTreeSet<PathBuf> {
    output
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, rhs)) => rhs.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// Kernel modules to load for `wanted`, dependencies first, from the kernel's modules.dep.
pub fn module_order(modules_dep: &str, wanted: &[&str]) -> Result<Vec<String>, LabError> {
    let mut deps: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut by_name: BTreeMap<String, String> = BTreeMap::new();
    for line in modules_dep.lines() {
        let Some((module, rest)) = line.split_once(':') else { continue };
        let name = module_name(module);
        by_name.insert(name.clone(), module.to_string());
        deps.insert(module.to_string(), rest.split_whitespace().map(str::to_string).collect());
    }
    let mut order = Vec::new();
    let mut seen = BTreeSet::new();
    fn visit(m: &str, deps: &BTreeMap<String, Vec<String>>, seen: &mut BTreeSet<String>, order: &mut Vec<String>) {
        if !seen.insert(m.to_string()) {
            return;
        }
        // modules.dep lists every (transitive) dependency; still visit them for a correct order.
        for d in deps.get(m).into_iter().flatten() {
            visit(d, deps, seen, order);
        }
        order.push(m.to_string());
    }
    for w in wanted {
        let path = by_name.get(*w).ok_or_else(|| {
            LabError::Image(format!("the guest kernel has no module `{w}` (built in? then drop it from the list)"))
        })?;
        visit(path, &deps, &mut seen, &mut order);
    }
    Ok(order)
}

fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.split(".ko").next().unwrap_or(file).replace('-', "_")
}

struct CpioOut {
    out: std::io::BufWriter<std::fs::File>,
    ino: u32,
    dirs: BTreeSet<String>,
}

impl CpioOut {
    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) -> std::io::Result<()> {
        self.ino += 1;
        let mut w = cpio::newc::Builder::new(name.trim_start_matches('/'))
            .ino(self.ino)
            .mode(mode)
            .nlink(1)
            .write(&mut self.out, data.len() as u32);
        w.write_all(data)?;
        w.finish()?;
        Ok(())
    }

    fn dir_all(&mut self, path: &str) -> std::io::Result<()> {
        let mut acc = String::new();
        for part in path.trim_matches('/').split('/').filter(|p| !p.is_empty()) {
            acc.push('/');
            acc.push_str(part);
            if self.dirs.insert(acc.clone()) {
                let name = acc.clone();
                self.entry(&name, 0o040755, &[])?;
            }
        }
        Ok(())
    }

    fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> std::io::Result<()> {
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir_all(parent)?;
        }
        self.entry(path, 0o100000 | mode, data)
    }

    fn symlink(&mut self, path: &str, target: &str) -> std::io::Result<()> {
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir_all(parent)?;
        }
        self.entry(path, 0o120777, target.as_bytes())
    }
}

/// What goes into a busybox initramfs besides busybox itself.
pub(crate) struct Initramfs<'a> {
    /// The `/init` script.
    pub init: &'a str,
    /// Modules to load, with their dependencies (order written to `/lib/modules/order`).
    pub modules: &'a [&'a str],
    /// Host programs, copied with their shared libraries at their host paths.
    pub programs: &'a [PathBuf],
    pub data_files: &'a [PathBuf],
    /// The vmguard binary, placed at [`TOOL_PATH`].
    pub tool: Option<&'a Path>,
}

pub(crate) fn write_initramfs(
    path: &Path,
    busybox: &Path,
    modules_dir: &Path,
    content: &Initramfs<'_>,
) -> Result<u64, LabError> {
    let Initramfs { init, modules, programs, data_files, tool } = *content;
    let err = |e| LabError::io(format!("writing {}", path.display()), e);
    let read = |p: &Path| std::fs::read(p).map_err(|e| LabError::io(format!("reading {}", p.display()), e));
    let file = std::fs::File::create(path).map_err(err)?;
    let mut c = CpioOut { out: std::io::BufWriter::new(file), ino: 0, dirs: BTreeSet::new() };
    for d in
        ["/bin", "/sbin", "/proc", "/sys", "/dev", "/tmp", "/run", "/data", "/www", "/lib/modules", "/etc", "/root"]
    {
        c.dir_all(d).map_err(err)?;
    }
    c.file("/bin/busybox", 0o755, &read(busybox)?).map_err(err)?;
    c.symlink("/bin/sh", "busybox").map_err(err)?;
    c.file("/init", 0o755, init.as_bytes()).map_err(err)?;
    c.file("/etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\n").map_err(err)?;

    let modules_dep = std::fs::read_to_string(modules_dir.join("modules.dep"))
        .map_err(|e| LabError::io(format!("reading {}/modules.dep", modules_dir.display()), e))?;
    let mut order = Vec::new();
    for m in module_order(&modules_dep, modules)? {
        if m.ends_with(".xz") || m.ends_with(".zst") || m.ends_with(".gz") {
            return Err(LabError::Image(format!("module {m} is compressed; busybox insmod needs plain .ko files")));
        }
        let file = m.rsplit('/').next().unwrap_or(&m).to_string();
        c.file(&format!("/lib/modules/{file}"), 0o644, &read(&modules_dir.join(&m))?).map_err(err)?;
        order.push(file);
    }
    c.file("/lib/modules/order", 0o644, (order.join("\n") + "\n").as_bytes()).map_err(err)?;

    let mut copied = BTreeSet::new();
    let mut programs: Vec<(PathBuf, String)> =
        programs.iter().map(|p| (p.clone(), p.to_string_lossy().into_owned())).collect();
    if let Some(tool) = tool {
        programs.push((tool.to_path_buf(), TOOL_PATH.to_string()));
    }
    for (program, guest_path) in &programs {
        if copied.insert(program.clone()) {
            c.file(guest_path, 0o755, &read(program)?).map_err(err)?;
        }
        for f in library_closure(program)? {
            if copied.insert(f.clone()) {
                let real =
                    std::fs::canonicalize(&f).map_err(|e| LabError::io(format!("resolving {}", f.display()), e))?;
                c.file(&f.to_string_lossy(), 0o755, &read(&real)?).map_err(err)?;
            }
        }
    }
    for f in data_files {
        c.file(&f.to_string_lossy(), 0o644, &read(f)?).map_err(err)?;
    }
    let mut out = cpio::newc::trailer(c.out).map_err(err)?;
    out.flush().map_err(err)?;
    Ok(std::fs::metadata(path).map(|m| m.len()).unwrap_or(0))
}

pub(crate) fn file_digest(path: &Path) -> Result<[u8; 32], LabError> {
    let data = std::fs::read(path).map_err(|e| LabError::io(format!("reading {}", path.display()), e))?;
    Ok(Sha256::digest(&data).into())
}

pub(crate) fn mkdir(dir: &Path) -> Result<(), LabError> {
    std::fs::create_dir_all(dir).map_err(|e| LabError::io(format!("creating {}", dir.display()), e))
}

/// The one entry in `dir` whose name starts with `prefix`.
pub(crate) fn find_one(dir: &Path, prefix: &str) -> Result<PathBuf, LabError> {
    std::fs::read_dir(dir)
        .map_err(|e| LabError::io(format!("listing {}", dir.display()), e))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(prefix)))
        .ok_or_else(|| LabError::Image(format!("nothing named {prefix}* in {}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DEP: &str = "kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko\n\
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko\n\
kernel/net/core/failover.ko:\n\
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko\n\
kernel/drivers/virtio/virtio_pci_modern_dev.ko:\n\
kernel/drivers/virtio/virtio_ring.ko: kernel/drivers/virtio/virtio.ko\n\
kernel/drivers/virtio/virtio.ko:\n";

    #[test]
    fn programs_resolve_sorted_and_once_so_the_cache_key_ignores_order_and_repeats() {
        let a = resolve_programs(&["/bin/sh".into(), "/bin/cat".into(), "/bin/sh".into()]).unwrap();
        let b = resolve_programs(&["/bin/cat".into(), "/bin/sh".into()]).unwrap();
        assert_eq!(a, [PathBuf::from("/bin/cat"), PathBuf::from("/bin/sh")]);
        assert_eq!(a, b);
        let err = resolve_programs(&["vmguard-no-such-program".into()]).unwrap_err().to_string();
        assert!(err.contains("vmguard-no-such-program"), "{err}");
    }

    #[test]
    fn modules_come_after_their_dependencies() {
        let order = module_order(DEP, &["virtio_net", "virtio_pci"]).unwrap();
        let pos = |m: &str| order.iter().position(|o| o.ends_with(m)).unwrap();
        assert!(pos("/failover.ko") < pos("net_failover.ko"));
        assert!(pos("net_failover.ko") < pos("virtio_net.ko"));
        assert!(pos("/virtio.ko") < pos("virtio_ring.ko"));
        assert!(pos("virtio_ring.ko") < pos("virtio_pci.ko"));
        assert_eq!(order.len(), 7);
        assert!(module_order(DEP, &["no_such"]).unwrap_err().to_string().contains("no_such"));
    }

    #[test]
    fn init_script_is_a_valid_shell_script() {
        assert!(INIT_SCRIPT.starts_with("#!/bin/sh\n"), "the kernel runs /init only with a shebang");
        let out = Cmd::new("sh").arg("-n").stdin(INIT_SCRIPT).run_unchecked().unwrap();
        assert!(out.status.success(), "syntax error in guest-init.sh: {}", out.stderr);
        for marker in ["VMGUARD_GUEST_UP", "@@VMGUARD-EXIT", "vmguard.ctl", "/lib/modules/order"] {
            assert!(INIT_SCRIPT.contains(marker), "{marker}");
        }
    }

    #[test]
    fn ldd_output_is_parsed() {
        let out = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x00007f)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n\tnot a dynamic executable\n";
        let libs = parse_ldd(out);
        assert!(libs.contains(Path::new("/lib/x86_64-linux-gnu/libm.so.6")));
        assert!(libs.contains(Path::new("/lib64/ld-linux-x86-64.so.2")));
        assert_eq!(libs.len(), 2);
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in ".{0,400}") {
            let _ = parse_ldd(&s);
            let _ = module_order(&s, &["virtio_net"]);
        }
    }
}
