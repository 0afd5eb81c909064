//! The target guard: a flood can only be aimed at one of the lab's victims (or at loopback, for tests),
//! and spoofed sources can only come from the lab's spoof subnet.
//!
//! The guard is the only way to obtain a [`Target`], and a [`crate::Flood`] can only be built from a
//! [`Target`]: so no socket is ever opened for a destination the guard has not accepted.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::Ipv4Net;
use serde::Serialize;

/// What the lab allows a flood to target. Built by the caller from its lab description; this crate
/// does not depend on the lab crate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetPolicy {
    /// The victims: (name, address). Only these addresses may be flooded.
    pub lab_targets: Vec<(String, Ipv4Addr)>,
    /// Spoofed source addresses are drawn from here; it must lie inside `lab_network`.
    pub spoof_subnet: Ipv4Net,
    /// The lab's private network: every victim lies inside it.
    pub lab_network: Ipv4Net,
    /// Also accept 127.0.0.0/8 as a target (tests).
    pub allow_loopback: bool,
}

/// Where the source addresses of a flood come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SourceChoice {
    /// Random addresses from the policy's whole spoof subnet.
    #[default]
    Spoof,
    /// Random addresses from a part of the spoof subnet.
    SpoofIn(Ipv4Net),
    /// The sender's own address (what the kernel would pick for the route to the target).
    Own,
}

/// Source addresses the guard accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CheckedSource {
    /// Random inside this subnet (inside the lab's spoof subnet).
    Random(Ipv4Net),
    /// The sender's own address, looked up when the flood starts.
    Own,
}

/// A destination the guard accepted. It has no public constructor: only
/// [`TargetPolicy::resolve`] makes one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    name: Option<String>,
    addr: Ipv4Addr,
    source: CheckedSource,
}

impl Target {
    /// The victim's name (None for a loopback target).
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    pub fn source(&self) -> CheckedSource {
        self.source
    }

    pub fn is_loopback(&self) -> bool {
        self.addr.is_loopback()
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{n} ({})", self.addr),
            None => write!(f, "{}", self.addr),
        }
    }
}

/// Why the guard refused a target, a source or the policy itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    /// The target string is empty.
    #[error("no target given: name a lab victim ({victims}) or its address")]
    EmptyTarget { victims: String },
    /// An IPv6 target: floods are IPv4 only, and the lab is IPv4 only.
    #[error("refusing IPv6 target {target}: vmguard floods only IPv4 lab victims ({victims})")]
    Ipv6 { target: String, victims: String },
    /// A name that is not one of the lab's victims (host names are never resolved).
    #[error("refusing target `{name}`: not a lab victim; host names are never resolved. Use one of: {victims}")]
    UnknownName { name: String, victims: String },
    /// 0.0.0.0 or another address of 0.0.0.0/8.
    #[error("refusing unspecified target {addr}: name a lab victim ({victims})")]
    Unspecified { addr: Ipv4Addr, victims: String },
    /// The limited broadcast address, or the broadcast address of the lab network.
    #[error("refusing broadcast target {addr}: floods go to one victim only ({victims})")]
    Broadcast { addr: Ipv4Addr, victims: String },
    /// A multicast address (224.0.0.0/4).
    #[error("refusing multicast target {addr}: floods go to one victim only ({victims})")]
    Multicast { addr: Ipv4Addr, victims: String },
    /// A loopback address while the policy does not allow loopback.
    #[error("refusing loopback target {addr}: loopback is allowed only in tests; name a lab victim ({victims})")]
    LoopbackNotAllowed { addr: Ipv4Addr, victims: String },
    /// An address of the lab that is not a victim (attacker, client, gateway, spoof range...).
    #[error("refusing {addr}: it is inside the lab network {lab} but is not a victim; targets are: {victims}")]
    LabButNotVictim { addr: Ipv4Addr, lab: Ipv4Net, victims: String },
    /// A private address outside the lab network.
    #[error("refusing {addr}: a private address outside the lab network {lab}; targets are: {victims}")]
    PrivateOutsideLab { addr: Ipv4Addr, lab: Ipv4Net, victims: String },
    /// A public (globally routed) address.
    #[error("refusing public address {addr}: vmguard never floods anything outside its lab; targets are: {victims}")]
    Public { addr: Ipv4Addr, victims: String },
    /// A special-purpose address (link-local, shared, documentation, reserved).
    #[error("refusing special-purpose address {addr} ({kind}): not a lab victim; targets are: {victims}")]
    SpecialPurpose { addr: Ipv4Addr, kind: &'static str, victims: String },
    /// The requested spoof range is not inside the policy's spoof subnet.
    #[error("refusing spoofed sources from {requested}: they must lie inside the lab's spoof subnet {allowed}")]
    SpoofOutsideSubnet { requested: Ipv4Net, allowed: Ipv4Net },
    /// The policy's lab network is not a private (RFC 1918) range.
    #[error("bad target policy: lab network {lab} is not inside 10/8, 172.16/12 or 192.168/16; fix the lab spec")]
    LabNotPrivate { lab: Ipv4Net },
    /// The policy's spoof subnet is not inside its lab network.
    #[error("bad target policy: spoof subnet {spoof} is not inside the lab network {lab}; fix the lab spec")]
    SpoofOutsideLab { spoof: Ipv4Net, lab: Ipv4Net },
    /// A victim of the policy has an unusable address.
    #[error("bad target policy: victim `{name}` at {addr} {why}; fix the lab spec")]
    BadVictim { name: String, addr: Ipv4Addr, why: &'static str },
}

fn is_rfc1918(net: Ipv4Net) -> bool {
    ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]
        .iter()
        .any(|s| s.parse::<Ipv4Net>().expect("static network").contains(&net))
}

