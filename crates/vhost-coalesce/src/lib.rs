//! vhost-user-net backend with RX interrupt coalescing.
pub mod coalesce;
pub mod queue;
