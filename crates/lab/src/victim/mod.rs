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

/// One of vmguard's own helper binaries (`name`): next to the running binary (the same cargo target
/// directory), else on PATH; missing, an error naming what it is for and how to build it.
pub fn companion_binary(name: &str, purpose: &str, build: &str) -> Result<std::path::PathBuf, LabError> {
    let beside = std::env::current_exe().ok().and_then(|exe| exe.parent().map(|d| d.join(name)));
    if let Some(p) = beside.filter(|p| p.is_file()) {
        return Ok(p);
    }
    exec::which(name).ok_or_else(|| {
        LabError::Missing(format!(
            "{name} ({purpose}), neither next to {} nor on PATH: run `{build}`",
            std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "vmguard".into())
        ))
    })
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

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::time::Duration;

    use base64::Engine as _;

    use super::*;
    use crate::{LabSpec, LabState, VictimKind};

    /// A fake dom0 on a unix socket: answers each command with its decoded script and status 0.
    fn fake_dom0(sock: &Path, commands: usize) -> std::thread::JoinHandle<Vec<String>> {
        let listener = std::os::unix::net::UnixListener::bind(sock).unwrap();
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            for _ in 0..commands {
                let (mut conn, _) = listener.accept().unwrap();
                let mut line = String::new();
                BufReader::new(&conn).read_line(&mut line).unwrap();
                let (id, b64) = line.trim_end().split_once(' ').unwrap();
                let script = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).unwrap()).unwrap();
                writeln!(conn, "ran\n@@VMGUARD-EXIT {id} 0").unwrap();
                seen.push(script);
            }
            seen
        })
    }

    #[test]
    fn xen_commands_go_to_the_domu_through_dom0_and_xen_dom0_to_dom0_itself() {
        let dir = tempfile::Builder::new().prefix("vmguard-lab-xen-exec-").tempdir().unwrap();
        let sock = dir.path().join("ctl.sock");
        let dom0 = fake_dom0(&sock, 2);
        let spec = LabSpec { victims: vec![VictimKind::Xen], ..Default::default() };
        let mut state = LabState::new(&spec);
        let host = state.plan.victim(VictimKind::Xen).unwrap().clone();
        state.victims.push(crate::VictimState {
            control_socket: Some(sock.clone()),
            ..crate::VictimState::new(VictimKind::Xen, &host, vec![1], dir.path().join("console.log"))
        });
        let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let out = run_in(&state, "xen", &argv(&["uname", "-a"]), Duration::from_secs(5)).unwrap();
        assert_eq!((out.status, out.output.as_str()), (0, "ran\n"));
        let out = run_in(&state, xen::DOM0_EXEC_NAME, &argv(&["xl", "list"]), Duration::from_secs(5)).unwrap();
        assert_eq!(out.status, 0);
        let seen = dom0.join().unwrap();
        // The domU's command is wrapped in dom0's relay, carrying it base64-encoded.
        assert!(seen[0].contains("busybox nc 169.254.77.2 7000"), "{}", seen[0]);
        assert_eq!(seen[0], xen::relay_script("uname -a", Duration::from_secs(5)));
        assert_eq!(seen[1], "xl list");
        let err = run_in(&state, "qemu", &argv(&["true"]), Duration::from_secs(1)).unwrap_err().to_string();
        assert!(err.contains("no victim `qemu`") && err.contains("xen"), "{err}");
    }
}
