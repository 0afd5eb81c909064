//! `lab up` with a spinner and the status table afterwards: what `vmguard lab up` and `vmguard demo`
//! both show.

use anyhow::Context;

use crate::Cli;

pub fn up(cli: &Cli, spec: &lab::LabSpec) -> anyhow::Result<lab::LabState> {
    let spinner = crate::progress::spinner(cli.json);
    let started = std::time::Instant::now();
    let tool = std::env::current_exe().ok();
    let result = lab::up(spec, tool.as_deref(), &|msg| {
        spinner.set_message(msg.to_string());
        tracing::debug!("{msg}");
    });
    spinner.finish_and_clear();
    let state = match result {
        Ok(state) => state,
        // Refused before anything was created: nothing was removed either.
        Err(e @ (lab::LabError::AlreadyUp(_) | lab::LabError::NotRoot | lab::LabError::Spec(_))) => {
            return Err(e.into());
        }
        Err(e) => return Err(e).context("lab up failed (what it had created was removed; logs are kept)"),
    };
    if let Some(image) = &state.image {
        match image.build_secs {
            Some(s) => {
                tracing::info!("guest image {} built in {s:.1} s ({} KiB)", image.key, image.initramfs_bytes / 1024)
            }
            None => tracing::info!("guest image {} from cache", image.key),
        }
    }
    if let Some(image) = &state.xen_image {
        match (image.build_secs, image.root_build_secs) {
            (Some(s), Some(r)) => tracing::info!("Xen images {} built in {s:.1} s (dom0's root: {r:.1} s)", image.key),
            (Some(s), None) => tracing::info!("Xen images {} built in {s:.1} s (dom0's root from cache)", image.key),
            _ => tracing::info!("Xen images {} from cache", image.key),
        }
    }
    tracing::info!("lab `{}` up in {:.1} s", spec.prefix, started.elapsed().as_secs_f64());
    status(cli, spec)?;
    Ok(state)
}

pub fn status(cli: &Cli, spec: &lab::LabSpec) -> anyhow::Result<()> {
    let report = lab::status(spec)?;
    if cli.json {
        return crate::output::json(&report);
    }
    crate::tables::lab_status(&report);
    if let Ok(state) = lab::LabState::running(spec) {
        let applied = mitigate::status(&state)?;
        if !applied.is_empty() {
            println!("defences applied:");
            crate::tables::mitigations(&applied);
        }
    }
    Ok(())
}
