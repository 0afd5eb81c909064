//! qemu command lines: the guest's name, its QMP socket and its taps.

use std::collections::HashMap;
use std::path::PathBuf;

/// What a qemu command line says about its guest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QemuCmdline {
    /// `-name NAME` or `-name guest=NAME,...`.
    pub name: Option<String>,
    /// The first QMP monitor: `-qmp unix:PATH,...` (also `-qmp-pretty`), or a `-chardev socket,id=X,path=PATH`
    /// that a `-mon chardev=X,mode=control` uses. As written (may be relative to qemu's working directory).
    pub qmp_socket: Option<PathBuf>,
    /// `ifname=` of every `-netdev tap`, `-nic tap` and `-net tap`, in order.
    pub taps: Vec<String>,
    /// The monitor is libvirt's (`charmonitor`, or a socket under a `libvirt` directory): vmguard must not
    /// compete with libvirt for it.
    pub libvirt_managed: bool,
}

/// Whether argv[0] is a qemu system emulator: basename `qemu-system-*` or `qemu-kvm` (RHEL's name).
pub fn is_qemu_binary(argv0: &str) -> bool {
    let base = argv0.rsplit('/').next().unwrap_or(argv0);
    base.starts_with("qemu-system-") || base == "qemu-kvm"
}

/// Split a qemu option string (`a,b=c,d=e,,f`) into key/value pairs. `,,` is a literal comma. A first
/// element without `=` is the value of `implied` (`-netdev tap,...` → `type=tap`); a later one is a flag
/// (`server` → `server=on`).
pub fn qemu_opts(s: &str, implied: &str) -> Vec<(String, String)> {
    let mut elems = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ',' {
            if chars.peek() == Some(&',') {
                chars.next();
                cur.push(',');
            } else {
                elems.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(c);
        }
    }
    elems.push(cur);
    elems
        .into_iter()
        .enumerate()
        .filter(|(_, e)| !e.is_empty())
        .map(|(i, e)| match e.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None if i == 0 && !implied.is_empty() => (implied.to_string(), e),
            None => (e, "on".to_string()),
        })
        .collect()
}

fn get<'a>(opts: &'a [(String, String)], key: &str) -> Option<&'a str> {
    opts.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Parse a qemu argv (argv[0] included). Unknown options are ignored; an option missing its value ends the
