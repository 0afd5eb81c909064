//! vmguard-webapp --db PATH [--listen ADDR:PORT] [--users N --threads N --comments N] [--seed-only]

use std::process::ExitCode;

fn main() -> ExitCode {
    match webapp::server::run(std::env::args().skip(1)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vmguard-webapp: {e}");
            ExitCode::FAILURE
        }
    }
}
