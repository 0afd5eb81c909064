//! A vhost-user-net backend that coalesces RX notifications to the guest.
//!
//! The seed paper's fix for SYN floods against virtualized victims: at high packet rates the
//! hypervisor should not interrupt the guest for every received packet, but arm a timer and
//! notify once for everything that arrived meanwhile. This crate implements that in the host's
//! data path, as a vhost-user backend that QEMU's `vhost-user` netdev connects to, between the
//! guest's virtqueues and a tap device.
//!
//! - [`coalesce`]: the pure notification policy (`off`, `fixed`, `adaptive`).
//! - [`queue`]: RX fill / TX drain on the virtqueues, the host side behind a trait.
//! - [`tap`]: the tap device.
//! - [`backend`]: the `VhostUserBackend` tying them together on the library's epoll thread.
//! - [`control`]: the line-based JSON control socket (mode switch, counters).

pub mod backend;
pub mod coalesce;
pub mod control;
pub mod queue;
pub mod relay;
pub mod tap;
