//! Pure parsers of the `/proc/PID/*` files discovery reads: `cmdline`, `cgroup`, `stat`, `net/dev`.

/// The arguments of a `/proc/PID/cmdline` (NUL-separated, usually NUL-terminated). Empty for kernel
/// threads and zombies. Arguments that are not UTF-8 are kept lossily.
pub fn split_cmdline(bytes: &[u8]) -> Vec<String> {
    let bytes = bytes.strip_suffix(b"\0").unwrap_or(bytes);
    if bytes.is_empty() {
        return Vec::new();
    }
    bytes.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect()
}

/// Where a process sits in the cgroup hierarchies, from `/proc/PID/cgroup`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcCgroup {
    /// The unified (v2) path (`0::/PATH`), absolute.
    pub v2: Option<String>,
    /// The v1 path of the hierarchy holding the `cpu` or `cpuacct` controller (hybrid and v1 hosts).
    pub v1_cpu: Option<String>,
    /// Every path, v2 and v1, in file order (for spotting a container's id).
    pub paths: Vec<String>,
}

impl ProcCgroup {
    /// The cgroup relative to the hierarchy root, as [`crate::GuestInfo::cgroup`] wants it: the v1
    /// `cpu`/`cpuacct` path when that controller is on v1 (where the CPU counters are), else the v2 path.
    /// `None` for the root cgroup.
    pub fn relative(&self) -> Option<String> {
        let p = self.v1_cpu.as_deref().or(self.v2.as_deref())?;
        let rel = p.trim_start_matches('/').trim_end_matches('/');
        (!rel.is_empty()).then(|| rel.to_string())
    }
}

/// Parse `/proc/PID/cgroup`: lines `ID:CONTROLLERS:PATH` (v2: `0::PATH`). Lines of another shape are
/// skipped; a path may itself contain `:`.
pub fn parse_proc_cgroup(text: &str) -> ProcCgroup {
    let mut out = ProcCgroup::default();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if id.parse::<u32>().is_err() || !path.starts_with('/') {
            continue;
        }
        if id == "0" && controllers.is_empty() {
            out.v2.get_or_insert_with(|| path.to_string());
        } else if controllers.split(',').any(|c| c == "cpu" || c == "cpuacct") {
            out.v1_cpu.get_or_insert_with(|| path.to_string());
        }
        out.paths.push(path.to_string());
    }
    out
}

/// `(ppid, starttime)` of a `/proc/PID/stat` (fields 4 and 22; starttime in clock ticks since boot).
/// The command name may hold spaces and parentheses, so fields are counted from the last `)`.
pub fn parse_stat_ppid_start(text: &str) -> Option<(u32, u64)> {
    let close = text.rfind(')')?;
    let mut f = text[close + 1..].split_ascii_whitespace();
    let _state = f.next()?; // 3
    let ppid = f.next()?.parse().ok()?; // 4
    let start = f.nth(17)?.parse().ok()?; // 5..=21 skipped, 22
    Some((ppid, start))
}

/// The interface names of a `/proc/net/dev` text (`/proc/PID/net/dev` shows the process's namespace).
pub fn parse_netdev_names(text: &str) -> Vec<String> {
    text.lines()
        .skip(2)
        .filter_map(|l| l.split_once(':'))
        .map(|(name, _)| name.trim().to_string())
        .filter(|n| !n.is_empty())
        .collect()
}

/// The interface a container is watched on: `eth0` if it has one, else the first that is not `lo`.
pub fn pick_container_iface(names: &[String]) -> Option<&str> {
    names.iter().find(|n| *n == "eth0").or_else(|| names.iter().find(|n| *n != "lo")).map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cmdline() {
        assert_eq!(split_cmdline(b"qemu-system-x86_64\0-name\0test\0"), ["qemu-system-x86_64", "-name", "test"]);
        assert_eq!(split_cmdline(b"a\0\0b"), ["a", "", "b"]);
        assert!(split_cmdline(b"").is_empty());
    }

    #[test]
    fn cgroup_v2_v1_and_hybrid() {
        let v2 = parse_proc_cgroup("0::/system.slice/docker-abc.scope\n");
        assert_eq!(v2.relative().as_deref(), Some("system.slice/docker-abc.scope"));
        let hybrid = "12:pids:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n0::/\n";
        let h = parse_proc_cgroup(hybrid);
        assert_eq!(h.v1_cpu.as_deref(), Some("/docker/abc"));
        assert_eq!(h.v2.as_deref(), Some("/"));
        assert_eq!(h.relative().as_deref(), Some("docker/abc"));
        assert_eq!(h.paths.len(), 4);
        assert_eq!(parse_proc_cgroup("0::/\n").relative(), None);
        assert_eq!(parse_proc_cgroup("garbage\n0::relative\n"), ProcCgroup::default());
    }

    #[test]
    fn stat_fields() {
        let text = "4242 (qemu-system-x86) S 1 4242 4242 0 -1 4194560 1 0 0 0 5 3 0 0 20 0 4 0 987654 1000 10 \
                    18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
        assert_eq!(parse_stat_ppid_start(text), Some((1, 987654)));
        let odd = "7 (a) b) c) R 3 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 55 0 0";
        assert_eq!(parse_stat_ppid_start(odd), Some((3, 55)));
        assert_eq!(parse_stat_ppid_start("7 (x) R 3"), None);
    }

    #[test]
    fn netdev_names() {
        let text = "Inter-|   Receive                            |  Transmit\n face |bytes    packets errs drop fifo \
                    frame compressed multicast|bytes    packets\n    lo: 1 2 0 0 0 0 0 0 1 2 0 0 0 0 0 0\n  eth0: 3 4 0 \
                    0 0 0 0 0 5 6 0 0 0 0 0 0\n";
        let names = parse_netdev_names(text);
        assert_eq!(names, ["lo", "eth0"]);
        assert_eq!(pick_container_iface(&names), Some("eth0"));
        assert_eq!(pick_container_iface(&["lo".into(), "veth1".into()]), Some("veth1"));
        assert_eq!(pick_container_iface(&["lo".into()]), None);
    }

    proptest! {
        #[test]
        fn parsers_never_panic(text in "\\PC*", bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_proc_cgroup(&text);
            let _ = parse_stat_ppid_start(&text);
            let _ = parse_netdev_names(&text);
            let _ = split_cmdline(&bytes);
        }

        #[test]
        fn cmdline_roundtrip(args in proptest::collection::vec("[^\\x00]{0,12}", 1..8)) {
            let mut bytes = Vec::new();
            for a in &args { bytes.extend_from_slice(a.as_bytes()); bytes.push(0); }
            // An argv of one empty argument is indistinguishable from none.
            if args.len() > 1 || !args[0].is_empty() {
                prop_assert_eq!(split_cmdline(&bytes), args);
            }
        }

        #[test]
        fn cgroup_lines_roundtrip(v2 in "(/[a-z0-9.@-]{1,10}){0,4}", v1 in "(/[a-z0-9:]{1,10}){1,3}") {
            let v2 = if v2.is_empty() { "/".to_string() } else { v2 };
            let text = format!("5:memory:/x\n3:cpu,cpuacct:{v1}\n0::{v2}\n");
            let c = parse_proc_cgroup(&text);
            prop_assert_eq!(c.v2.as_deref(), Some(v2.as_str()));
            prop_assert_eq!(c.v1_cpu.as_deref(), Some(v1.as_str()));
            prop_assert_eq!(c.relative(), Some(v1.trim_start_matches('/').to_string()));
        }
    }
}
