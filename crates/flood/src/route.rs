//! How packets leave the sending namespace toward a target: the route, the egress interface and the
//! next hop's MAC address, asked of the kernel directly (a connected UDP socket, interface ioctls,
//! `/proc/thread-self/net/{route,arp}`) from a thread inside the namespace. No `ip` binary is needed,
//! so the same code runs in a busybox guest, a container and the lab's attacker namespace.

use std::net::{Ipv4Addr, UdpSocket};
use std::time::{Duration, Instant};

use crate::FloodError;

/// The way to a target from the sending namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Egress interface.
    pub dev: String,
    pub ifindex: i32,
    /// The address the kernel would use as source toward the target.
    pub src: Ipv4Addr,
    /// The gateway, or the target itself when it is on-link.
    pub next_hop: Ipv4Addr,
    /// `ether`, `loopback`, or `arphrd-N` for other link types.
    pub link_type: String,
    /// The interface's own MAC address (Ethernet links).
    pub mac: Option<[u8; 6]>,
}

/// One entry of the main routing table (`/proc/net/route`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteEntry {
    pub dev: String,
    pub dest: Ipv4Addr,
    pub gateway: Ipv4Addr,
    pub mask: Ipv4Addr,
    pub metric: u32,
}

/// Parse `/proc/net/route` (addresses are little-endian hex); malformed lines are skipped.
pub fn parse_route_table(text: &str) -> Vec<RouteEntry> {
    let hex_addr = |s: &str| u32::from_str_radix(s, 16).ok().map(|v| Ipv4Addr::from(v.swap_bytes()));
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let flags = u32::from_str_radix(f.get(3)?, 16).ok()?;
            // RTF_UP: only usable routes.
            if flags & 0x1 == 0 {
                return None;
            }
            Some(RouteEntry {
                dev: f.first()?.to_string(),
                dest: hex_addr(f.get(1)?)?,
                gateway: hex_addr(f.get(2)?)?,
                metric: f.get(6)?.parse().ok()?,
                mask: hex_addr(f.get(7)?)?,
            })
        })
        .collect()
}

/// The most specific route to `dst` (longest mask, then lowest metric).
pub fn best_route(table: &[RouteEntry], dst: Ipv4Addr) -> Option<&RouteEntry> {
    table
        .iter()
        .filter(|r| u32::from(dst) & u32::from(r.mask) == u32::from(r.dest) & u32::from(r.mask))
        .max_by_key(|r| (u32::from(r.mask).count_ones(), std::cmp::Reverse(r.metric)))
}

/// The complete ARP entry for `ip` on `dev` in `/proc/net/arp`, if any.
pub fn parse_arp(text: &str, ip: Ipv4Addr, dev: &str) -> Option<[u8; 6]> {
    text.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let flags = u32::from_str_radix(f.get(2)?.trim_start_matches("0x"), 16).ok()?;
        // ATF_COM: the entry is resolved.
        let complete = flags & 0x2 != 0;
        (complete && f.first()?.parse::<Ipv4Addr>().ok()? == ip && *f.get(5)? == dev).then(|| parse_mac(f.get(3)?))?
    })
}

fn route_err(dst: Ipv4Addr, ns: Option<&str>, detail: String) -> FloodError {
    FloodError::Route { target: dst, netns: ns.unwrap_or("the current namespace").to_string(), detail }
}

/// Run `f` inside `ns` (None: here).
fn in_ns<T: Send + 'static>(ns: Option<&str>, f: impl FnOnce() -> T + Send + 'static) -> Result<T, FloodError> {
    match ns {
        Some(name) => Ok(netns::run_in(name, f)?),
        None => Ok(f()),
    }
}

/// Look up the route to `dst` inside `ns` (None: the current namespace).
pub fn lookup(ns: Option<&str>, dst: Ipv4Addr) -> Result<Route, FloodError> {
    let ns_name = ns.map(str::to_string);
    in_ns(ns, move || lookup_here(dst).map_err(|detail| route_err(dst, ns_name.as_deref(), detail)))?
}

fn lookup_here(dst: Ipv4Addr) -> Result<Route, String> {
    // Connecting a UDP socket sends nothing; the kernel picks the source address of the route.
    let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).map_err(|e| format!("UDP socket: {e}"))?;
    sock.connect((dst, 9)).map_err(|e| format!("no route: {e}"))?;
    let src = match sock.local_addr().map_err(|e| e.to_string())?.ip() {
        std::net::IpAddr::V4(a) => a,
        other => return Err(format!("unexpected source address {other}")),
    };
    let (dev, next_hop) = if dst.is_loopback() {
        ("lo".to_string(), dst)
    } else {
        let table =
            std::fs::read_to_string("/proc/thread-self/net/route").map_err(|e| format!("/proc/net/route: {e}"))?;
        let table = parse_route_table(&table);
        let r = best_route(&table, dst).ok_or("no route in the main table")?;
        let hop = if r.gateway.is_unspecified() { dst } else { r.gateway };
        (r.dev.clone(), hop)
    };
    let (link_type, mac) = link_info(&dev)?;
    let cname = std::ffi::CString::new(dev.clone()).map_err(|_| format!("bad interface name {dev}"))?;
    // SAFETY: cname is a valid NUL-terminated string for the duration of the call.
    let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) } as i32;
    if ifindex == 0 {
        return Err(format!("interface {dev} vanished"));
    }
    Ok(Route { dev, ifindex, src, next_hop, link_type, mac })
}

