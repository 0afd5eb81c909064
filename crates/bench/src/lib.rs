//! The seed-000 benchmark matrix: victim kind x benchmark x {idle, attack} x repetitions, with SYN
//! cookies, attack rate and qemu network backend as further dimensions.
//!
//! - [`matrix`]: the cells of a run and what each stores ([`matrix::CellRecord`]).
//! - [`runner`]: runs cells on a lab (benchmarks inside victims, clients in the client namespace, a
//!   time-bounded SYN flood from the attacker namespace, host CPU and profiling counters per cell).
//! - [`parse`]: parsers of sysbench, iperf3, wrk, perf stat and /proc output; pure and property-tested.
//! - [`summary`]: medians and spread per cell, degradation per victim kind, the seed's Tables 1 and 2.
//! - [`report`]: the HTML report with inline SVG plots.

pub mod matrix;
pub mod parse;
pub mod report;
pub mod runner;
pub mod summary;

pub use matrix::{Benchmark, CellRecord, CellSpec, MatrixSpec, NetBackend, Phase};
pub use parse::ParseError;
pub use runner::{Event, RunOptions, run_matrix};

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A tool's output could not be understood.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// An external command failed (client side).
    #[error(transparent)]
    Exec(#[from] exec::ExecError),
    /// A command inside the victim failed.
    #[error("{0}")]
    Tool(String),
    /// The lab has no victim of this kind.
    #[error("the lab has no {0} victim: add it to [lab] victims and run `vmguard lab up`")]
    NoVictim(String),
    /// A victim's service or setting could not be prepared.
    #[error("{victim}: {what}: {reason}")]
    Setup { victim: String, what: String, reason: String },
    /// The cell's configuration cannot run on this host.
    #[error("{0}")]
    Unavailable(String),
    /// The flood could not start or failed.
    #[error("SYN flood: {0}")]
    Flood(String),
    /// A file operation failed.
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
}

impl BenchError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> BenchError {
        BenchError::Io { what: what.into(), source }
    }
}
