//! The lab network: namespaces, veth links through the gateway, shaping, and the gateway's filter.
//!
//! Links and addresses are made with iproute2 in `-batch` mode (one process per namespace instead of
//! one per command); tbf shaping with `tc` (rtnetlink has no tbf support); the gateway's forward
//! filter with nftables.

use exec::Cmd;

use crate::LabError;
use crate::spec::{Host, Plan, Rate, VictimKind};

/// Name of the bridge and tap inside the qemu victim's namespace.
pub fn qemu_bridge(plan: &Plan) -> String {
    format!("{}-br0", plan.prefix)
}

pub fn qemu_tap(plan: &Plan) -> String {
    format!("{}-tap0", plan.prefix)
}

/// Name of the bridge and tap inside the Xen victim's namespace.
pub fn xen_bridge(plan: &Plan) -> String {
    format!("{}-xbr0", plan.prefix)
}

pub fn xen_tap(plan: &Plan) -> String {
    format!("{}-xtap0", plan.prefix)
}

fn ip_batch(ns: Option<&str>, lines: &[String]) -> Result<(), LabError> {
    let mut cmd = Cmd::new("ip");
    if let Some(ns) = ns {
        cmd = cmd.args(["-n", ns]);
    }
    cmd.args(["-batch", "-"]).stdin(lines.join("\n") + "\n").run()?;
    Ok(())
}

fn sysctl(ns: &str, settings: &[(&str, &str)]) -> Result<(), LabError> {
    // Write /proc/sys from inside the namespace: per-namespace sysctls, no sysctl binary needed.
    let settings: Vec<(String, String)> = settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let ns_name = ns.to_string();
    netns::run_in(ns, move || -> Result<(), LabError> {
        for (key, value) in &settings {
            let path = format!("/proc/sys/{}", key.replace('.', "/"));
            std::fs::write(&path, value)
                .map_err(|e| LabError::io(format!("setting {key}={value} in namespace {ns_name}"), e))?;
        }
        Ok(())
    })?
}

/// Create every namespace and link of the plan. The caller records the lab before calling, so a
/// crash half-way leaves only things `lab down` finds by prefix.
pub fn create(plan: &Plan, attacker_rate: Rate, syncookies: bool) -> Result<(), LabError> {
    for ns in plan.namespaces() {
        Cmd::new("ip").args(["netns", "add", &ns]).run()?;
    }
    // veth pairs, created directly inside their namespaces.
    let mut links = Vec::new();
    for h in plan.hosts() {
        links.push(format!(
            "link add {} netns {} type veth peer name {} netns {}",
            h.ifname, h.ns, h.gw_ifname, plan.gateway_ns
        ));
    }
    ip_batch(None, &links)?;

    // Gateway side: one address per subnet, forwarding on, spoofed range blackholed.
    let mut gw = vec!["link set lo up".to_string()];
    for h in plan.hosts() {
        gw.push(format!("addr add {}/24 dev {}", h.gateway, h.gw_ifname));
        gw.push(format!("link set {} up", h.gw_ifname));
    }
    // SYN-ACKs to spoofed sources die at the gateway (the seed's gateway is their default route).
    gw.push(format!("route add blackhole {}", plan.spoof_subnet));
    ip_batch(Some(&plan.gateway_ns), &gw)?;
    sysctl(
        &plan.gateway_ns,
        &[("net.ipv4.ip_forward", "1"), ("net.ipv4.conf.all.rp_filter", "0"), ("net.ipv4.conf.default.rp_filter", "0")],
    )?;

    for h in [&plan.attacker, &plan.client] {
        host_side(h, &h.ifname)?;
    }
    for (kind, h) in &plan.victims {
        match kind {
            VictimKind::Qemu | VictimKind::Xen => {
                // The guest (the Xen domU) owns the address; its namespace bridges the veth and qemu's tap.
                let (br, tap) = match kind {
                    VictimKind::Xen => (xen_bridge(plan), xen_tap(plan)),
                    _ => (qemu_bridge(plan), qemu_tap(plan)),
                };
                ip_batch(
                    Some(&h.ns),
                    &[
                        "link set lo up".into(),
                        format!("link add {br} type bridge"),
                        format!("tuntap add dev {tap} mode tap vnet_hdr"),
                        format!("link set {} master {br}", h.ifname),
                        format!("link set {tap} master {br}"),
                        format!("link set {} up", h.ifname),
                        format!("link set {tap} up"),
                        format!("link set {br} up"),
                    ],
                )?;
            }
            VictimKind::Vanilla | VictimKind::Container => {
                host_side(h, &h.ifname)?;
                sysctl(&h.ns, &[("net.ipv4.tcp_syncookies", if syncookies { "1" } else { "0" })])?;
            }
        }
    }
    shape_attacker(plan, attacker_rate)?;
    gateway_filter_init(plan)?;
    Ok(())
}