/// Special-purpose ranges that are neither private nor public (RFC 6890), with a short name.
fn special_purpose(addr: Ipv4Addr) -> Option<&'static str> {
    const RANGES: [(&str, &str); 8] = [
        ("169.254.0.0/16", "link-local"),
        ("100.64.0.0/10", "shared address space"),
        ("192.0.0.0/24", "IETF protocol assignments"),
        ("192.0.2.0/24", "documentation"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("198.18.0.0/15", "benchmarking"),
        ("240.0.0.0/4", "reserved"),
    ];
    RANGES.iter().find(|(net, _)| net.parse::<Ipv4Net>().expect("static network").contains(&addr)).map(|(_, k)| *k)
}

impl TargetPolicy {
    /// Names and addresses of the victims, for messages.
    fn victims(&self) -> String {
        if self.lab_targets.is_empty() {
            return if self.allow_loopback {
                "no victims in this lab; loopback 127.0.0.0/8 is allowed".into()
            } else {
                "no victims in this lab: start one with `vmguard lab up`".into()
            };
        }
        let mut s = self.lab_targets.iter().map(|(n, a)| format!("{n} ({a})")).collect::<Vec<_>>().join(", ");
        if self.allow_loopback {
            s.push_str(", or loopback 127.0.0.0/8");
        }
        s
    }

    /// Check the policy itself: a private lab network, the spoof subnet inside it, victims with unicast
    /// addresses inside the lab network and outside the spoof subnet.
    pub fn check(&self) -> Result<(), GuardError> {
        let lab = self.lab_network.trunc();
        if !is_rfc1918(lab) {
            return Err(GuardError::LabNotPrivate { lab: self.lab_network });
        }
        if !lab.contains(&self.spoof_subnet) {
            return Err(GuardError::SpoofOutsideLab { spoof: self.spoof_subnet, lab: self.lab_network });
        }
        for (name, addr) in &self.lab_targets {
            let bad = |why| Err(GuardError::BadVictim { name: name.clone(), addr: *addr, why });
            if !lab.contains(addr) {
                return bad("is outside the lab network");
            }
            if self.spoof_subnet.contains(addr) {
                return bad("is inside the spoof subnet");
            }
            if *addr == lab.network() || *addr == lab.broadcast() {
                return bad("is the lab network's network or broadcast address");
            }
            if name.is_empty() || name.parse::<IpAddr>().is_ok() {
                return bad("has an empty name or a name that is an address");
            }
        }
        Ok(())
    }

