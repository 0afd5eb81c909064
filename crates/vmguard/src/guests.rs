//! The lab's victims as telemetry sees them: the one mapping from `lab::VictimState` to
//! `telemetry::GuestInfo`, shared by `collect`, `record` and `agent`.

use telemetry::{GuestInfo, GuestKind, Iface};

pub fn guest_info(v: &lab::VictimState) -> GuestInfo {
    let kind = match v.kind {
        lab::VictimKind::Vanilla => GuestKind::Vanilla,
        lab::VictimKind::Container => GuestKind::Container,
        lab::VictimKind::Qemu => GuestKind::Qemu,
    };
    GuestInfo {
        netns: Some(v.ns.clone()),
        pid: v.pids.first().copied(),
        qmp_socket: v.qmp_socket.clone(),
        iface: Some(Iface { name: v.host_iface.clone(), netns: Some(v.host_iface_ns.clone()) }),
        // telemetry wants it relative to the hierarchy root.
        cgroup: v.cgroup.as_ref().map(|c| c.trim_start_matches('/').to_string()),
        ..GuestInfo::new(v.name.clone(), kind)
    }
}

/// Every victim of the running lab, or a clear error when no lab is up.
pub fn lab_guests(spec: &lab::LabSpec) -> anyhow::Result<(lab::LabState, Vec<GuestInfo>)> {
    let state = lab::LabState::load(spec)?.ok_or_else(|| lab::LabError::NotUp(spec.prefix.clone()))?;
    let guests = state.victims.iter().map(guest_info).collect();
    Ok((state, guests))
}
