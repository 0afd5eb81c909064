//! The middle layer of vmguard, between the command line and the crates that touch the OS. Each
//! thing the commands do on the lab exists here once, usable and testable as a library:
//!
//! - [`scenario`]: typed scenarios (workload kinds, flood tools, kinds and senders as enums), parsed
//!   once, errors naming the file, the phase and the field;
//! - [`workload`]: the benign workloads;
//! - [`flood`]: the one lab-aware flood launch (attacker, zombie or hping3; the target policy; the
//!   zombie request protocol; the victim's side measured), used by `flood`, `record`, `demo` and bench;
//! - [`collect`]: the lab's guests for telemetry and the background collection loop;
//! - [`record`]: the recording loop with ground truth;
//! - [`dataset`], [`ticks`], [`evaluate`]: labelled data from the store, samples to the detector's
//!   ticks (one function for live and recorded data), Part A and Part B on recorded data;
//! - [`datafile`]: that labelled data as a text file (`detect export`, `detect eval --samples`);
//! - [`family`], [`heldout`]: scenario families of recorded phases and the leave-one-family-out
//!   evaluation of Part B;
//! - [`agent`]: the online scoring loop and its alert sinks; [`webhook`]: the non-blocking webhook.

pub mod agent;
pub mod collect;
pub mod datafile;
pub mod dataset;
pub mod evaluate;
pub mod family;
pub mod flood;
pub mod heldout;
pub mod record;
pub mod scenario;
pub mod ticks;
pub mod webhook;
pub mod workload;

/// An error and its causes on one line, skipping a cause whose text the message before it already
/// contains (what the CLI prints, and what `record` keeps of a failed workload or flood).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        cur = c.source();
    }
    out
}