    /// Accept `target` (a victim's name or an IPv4 address) and the source choice, or say why not.
    /// Pure: opens nothing, resolves no host names.
    pub fn resolve(&self, target: &str, source: SourceChoice) -> Result<Target, GuardError> {
        self.check()?;
        let victims = self.victims();
        let target = target.trim();
        if target.is_empty() {
            return Err(GuardError::EmptyTarget { victims });
        }
        let (name, addr) = match target.parse::<IpAddr>() {
            Ok(IpAddr::V6(_)) => return Err(GuardError::Ipv6 { target: target.into(), victims }),
            Ok(IpAddr::V4(addr)) => (None, addr),
            Err(_) => {
                // Bracketed or scoped IPv6 forms do not parse as IpAddr: still IPv6, say so.
                if target.contains(':') {
                    return Err(GuardError::Ipv6 { target: target.into(), victims });
                }
                match self.lab_targets.iter().find(|(n, _)| n == target) {
                    Some((n, a)) => (Some(n.clone()), *a),
                    None => return Err(GuardError::UnknownName { name: target.into(), victims }),
                }
            }
        };
        let addr = self.check_addr(addr, &victims)?;
        let name = name.or_else(|| self.lab_targets.iter().find(|(_, a)| *a == addr).map(|(n, _)| n.clone()));
        let source = match source {
            SourceChoice::Spoof => CheckedSource::Random(self.spoof_subnet),
            SourceChoice::SpoofIn(net) => {
                let net = net.trunc();
                if !self.spoof_subnet.contains(&net) {
                    return Err(GuardError::SpoofOutsideSubnet { requested: net, allowed: self.spoof_subnet });
                }
                CheckedSource::Random(net)
            }
            SourceChoice::Own => CheckedSource::Own,
        };
        Ok(Target { name, addr, source })
    }

