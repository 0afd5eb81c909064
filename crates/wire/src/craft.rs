//! Crafting flood packets: a [`PacketSpec`] says what to send, [`PacketSpec::craft`] builds one packet
//! through the header representations (the reference path), and a [`Template`] builds the same packets
//! fast by patching only the fields that vary (source address, source port, sequence and
//! acknowledgement numbers, IP identification) and updating both checksums from precomputed sums.
//!
//! Randomness comes from the caller as plain numbers (two `u64` per packet), so this module stays pure
//! and every packet is reproducible from its inputs.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::WireError;
use crate::checksum;
use crate::ipv4::{self, protocol};
use crate::tcp::{self, Flags, TcpOption};
use crate::udp;

/// The options of a SYN, laid out the way Linux lays them out (with NOP padding to 4-byte words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SynOptions {
    /// Maximum segment size.
    pub mss: Option<u16>,
    pub sack_permitted: bool,
    /// (TSval, TSecr); a SYN carries TSecr 0.
    pub timestamps: Option<(u32, u32)>,
    /// Window scale shift count (0 to 14).
    pub window_scale: Option<u8>,
}

impl SynOptions {
    /// What a Linux client sends: MSS 1460, SACK permitted, timestamps, window scale 7 (20 option bytes).
    pub const LINUX: SynOptions =
        SynOptions { mss: Some(1460), sack_permitted: true, timestamps: Some((1, 0)), window_scale: Some(7) };
    /// A bare SYN without options (hping3's default).
    pub const NONE: SynOptions = SynOptions { mss: None, sack_permitted: false, timestamps: None, window_scale: None };

    /// The options in wire order, padding included; always a multiple of 4 bytes.
    pub fn to_options(&self) -> Vec<TcpOption> {
        let mut v = Vec::with_capacity(8);
        if let Some(mss) = self.mss {
            v.push(TcpOption::Mss(mss));
        }
        match (self.sack_permitted, self.timestamps) {
            (true, Some((tsval, tsecr))) => {
                v.push(TcpOption::SackPermitted);
                v.push(TcpOption::Timestamps { tsval, tsecr });
            }
            (false, Some((tsval, tsecr))) => {
                v.extend([TcpOption::Nop, TcpOption::Nop]);
                v.push(TcpOption::Timestamps { tsval, tsecr });
            }
            (true, None) => v.extend([TcpOption::Nop, TcpOption::Nop, TcpOption::SackPermitted]),
            (false, None) => {}
        }
        if let Some(ws) = self.window_scale {
            v.extend([TcpOption::Nop, TcpOption::WindowScale(ws)]);
        }
        v
    }
}

impl Default for SynOptions {
    fn default() -> Self {
        SynOptions::LINUX
    }
}

/// Which packet to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// TCP SYN with options.
    Syn(SynOptions),
    /// TCP ACK (random acknowledgement number), no options.
    Ack,
    /// UDP datagram with a zero-filled payload of this many bytes.
    Udp { payload_len: u16 },
}

/// Where source addresses come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceAddr {
    /// A random address inside the subnet (never its network or broadcast address unless the prefix is
    /// /31 or /32), never outside it.
    Random(Ipv4Net),
    /// Always this address (the sender's own).
    Fixed(Ipv4Addr),
}

/// A source port: random (1024 to 65535) or fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Port {
    Random,
    Fixed(u16),
}

/// A 32-bit number (sequence or acknowledgement): random or fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Number {
    Random,
    Fixed(u32),
}

/// Everything that defines the packets of one flood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketSpec {
    pub kind: Kind,
    pub src: SourceAddr,
    pub dst: Ipv4Addr,
    pub src_port: Port,
    pub dst_port: u16,
    pub seq: Number,
    /// Acknowledgement number of ACK packets (ignored for SYN and UDP).
    pub ack: Number,
    pub ttl: u8,
    /// TCP window.
    pub window: u16,
}

impl PacketSpec {
    /// A Linux-like SYN from random sources in `spoof` to `dst:dst_port`.
    pub fn syn(spoof: Ipv4Net, dst: Ipv4Addr, dst_port: u16) -> PacketSpec {
        PacketSpec {
            kind: Kind::Syn(SynOptions::LINUX),
            src: SourceAddr::Random(spoof),
            dst,
            src_port: Port::Random,
            dst_port,
            seq: Number::Random,
            ack: Number::Random,
            ttl: 64,
            window: 64240,
        }
    }

