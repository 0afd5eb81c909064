//! IPv4 header: a zero-copy view ([`Packet`]) and its meaning ([`Repr`]).

use std::net::Ipv4Addr;

use crate::WireError;
use crate::checksum;
use crate::field::{read_addr, read_u16, write_u16};

/// Byte ranges of the header fields.
pub mod field {
    use crate::field::Field;
    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const LENGTH: Field = 2..4;
    pub const IDENT: Field = 4..6;
    pub const FLG_OFF: Field = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Field = 10..12;
    pub const SRC: Field = 12..16;
    pub const DST: Field = 16..20;
}

/// Length of a header without options (the only kind this crate emits).
pub const HEADER_LEN: usize = 20;

/// Protocol numbers this crate knows.
pub mod protocol {
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
}

/// A read/write view of an IPv4 packet over a byte buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wrap without checks; call [`Packet::check_len`] before using the getters on untrusted input.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wrap and check that every field the getters touch lies inside the buffer.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, WireError> {
        let p = Packet::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// The buffer holds the fixed header, the header length is sane and the total length fits.
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated { what: "IPv4 header", need: HEADER_LEN, have: len });
        }
        let hl = self.header_len() as usize;
        if hl < HEADER_LEN {
            return Err(WireError::Malformed { what: "IPv4 header length below 20 bytes" });
        }
        if len < hl {
            return Err(WireError::Truncated { what: "IPv4 options", need: hl, have: len });
        }
        let total = self.total_len() as usize;
        if total < hl {
            return Err(WireError::Malformed { what: "IPv4 total length below header length" });
        }
        if len < total {
            return Err(WireError::Truncated { what: "IPv4 payload", need: total, have: len });
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes.
    pub fn header_len(&self) -> u8 {
        (self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    pub fn tos(&self) -> u8 {
        self.buffer.as_ref()[field::TOS]
    }

    pub fn total_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH)
    }

    pub fn ident(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::IDENT)
    }

    pub fn dont_frag(&self) -> bool {
        read_u16(self.buffer.as_ref(), field::FLG_OFF) & 0x4000 != 0
    }

    pub fn more_frags(&self) -> bool {
        read_u16(self.buffer.as_ref(), field::FLG_OFF) & 0x2000 != 0
    }

    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        (read_u16(self.buffer.as_ref(), field::FLG_OFF) & 0x1fff) * 8
    }

    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    pub fn src_addr(&self) -> Ipv4Addr {
        read_addr(self.buffer.as_ref(), field::SRC)
    }

    pub fn dst_addr(&self) -> Ipv4Addr {
        read_addr(self.buffer.as_ref(), field::DST)
    }

    /// Does the header checksum verify?
    pub fn verify_checksum(&self) -> bool {
        let hl = self.header_len() as usize;
        checksum::verifies(checksum::accumulate(0, &self.buffer.as_ref()[..hl]))
    }

    /// The payload (after the header, up to the total length).
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        &b[self.header_len() as usize..self.total_len() as usize]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Version 4 and a header length in bytes (a multiple of 4).
    pub fn set_version_and_header_len(&mut self, header_len: u8) {
        self.buffer.as_mut()[field::VER_IHL] = 0x40 | (header_len / 4);
    }

    pub fn set_tos(&mut self, v: u8) {
        self.buffer.as_mut()[field::TOS] = v;
    }

    pub fn set_total_len(&mut self, v: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH, v);
    }

    pub fn set_ident(&mut self, v: u16) {
        write_u16(self.buffer.as_mut(), field::IDENT, v);
    }

    /// Flags (DF, no MF) and a zero fragment offset: the only form this crate emits.
    pub fn set_flags_unfragmented(&mut self, dont_frag: bool) {
        let v: u16 = if dont_frag { 0x4000 } else { 0 };
        write_u16(self.buffer.as_mut(), field::FLG_OFF, v);
    }

    pub fn set_ttl(&mut self, v: u8) {
        self.buffer.as_mut()[field::TTL] = v;
    }

    pub fn set_protocol(&mut self, v: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = v;
    }

    pub fn set_checksum(&mut self, v: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, v);
    }

    pub fn set_src_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a.octets());
    }

    pub fn set_dst_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a.octets());
    }

    /// Recompute the header checksum over the header as it stands.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let hl = self.header_len() as usize;
        let c = checksum::checksum(&self.buffer.as_ref()[..hl]);
        self.set_checksum(c);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (hl, tl) = (self.header_len() as usize, self.total_len() as usize);
        &mut self.buffer.as_mut()[hl..tl]
    }
}

/// The meaning of an (unfragmented, option-less when emitted) IPv4 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    pub payload_len: u16,
    pub ttl: u8,
    pub ident: u16,
    pub tos: u8,
    pub dont_frag: bool,
}

impl Repr {
    /// Parse a checked packet; refuses other versions, fragments and bad checksums.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Repr, WireError> {
        p.check_len()?;
        if p.version() != 4 {
            return Err(WireError::Malformed { what: "IP version is not 4" });
        }
        if p.more_frags() || p.frag_offset() != 0 {
            return Err(WireError::Malformed { what: "IPv4 fragment" });
        }
        if !p.verify_checksum() {
            return Err(WireError::BadChecksum { what: "IPv4 header" });
        }
        Ok(Repr {
            src: p.src_addr(),
            dst: p.dst_addr(),
            protocol: p.protocol(),
            payload_len: p.total_len() - u16::from(p.header_len()),
            ttl: p.ttl(),
            ident: p.ident(),
            tos: p.tos(),
            dont_frag: p.dont_frag(),
        })
    }

    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    pub const fn total_len(&self) -> usize {
        HEADER_LEN + self.payload_len as usize
    }

    /// Write the header (with its checksum) into the first 20 bytes of the packet's buffer.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        p.set_version_and_header_len(HEADER_LEN as u8);
        p.set_tos(self.tos);
        p.set_total_len(self.total_len() as u16);
        p.set_ident(self.ident);
        p.set_flags_unfragmented(self.dont_frag);
        p.set_ttl(self.ttl);
        p.set_protocol(self.protocol);
        p.set_src_addr(self.src);
        p.set_dst_addr(self.dst);
        p.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emit_parse_roundtrip() {
        let repr = Repr {
            src: Ipv4Addr::new(10, 0, 128, 7),
            dst: Ipv4Addr::new(10, 0, 10, 2),
            protocol: protocol::TCP,
            payload_len: 20,
            ttl: 64,
            ident: 0x1234,
            tos: 0,
            dont_frag: true,
        };
        let mut buf = vec![0u8; repr.total_len()];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        repr.emit(&mut p);
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(Repr::parse(&p).unwrap(), repr);
    }

    #[test]
    fn short_buffers_are_refused() {
        assert!(matches!(Packet::new_checked(&[0x45u8; 19][..]), Err(WireError::Truncated { .. })));
        let mut buf = [0u8; 20];
        buf[0] = 0x45;
        buf[3] = 40; // total length 40 > 20 bytes present
        assert!(matches!(Packet::new_checked(&buf[..]), Err(WireError::Truncated { .. })));
    }
}
