//! Host-side packet counters of a guest's tap or veth, from `/proc/net/dev` as seen inside its namespace.
//!
//! Why not `/sys/class/net/IF/statistics`: sysfs shows the namespace of whoever mounted it, so a thread
//! that has `setns`'d into the lab namespace still sees the host's interfaces there (`ip netns exec`
//! remounts /sys, a thread cannot). `/proc/thread-self/net/dev` follows the calling thread's network
//! namespace, and an open file keeps reading the namespace it was opened in: the source opens it once on a
//! thread inside the namespace and re-reads it from offset 0 every round.

use std::sync::Arc;

use crate::sample::{Emit, Kind, Sample, SourceId};

/// The counters of one interface line, in file order.
pub const NETDEV_FIELDS: [&str; 16] = [
    "rx_bytes",
    "rx_packets",
    "rx_errs",
    "rx_drop",
    "rx_fifo",
    "rx_frame",
    "rx_compressed",
    "rx_multicast",
    "tx_bytes",
    "tx_packets",
    "tx_errs",
    "tx_drop",
    "tx_fifo",
    "tx_colls",
    "tx_carrier",
    "tx_compressed",
];

/// Which of [`NETDEV_FIELDS`] become samples: bytes, packets, errors and drops in each direction.
const EMITTED: [usize; 8] = [0, 1, 2, 3, 8, 9, 10, 11];

/// Counters read on the guest's side of a link, as the host side would count them: what the guest
/// received the host side transmitted, and the other way round (bytes, packets, errors, drops; the
/// rest have no counterpart and are left).
pub fn to_host_side(vals: &mut [u64; 16]) {
    for i in 0..4 {
        vals.swap(i, 8 + i);
    }
}

/// The 16 counters of `iface` in a `/proc/net/dev` text, `None` if it is not there or its line is short.
/// Allocation-free.
pub fn parse_netdev_iface(text: &str, iface: &str) -> Option<[u64; 16]> {
    for line in text.lines() {
        let Some((name, rest)) = line.split_once(':') else { continue };
        if name.trim() != iface {
            continue;
        }
        let mut vals = [0u64; 16];
        let mut fields = rest.split_ascii_whitespace();
        for v in vals.iter_mut() {
            *v = fields.next()?.parse().ok()?;
        }
        return Some(vals);
    }
    None
}

/// Every interface's counters (for listing what a namespace holds).
pub fn parse_netdev(text: &str) -> Vec<(String, [u64; 16])> {
    text.lines()
        .filter_map(|line| {
            let (name, _) = line.split_once(':')?;
            let name = name.trim();
            parse_netdev_iface(line, name).map(|v| (name.to_string(), v))
        })
        .collect()
}

pub(crate) fn emit_netdev(vals: &[u64; 16], emit: &mut Emit<'_>) {
    for i in EMITTED {
        emit.push(NETDEV_FIELDS[i], vals[i], Kind::Counter);
    }
}

/// Counters of one interface (tap or veth) in one namespace.
#[cfg(feature = "sources")]
pub struct NetDev {
    guest: Arc<str>,
    iface: String,
    netns: Option<String>,
    /// Read on the guest's side of the link: swap receive and transmit (see [`crate::Iface`]).
    guest_side: bool,
    /// A file of the same format to read instead (a recorded copy).
    file: Option<std::path::PathBuf>,
    open: Option<(std::fs::File, Option<u64>)>,
    buf: String,
    bytes: Vec<u8>,
    names: crate::sample::NameCache,
}

#[cfg(feature = "sources")]
impl NetDev {
    /// Watch `iface` inside the named namespace (`None`: the host's). Opens lazily on the first round.
    pub fn new(guest: &str, iface: &crate::Iface) -> Self {
        NetDev {
            guest: guest.into(),
            iface: iface.name.clone(),
            netns: iface.netns.clone(),
            guest_side: iface.guest_side,
            file: None,
            open: None,
            buf: String::with_capacity(4096),
            bytes: Vec::new(),
            names: crate::sample::NameCache::new(),
        }
    }

    /// Read `iface` from a file of `/proc/net/dev` format (recorded inputs, in tests and benchmarks).
    pub fn from_file(guest: &str, iface: &str, path: impl Into<std::path::PathBuf>) -> Self {
        NetDev {
            guest: guest.into(),
            iface: iface.to_string(),
            netns: None,
            guest_side: false,
            file: Some(path.into()),
            open: None,
            buf: String::with_capacity(4096),
            bytes: Vec::new(),
            names: crate::sample::NameCache::new(),
        }
    }

