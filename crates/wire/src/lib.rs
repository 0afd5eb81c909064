//! Packet wire formats for vmguard's floods. Pure: no sockets, files, clocks or processes.
//!
//! Shaped like smoltcp: [`ipv4::Packet`], [`tcp::Packet`] and [`udp::Packet`] are zero-copy views over
//! a byte buffer (check the length with `new_checked`/`check_len`, then get and set fields), and the
//! `Repr` types carry a header's meaning (`Repr::parse(&packet)`, `repr.emit(&mut packet)`).
//! [`craft`] builds flood packets: a [`craft::PacketSpec`] (SYN with a selectable set of options, ACK,
//! UDP; random or fixed source address, port and sequence number) and a [`craft::Template`] that
//! produces the same packets by patching only the varying fields, with incremental checksums.
//!
//! ```
//! use std::net::Ipv4Addr;
//! use wire::craft::PacketSpec;
//!
//! let spec = PacketSpec::syn("10.213.128.0/17".parse().unwrap(), Ipv4Addr::new(10, 213, 10, 2), 80);
//! let template = spec.template().unwrap();
//! let mut buf = vec![0u8; template.len()];
//! template.write(&mut buf, &spec.variation(0x1234_5678_9abc_def0, 42));
//! let ip = wire::ipv4::Packet::new_checked(&buf[..]).unwrap();
//! assert!(ip.verify_checksum());
//! assert!("10.213.128.0/17".parse::<ipnet::Ipv4Net>().unwrap().contains(&ip.src_addr()));
//! ```

pub mod checksum;
pub mod craft;
pub mod field;
pub mod ipv4;
pub mod tcp;
pub mod udp;

pub use craft::{Kind, Number, PacketSpec, Port, SourceAddr, SynOptions, Template, Variation, pick_in_subnet};

/// Why a buffer could not be read or written as a packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The buffer ends before a field or section that must be there.
    #[error("{what} truncated: needs {need} bytes, buffer has {have}")]
    Truncated { what: &'static str, need: usize, have: usize },
    /// A field holds a value the format does not allow.
    #[error("malformed packet: {what}")]
    Malformed { what: &'static str },
    /// A checksum does not verify.
    #[error("bad {what} checksum")]
    BadChecksum { what: &'static str },
    /// The packet specification cannot be built; change it.
    #[error("invalid packet specification: {what}")]
    InvalidSpec { what: &'static str },
}
