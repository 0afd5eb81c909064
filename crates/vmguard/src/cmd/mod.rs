//! One module per command group; none imports another.

pub mod agent;
pub mod bench;
pub mod collect;
pub mod demo;
pub mod detect;
pub mod flood;
pub mod lab;
pub mod mitigate;
pub mod record;
pub mod report;
