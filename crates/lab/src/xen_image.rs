//! The Xen victim's images, built once and cached under content keys like the qemu guest's:
//!
//! - `xenroot-<key>/root.img`: dom0's root, a Debian root made with debootstrap from the machine's
//!   own Debian mirror (`xen-utils-4.17` and little else), as an ext4 image. Each lab boots it
//!   through its own qcow2 overlay, so the cached image is never written. Key: mirror, suite,
//!   packages. This is the slow part of a cold build (debootstrap: ~1 to 4 minutes).
//! - `xenimg-<key>/`: Xen itself (the multiboot ELF from Debian's `xen-hypervisor-4.17-amd64`, at the
//!   version of the `xen-utils-4.17` in dom0's root), Debian's standard kernel (dom0 and domU; the
//!   cloud kernel has no dom0 support), dom0's busybox initramfs (Xen backend drivers, virtio, ext4,
//!   bridge) and the domU's (busybox, netfront, the qemu guest's programs and the vmguard binary,
//!   made by [`crate::image`]'s initramfs writer). Key: the root's key and everything that goes in.
//!
//! Nothing is installed on the host: packages are fetched with `apt-get download` and unpacked.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use exec::Cmd;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::LabError;
use crate::image::{self, Initramfs};

/// dom0's first stage (`/init` of its initramfs): modules, root disk, switch_root.
pub const DOM0_INITRD_SCRIPT: &str = include_str!("xen-dom0-initrd.sh");
/// The domU's `/init`.
pub const DOMU_INIT_SCRIPT: &str = include_str!("xen-domu-init.sh");

/// Modules dom0 loads in its initramfs (dependencies from modules.dep): the disks and NIC qemu
/// gives it, ext4 for its root, Xen's device files and backends, and the bridge for the domU's vif.
/// crc32c_generic: ext4's checksum, a soft dependency modules.dep does not list.
pub const DOM0_MODULES: [&str; 14] = [
    "virtio_pci",
    "virtio_blk",
    "virtio_net",
    "virtio_console",
    "crc32c_generic",
    "ext4",
    "xen_evtchn",
    "xen_privcmd",
    "xenfs",
    "xen_gntdev",
    "xen_gntalloc",
    "xen_blkback",
    "xen_netback",
    "bridge",
];

/// The domU's PV NIC and PV disk (`/data`, ext4; crc32c_generic: ext4's checksum, a soft
/// dependency modules.dep does not list); its console, hvc0, is built in.
pub const DOMU_MODULES: [&str; 4] = ["xen_netfront", "xen_blkfront", "crc32c_generic", "ext4"];

/// Packages of dom0's root besides debootstrap's minimal base: Xen's tools (xl, xenstored,
/// xenconsoled, xentrace), busybox (nc for the domU's command channel), ip, ps.
pub const DOM0_PACKAGES: [&str; 6] = ["xen-utils-4.17", "xenstore-utils", "kmod", "busybox", "iproute2", "procps"];

const KERNEL_METAPACKAGE: &str = "linux-image-amd64";
const HYPERVISOR_PACKAGE: &str = "xen-hypervisor-4.17-amd64";
const XEN_UTILS: &str = "xen-utils-4.17";
/// dom0's root image: debootstrap's ~315 MB and room to spare (a sparse file).
const ROOT_IMAGE_MIB: u32 = 1200;
const KEEP_IMAGES: usize = 3;
const KEEP_ROOTS: usize = 2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct XenImage {
    pub key: String,
    /// The xen-hypervisor package's version (the same as dom0's xen-utils).
    pub xen_version: String,
    pub kernel_package: String,
    pub kernel_version: String,
    /// Xen, the multiboot ELF qemu boots with `-kernel`.
    pub xen: PathBuf,
    /// The kernel of dom0 and of the domU.
    pub kernel: PathBuf,
    pub dom0_initramfs: PathBuf,
    pub domu_initramfs: PathBuf,
    pub domu_initramfs_bytes: u64,
    /// dom0's root (ext4, label [`DOM0_ROOT_LABEL`]); never written: each lab adds an overlay.
    pub dom0_root: PathBuf,
    /// Seconds spent building, or `None` when everything came from the cache.
    pub build_secs: Option<f64>,
    /// Seconds of those spent on dom0's root (debootstrap), when it was built too.
    pub root_build_secs: Option<f64>,
}