/// scan. Order does not matter (`-mon` may come before its `-chardev`).
pub fn parse_qemu_cmdline(argv: &[String]) -> QemuCmdline {
    let mut out = QemuCmdline::default();
    let mut qmp_direct: Option<String> = None;
    let mut chardev_paths: HashMap<String, String> = HashMap::new();
    let mut control_mons: Vec<String> = Vec::new();
    let mut it = argv.iter().skip(1);
    while let Some(arg) = it.next() {
        let Some(opt) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else { continue };
        let takes_value = matches!(opt, "name" | "qmp" | "qmp-pretty" | "chardev" | "mon" | "netdev" | "nic" | "net");
        if !takes_value {
            continue;
        }
        let Some(value) = it.next() else { break };
        match opt {
            "name" => {
                let opts = qemu_opts(value, "guest");
                if let Some(n) = get(&opts, "guest").filter(|n| !n.is_empty()) {
                    out.name = Some(n.to_string());
                }
            }
            "qmp" | "qmp-pretty" => {
                // unix:PATH[,server=on][,wait=off]
                let opts = qemu_opts(value, "dev");
                if let Some(path) = get(&opts, "dev").and_then(|d| d.strip_prefix("unix:"))
                    && qmp_direct.is_none()
                    && !path.is_empty()
                {
                    qmp_direct = Some(path.to_string());
                }
            }
            "chardev" => {
                let opts = qemu_opts(value, "backend");
                if let (Some("socket"), Some(id), Some(path)) =
                    (get(&opts, "backend"), get(&opts, "id"), get(&opts, "path"))
                {
                    chardev_paths.entry(id.to_string()).or_insert_with(|| path.to_string());
                }
                if get(&opts, "id") == Some("charmonitor") {
                    out.libvirt_managed = true;
                }
            }
            "mon" => {
                let opts = qemu_opts(value, "chardev");
                if let (Some(dev), Some("control")) = (get(&opts, "chardev"), get(&opts, "mode")) {
                    control_mons.push(dev.to_string());
                }
            }
            _ => {
                // -netdev tap,id=..,ifname=..  -nic tap,ifname=..  -net tap,ifname=..
                let opts = qemu_opts(value, "type");
                if get(&opts, "type") == Some("tap")
                    && let Some(ifname) = get(&opts, "ifname").filter(|n| !n.is_empty())
                {
                    out.taps.push(ifname.to_string());
                }
            }
        }
    }
    let via_mon = control_mons.iter().find_map(|id| chardev_paths.get(id).cloned());
    let qmp = qmp_direct.or(via_mon);
    if qmp.as_deref().is_some_and(|p| p.split('/').any(|c| c == "libvirt")) {
        out.libvirt_managed = true;
    }
    out.qmp_socket = qmp.map(PathBuf::from);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn hand_started_qemu() {
        let c = parse_qemu_cmdline(&argv(
            "/usr/bin/qemu-system-x86_64 -name test -nographic -nodefaults -machine none -qmp unix:/tmp/x.qmp,server,nowait",
        ));
        assert_eq!(c.name.as_deref(), Some("test"));
        assert_eq!(c.qmp_socket, Some(PathBuf::from("/tmp/x.qmp")));
        assert!(c.taps.is_empty() && !c.libvirt_managed);
    }

    #[test]
    fn vmguard_lab_style_qemu() {
        let c = parse_qemu_cmdline(&argv(
            "qemu-system-x86_64 -enable-kvm -m 512 -name guest=vm1,debug-threads=on \
             -chardev socket,id=qmp0,path=/run/vmguard/vm1.qmp,server=on,wait=off -mon chardev=qmp0,mode=control \
             -netdev tap,id=n0,ifname=vmgt-tap0,script=no,downscript=no -device virtio-net-pci,netdev=n0 \
             -nic tap,ifname=tap1,model=e1000 -net tap,fd=3 -drive file=/img,,with,,commas.qcow2",
        ));
        assert_eq!(c.name.as_deref(), Some("vm1"));
        assert_eq!(c.qmp_socket, Some(PathBuf::from("/run/vmguard/vm1.qmp")));
        assert_eq!(c.taps, ["vmgt-tap0", "tap1"]);
    }

    #[test]
    fn libvirt_qemu_is_marked() {
        let c = parse_qemu_cmdline(&argv(
            "/usr/bin/qemu-system-x86_64 -name guest=web,debug-threads=on -S \
             -chardev socket,id=charmonitor,fd=31,server=on,wait=off -mon chardev=charmonitor,id=monitor,mode=control \
             -netdev tap,fd=33,id=hostnet0,vhost=on,vhostfd=35",
        ));
        assert_eq!(c.name.as_deref(), Some("web"));
        assert_eq!(c.qmp_socket, None, "an fd, not a path");
        assert!(c.libvirt_managed);
        assert!(c.taps.is_empty());
        let old = parse_qemu_cmdline(&argv(
            "qemu-kvm -chardev socket,id=mon,path=/var/lib/libvirt/qemu/domain-1-web/monitor.sock,server=on \
             -mon chardev=mon,mode=control",
        ));
        assert!(old.libvirt_managed && old.qmp_socket.is_some());
    }

    #[test]
    fn readline_monitors_and_missing_values() {
        let c = parse_qemu_cmdline(&argv(
            "qemu-system-aarch64 -mon chardev=c0 -chardev socket,id=c0,path=/tmp/hmp -qmp tcp:localhost:4444 -name",
        ));
        assert_eq!(c, QemuCmdline::default(), "HMP and TCP monitors are not QMP sockets; -name lacks a value");
        assert!(is_qemu_binary("/usr/libexec/qemu-kvm") && is_qemu_binary("qemu-system-riscv64"));
        assert!(!is_qemu_binary("/usr/bin/qemu-img") && !is_qemu_binary("/opt/qemu-system-x86_64/bin/sh"));
    }

    #[test]
    fn opts() {
        assert_eq!(
            qemu_opts("tap,id=a,,b,ifname=t0,vhost", "type"),
            [("type", "tap"), ("id", "a,b"), ("ifname", "t0"), ("vhost", "on")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        assert!(qemu_opts("", "type").is_empty());
    }

    proptest! {
        #[test]
        fn never_panics(args in proptest::collection::vec("\\PC{0,20}", 0..12)) {
            let _ = parse_qemu_cmdline(&args);
        }

        #[test]
        fn names_sockets_and_taps_roundtrip(
            name in "[a-zA-Z0-9_.,= -]{1,16}",
            path in "/[a-zA-Z0-9_.,/-]{1,24}",
            taps in proptest::collection::vec("[a-z0-9-]{1,15}", 0..3),
            via_chardev in any::<bool>(),
        ) {
            let esc = |s: &str| s.replace(',', ",,");
            let mut a: Vec<String> = vec!["qemu-system-x86_64".into(), "-name".into(), format!("guest={},debug-threads=on", esc(&name))];
            for (i, t) in taps.iter().enumerate() {
                a.extend(["-netdev".into(), format!("tap,id=n{i},ifname={t},script=no")]);
            }
            if via_chardev {
                a.extend(["-mon".into(), "chardev=m,mode=control".into(), "-chardev".into(), format!("socket,id=m,path={},server=on", esc(&path))]);
            } else {
                a.extend(["-qmp".into(), format!("unix:{},server,nowait", esc(&path))]);
            }
            let c = parse_qemu_cmdline(&a);
            prop_assert_eq!(c.name, Some(name));
            prop_assert_eq!(c.qmp_socket, Some(PathBuf::from(&path)));
            prop_assert_eq!(c.taps, taps);
        }
    }
}