fn host_side(h: &Host, ifname: &str) -> Result<(), LabError> {
    ip_batch(
        Some(&h.ns),
        &[
            "link set lo up".into(),
            format!("addr add {}/24 dev {ifname}", h.address),
            format!("link set {ifname} up"),
            format!("route add default via {}", h.gateway),
        ],
    )
}

/// Shape both ends of the attacker link with tbf (the seed sets the link speed with ethtool).
pub fn shape_attacker(plan: &Plan, rate: Rate) -> Result<(), LabError> {
    for (ns, dev) in [(&plan.attacker.ns, &plan.attacker.ifname), (&plan.gateway_ns, &plan.attacker.gw_ifname)] {
        // Remove any earlier shaping; "no such qdisc" just means there was none.
        let _ = Cmd::new("tc").args(["-n", ns, "qdisc", "del", "dev", dev, "root"]).run();
        if let Some(bps) = rate.bits_per_sec() {
            let (burst, limit) = tbf_sizes(bps);
            Cmd::new("tc")
                .args(["-n", ns, "qdisc", "add", "dev", dev, "root", "tbf"])
                .args(["rate", &format!("{bps}bit"), "burst", &burst.to_string(), "limit", &limit.to_string()])
                .run()?;
        }
    }
    Ok(())
}

/// tbf bucket and queue sizes for a rate: a bucket of ~4 ms of traffic (at least a few full frames,
/// so the rate is met at any timer frequency) and a queue of ~50 ms.
pub fn tbf_sizes(bits_per_sec: u64) -> (u64, u64) {
    let bytes_per_sec = bits_per_sec / 8;
    let burst = (bytes_per_sec / 250).max(3 * 1514);
    let limit = (bytes_per_sec / 20).max(burst + 1514);
    (burst, limit)
}

const NFT_TABLE: &str = "vmguard_gw";

fn gateway_filter_init(plan: &Plan) -> Result<(), LabError> {
    let script = format!(
        "table inet {NFT_TABLE} {{\n  chain forward {{\n    type filter hook forward priority 0; policy accept;\n    counter\n  }}\n}}\n"
    );
    Cmd::new("nft").args(["-f", "-"]).netns(&plan.gateway_ns).stdin(script).run()?;
    Ok(())
}

/// Make the gateway drop (or forward again) every forwarded packet, as the seed's gateway does.
pub fn set_gateway_drop(plan: &Plan, drop: bool) -> Result<(), LabError> {
    let policy = if drop { "drop" } else { "accept" };
    Cmd::new("nft")
        .args(["chain", "inet", NFT_TABLE, "forward", &format!("{{ policy {policy} ; }}")])
        .netns(&plan.gateway_ns)
        .run()?;
    Ok(())
}

/// Packets and bytes the gateway's forward chain has seen (forwarded or dropped).
pub fn gateway_counter(plan: &Plan) -> Result<(u64, u64), LabError> {
    let out = Cmd::new("nft").args(["list", "chain", "inet", NFT_TABLE, "forward"]).netns(&plan.gateway_ns).stdout()?;
    Ok(parse_nft_counter(&out).unwrap_or((0, 0)))
}

/// First `counter packets N bytes M` in nft's listing.
pub fn parse_nft_counter(listing: &str) -> Option<(u64, u64)> {
    let words: Vec<&str> = listing.split_whitespace().collect();
    words.windows(5).find(|w| w[0] == "counter" && w[1] == "packets" && w[3] == "bytes").and_then(|w| {
        let packets = w[2].parse().ok()?;
        let bytes = w[4].trim_end_matches(|c: char| !c.is_ascii_digit()).parse().ok()?;
        Some((packets, bytes))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tbf_sizes_hold_full_frames() {
        let (burst, limit) = tbf_sizes(10_000_000);
        assert!(burst >= 3 * 1514 && limit > burst);
        let (burst, _) = tbf_sizes(100_000_000_000);
        assert_eq!(burst, 100_000_000_000 / 8 / 250);
    }

    #[test]
    fn nft_counter_is_read() {
        let listing = "table inet vmguard_gw {\n\tchain forward {\n\t\ttype filter hook forward priority filter; policy drop;\n\t\tcounter packets 42 bytes 2520\n\t}\n}\n";
        assert_eq!(parse_nft_counter(listing), Some((42, 2520)));
        assert_eq!(parse_nft_counter("table inet x { }"), None);
    }

    proptest! {
        #[test]
        fn nft_counter_parser_never_panics(s in ".{0,300}") {
            let _ = parse_nft_counter(&s);
        }
    }
}
