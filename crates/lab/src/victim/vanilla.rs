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
    Ok(VictimState::new(VictimKind::Vanilla, host, vec![pid], log))
}