/// The filesystem label dom0's first stage finds its root by.
pub const DOM0_ROOT_LABEL: &str = "vmguard-dom0";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RootManifest {
    key: String,
    mirror: String,
    suite: String,
    xen_utils_version: String,
    image: PathBuf,
    build_secs: f64,
}

/// What the domU carries: the qemu guest's programs (with the database tier's server) and data
/// files, and the vmguard binary.
pub struct DomuContent<'a> {
    pub programs: &'a [String],
    pub data_dirs: &'a [PathBuf],
    pub tool: Option<&'a Path>,
}

/// Get the Xen victim's images, building what the cache lacks.
pub fn ensure(
    cache_dir: &Path,
    spec: &crate::spec::XenSpec,
    domu: &DomuContent<'_>,
    progress: &dyn Fn(&str),
) -> Result<XenImage, LabError> {
    let started = Instant::now();
    let (kernel_package, kernel_version) =
        image::resolve_kernel_from(&spec.kernel_package, cache_dir, KERNEL_METAPACKAGE, "-amd64")?;
    if kernel_package.contains("-cloud-") {
        return Err(LabError::Image(format!(
            "{kernel_package}: the cloud kernel has no dom0 support (CONFIG_XEN_DOM0): use the standard kernel, e.g. linux-image-6.1.0-*-amd64"
        )));
    }
    let (root, root_built) = ensure_root(cache_dir, &spec.mirror, progress)?;

    let busybox = crate::victim::busybox()?;
    let programs = image::resolve_programs(domu.programs)?;
    let data_files = image::files_under(domu.data_dirs)?;
    let mut h = Sha256::new();
    let mut part = |b: &[u8]| {
        h.update((b.len() as u64).to_le_bytes());
        h.update(b);
    };
    for p in [
        root.key.as_str(),
        root.xen_utils_version.as_str(),
        &kernel_package,
        &kernel_version,
        DOM0_INITRD_SCRIPT,
        DOMU_INIT_SCRIPT,
        &DOM0_MODULES.join(","),
        &DOMU_MODULES.join(","),
    ] {
        part(p.as_bytes());
    }
    part(&image::file_digest(&busybox)?);
    for p in programs.iter().chain(&data_files) {
        part(p.as_os_str().as_encoded_bytes());
        part(&image::file_digest(p)?);
    }
    if let Some(tool) = domu.tool {
        part(b"objcopy --strip-all");
        part(&image::file_digest(tool)?);
    }
    let key = hex::encode(&h.finalize()[..8]);
    let dir = cache_dir.join(format!("xenimg-{key}"));
    if let Ok(text) = std::fs::read_to_string(dir.join("manifest.json"))
        && let Ok(mut img) = serde_json::from_str::<XenImage>(&text)
        && [&img.xen, &img.kernel, &img.dom0_initramfs, &img.domu_initramfs, &img.dom0_root].iter().all(|p| p.exists())
    {
        img.build_secs = None;
        img.root_build_secs = None;
        return Ok(img);
    }

    let kernel_root = image::extract_kernel(cache_dir, &kernel_package, &kernel_version, progress)?;
    progress(&format!("building the Xen images {key}"));
    let building = cache_dir.join(format!("building-xenimg-{key}"));
    let _ = std::fs::remove_dir_all(&building);
    image::mkdir(&building)?;
    extract_hypervisor(&building, &root.xen_utils_version, progress)?;
    let kernel_src = image::find_one(&kernel_root.join("boot"), "vmlinuz-")?;
    std::fs::copy(&kernel_src, building.join("vmlinuz")).map_err(|e| LabError::io("copying the Xen kernel", e))?;
    let modules_dir = image::find_one(&kernel_root.join("lib/modules"), "")?;
    let dom0 =
        Initramfs { init: DOM0_INITRD_SCRIPT, modules: &DOM0_MODULES, programs: &[], data_files: &[], tool: None };
    image::write_initramfs(&building.join("dom0-initramfs.cpio"), &busybox, &modules_dir, &dom0)?;
    let stripped = match domu.tool {
        Some(tool) => {
            // All symbols go too (38 instead of 54 MB for a debug build): xl copies the whole
            // initramfs into the domU under emulation, and the domU holds it twice while unpacking.
            let out = building.join("vmguard.stripped");
            Cmd::new("objcopy").arg("--strip-all").arg(tool).arg(&out).run()?;
            Some(out)
        }
        None => None,
    };
    let domu_content = Initramfs {
        init: DOMU_INIT_SCRIPT,
        modules: &DOMU_MODULES,
        programs: &programs,
        data_files: &data_files,
        tool: stripped.as_deref(),
    };
    let domu_bytes =
        image::write_initramfs(&building.join("domu-initramfs.cpio"), &busybox, &modules_dir, &domu_content)?;
    if let Some(p) = &stripped {
        let _ = std::fs::remove_file(p);
    }
    let img = XenImage {
        key: key.clone(),
        xen_version: root.xen_utils_version.clone(),
        kernel_package,
        kernel_version,
        xen: dir.join("xen"),
        kernel: dir.join("vmlinuz"),
        dom0_initramfs: dir.join("dom0-initramfs.cpio"),
        domu_initramfs: dir.join("domu-initramfs.cpio"),
        domu_initramfs_bytes: domu_bytes,
        dom0_root: root.image.clone(),
        build_secs: Some(started.elapsed().as_secs_f64()),
        root_build_secs: root_built.then_some(root.build_secs),
    };
    crate::state::write_atomic(
        &building.join("manifest.json"),
        serde_json::to_string_pretty(&img).expect("json").as_bytes(),
    )?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&building, &dir)
        .map_err(|e| LabError::io(format!("moving the images into {}", dir.display()), e))?;
    image::prune_cache(cache_dir, "xenimg-", KEEP_IMAGES);
    Ok(img)
}