    /// Length of one IPv4 packet of this spec.
    pub fn packet_len(&self) -> usize {
        ipv4::HEADER_LEN + self.l4_len()
    }

    fn l4_len(&self) -> usize {
        match self.kind {
            Kind::Syn(o) => tcp::HEADER_LEN + o.to_options().iter().map(TcpOption::wire_len).sum::<usize>(),
            Kind::Ack => tcp::HEADER_LEN,
            Kind::Udp { payload_len } => udp::HEADER_LEN + payload_len as usize,
        }
    }

    fn check(&self) -> Result<(), WireError> {
        if let Kind::Udp { payload_len } = self.kind
            && usize::from(payload_len) > usize::from(u16::MAX) - ipv4::HEADER_LEN - udp::HEADER_LEN
        {
            return Err(WireError::InvalidSpec { what: "UDP payload longer than an IPv4 packet can carry" });
        }
        if let Kind::Syn(SynOptions { window_scale: Some(ws), .. }) = self.kind
            && ws > 14
        {
            return Err(WireError::InvalidSpec { what: "window scale above 14 (RFC 7323)" });
        }
        Ok(())
    }

    /// The varying fields of one packet, drawn from two caller-supplied random numbers.
    ///
    /// `r0` gives the source address (low 32 bits), the source port (bits 32-47) and the IP
    /// identification (bits 48-63); `r1` the sequence (low 32) and acknowledgement (high 32) numbers.
    #[inline]
    pub fn variation(&self, r0: u64, r1: u64) -> Variation {
        Variation {
            src: match self.src {
                SourceAddr::Random(net) => pick_in_subnet(net, r0 as u32),
                SourceAddr::Fixed(a) => a,
            },
            src_port: match self.src_port {
                Port::Random => random_port((r0 >> 32) as u16),
                Port::Fixed(p) => p,
            },
            ident: (r0 >> 48) as u16,
            seq: match self.seq {
                Number::Random => r1 as u32,
                Number::Fixed(s) => s,
            },
            ack: match (self.kind, self.ack) {
                (Kind::Ack, Number::Random) => (r1 >> 32) as u32,
                (Kind::Ack, Number::Fixed(a)) => a,
                _ => 0,
            },
        }
    }

    /// Build one packet into `buf` through the header representations (checksums computed from
    /// scratch); returns its length. The reference against which [`Template`] is tested.
    pub fn craft(&self, v: &Variation, buf: &mut [u8]) -> Result<usize, WireError> {
        self.check()?;
        let len = self.packet_len();
        if buf.len() < len {
            return Err(WireError::Truncated { what: "packet buffer", need: len, have: buf.len() });
        }
        let buf = &mut buf[..len];
        buf.fill(0);
        let (proto, dont_frag) = match self.kind {
            Kind::Syn(_) | Kind::Ack => (protocol::TCP, true),
            Kind::Udp { .. } => (protocol::UDP, false),
        };
        let ip = ipv4::Repr {
            src: v.src,
            dst: self.dst,
            protocol: proto,
            payload_len: self.l4_len() as u16,
            ttl: self.ttl,
            ident: v.ident,
            tos: 0,
            dont_frag,
        };
        ip.emit(&mut ipv4::Packet::new_unchecked(&mut buf[..]));
        let l4 = &mut buf[ipv4::HEADER_LEN..];
        match self.kind {
            Kind::Syn(opts) => {
                let repr = tcp::Repr {
                    src_port: v.src_port,
                    dst_port: self.dst_port,
                    seq: v.seq,
                    ack: 0,
                    flags: Flags::SYN,
                    window: self.window,
                    urgent: 0,
                    options: opts.to_options(),
                };
                repr.emit(&mut tcp::Packet::new_unchecked(l4), v.src, self.dst)?;
            }
            Kind::Ack => {
                let repr = tcp::Repr {
                    src_port: v.src_port,
                    dst_port: self.dst_port,
                    seq: v.seq,
                    ack: v.ack,
                    flags: Flags::ACK,
                    window: self.window,
                    urgent: 0,
                    options: Vec::new(),
                };
                repr.emit(&mut tcp::Packet::new_unchecked(l4), v.src, self.dst)?;
            }
            Kind::Udp { payload_len } => {
                let repr = udp::Repr { src_port: v.src_port, dst_port: self.dst_port, payload_len };
                repr.emit(&mut udp::Packet::new_unchecked(l4), v.src, self.dst);
            }
        }
        Ok(len)
    }