    fn check_addr(&self, addr: Ipv4Addr, victims: &str) -> Result<Ipv4Addr, GuardError> {
        let victims = victims.to_string();
        if addr.octets()[0] == 0 {
            return Err(GuardError::Unspecified { addr, victims });
        }
        if addr.is_broadcast() || addr == self.lab_network.broadcast() {
            return Err(GuardError::Broadcast { addr, victims });
        }
        if addr.is_multicast() {
            return Err(GuardError::Multicast { addr, victims });
        }
        if addr.is_loopback() {
            return if self.allow_loopback { Ok(addr) } else { Err(GuardError::LoopbackNotAllowed { addr, victims }) };
        }
        if self.lab_targets.iter().any(|(_, a)| *a == addr) {
            return Ok(addr);
        }
        if self.lab_network.contains(&addr) {
            return Err(GuardError::LabButNotVictim { addr, lab: self.lab_network, victims });
        }
        if addr.is_private() {
            return Err(GuardError::PrivateOutsideLab { addr, lab: self.lab_network, victims });
        }
        if let Some(kind) = special_purpose(addr) {
            return Err(GuardError::SpecialPurpose { addr, kind, victims });
        }
        Err(GuardError::Public { addr, victims })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> TargetPolicy {
        TargetPolicy {
            lab_targets: vec![
                ("process".into(), Ipv4Addr::new(10, 213, 10, 2)),
                ("container".into(), Ipv4Addr::new(10, 213, 11, 2)),
                ("qemu".into(), Ipv4Addr::new(10, 213, 12, 2)),
            ],
            spoof_subnet: "10.213.128.0/17".parse().unwrap(),
            lab_network: "10.213.0.0/16".parse().unwrap(),
            allow_loopback: false,
        }
    }

    #[test]
    fn victims_by_name_and_address_are_accepted() {
        let p = policy();
        let t = p.resolve("container", SourceChoice::Spoof).unwrap();
        assert_eq!(t.addr(), Ipv4Addr::new(10, 213, 11, 2));
        assert_eq!(t.source(), CheckedSource::Random("10.213.128.0/17".parse().unwrap()));
        let t = p.resolve(" 10.213.12.2 ", SourceChoice::Own).unwrap();
        assert_eq!(t.name(), Some("qemu"));
        assert_eq!(t.source(), CheckedSource::Own);
        let t = p.resolve("process", SourceChoice::SpoofIn("10.213.200.0/24".parse().unwrap())).unwrap();
        assert_eq!(t.source(), CheckedSource::Random("10.213.200.0/24".parse().unwrap()));
    }

    #[test]
    fn loopback_only_when_allowed() {
        let mut p = policy();
        assert!(matches!(p.resolve("127.0.0.1", SourceChoice::Spoof), Err(GuardError::LoopbackNotAllowed { .. })));
        p.allow_loopback = true;
        assert_eq!(p.resolve("127.0.0.1", SourceChoice::Spoof).unwrap().addr(), Ipv4Addr::LOCALHOST);
        assert!(p.resolve("127.1.2.3", SourceChoice::Own).unwrap().is_loopback());
        // "localhost" is a host name, and host names are never resolved.
        assert!(matches!(p.resolve("localhost", SourceChoice::Spoof), Err(GuardError::UnknownName { .. })));
    }

    /// Every refusal, table-driven. The guard is pure: a refusal means no `Target`, and without a
    /// `Target` no `Flood` (and so no socket) can exist.
    #[test]
    fn refusals() {
        let p = policy();
        type Check = fn(&GuardError) -> bool;
        let cases: &[(&str, SourceChoice, Check, &str)] = &[
            ("", SourceChoice::Spoof, |e| matches!(e, GuardError::EmptyTarget { .. }), "no target"),
            ("8.8.8.8", SourceChoice::Spoof, |e| matches!(e, GuardError::Public { .. }), "public address"),
            ("1.1.1.1", SourceChoice::Own, |e| matches!(e, GuardError::Public { .. }), "public address"),
            ("192.168.1.1", SourceChoice::Spoof, |e| matches!(e, GuardError::PrivateOutsideLab { .. }), "private"),
            ("172.16.0.5", SourceChoice::Spoof, |e| matches!(e, GuardError::PrivateOutsideLab { .. }), "private"),
            ("10.1.2.3", SourceChoice::Spoof, |e| matches!(e, GuardError::PrivateOutsideLab { .. }), "private"),
            ("10.213.1.2", SourceChoice::Spoof, |e| matches!(e, GuardError::LabButNotVictim { .. }), "not a victim"),
            ("10.213.10.1", SourceChoice::Spoof, |e| matches!(e, GuardError::LabButNotVictim { .. }), "not a victim"),
            ("10.213.130.7", SourceChoice::Spoof, |e| matches!(e, GuardError::LabButNotVictim { .. }), "not a victim"),
            ("224.0.0.1", SourceChoice::Spoof, |e| matches!(e, GuardError::Multicast { .. }), "multicast"),
            ("239.255.255.250", SourceChoice::Spoof, |e| matches!(e, GuardError::Multicast { .. }), "multicast"),
            ("255.255.255.255", SourceChoice::Spoof, |e| matches!(e, GuardError::Broadcast { .. }), "broadcast"),
            ("10.213.255.255", SourceChoice::Spoof, |e| matches!(e, GuardError::Broadcast { .. }), "broadcast"),
            ("0.0.0.0", SourceChoice::Spoof, |e| matches!(e, GuardError::Unspecified { .. }), "unspecified"),
            ("0.1.2.3", SourceChoice::Spoof, |e| matches!(e, GuardError::Unspecified { .. }), "unspecified"),
            ("127.0.0.1", SourceChoice::Spoof, |e| matches!(e, GuardError::LoopbackNotAllowed { .. }), "loopback"),
            ("169.254.1.1", SourceChoice::Spoof, |e| matches!(e, GuardError::SpecialPurpose { .. }), "link-local"),
            ("100.64.0.1", SourceChoice::Spoof, |e| matches!(e, GuardError::SpecialPurpose { .. }), "shared"),
            ("192.0.2.1", SourceChoice::Spoof, |e| matches!(e, GuardError::SpecialPurpose { .. }), "documentation"),
            ("example.com", SourceChoice::Spoof, |e| matches!(e, GuardError::UnknownName { .. }), "not a lab victim"),
            ("gateway", SourceChoice::Spoof, |e| matches!(e, GuardError::UnknownName { .. }), "not a lab victim"),
            ("Process", SourceChoice::Spoof, |e| matches!(e, GuardError::UnknownName { .. }), "not a lab victim"),
            ("::1", SourceChoice::Spoof, |e| matches!(e, GuardError::Ipv6 { .. }), "IPv6"),
            ("2001:db8::1", SourceChoice::Spoof, |e| matches!(e, GuardError::Ipv6 { .. }), "IPv6"),
            ("::ffff:10.213.10.2", SourceChoice::Spoof, |e| matches!(e, GuardError::Ipv6 { .. }), "IPv6"),
            ("[fe80::1]", SourceChoice::Spoof, |e| matches!(e, GuardError::Ipv6 { .. }), "IPv6"),
            ("fe80::1%eth0", SourceChoice::Spoof, |e| matches!(e, GuardError::Ipv6 { .. }), "IPv6"),
            (
                "process",
                SourceChoice::SpoofIn(ipnet_v4("10.213.0.0/17")),
                |e| matches!(e, GuardError::SpoofOutsideSubnet { .. }),
                "spoof subnet",
            ),
            (
                "process",
                SourceChoice::SpoofIn(ipnet_v4("8.8.8.0/24")),
                |e| matches!(e, GuardError::SpoofOutsideSubnet { .. }),
                "spoof subnet",
            ),
            (
                "process",
                SourceChoice::SpoofIn(ipnet_v4("0.0.0.0/0")),
                |e| matches!(e, GuardError::SpoofOutsideSubnet { .. }),
                "spoof subnet",
            ),
        ];
        for (target, source, check, words) in cases {
            let err = p.resolve(target, *source).expect_err(&format!("`{target}` must be refused"));
            assert!(check(&err), "`{target}`: unexpected refusal {err:?}");
            let msg = err.to_string();
            assert!(msg.contains(words), "`{target}`: message `{msg}` should say `{words}`");
            if !matches!(err, GuardError::SpoofOutsideSubnet { .. }) {
                // Every refusal of a target tells the user what they may target instead.
                assert!(msg.contains("process (10.213.10.2)"), "`{target}`: `{msg}` should list the victims");
            }
        }
    }

    fn ipnet_v4(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn bad_policies_are_refused() {
        let mut p = policy();
        p.lab_network = "8.8.0.0/16".parse().unwrap();
        assert!(matches!(p.resolve("process", SourceChoice::Spoof), Err(GuardError::LabNotPrivate { .. })));
        let mut p = policy();
        p.spoof_subnet = "10.214.128.0/17".parse().unwrap();
        assert!(matches!(p.resolve("process", SourceChoice::Spoof), Err(GuardError::SpoofOutsideLab { .. })));
        let mut p = policy();
        p.lab_targets.push(("evil".into(), Ipv4Addr::new(8, 8, 8, 8)));
        assert!(matches!(p.resolve("process", SourceChoice::Spoof), Err(GuardError::BadVictim { .. })));
        let mut p = policy();
        p.lab_targets.push(("spoofed".into(), Ipv4Addr::new(10, 213, 129, 1)));
        assert!(matches!(p.check(), Err(GuardError::BadVictim { .. })));
        let mut p = policy();
        p.lab_targets.push(("bcast".into(), Ipv4Addr::new(10, 213, 255, 255)));
        assert!(matches!(p.check(), Err(GuardError::BadVictim { .. })));
    }

    proptest::proptest! {
        /// Whatever address is asked for, an accepted one is a victim or (when allowed) loopback.
        #[test]
        fn only_victims_or_loopback_pass(a in proptest::prelude::any::<u32>(), lo in proptest::prelude::any::<bool>()) {
            let mut p = policy();
            p.allow_loopback = lo;
            let addr = Ipv4Addr::from(a);
            if let Ok(t) = p.resolve(&addr.to_string(), SourceChoice::Spoof) {
                let victim = p.lab_targets.iter().any(|(_, v)| *v == t.addr());
                proptest::prop_assert!(victim || (lo && t.addr().is_loopback()));
            }
        }
    }
}