/// dom0's root image from the cache, or debootstrap'd now (`true`: built now).
fn ensure_root(cache_dir: &Path, mirror: &str, progress: &dyn Fn(&str)) -> Result<(RootManifest, bool), LabError> {
    let suite = host_codename()?;
    let mirror = if mirror.is_empty() { configured_mirror(&suite)? } else { mirror.to_string() };
    let key = root_key(&mirror, &suite);
    let dir = cache_dir.join(format!("xenroot-{key}"));
    if let Ok(text) = std::fs::read_to_string(dir.join("manifest.json"))
        && let Ok(m) = serde_json::from_str::<RootManifest>(&text)
        && m.image.exists()
    {
        return Ok((m, false));
    }
    let debootstrap = ["/usr/sbin/debootstrap", "/sbin/debootstrap"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .or_else(|| exec::which("debootstrap"))
        .ok_or_else(|| LabError::Missing("debootstrap (Debian package debootstrap): run `make deps`".into()))?;
    let started = Instant::now();
    let building = cache_dir.join(format!("building-xenroot-{key}"));
    let _ = std::fs::remove_dir_all(&building);
    image::mkdir(&building)?;
    let rootfs = building.join("rootfs");
    progress(&format!("debootstrap of dom0's root ({suite} from {mirror}; a few minutes)"));
    // In a private mount namespace: debootstrap mounts /proc and /sys (and, in a container, /dev)
    // inside the target, and every such mount dies with the namespace, also if debootstrap is
    // killed, so nothing can be left mounted under the cache (or removed through a bind mount).
    // In its own PID namespace too, tied to us: if vmguard dies, setpriv's death signal kills
    // unshare, unshare kills debootstrap (the namespace's init), and the kernel every process left
    // in the namespace (dpkg, chroot), so no build outlives a crashed `lab up`.
    Cmd::new("setpriv")
        .args(["--pdeathsig", "KILL", "unshare", "--mount", "--propagation", "private"])
        .args(["--pid", "--fork", "--kill-child=SIGKILL"])
        .arg(&debootstrap)
        .args(["--variant=minbase", &format!("--include={}", DOM0_PACKAGES.join(","))])
        .arg(&suite)
        .arg(&rootfs)
        .arg(&mirror)
        .timeout(Duration::from_secs(1800))
        .run()?;
    let status = std::fs::read_to_string(rootfs.join("var/lib/dpkg/status"))
        .map_err(|e| LabError::io("reading dom0's dpkg status", e))?;
    let xen_utils_version = installed_version(&status, XEN_UTILS)
        .ok_or_else(|| LabError::Image(format!("debootstrap did not install {XEN_UTILS} into dom0's root")))?;
    progress("dom0's root image (mkfs.ext4)");
    let img = building.join("root.img");
    Cmd::new("mkfs.ext4")
        .args(["-q", "-F", "-L", DOM0_ROOT_LABEL, "-d"])
        .arg(&rootfs)
        .arg(&img)
        .arg(format!("{ROOT_IMAGE_MIB}M"))
        .timeout(Duration::from_secs(600))
        .run()?;
    let _ = std::fs::remove_dir_all(&rootfs);
    let manifest = RootManifest {
        key: key.clone(),
        mirror,
        suite,
        xen_utils_version,
        image: dir.join("root.img"),
        build_secs: started.elapsed().as_secs_f64(),
    };
    crate::state::write_atomic(
        &building.join("manifest.json"),
        serde_json::to_string_pretty(&manifest).expect("json").as_bytes(),
    )?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&building, &dir)
        .map_err(|e| LabError::io(format!("moving dom0's root into {}", dir.display()), e))?;
    image::prune_cache(cache_dir, "xenroot-", KEEP_ROOTS);
    Ok((manifest, true))
}

