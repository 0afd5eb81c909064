//! The nftables rulesets of the defences (pure: text in, text out) and the parsers of what nft lists.

use std::net::Ipv4Addr;

use crate::{Defence, DefenceKind, Place};

/// The family of vmguard's defence tables: the lab is IPv4.
pub const FAMILY: &str = "ip";

/// Every table of vmguard's defences starts with this (the lab's own gateway table, `vmguard_gw`,
/// does not).
pub const TABLE_PREFIX: &str = "vmguard_def_";

/// The table of one defence for one victim, e.g. `vmguard_def_synproxy_qemu`.
pub fn table_name(kind: DefenceKind, victim: &str) -> String {
    let clean = |s: &str| s.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect::<String>();
    format!("{TABLE_PREFIX}{}_{}", clean(kind.as_str()), clean(victim))
}

/// A SYN that opens a connection (no ACK, RST or FIN with it).
const SYN: &str = "tcp flags & (fin|syn|rst|ack) == syn";

/// The ruleset that adds `defence` for the victim at `addr`, as a table of its own. On the gateway
/// the rules see forwarded traffic to the victim; on the victim, traffic to its own address.
pub fn ruleset(defence: &Defence, table: &str, addr: Ipv4Addr, place: Place) -> String {
    let hook = match place {
        Place::Gateway => "forward",
        Place::Victim => "input",
    };
    let to = format!("ip daddr {addr}");
    let body = match defence {
        Defence::Synproxy => format!(
            // SYNs skip conntrack, so synproxy answers them with cookies; the client's ACK (invalid
            // or untracked to conntrack) completes the handshake with synproxy, which then opens
            // the connection to the victim. Anything else invalid is dropped.
            "  chain prerouting {{\n    type filter hook prerouting priority raw; policy accept;\n    \
             {to} {SYN} notrack\n  }}\n  chain {hook} {{\n    type filter hook {hook} priority filter; policy accept;\n    \
             {to} meta l4proto tcp ct state invalid,untracked counter synproxy mss 1460 wscale 7 timestamp sack-perm\n    \
             {to} meta l4proto tcp ct state invalid counter drop\n  }}\n"
        ),
        Defence::SynRatelimit { rate, burst } => format!(
            // One entry per source, forgotten a minute after its last SYN: memory stays bounded
            // under a random-source flood (the set's size caps it too).
            "  set syn_sources {{\n    type ipv4_addr; size 65536; flags dynamic,timeout; timeout 60s;\n  }}\n  \
             chain {hook} {{\n    type filter hook {hook} priority filter - 1; policy accept;\n    \
             {to} {SYN} update @syn_sources {{ ip saddr limit rate over {rate}/second burst {burst} packets }} counter drop\n  }}\n"
        ),
        Defence::IngressFilter => format!(
            // BCP 38 as a reverse-path check: drop what the route back to its source would not
            // send out through the interface it came in on (or not at all: the spoofed range).
            "  chain prerouting {{\n    type filter hook prerouting priority filter; policy accept;\n    \
             {to} fib saddr . iif oif missing counter drop\n  }}\n"
        ),
        Defence::Syncookies { .. } | Defence::Coalesce { .. } => String::new(),
    };
    format!("table {FAMILY} {table} {{\n{body}}}\n")
}

/// The sum of the `counter packets N` figures in an nft listing.
pub fn counted_packets(listing: &str) -> u64 {
    let mut total = 0;
    let mut words = listing.split_whitespace();
    while let Some(w) = words.next() {
        if w == "counter"
            && words.next() == Some("packets")
            && let Some(n) = words.next().and_then(|n| n.parse::<u64>().ok())
        {
            total += n;
        }
    }
    total
}

/// vmguard's defence tables in `nft list tables` output (`table ip NAME` lines).
pub fn defence_tables(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next()? == "table").then_some(())?;
            let (_family, name) = (w.next()?, w.next()?);
            name.starts_with(TABLE_PREFIX).then(|| name.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const V: Ipv4Addr = Ipv4Addr::new(10, 213, 12, 2);

    #[test]
    fn rulesets_target_the_victim_only_and_use_the_right_hook() {
        let t = table_name(DefenceKind::SynRatelimit, "qemu");
        assert_eq!(t, "vmguard_def_syn_ratelimit_qemu");
        let r = ruleset(&Defence::SynRatelimit { rate: 20, burst: 40 }, &t, V, Place::Gateway);
        assert!(r.starts_with("table ip vmguard_def_syn_ratelimit_qemu {"), "{r}");
        assert!(r.contains("hook forward") && r.contains("ip daddr 10.213.12.2"), "{r}");
        assert!(r.contains("limit rate over 20/second burst 40 packets"), "{r}");
        let r = ruleset(&Defence::Synproxy, "x", V, Place::Victim);
        assert!(r.contains("hook input") && r.contains("synproxy mss") && r.contains("notrack"), "{r}");
        let r = ruleset(&Defence::IngressFilter, "x", V, Place::Gateway);
        assert!(r.contains("fib saddr . iif oif missing"), "{r}");
        // Every rule that acts names the victim: nothing else behind the gateway is touched.
        for d in [Defence::Synproxy, Defence::SynRatelimit { rate: 1, burst: 1 }, Defence::IngressFilter] {
            let r = ruleset(&d, "x", V, Place::Gateway);
            for l in r.lines().filter(|l| l.contains("drop") || l.contains("synproxy") || l.contains("notrack")) {
                assert!(l.contains("ip daddr 10.213.12.2"), "{l}");
            }
        }
    }

    #[test]
    fn listings_are_read() {
        let listing = "table ip vmguard_def_synproxy_qemu {\n chain forward {\n ip daddr 10.0.0.2 counter packets 12 bytes 720 synproxy\n ip daddr 10.0.0.2 counter packets 3 bytes 180 drop\n }\n}\n";
        assert_eq!(counted_packets(listing), 15);
        let tables = "table inet vmguard_gw\ntable ip vmguard_def_synproxy_qemu\ntable ip nat\n";
        assert_eq!(defence_tables(tables), ["vmguard_def_synproxy_qemu"]);
    }

    proptest! {
        #[test]
        fn listing_parsers_never_panic(s in ".{0,400}") {
            let _ = counted_packets(&s);
            let _ = defence_tables(&s);
        }
    }
}
