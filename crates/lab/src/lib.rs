//! The vmguard lab: network namespaces joined by veth links through a gateway, the attacker link
//! shaped like the seed's, and victims of every kind (a bare process, a runc container, a qemu guest).
//!
//! ```text
//!  attacker 10.x.1.2 ──(tbf 10 Mbit/s)──┐            ┌── vanilla   10.x.10.2 (busybox httpd)
//!  client   10.x.2.2 ───────────────── gateway ──────┼── container 10.x.11.2 (runc)
//!                     spoofed 10.x.128.0/17 ⇒ blackhole └── qemu ns: bridge + tap ── guest 10.x.12.2
//! ```

pub mod database;
pub mod http;
pub mod image;
mod lab;
pub mod net;
pub mod relay;
pub mod spec;
pub mod state;
pub mod victim;
pub mod xen_image;

pub use lab::{
    DownReport, RelayReport, StatusReport, VictimStatus, XenStatus, down, gateway_drop, require_root, status, up,
};
pub use spec::{
    AccelChoice, BUILT_VICTIMS, ContainerSpec, Host, LabSpec, Plan, QemuNetBackend, QemuSpec, Rate, VictimKind, XenSpec,
};
pub use state::{LabState, Phase, VictimState};
pub use victim::qemu::{GuestChannelError, GuestOutput, guest_run};

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The lab description is inconsistent.
    #[error("invalid lab configuration: {0}")]
    Spec(String),
    /// The lab needs root (namespaces, taps, cgroups).
    #[error("the lab needs root (network namespaces, taps, cgroups): run vmguard as root")]
    NotRoot,
    /// A lab with this prefix is already up (or left over).
    #[error("{0}")]
    AlreadyUp(String),
    /// No lab with this prefix is up.
    #[error("no lab `{0}` is up: run `vmguard lab up` first")]
    NotUp(String),
    /// A tool or file the lab needs is not installed.
    #[error("missing: {0}")]
    Missing(String),
    /// An external command failed.
    #[error(transparent)]
    Exec(#[from] exec::ExecError),
    /// Entering a lab namespace failed.
    #[error(transparent)]
    Netns(#[from] netns::NetnsError),
    /// A file operation failed.
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    /// The recorded state file is not lab state.
    #[error("lab state {} is unreadable ({source}); `vmguard lab down` still removes the lab by its prefix", path.display())]
    StateUnreadable { path: PathBuf, source: serde_json::Error },
    /// Building the guest image failed.
    #[error("guest image: {0}")]
    Image(String),
    /// A victim did not start.
    #[error("victim {victim}: {reason} (log: {})", log.display())]
    Victim { victim: String, reason: String, log: PathBuf },
    /// A victim started but its server does not answer.
    #[error("victim {victim}: {source} (log: {})", log.display())]
    VictimUnreachable { victim: String, log: PathBuf, source: Box<LabError> },
    /// An HTTP check could not get an answer.
    #[error("HTTP check: GET {url}: {source}")]
    Http {
        url: String,
        #[source]
        source: Box<ureq::Error>,
    },
    /// An HTTP check got an answer, but not 200.
    #[error("HTTP check: GET {url} answered {status} instead of 200")]
    HttpStatus { url: String, status: u16 },
    /// The qemu victim has no command channel recorded.
    #[error("victim {0} has no guest command channel (is it a qemu victim of this lab?)")]
    NoGuestChannel(String),
    /// The guest's command channel failed: unreachable, closed, or silent.
    #[error("guest command channel {}: {source}", socket.display())]
    GuestChannel { socket: PathBuf, source: GuestChannelError },
}

impl LabError {
    /// The guest stopped answering on its command channel within the command's timeout (e.g. a guest
    /// fsync stuck behind the host's writeback); the command may succeed when run again.
    pub fn is_guest_channel_silent(&self) -> bool {
        match self {
            LabError::GuestChannel { source, .. } => source.is_silent(),
            LabError::VictimUnreachable { source, .. } => source.is_guest_channel_silent(),
            _ => false,
        }
    }

    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> LabError {
        LabError::Io { what: what.into(), source }
    }
}