fn root_key(mirror: &str, suite: &str) -> String {
    let mut h = Sha256::new();
    for p in [mirror, suite, &DOM0_PACKAGES.join(","), &ROOT_IMAGE_MIB.to_string(), DOM0_ROOT_LABEL] {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    hex::encode(&h.finalize()[..8])
}

/// Xen at the version of dom0's tools (the hypervisor and libxc must agree), unpacked from its
/// package: `boot/xen-4.17-amd64.gz` is a gzipped multiboot ELF that qemu's `-kernel` takes.
fn extract_hypervisor(building: &Path, version: &str, progress: &dyn Fn(&str)) -> Result<(), LabError> {
    progress(&format!("downloading {HYPERVISOR_PACKAGE} {version}"));
    let tmp = building.join("hypervisor");
    image::mkdir(&tmp)?;
    Cmd::new("apt-get")
        .args(["download", &format!("{HYPERVISOR_PACKAGE}={version}")])
        .cwd(&tmp)
        .timeout(Duration::from_secs(600))
        .run()?;
    let deb = image::find_one(&tmp, HYPERVISOR_PACKAGE)?;
    Cmd::new("dpkg-deb").arg("-x").arg(&deb).arg(tmp.join("root")).run()?;
    // boot/ also holds the EFI binary (xen-4.17-amd64.efi): take the gzipped ELF.
    let boot = tmp.join("root/boot");
    let gz = std::fs::read_dir(&boot)
        .map_err(|e| LabError::io(format!("listing {}", boot.display()), e))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("xen-") && n.ends_with(".gz")))
        .ok_or_else(|| LabError::Image(format!("no xen-*.gz in {}", boot.display())))?;
    let out = std::fs::File::create(building.join("xen")).map_err(|e| LabError::io("writing xen", e))?;
    let status = std::process::Command::new("gzip")
        .arg("-dc")
        .arg(&gz)
        .stdout(out)
        .status()
        .map_err(|e| LabError::io("running gzip -dc", e))?;
    if !status.success() {
        return Err(LabError::Image(format!("gzip -dc {} failed: {status}", gz.display())));
    }
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

