//! vmguard-webapp --db-socket PATH [--database NAME] [--listen ADDR:PORT] [--reseed] [--seed-only] (see server.rs)

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
