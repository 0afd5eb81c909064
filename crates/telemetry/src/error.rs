use std::path::PathBuf;

/// Why a source produced nothing (or only part) this round. None of these stops a round.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// A counter file could not be read (guest gone, or not root).
    #[error("cannot read {path}: {source} (is the guest still running? telemetry needs root)")]
    Read { path: PathBuf, source: std::io::Error },
    /// A counter file or reply did not have the expected shape.
    #[error("cannot parse {what}: {detail}")]
    Parse { what: String, detail: String },
    /// The QMP socket could not be reached.
    #[error("cannot connect to QMP socket {socket}: {source} (is qemu running with `-qmp unix:{socket},server`?)")]
    QmpConnect { socket: PathBuf, source: std::io::Error },
    /// The QMP connection broke or timed out.
    #[error("QMP socket {socket}: {source} (qemu may have exited)")]
    QmpIo { socket: PathBuf, source: std::io::Error },
    /// qemu did not answer in time.
    #[error(
        "no reply within {after:?} on QMP socket {socket}: qemu serves one QMP client at a time; is another one connected?"
    )]
    QmpTimeout { socket: PathBuf, after: std::time::Duration },
    /// qemu sent something that is not QMP.
    #[error("QMP socket {socket}: protocol error: {detail}")]
    QmpProtocol { socket: PathBuf, detail: String },
    /// qemu refused a command.
    #[error("QMP command `{command}` failed: {class}: {desc}")]
    QmpCommand { command: String, class: String, desc: String },
    /// tracefs is not mounted and could not be mounted.
    #[error("tracefs not found at /sys/kernel/tracing or /sys/kernel/debug/tracing and mounting it failed: {detail}")]
    Tracefs { detail: String },
    /// None of the requested tracepoints exists on this kernel.
    #[error("no tracepoint of {wanted} exists under {dir} (kernel without KVM tracepoints?)")]
    NoTracepoints { wanted: String, dir: PathBuf },
    /// perf_event_open refused a counter.
    #[error(
        "perf_event_open for tracepoint {event} on thread {tid}: {source} (needs root or perf_event_paranoid <= -1)"
    )]
    PerfOpen { event: String, tid: u32, source: std::io::Error },
    /// Reading a perf counter failed.
    #[error("reading perf counter {event}: {source}")]
    PerfRead { event: String, source: std::io::Error },
    /// The guest's network namespace could not be entered.
    #[cfg(feature = "sources")]
    #[error(transparent)]
    Netns(#[from] netns::NetnsError),
    /// The interface is not in the namespace's /proc/net/dev.
    #[error("interface {iface} not found in namespace {netns} (is the lab up? `vmguard lab status`)")]
    IfaceMissing { iface: String, netns: String },
    /// The guest's cgroup directory does not exist in any known hierarchy.
    #[error(
        "cgroup `{cgroup}` not found under /sys/fs/cgroup/cpuacct, /sys/fs/cgroup/cpu, /sys/fs/cgroup/unified or /sys/fs/cgroup"
    )]
    CgroupMissing { cgroup: String },
    /// A xentrace file is malformed.
    #[error("xentrace data at byte {offset}: {detail}")]
    Xentrace { offset: u64, detail: String },
    /// The live xentrace stream is not delivering.
    #[error("xentrace stream {socket}: {detail}")]
    XentraceStream { socket: PathBuf, detail: String },
    /// An external command (xenperf, mount) failed.
    #[cfg(feature = "sources")]
    #[error(transparent)]
    Exec(#[from] exec::ExecError),
    /// The guest description lacks what a source needs.
    #[error("guest `{guest}` has no {what}: cannot start its {source_name} source")]
    Incomplete { guest: String, what: &'static str, source_name: &'static str },
}

impl TelemetryError {
    pub(crate) fn parse(what: impl Into<String>, detail: impl Into<String>) -> Self {
        TelemetryError::Parse { what: what.into(), detail: detail.into() }
    }

    pub(crate) fn read(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TelemetryError::Read { path: path.into(), source }
    }
}

/// A kernel file or a tool's output did not have the shape its parser expects. Every pure parser of
/// text in vmguard (`/proc/stat`, `/proc/net/netstat`, sysbench, iperf3, ...) fails with this.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("cannot parse {tool} output: {reason}; output starts with: {head:?}")]
pub struct ParseError {
    /// What printed the text: `/proc/stat`, `sysbench cpu`, ...
    pub tool: &'static str,
    pub reason: String,
    /// The first characters of the text, to recognize what came back (an error message, nothing).
    pub head: String,
}

impl ParseError {
    pub fn new(tool: &'static str, reason: impl Into<String>, text: &str) -> ParseError {
        ParseError { tool, reason: reason.into(), head: text.trim_start().chars().take(160).collect() }
    }
}
