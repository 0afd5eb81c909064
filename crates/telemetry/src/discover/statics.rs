//! Guests the operator lists by hand (the CLI config's `[[guest]]` entries).

use serde::{Deserialize, Serialize};

use crate::{GuestInfo, GuestKind, Iface};

/// A guest given by the caller. At least one of `pid`, `cgroup` and `iface` must be set (else nothing
/// could be sampled). `netns` is the namespace of the process and of `iface`: a name under
/// `/var/run/netns` or an absolute path such as `/proc/PID/ns/net`.
///
/// ```toml
/// [[guest]]
/// name = "db"
/// kind = "container"
/// cgroup = "system.slice/postgresql.service"
/// iface = "eth0"
/// netns = "/proc/4242/ns/net"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticGuest {
    pub name: String,
    pub kind: GuestKind,
    #[serde(default)]
    pub pid: Option<u32>,
    #[serde(default)]
    pub cgroup: Option<String>,
    #[serde(default)]
    pub iface: Option<String>,
    #[serde(default)]
    pub netns: Option<String>,
}

/// Why a [`StaticGuest`] cannot be watched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidStaticGuest {
    #[error("a static guest needs a name")]
    NoName,
    #[error("static guest `{0}` has nothing to sample: give it a pid, a cgroup or an iface")]
    NothingToSample(String),
    #[error("static guest `{0}`: pid 0 is not a process")]
    PidZero(String),
}

impl StaticGuest {
    /// The guest as telemetry sees it: fields as given (the cgroup without a leading `/`).
    pub fn to_guest_info(&self) -> Result<GuestInfo, InvalidStaticGuest> {
        let name = self.name.trim();
        if name.is_empty() {
            return Err(InvalidStaticGuest::NoName);
        }
        if self.pid == Some(0) {
            return Err(InvalidStaticGuest::PidZero(name.into()));
        }
        let nonempty = |s: &Option<String>| s.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(String::from);
        let cgroup = nonempty(&self.cgroup).map(|c| c.trim_matches('/').to_string()).filter(|c| !c.is_empty());
        let iface = nonempty(&self.iface);
        let netns = nonempty(&self.netns);
        if self.pid.is_none() && cgroup.is_none() && iface.is_none() {
            return Err(InvalidStaticGuest::NothingToSample(name.into()));
        }
        Ok(GuestInfo {
            netns: netns.clone(),
            pid: self.pid,
            iface: iface.map(|name| Iface { name, netns, guest_side: false }),
            cgroup,
            ..GuestInfo::new(name, self.kind)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sg(name: &str, pid: Option<u32>, cgroup: Option<&str>, iface: Option<&str>, netns: Option<&str>) -> StaticGuest {
        StaticGuest {
            name: name.into(),
            kind: GuestKind::Vanilla,
            pid,
            cgroup: cgroup.map(String::from),
            iface: iface.map(String::from),
            netns: netns.map(String::from),
        }
    }

    #[test]
    fn as_given_and_validated() {
        let g = sg("db", Some(42), Some("/system.slice/pg.service"), Some("eth0"), Some("/proc/42/ns/net"))
            .to_guest_info()
            .unwrap();
        assert_eq!(g.cgroup.as_deref(), Some("system.slice/pg.service"));
        assert_eq!(g.iface, Some(Iface::host_side("eth0", Some("/proc/42/ns/net".into()))));
        assert_eq!((g.pid, g.netns.as_deref(), g.kind), (Some(42), Some("/proc/42/ns/net"), GuestKind::Vanilla));
        assert_eq!(
            sg("x", None, None, None, Some("ns")).to_guest_info(),
            Err(InvalidStaticGuest::NothingToSample("x".into()))
        );
        assert_eq!(sg(" ", Some(1), None, None, None).to_guest_info(), Err(InvalidStaticGuest::NoName));
        assert_eq!(sg("x", Some(0), None, None, None).to_guest_info(), Err(InvalidStaticGuest::PidZero("x".into())));
        assert!(sg("x", None, Some("/"), Some(""), None).to_guest_info().is_err(), "the root cgroup is not a guest");
        assert!(sg("tap", None, None, Some("tap0"), None).to_guest_info().unwrap().iface.unwrap().netns.is_none());
    }

    #[test]
    fn deserializes_from_config() {
        let g: StaticGuest = serde_json::from_str(r#"{"name":"web","kind":"qemu","pid":7,"iface":"tap0"}"#).unwrap();
        assert_eq!(g, StaticGuest { kind: GuestKind::Qemu, ..sg("web", Some(7), None, Some("tap0"), None) });
        assert!(serde_json::from_str::<StaticGuest>(r#"{"name":"w","kind":"kvm","pid":7}"#).is_err());
        assert!(
            serde_json::from_str::<StaticGuest>(r#"{"name":"w","kind":"qemu","pdi":7}"#).is_err(),
            "typos are errors"
        );
    }

    proptest! {
        #[test]
        fn valid_iff_something_to_sample(
            name in "\\PC{0,8}", pid in proptest::option::of(0u32..5), cgroup in proptest::option::of("/?[a-z/]{0,6}"),
            iface in proptest::option::of("[a-z0-9 ]{0,4}"),
        ) {
            let g = sg(&name, pid, cgroup.as_deref(), iface.as_deref(), None);
            let has = pid.is_some_and(|p| p > 0)
                || cgroup.as_deref().is_some_and(|c| !c.trim_matches('/').is_empty())
                || iface.as_deref().is_some_and(|i| !i.trim().is_empty());
            let r = g.to_guest_info();
            prop_assert_eq!(r.is_ok(), has && !name.trim().is_empty() && pid != Some(0));
            if let Ok(info) = r {
                prop_assert_eq!(info.name, name.trim());
                prop_assert!(info.pid.is_some() || info.cgroup.is_some() || info.iface.is_some());
            }
        }
    }
}
