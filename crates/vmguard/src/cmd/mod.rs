//! One module per command group.

pub mod agent;
pub mod detect;
pub mod lab;
pub mod record;
pub mod train;