    /// A template for the fast path.
    pub fn template(&self) -> Result<Template, WireError> {
        Template::new(*self)
    }
}

/// The fields that differ from one packet of a flood to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variation {
    pub src: Ipv4Addr,
    pub src_port: u16,
    pub ident: u16,
    pub seq: u32,
    /// Only used by ACK packets.
    pub ack: u32,
}

/// Map a random number into `net`: the result is always inside the subnet. For prefixes up to /30 the
/// network and broadcast addresses are skipped (multiply-shift keeps it uniform without division).
#[inline]
pub fn pick_in_subnet(net: Ipv4Net, r: u32) -> Ipv4Addr {
    let base = u32::from(net.network());
    let host_bits = 32 - u32::from(net.prefix_len());
    if host_bits <= 1 {
        let mask = ((1u64 << host_bits) - 1) as u32;
        return Ipv4Addr::from(base | (r & mask));
    }
    let usable = (1u64 << host_bits) - 2;
    Ipv4Addr::from(base + 1 + ((u64::from(r) * usable) >> 32) as u32)
}

/// Map 16 random bits to a port in 1024..=65535.
#[inline]
pub fn random_port(r: u16) -> u16 {
    1024 + ((u32::from(r) * (65536 - 1024)) >> 16) as u16
}

// Offsets inside an IPv4 packet with a 20-byte header.
const IP_IDENT: usize = 4;
const IP_CSUM: usize = 10;
const IP_SRC: usize = 12;
const L4: usize = ipv4::HEADER_LEN;
const L4_SPORT: usize = L4;
const TCP_SEQ: usize = L4 + 4;
const TCP_ACK: usize = L4 + 8;
const TCP_CSUM: usize = L4 + 16;
const UDP_CSUM: usize = L4 + 6;

/// A packet with its varying fields zeroed, and the checksum sums of everything that does not vary.
#[derive(Debug, Clone)]
pub struct Template {
    spec: PacketSpec,
    bytes: Vec<u8>,
    /// Sum of the IPv4 header with identification, source and checksum zeroed.
    ip_sum: u64,
    /// Sum of the pseudo header (source zeroed) and the L4 header and payload with the varying fields
    /// and the checksum zeroed.
    l4_sum: u64,
}

impl Template {
    pub fn new(spec: PacketSpec) -> Result<Template, WireError> {
        spec.check()?;
        let zero = Variation { src: Ipv4Addr::UNSPECIFIED, src_port: 0, ident: 0, seq: 0, ack: 0 };
        let mut bytes = vec![0u8; spec.packet_len()];
        spec.craft(&zero, &mut bytes)?;
        bytes[IP_CSUM..IP_CSUM + 2].fill(0);
        let ip_sum = checksum::accumulate(0, &bytes[..ipv4::HEADER_LEN]);
        let (proto, csum_at) = match spec.kind {
            Kind::Udp { .. } => (protocol::UDP, UDP_CSUM),
            _ => (protocol::TCP, TCP_CSUM),
        };
        bytes[csum_at..csum_at + 2].fill(0);
        let l4 = &bytes[L4..];
        let l4_sum = checksum::pseudo_header(Ipv4Addr::UNSPECIFIED, spec.dst, proto, l4.len() as u16)
            + checksum::accumulate(0, l4);
        Ok(Template { spec, bytes, ip_sum, l4_sum })
    }

    pub fn spec(&self) -> &PacketSpec {
        &self.spec
    }

    /// Packet length in bytes.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// The template bytes (varying fields and checksums zero).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Copy the template into the start of `buf`, then [`Template::patch`] it. Panics if `buf` is
    /// shorter than [`Template::len`].
    #[inline]
    pub fn write(&self, buf: &mut [u8], v: &Variation) {
        buf[..self.bytes.len()].copy_from_slice(&self.bytes);
        self.patch(buf, v);
    }

