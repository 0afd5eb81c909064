//! vmguard: measure, detect and mitigate TCP SYN floods against virtualized hosts.
//!
//! This crate owns flags, the config file, progress and output; each subcommand lives in `cmd/` and
//! hands plain values to `orchestrate` and the other library crates, which own the work. Command
//! modules never import each other: what two commands print alike is in `tables`, `labui`.

mod cmd;
mod config;
mod labui;
mod output;
mod progress;
mod signals;
mod tables;
mod watch;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "vmguard", version, about, long_about = None)]
pub struct Cli {
    /// Lab description (TOML); defaults apply to everything it leaves out. A file named here (or in
    /// VMGUARD_CONFIG) must exist; without either, ./vmguard.toml is read if present.
    #[arg(long, global = true, env = "VMGUARD_CONFIG", value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// Print results as JSON on stdout (logs stay on stderr).
    #[arg(long, global = true)]
    pub json: bool,
    /// More log output (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The configuration: the file named by `--config` or `VMGUARD_CONFIG` (which must exist), else
    /// `./vmguard.toml` if present, else the defaults.
    pub fn load_config(&self) -> anyhow::Result<config::Config> {
        config::Config::load_for(self.config.as_deref())
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build, inspect and tear down the lab of namespaces and victims.
    #[command(subcommand)]
    Lab(cmd::lab::LabCommand),
    /// Sample every guest's counters each interval into the store, and serve them as OpenMetrics.
    Collect(cmd::collect::CollectArgs),
    /// The main job end to end on embedded defaults (what `make demo` runs).
    Demo(cmd::demo::DemoArgs),
    /// Flood a lab victim (SYN, SYN to a closed port, ACK, UDP), bounded in time and count.
    Flood(cmd::flood::FloodArgs),
    /// Internal: the part of a flood that runs inside a victim (started by `vmguard flood --from`).
    #[command(hide = true)]
    FloodAgent {
        #[arg(long)]
        request: String,
    },
    /// The seed's clustering (fit, eval) and vmguard's detector (train, eval --model).
    #[command(subcommand)]
    Detect(cmd::detect::DetectCommand),
    /// Run a scenario on the lab while collecting, with ground-truth labels in the store.
    Record(cmd::record::RecordArgs),
    /// Score every guest every second and raise alerts (log, JSON lines, OpenMetrics, webhook).
    Agent(cmd::agent::AgentArgs),
    /// Run the benchmark matrix (victim x benchmark x idle/attack) on the lab and store the results.
    Bench(cmd::bench::BenchArgs),
    /// Apply, remove and list the SYN defences (SYN cookies, synproxy, per-source limits, BCP 38).
    #[command(subcommand)]
    Mitigate(cmd::mitigate::MitigateCommand),
    /// Write the HTML report of a benchmark run.
    Report(cmd::report::ReportArgs),
    /// Internal: the benchmark web application (started inside victims by `vmguard bench`).
    #[command(hide = true)]
    Webapp {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let result = match &cli.command {
        Command::Lab(c) => cmd::lab::run(&cli, c),
        Command::Mitigate(c) => cmd::mitigate::run(&cli, c),
        Command::Collect(a) => cmd::collect::run(&cli, a),
        Command::Demo(a) => cmd::demo::run(&cli, a),
        Command::Flood(a) => cmd::flood::run(&cli, a),
        Command::FloodAgent { request } => cmd::flood::agent(request),
        Command::Detect(c) => cmd::detect::run(&cli, c),
        Command::Record(a) => cmd::record::run(&cli, a),
        Command::Agent(a) => cmd::agent::run(&cli, a),
        Command::Bench(a) => cmd::bench::run(&cli, a),
        Command::Report(a) => cmd::report::run(&cli, a),
        Command::Webapp { args } => webapp::server::run(args.clone()).map_err(anyhow::Error::msg),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", orchestrate::error_chain(err.as_ref()));
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
}