/// The host's Debian release name (`VERSION_CODENAME` in /etc/os-release): dom0's suite.
fn host_codename() -> Result<String, LabError> {
    let text = std::fs::read_to_string("/etc/os-release").map_err(|e| LabError::io("reading /etc/os-release", e))?;
    os_release_codename(&text)
        .ok_or_else(|| LabError::Image("no VERSION_CODENAME in /etc/os-release: is this Debian?".into()))
}

pub fn os_release_codename(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim().trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
}

/// The Debian mirror apt uses for `suite`, from /etc/apt/sources.list and sources.list.d.
fn configured_mirror(suite: &str) -> Result<String, LabError> {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    let mut dir: Vec<PathBuf> = std::fs::read_dir("/etc/apt/sources.list.d")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "list" || x == "sources"))
        .collect();
    dir.sort();
    files.extend(dir);
    let sources: Vec<(bool, String)> = files
        .iter()
        .filter_map(|p| {
            let text = std::fs::read_to_string(p).ok()?;
            Some((p.extension().is_some_and(|x| x == "sources"), text))
        })
        .collect();
    sources.iter().find_map(|(deb822, text)| mirror_for_suite(text, *deb822, suite)).ok_or_else(|| {
        LabError::Image(format!(
            "no Debian mirror for `{suite}` main in /etc/apt/sources.list(.d): set [lab.xen] mirror"
        ))
    })
}

/// The first `deb` source for `suite` with component `main`: deb822 stanzas (`.sources` files) or
/// one-line entries (`.list` files, `deb [options] URI suite components...`).
pub fn mirror_for_suite(text: &str, deb822: bool, suite: &str) -> Option<String> {
    if deb822 {
        for stanza in text.split("\n\n") {
            let field = |name: &str| {
                stanza
                    .lines()
                    .filter(|l| !l.trim_start().starts_with('#'))
                    .find_map(|l| l.split_once(':').filter(|(k, _)| k.trim().eq_ignore_ascii_case(name)))
                    .map(|(_, v)| v.trim().to_string())
            };
            let enabled = field("Enabled").is_none_or(|v| !v.eq_ignore_ascii_case("no"));
            let types = field("Types").unwrap_or_default();
            let suites = field("Suites").unwrap_or_default();
            let comps = field("Components").unwrap_or_default();
            if enabled
                && types.split_whitespace().any(|t| t == "deb")
                && suites.split_whitespace().any(|s| s == suite)
                && comps.split_whitespace().any(|c| c == "main")
                && let Some(uri) = field("URIs").and_then(|u| u.split_whitespace().next().map(str::to_string))
            {
                return Some(uri);
            }
        }
        None
    } else {
        text.lines().find_map(|l| {
            let l = l.split('#').next()?.trim();
            let rest = l.strip_prefix("deb ")?.trim_start();
            // Options in brackets come before the URI.
            let rest = match rest.strip_prefix('[') {
                Some(r) => r.split_once(']')?.1,
                None => rest,
            };
            let mut words = rest.split_whitespace();
            let uri = words.next()?;
            let s = words.next()?;
            (s == suite && words.any(|c| c == "main")).then(|| uri.to_string())
        })
    }
}