    /// Rewrite only the varying fields and both checksums of a buffer that already holds this
    /// template's bytes (from an earlier [`Template::write`] or `patch`). Panics if `buf` is shorter
    /// than [`Template::len`].
    #[inline]
    pub fn patch(&self, buf: &mut [u8], v: &Variation) {
        let buf = &mut buf[..self.bytes.len()];
        let src = u32::from(v.src);
        let src_sum = u64::from(src >> 16) + u64::from(src & 0xffff);
        buf[IP_IDENT..IP_IDENT + 2].copy_from_slice(&v.ident.to_be_bytes());
        buf[IP_SRC..IP_SRC + 4].copy_from_slice(&src.to_be_bytes());
        let ip_csum = checksum::finish(self.ip_sum + src_sum + u64::from(v.ident));
        buf[IP_CSUM..IP_CSUM + 2].copy_from_slice(&ip_csum.to_be_bytes());
        buf[L4_SPORT..L4_SPORT + 2].copy_from_slice(&v.src_port.to_be_bytes());
        let l4 = self.l4_sum + src_sum + u64::from(v.src_port);
        match self.spec.kind {
            Kind::Syn(_) | Kind::Ack => {
                buf[TCP_SEQ..TCP_SEQ + 4].copy_from_slice(&v.seq.to_be_bytes());
                let mut l4 = l4 + u64::from(v.seq >> 16) + u64::from(v.seq & 0xffff);
                if let Kind::Ack = self.spec.kind {
                    buf[TCP_ACK..TCP_ACK + 4].copy_from_slice(&v.ack.to_be_bytes());
                    l4 += u64::from(v.ack >> 16) + u64::from(v.ack & 0xffff);
                }
                buf[TCP_CSUM..TCP_CSUM + 2].copy_from_slice(&checksum::finish(l4).to_be_bytes());
            }
            Kind::Udp { .. } => {
                let c = checksum::finish(l4);
                let c = if c == 0 { 0xffff } else { c };
                buf[UDP_CSUM..UDP_CSUM + 2].copy_from_slice(&c.to_be_bytes());
            }
        }
    }

    /// [`PacketSpec::variation`] then [`Template::patch`]: the whole per-packet cost of the fast path.
    #[inline]
    pub fn patch_random(&self, buf: &mut [u8], r0: u64, r1: u64) {
        let v = self.spec.variation(r0, r1);
        self.patch(buf, &v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_syn_options_are_20_bytes() {
        assert_eq!(SynOptions::LINUX.to_options().iter().map(TcpOption::wire_len).sum::<usize>(), 20);
        let spec = PacketSpec::syn("10.0.128.0/17".parse().unwrap(), Ipv4Addr::new(10, 0, 10, 2), 80);
        assert_eq!(spec.packet_len(), 60);
    }

    #[test]
    fn every_option_subset_is_word_aligned() {
        for bits in 0..16u8 {
            let o = SynOptions {
                mss: (bits & 1 != 0).then_some(1460),
                sack_permitted: bits & 2 != 0,
                timestamps: (bits & 4 != 0).then_some((5, 0)),
                window_scale: (bits & 8 != 0).then_some(7),
            };
            let n: usize = o.to_options().iter().map(TcpOption::wire_len).sum();
            assert_eq!(n % 4, 0, "{o:?}");
        }
    }

    #[test]
    fn subnet_edges() {
        let net: Ipv4Net = "10.0.128.0/17".parse().unwrap();
        assert_eq!(pick_in_subnet(net, 0), Ipv4Addr::new(10, 0, 128, 1));
        assert_eq!(pick_in_subnet(net, u32::MAX), Ipv4Addr::new(10, 0, 255, 254));
        let host: Ipv4Net = "10.0.0.9/32".parse().unwrap();
        assert_eq!(pick_in_subnet(host, 12345), Ipv4Addr::new(10, 0, 0, 9));
        let pair: Ipv4Net = "10.0.0.8/31".parse().unwrap();
        assert_eq!(pick_in_subnet(pair, 1), Ipv4Addr::new(10, 0, 0, 9));
        let all: Ipv4Net = "0.0.0.0/0".parse().unwrap();
        assert_eq!(pick_in_subnet(all, u32::MAX), Ipv4Addr::new(255, 255, 255, 254));
    }

    #[test]
    fn ports_stay_unprivileged() {
        assert_eq!(random_port(0), 1024);
        assert_eq!(random_port(u16::MAX), 65535);
    }

    #[test]
    fn absurd_specs_are_refused() {
        let mut spec = PacketSpec::syn("10.0.128.0/17".parse().unwrap(), Ipv4Addr::new(10, 0, 10, 2), 80);
        spec.kind = Kind::Udp { payload_len: 65530 };
        assert!(spec.template().is_err());
        spec.kind = Kind::Syn(SynOptions { window_scale: Some(15), ..SynOptions::LINUX });
        assert!(spec.template().is_err());
    }
}
