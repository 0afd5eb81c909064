//! The running lab's victims as telemetry sees them, for `collect`, `record` and `agent`.

use telemetry::GuestInfo;

/// Every victim of the running lab, or a clear error when no lab is up.
pub fn lab_guests(spec: &lab::LabSpec) -> anyhow::Result<(lab::LabState, Vec<GuestInfo>)> {
    let state = lab::LabState::load(spec)?.ok_or_else(|| lab::LabError::NotUp(spec.prefix.clone()))?;
    let guests = state.victims.iter().map(lab::VictimState::guest_info).collect();
    Ok((state, guests))
}
