//! How packets leave the attacker namespace toward a target: the route (`ip -j route get`), the
//! egress interface (`ip -j link`) and the next hop's MAC address (`ip -j neigh`), all read through
//! [`exec::Cmd`] inside the namespace.

use std::net::{Ipv4Addr, UdpSocket};
use std::time::{Duration, Instant};

use exec::Cmd;
use serde::Deserialize;

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
    /// `ether`, `loopback`, ... (`ip link`'s link_type).
    pub link_type: String,
    /// The interface's own MAC address (Ethernet links).
    pub mac: Option<[u8; 6]>,
}

#[derive(Deserialize)]
struct RouteJson {
    dev: String,
    #[serde(default)]
    gateway: Option<Ipv4Addr>,
    #[serde(default)]
    prefsrc: Option<Ipv4Addr>,
}

#[derive(Deserialize)]
struct LinkJson {
    ifindex: i32,
    #[serde(default)]
    link_type: String,
    #[serde(default)]
    address: Option<String>,
}

#[derive(Deserialize)]
struct NeighJson {
    #[serde(default)]
    lladdr: Option<String>,
    #[serde(default)]
    state: Vec<String>,
}

fn ip(ns: Option<&str>) -> Cmd {
    let cmd = Cmd::new("ip").timeout(Duration::from_secs(10));
    match ns {
        Some(ns) => cmd.args(["-n", ns, "-j"]),
        None => cmd.arg("-j"),
    }
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

/// Look up the route to `dst` inside `ns` (None: the current namespace).
pub fn lookup(ns: Option<&str>, dst: Ipv4Addr) -> Result<Route, FloodError> {
    let where_ = ns.unwrap_or("the current namespace").to_string();
    let out = ip(ns).args(["route", "get", &dst.to_string()]).stdout().map_err(|e| FloodError::Route {
        target: dst,
        netns: where_.clone(),
        detail: e.to_string(),
    })?;
    let routes: Vec<RouteJson> = serde_json::from_str(&out).map_err(|e| FloodError::Route {
        target: dst,
        netns: where_.clone(),
        detail: format!("unreadable `ip -j route get` output ({e}): {out}"),
    })?;
    let r = routes.into_iter().next().ok_or_else(|| FloodError::Route {
        target: dst,
        netns: where_.clone(),
        detail: "no route".into(),
    })?;
    let src = r.prefsrc.ok_or_else(|| FloodError::Route {
        target: dst,
        netns: where_.clone(),
        detail: format!("the route via {} has no source address", r.dev),
    })?;
    let out = ip(ns).args(["link", "show", "dev", &r.dev]).stdout()?;
    let links: Vec<LinkJson> = serde_json::from_str(&out).map_err(|e| FloodError::Route {
        target: dst,
        netns: where_.clone(),
        detail: format!("unreadable `ip -j link` output ({e}): {out}"),
    })?;
    let link = links.into_iter().next().ok_or_else(|| FloodError::Route {
        target: dst,
        netns: where_,
        detail: format!("interface {} vanished", r.dev),
    })?;
    Ok(Route {
        dev: r.dev,
        ifindex: link.ifindex,
        src,
        next_hop: r.gateway.unwrap_or(dst),
        link_type: link.link_type,
        mac: link.address.as_deref().and_then(parse_mac),
    })
}

/// The next hop's MAC address from the neighbour table, if resolved.
pub fn neighbor(ns: Option<&str>, route: &Route) -> Result<Option<[u8; 6]>, FloodError> {
    let out = ip(ns).args(["neigh", "show", "to", &route.next_hop.to_string(), "dev", &route.dev]).stdout()?;
    let neigh: Vec<NeighJson> =
        serde_json::from_str(if out.trim().is_empty() { "[]" } else { &out }).map_err(|e| FloodError::Route {
            target: route.next_hop,
            netns: ns.unwrap_or("the current namespace").into(),
            detail: format!("unreadable `ip -j neigh` output ({e}): {out}"),
        })?;
    Ok(neigh
        .iter()
        .filter(|n| !n.state.iter().any(|s| s == "FAILED" || s == "INCOMPLETE"))
        .find_map(|n| n.lladdr.as_deref().and_then(parse_mac)))
}

/// Resolve the next hop's MAC address, prompting ARP with one empty UDP datagram to the (already
/// guard-checked) target if the neighbour table does not know it yet. Must run inside `ns` (on a
/// thread that entered it) so that the datagram leaves from there.
pub fn resolve_neighbor(ns: Option<&str>, route: &Route, target: Ipv4Addr) -> Result<[u8; 6], FloodError> {
    if let Some(mac) = neighbor(ns, route)? {
        return Ok(mac);
    }
    // The discard port: nothing listens there, and one datagram is all ARP needs.
    let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .map_err(|source| FloodError::Socket { what: "a UDP socket to prompt ARP", source })?;
    let _ = sock.send_to(&[], (target, 9));
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if let Some(mac) = neighbor(ns, route)? {
            return Ok(mac);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(FloodError::Neighbor { next_hop: route.next_hop, dev: route.dev.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs() {
        assert_eq!(parse_mac("02:00:0a:ff:00:01"), Some([2, 0, 10, 255, 0, 1]));
        assert_eq!(parse_mac("02:00:0a:ff:00"), None);
        assert_eq!(parse_mac("02:00:0a:ff:00:01:02"), None);
        assert_eq!(parse_mac("zz:00:0a:ff:00:01"), None);
    }
}
