//! The baseline: busybox httpd as a plain process inside the victim's network namespace.

use exec::Cmd;

use crate::LabError;
use crate::spec::{Host, VictimKind};
use crate::state::{LabState, VictimState};

pub fn start(state: &LabState, host: &Host) -> Result<VictimState, LabError> {
    let dir = LabState::dir(&state.spec).join("vanilla");
    let www = dir.join("www");
    super::write_www(&www, "vanilla")?;
    let log = dir.join("httpd.log");
    let pid = Cmd::new(super::busybox()?)
        .args(["httpd", "-f", "-p", "80", "-h"])
        .arg(&www)
        .netns(&host.ns)
        .spawn_detached(&log)?;
    Ok(VictimState {
        name: VictimKind::Vanilla.to_string(),
        kind: VictimKind::Vanilla,
        ns: host.ns.clone(),
        address: host.address,
        pids: vec![pid],
        accelerator: None,
        host_iface: host.ifname.clone(),
        host_iface_ns: host.ns.clone(),
        qmp_socket: None,
        control_socket: None,
        container_id: None,
        cgroup: None,
        log,
        start_secs: 0.0,
    })
}
