//! The victims: the same HTTP server (busybox httpd on port 80) as a bare process, in an OCI
//! container, and in a qemu guest, so that what differs between them is the isolation only.

pub mod container;
pub mod qemu;
pub mod vanilla;
pub mod xen;

use std::path::{Path, PathBuf};

use crate::LabError;

/// The busybox binary every victim runs its HTTP server with.
pub fn busybox() -> Result<PathBuf, LabError> {
    for p in ["/bin/busybox", "/usr/bin/busybox"] {
        if Path::new(p).exists() {
            return Ok(PathBuf::from(p));
        }
    }
    Err(LabError::Missing("busybox (Debian package busybox-static): run `make deps`".into()))
}

/// Write the document root a victim serves.
pub fn write_www(dir: &Path, who: &str) -> Result<(), LabError> {
    std::fs::create_dir_all(dir).map_err(|e| LabError::io(format!("creating {}", dir.display()), e))?;
    let page = format!("<html><body><h1>vmguard victim: {who}</h1></body></html>\n");
    std::fs::write(dir.join("index.html"), page).map_err(|e| LabError::io(format!("writing {}", dir.display()), e))
}

/// What a command run inside a victim printed, and its exit status.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VictimOutput {
    pub status: i32,
    pub output: String,
}

/// Run `argv` inside a victim: in its namespace (vanilla), through the OCI runtime (container), or
/// over the guest's command channel (qemu). Stdout and stderr come back together.
pub fn run_in(
    state: &crate::LabState,
    victim: &str,
    argv: &[String],
    timeout: std::time::Duration,
) -> Result<VictimOutput, LabError> {
    // `xen-dom0`: dom0 of the Xen victim, for a look at the machine itself.
    if victim == xen::DOM0_EXEC_NAME
        && let Some(v) = state.victims.iter().find(|v| v.kind == crate::VictimKind::Xen)
    {
        let ctl = v.control_socket.as_ref().ok_or_else(|| LabError::NoGuestChannel(v.name.clone()))?;
        let script = argv.iter().map(|a| exec::shell_quote(a)).collect::<Vec<_>>().join(" ");
        let out = qemu::guest_run(ctl, &script, timeout)?;
        return Ok(VictimOutput { status: out.status, output: out.output });
    }
    let v = state.victim(victim).ok_or_else(|| {
        let names: Vec<&str> = state.victims.iter().map(|v| v.name.as_str()).collect();
        LabError::Spec(format!("no victim `{victim}` in the lab (victims: {})", names.join(", ")))
    })?;
    if argv.is_empty() {
        return Err(LabError::Spec("no command given".into()));
    }
    let host_cmd = match v.kind {
        crate::VictimKind::Vanilla => exec::Cmd::new(&argv[0]).args(&argv[1..]).netns(&v.ns),
        crate::VictimKind::Container => {
            let id = v.container_id.as_deref().unwrap_or_default();
            exec::Cmd::new("runc").arg("--root").arg(container::runc_root(&state.spec)).args(["exec", id]).args(argv)
        }
        crate::VictimKind::Qemu => {
            let ctl = v.control_socket.as_ref().ok_or_else(|| LabError::NoGuestChannel(v.name.clone()))?;
            let script = argv.iter().map(|a| exec::shell_quote(a)).collect::<Vec<_>>().join(" ");
            let out = qemu::guest_run(ctl, &script, timeout)?;
            return Ok(VictimOutput { status: out.status, output: out.output });
        }
        crate::VictimKind::Xen => {
            // Through dom0, which relays to the domU (`xen::relay_script`); a few seconds more for the relay.
            let ctl = v.control_socket.as_ref().ok_or_else(|| LabError::NoGuestChannel(v.name.clone()))?;
            if argv.is_empty() {
                return Err(LabError::Spec("no command given".into()));
            }
            let script = argv.iter().map(|a| exec::shell_quote(a)).collect::<Vec<_>>().join(" ");
            let out = qemu::guest_run(
                ctl,
                &xen::relay_script(&script, timeout),
                timeout + std::time::Duration::from_secs(10),
            )?;
            return Ok(VictimOutput { status: out.status, output: out.output });
        }
    };
    let out = host_cmd.timeout(timeout).run_unchecked()?;
    Ok(VictimOutput { status: out.status.code().unwrap_or(-1), output: out.stdout + &out.stderr })
}