/// Link type and MAC address of an interface in the current namespace (SIOCGIFHWADDR).
fn link_info(dev: &str) -> Result<(String, Option<[u8; 6]>), String> {
    if dev.len() >= libc::IFNAMSIZ {
        return Err(format!("interface name {dev} too long"));
    }
    // SAFETY: a plain datagram socket, closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(format!("socket: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: ifreq is plain old data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(dev.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: fd is open and req is a properly sized ifreq with a NUL-terminated name.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCGIFHWADDR, &mut req) };
    let err = std::io::Error::last_os_error();
    // SAFETY: fd was opened above and is not used after this.
    unsafe { libc::close(fd) };
    if rc < 0 {
        return Err(format!("SIOCGIFHWADDR on {dev}: {err}"));
    }
    // SAFETY: SIOCGIFHWADDR filled the hardware-address member of the union.
    let hw = unsafe { req.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (m, b) in mac.iter_mut().zip(hw.sa_data.iter()) {
        *m = *b as u8;
    }
    Ok(match hw.sa_family {
        libc::ARPHRD_ETHER => ("ether".to_string(), Some(mac)),
        libc::ARPHRD_LOOPBACK => ("loopback".to_string(), None),
        other => (format!("arphrd-{other}"), None),
    })
}

/// The next hop's MAC address from the neighbour table, if resolved. Call it from a thread inside
/// the sending namespace.
pub fn neighbor(route: &Route) -> Option<[u8; 6]> {
    let arp = std::fs::read_to_string("/proc/thread-self/net/arp").ok()?;
    parse_arp(&arp, route.next_hop, &route.dev)
}

/// Resolve the next hop's MAC address, prompting ARP with one empty UDP datagram to the (already
/// guard-checked) target if the neighbour table does not know it yet. Must run inside the sending
/// namespace (on a thread that entered it) so that the datagram leaves from there.
pub fn resolve_neighbor(route: &Route, target: Ipv4Addr) -> Result<[u8; 6], FloodError> {
    if let Some(mac) = neighbor(route) {
        return Ok(mac);
    }
    // The discard port: nothing listens there, and one datagram is all ARP needs.
    let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .map_err(|source| FloodError::Socket { what: "a UDP socket to prompt ARP", source })?;
    let _ = sock.send_to(&[], (target, 9));
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if let Some(mac) = neighbor(route) {
            return Ok(mac);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(FloodError::Neighbor { next_hop: route.next_hop, dev: route.dev.clone() })
}

/// Parse `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ROUTE: &str = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
eth0\t00000000\t010CD50A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
eth0\t000CD50A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
down0\t000BD50A\t00000000\t0000\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";

    #[test]
    fn routes_parse_and_longest_prefix_wins() {
        let t = parse_route_table(ROUTE);
        assert_eq!(t.len(), 2, "the route without RTF_UP is skipped");
        let on_link = best_route(&t, "10.213.12.7".parse().unwrap()).unwrap();
        assert_eq!(on_link.gateway, Ipv4Addr::UNSPECIFIED);
        let via_gw = best_route(&t, "10.213.10.2".parse().unwrap()).unwrap();
        assert_eq!(via_gw.gateway, "10.213.12.1".parse::<Ipv4Addr>().unwrap());
        assert_eq!(via_gw.dev, "eth0");
    }

    #[test]
    fn arp_entries_parse() {
        let arp = "IP address       HW type     Flags       HW address            Mask     Device\n\
10.213.12.1      0x1         0x2         02:00:0a:d5:0c:01     *        eth0\n\
10.213.12.9      0x1         0x0         00:00:00:00:00:00     *        eth0\n";
        let gw = "10.213.12.1".parse().unwrap();
        assert_eq!(parse_arp(arp, gw, "eth0"), Some([2, 0, 10, 0xd5, 12, 1]));
        assert_eq!(parse_arp(arp, gw, "eth1"), None);
        assert_eq!(parse_arp(arp, "10.213.12.9".parse().unwrap(), "eth0"), None, "incomplete entry");
    }

    #[test]
    fn macs() {
        assert_eq!(parse_mac("02:00:0a:ff:00:01"), Some([2, 0, 10, 255, 0, 1]));
        assert_eq!(parse_mac("02:00:0a:ff:00"), None);
    }

    #[test]
    fn loopback_route_is_found_here() {
        let r = lookup(None, Ipv4Addr::LOCALHOST).unwrap();
        assert_eq!(r.dev, "lo");
        assert_eq!(r.link_type, "loopback");
        assert!(r.ifindex > 0);
    }

    proptest! {
        #[test]
        fn parsers_never_panic(text in ".{0,400}", a in any::<u32>()) {
            let t = parse_route_table(&text);
            let _ = best_route(&t, Ipv4Addr::from(a));
            let _ = parse_arp(&text, Ipv4Addr::from(a), "eth0");
        }
    }
}
