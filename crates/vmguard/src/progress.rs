//! Progress display for long runs (hidden under --json, so stdout stays machine-readable).

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

pub fn spinner(hidden: bool) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new_spinner();
    pb.set_style(ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}").expect("valid template"));
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}
