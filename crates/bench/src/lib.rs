//! The seed-000 benchmark matrix: victim kind x benchmark x {idle, attack} x repetitions, with SYN
//! cookies, attack rate and qemu network backend as further dimensions.
//!
//! - [`matrix`]: the cells of a run and what each stores ([`matrix::CellRecord`]).
//! - [`runner`]: runs cells on a lab (benchmarks inside victims, clients in the client namespace, a
//!   time-bounded SYN flood from the attacker namespace, host CPU and profiling counters per cell).
//! - [`parse`]: parsers of sysbench, iperf3 and wrk output; pure and property-tested.
//! - [`summary`]: medians and spread per cell, degradation per victim kind, the seed's Tables 1 and 2.
//! - [`report`]: the HTML report with inline SVG plots.

pub mod matrix;
pub mod parse;
pub mod report;
pub mod runner;
pub mod summary;

pub use matrix::{Benchmark, CellRecord, CellSpec, FileioSpec, MatrixSpec, Mitigation, NetBackend, Phase, Profile};
pub use parse::ParseError;
pub use runner::{Event, RunOptions, run_matrix};

use std::sync::Arc;

use lab::VictimKind;

/// Why a cell (or a victim's preparation) failed. Each variant keeps its cause as a typed source.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A tool's or the kernel's output could not be understood.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// iperf3 ran and failed (see [`parse::iperf::IperfError`]).
    #[error(transparent)]
    Iperf(#[from] parse::iperf::IperfError),
    /// An external command failed (client side, or a setting made from the host).
    #[error(transparent)]
    Exec(#[from] exec::ExecError),
    /// A command could not be run inside the victim (its runtime or the guest's command channel failed).
    #[error("`{script}` in {victim}: {source}")]
    InVictim { victim: String, script: String, source: Box<lab::LabError> },
    /// A command inside the victim exited with a non-zero status.
    #[error("`{script}` exited with {status} in {victim}: {output}")]
    Exited { victim: String, script: String, status: i32, output: String },
    /// The lab has no victim of this kind.
    #[error("the lab has no {0} victim: add it to [lab] victims and run `vmguard lab up`")]
    NoVictim(VictimKind),
    /// A victim's service or setting could not be prepared. Shared: a failed service start is the
    /// error of every later cell that needs it.
    #[error("{victim}: {what}: {source}")]
    Setup { victim: String, what: &'static str, source: Arc<BenchError> },
    /// The victim has no vmguard binary to run the web application with.
    #[error(
        "{victim} has no vmguard binary at {path}: bring the lab up with `vmguard lab up` (it places the binary in the victims)"
    )]
    NoTool { victim: String, path: String },
    /// The victim has no database tier recorded (a lab brought up by an older vmguard).
    #[error("{victim} has no database tier: bring the lab down and up again (`vmguard lab down && vmguard lab up`)")]
    NoDatabase { victim: String },
    /// A started service printed no PID.
    #[error("no PID from `{script}`: {output}")]
    NoPid { script: String, output: String },
    /// The web application did not answer its health check.
    #[error("{url} did not answer within {timeout:?}; its log: {log}")]
    WebNotAnswering { url: String, timeout: std::time::Duration, log: String },
    /// A defence could not be applied or removed.
    #[error("{victim}: {source}")]
    Mitigate { victim: String, source: Box<mitigate::MitigateError> },
    /// The cell's configuration cannot run on this host.
    #[error("{0}")]
    Unavailable(String),
    /// The flood could not start or failed.
    #[error("SYN flood: {0}")]
    Flood(Box<orchestrate::flood::LaunchError>),
    /// The flood ended without the engine's summary.
    #[error("SYN flood: no summary from the flood engine")]
    FloodPanicked,
    /// A file operation failed.
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
}

impl From<orchestrate::flood::LaunchError> for BenchError {
    fn from(e: orchestrate::flood::LaunchError) -> Self {
        // Boxed: the launcher's error is large, and every bench function returns this type.
        BenchError::Flood(Box::new(e))
    }
}

impl BenchError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> BenchError {
        BenchError::Io { what: what.into(), source }
    }

    /// The guest's command channel went silent (the guest answered nothing within the command's
    /// timeout), directly or as the cause of a failed preparation: running the command again may work.
    pub fn is_guest_channel_silent(&self) -> bool {
        match self {
            BenchError::InVictim { source, .. } => source.is_guest_channel_silent(),
            BenchError::Setup { source, .. } => source.is_guest_channel_silent(),
            _ => false,
        }
    }

    /// A failure a second run of the cell may not repeat: the guest's command channel went silent
    /// (e.g. a guest fsync stuck behind the host's writeback), or iperf3 lost its connection (its
    /// control connection has been seen to drop under a flood on a TCG guest, while the next run
    /// measured). A parse error, a missing tool or a failed setup would fail again.
    pub fn worth_another_run(&self) -> bool {
        match self {
            BenchError::Iperf(parse::iperf::IperfError::Reported(_)) => true,
            BenchError::Setup { .. } => false,
            _ => self.is_guest_channel_silent(),
        }
    }
}
