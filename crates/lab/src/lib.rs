//! The vmguard lab: network namespaces joined by veth links through a gateway, the attacker link
//! shaped like the seed's, and victims of every kind.

pub mod spec;

pub use spec::{AccelChoice, ContainerSpec, Host, LabSpec, Plan, QemuSpec, Rate, VictimKind};

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The lab description is inconsistent.
    #[error("invalid lab configuration: {0}")]
    Spec(String),
    /// An external command failed.
    #[error(transparent)]
    Exec(#[from] exec::ExecError),
    /// Entering a lab namespace failed.
    #[error(transparent)]
    Netns(#[from] netns::NetnsError),
}
