//! Which guests `collect` and `agent` watch: the lab's victims (`--discover lab`, the default) and/or
//! guests found on the host (`libvirt`, `qemu`, `containers`, `xen`, `static`), read again every
//! refresh. Discovery only reads; it never changes a guest, a cgroup, a namespace or a firewall.

use anyhow::Context;
use orchestrate::collect::GuestSource;
use telemetry::{DiscoverKind, DiscoverOptions, Discoverer, GuestInfo};

use crate::config::Config;

/// `--discover` values: `lab` or a discovery kind.
pub fn parse_discover(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for w in s.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        if w != "lab" {
            w.parse::<DiscoverKind>().map_err(|e| format!("{e} (or `lab` for the lab's victims)"))?;
        }
        out.push(w.to_string());
    }
    if out.is_empty() {
        return Err("--discover needs at least one of lab, libvirt, qemu, containers, xen, static".into());
    }
    Ok(out)
}

/// The guest source for `discover` and the guests it has now (at least one, else an error that says
/// what was looked for).
pub fn source(config: &Config, discover: &[String]) -> anyhow::Result<(GuestSource, Vec<GuestInfo>)> {
    let with_lab = discover.iter().any(|d| d == "lab");
    let kinds: Vec<DiscoverKind> = discover.iter().filter(|d| *d != "lab").filter_map(|d| d.parse().ok()).collect();
    let mut source = if kinds.is_empty() {
        // The lab must be up to start; later it may come and go.
        orchestrate::collect::lab_guests(&config.lab).context("nothing to collect from")?;
        GuestSource::Lab(config.lab.clone())
    } else {
        let mut opts = DiscoverOptions { statics: config.guests.clone(), ..DiscoverOptions::default() };
        // The lab's own runc containers are containers like any other.
        opts.runc_roots.push(lab::victim::container::runc_root(&config.lab));
        GuestSource::Discovered {
            discoverer: Box::new(Discoverer::new(&kinds, opts)),
            lab: with_lab.then(|| config.lab.clone()),
        }
    };
    let guests = source.current().map_err(anyhow::Error::msg).context("listing the guests to watch")?;
    if guests.is_empty() && !kinds.is_empty() {
        tracing::warn!("no guest found yet by {}: watching, they are picked up when they appear", discover.join(", "));
    }
    Ok((source, guests))
}