/// The installed version of `package` in a dpkg status file.
pub fn installed_version(status: &str, package: &str) -> Option<String> {
    status.split("\n\n").find_map(|stanza| {
        let field = |name: &str| stanza.lines().find_map(|l| l.strip_prefix(name)).map(str::trim);
        (field("Package:") == Some(package) && field("Status:").is_some_and(|s| s.ends_with(" installed")))
            .then(|| field("Version:").map(str::to_string))
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DEB822: &str = "Types: deb\n# http://snapshot.debian.org/archive/debian/20250520T000000Z\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\nTypes: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\nComponents: main\n";

    #[test]
    fn the_mirror_is_read_from_apt_sources() {
        assert_eq!(mirror_for_suite(DEB822, true, "bookworm").as_deref(), Some("http://deb.debian.org/debian"));
        assert_eq!(mirror_for_suite(DEB822, true, "trixie"), None);
        let disabled = "Enabled: no\nTypes: deb\nURIs: http://a/debian\nSuites: bookworm\nComponents: main\n";
        assert_eq!(mirror_for_suite(disabled, true, "bookworm"), None);
        let src_only = "Types: deb-src\nURIs: http://a/debian\nSuites: bookworm\nComponents: main\n";
        assert_eq!(mirror_for_suite(src_only, true, "bookworm"), None);
        let list = "# comment\ndeb-src http://src/debian bookworm main\ndeb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main contrib\n";
        assert_eq!(mirror_for_suite(list, false, "bookworm").as_deref(), Some("http://m.example/debian"));
        assert_eq!(mirror_for_suite("deb http://x/debian bookworm-updates main\n", false, "bookworm"), None);
        assert_eq!(
            mirror_for_suite("deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main", false, "bookworm"),
            None
        );
    }

    #[test]
    fn codename_and_installed_version_are_read() {
        let os =
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\nID=debian\n";
        assert_eq!(os_release_codename(os).as_deref(), Some("bookworm"));
        assert_eq!(os_release_codename("ID=debian\n"), None);
        let status = "Package: xen-utils-common\nStatus: install ok installed\nVersion: 4.17.5-1\n\nPackage: xen-utils-4.17\nStatus: install ok installed\nPriority: optional\nVersion: 4.17.5+72-g01140da4e8-1\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1\n";
        assert_eq!(installed_version(status, "xen-utils-4.17").as_deref(), Some("4.17.5+72-g01140da4e8-1"));
        assert_eq!(installed_version(status, "gone"), None);
        assert_eq!(installed_version(status, "xen-utils"), None);
    }

    #[test]
    fn root_key_depends_on_mirror_and_suite() {
        assert_eq!(root_key("http://a", "bookworm"), root_key("http://a", "bookworm"));
        assert_ne!(root_key("http://a", "bookworm"), root_key("http://b", "bookworm"));
        assert_ne!(root_key("http://a", "bookworm"), root_key("http://a", "trixie"));
    }

    #[test]
    fn init_scripts_are_valid_shell() {
        for (name, script) in [("dom0 initrd", DOM0_INITRD_SCRIPT), ("domU", DOMU_INIT_SCRIPT)] {
            assert!(script.starts_with("#!/bin/sh\n"), "{name}: the kernel runs /init only with a shebang");
            let out = Cmd::new("sh").arg("-n").stdin(script).run_unchecked().unwrap();
            assert!(out.status.success(), "syntax error in the {name} script: {}", out.stderr);
        }
        assert!(DOMU_INIT_SCRIPT.contains("VMGUARD_GUEST_UP"));
        assert!(DOM0_INITRD_SCRIPT.contains(DOM0_ROOT_LABEL));
    }

    proptest! {
        #[test]
        fn source_parsers_never_panic(s in "(?s).{0,400}", deb822 in any::<bool>()) {
            let _ = mirror_for_suite(&s, deb822, "bookworm");
            let _ = installed_version(&s, "xen-utils-4.17");
            let _ = os_release_codename(&s);
        }

        #[test]
        fn a_one_line_source_is_found(host in "[a-z]{1,10}", extra in proptest::collection::vec("[a-z]{1,8}", 0..3)) {
            let uri = format!("http://{host}.example/debian");
            let line = format!("deb {uri} bookworm {} main\n", extra.join(" "));
            prop_assert_eq!(mirror_for_suite(&line, false, "bookworm"), Some(uri));
        }
    }
}