    fn open(&self) -> Result<(std::fs::File, Option<u64>), crate::TelemetryError> {
        const PATH: &str = "/proc/thread-self/net/dev";
        if let Some(p) = &self.file {
            return std::fs::File::open(p).map(|f| (f, None)).map_err(|e| crate::TelemetryError::read(p, e));
        }
        match &self.netns {
            None => std::fs::File::open(PATH).map(|f| (f, None)).map_err(|e| crate::TelemetryError::read(PATH, e)),
            Some(ns) => {
                let inode = netns::inode(ns);
                let file = netns::run_in(ns, || std::fs::File::open(PATH))?
                    .map_err(|e| crate::TelemetryError::read(format!("{PATH} (in namespace {ns})"), e))?;
                Ok((file, inode))
            }
        }
    }

    fn read(&mut self, time_ns: i64, out: &mut Vec<Sample>) -> Result<(), crate::TelemetryError> {
        // The namespace may have been deleted and recreated under the same name: then reopen (and let the
        // old one go: the open file holds a reference to it).
        let current = self.netns.as_deref().and_then(netns::inode);
        if self.open.as_ref().is_some_and(|(_, ino)| *ino != current) {
            self.open = None;
        }
        if self.open.is_none() {
            self.open = Some(self.open()?);
        }
        let (file, _) = self.open.as_mut().expect("just opened");
        // One pread from offset 0 per round: the kernel regenerates the text for the namespace.
        let path = "/proc/net/dev";
        let len = crate::file::read_all_at(file, &mut self.bytes).map_err(|e| crate::TelemetryError::read(path, e))?;
        self.buf.clear();
        self.buf.push_str(
            std::str::from_utf8(&self.bytes[..len])
                .map_err(|_| crate::TelemetryError::parse(path, "not UTF-8 text"))?,
        );
        let mut vals =
            parse_netdev_iface(&self.buf, &self.iface).ok_or_else(|| crate::TelemetryError::IfaceMissing {
                iface: self.iface.clone(),
                netns: self.netns.clone().unwrap_or_else(|| "(host)".into()),
            })?;
        if self.guest_side {
            to_host_side(&mut vals);
        }
        emit_netdev(&vals, &mut Emit::new(out, &self.guest, SourceId::Netdev, time_ns).with_names(&mut self.names));
        Ok(())
    }
}

#[cfg(feature = "sources")]
impl crate::Source for NetDev {
    fn id(&self) -> SourceId {
        SourceId::Netdev
    }

    fn guest(&self) -> &str {
        &self.guest
    }

    fn sample(&mut self, time_ns: i64, out: &mut Vec<Sample>) -> Result<(), crate::TelemetryError> {
        let r = self.read(time_ns, out);
        if r.is_err() {
            self.open = None;
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) const RECORDED: &str = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    4520      56    0    0    0     0          0         0     4520      56    0    0    0     0       0          0
 vmtap0: 123456789 2345678    1 7777    0     0          0        12 98765432  345678    0   3    0     0       0          0
";

    #[test]
    fn guest_side_counters_read_as_the_host_side() {
        let mut v = parse_netdev_iface(RECORDED, "vmtap0").unwrap();
        to_host_side(&mut v);
        assert_eq!((v[0], v[1], v[3]), (98765432, 345678, 3));
        assert_eq!((v[8], v[9], v[11]), (123456789, 2345678, 7777));
    }

    #[test]
    fn parses_one_interface() {
        let v = parse_netdev_iface(RECORDED, "vmtap0").unwrap();
        assert_eq!((v[0], v[1], v[3], v[7]), (123456789, 2345678, 7777, 12));
        assert_eq!((v[8], v[9], v[11]), (98765432, 345678, 3));
        assert_eq!(parse_netdev_iface(RECORDED, "eth9"), None);
        assert_eq!(parse_netdev_iface(RECORDED, "vmtap"), None, "no prefix match");
        let all = parse_netdev(RECORDED);
        assert_eq!(all.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["lo", "vmtap0"]);
    }

    #[test]
    fn emits_the_eight_main_counters() {
        let v = parse_netdev_iface(RECORDED, "lo").unwrap();
        let guest: Arc<str> = "g".into();
        let mut out = Vec::new();
        emit_netdev(&v, &mut Emit::new(&mut out, &guest, SourceId::Netdev, 1));
        let names: Vec<&str> = out.iter().map(|s| s.counter.as_str()).collect();
        assert_eq!(
            names,
            ["rx_bytes", "rx_packets", "rx_errs", "rx_drop", "tx_bytes", "tx_packets", "tx_errs", "tx_drop"]
        );
    }

    proptest! {
        #[test]
        fn never_panics(text in "\\PC*", iface in "[a-z0-9]{0,6}") {
            let _ = parse_netdev_iface(&text, &iface);
            let _ = parse_netdev(&text);
        }

        #[test]
        fn round_trips(vals in proptest::array::uniform16(proptest::num::u64::ANY)) {
            let line = format!("  eth0: {}\n", vals.iter().map(u64::to_string).collect::<Vec<_>>().join(" "));
            prop_assert_eq!(parse_netdev_iface(&line, "eth0"), Some(vals));
        }
    }
}
