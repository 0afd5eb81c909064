//! TCP header: a zero-copy view ([`Packet`]), its options ([`TcpOption`]) and its meaning ([`Repr`]).

use std::net::Ipv4Addr;

use crate::WireError;
use crate::checksum;
use crate::field::{read_u16, read_u32, write_u16, write_u32};
use crate::ipv4::protocol;

/// Byte ranges of the header fields.
pub mod field {
    use crate::field::Field;
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const SEQ: Field = 4..8;
    pub const ACK: Field = 8..12;
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: Field = 14..16;
    pub const CHECKSUM: Field = 16..18;
    pub const URGENT: Field = 18..20;
}

/// Length of a header without options.
pub const HEADER_LEN: usize = 20;
/// Longest header (data offset 15).
pub const MAX_HEADER_LEN: usize = 60;

/// TCP flag bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags(pub u8);

impl Flags {
    pub const FIN: Flags = Flags(0x01);
    pub const SYN: Flags = Flags(0x02);
    pub const RST: Flags = Flags(0x04);
    pub const PSH: Flags = Flags(0x08);
    pub const ACK: Flags = Flags(0x10);
    pub const URG: Flags = Flags(0x20);

    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

/// A TCP option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpOption {
    /// End of option list (kind 0).
    End,
    /// No operation, used for alignment (kind 1).
    Nop,
    /// Maximum segment size (kind 2).
    Mss(u16),
    /// Window scale shift count (kind 3).
    WindowScale(u8),
    /// SACK permitted (kind 4).
    SackPermitted,
    /// Timestamps (kind 8).
    Timestamps { tsval: u32, tsecr: u32 },
    /// Any other option, kept as kind and length only.
    Unknown { kind: u8, len: u8 },
}

impl TcpOption {
    /// Bytes this option takes on the wire.
    pub const fn wire_len(&self) -> usize {
        match self {
            TcpOption::End | TcpOption::Nop => 1,
            TcpOption::Mss(_) => 4,
            TcpOption::WindowScale(_) => 3,
            TcpOption::SackPermitted => 2,
            TcpOption::Timestamps { .. } => 10,
            TcpOption::Unknown { len, .. } => *len as usize,
        }
    }

    /// Write the option at the start of `buf`; returns the bytes written. `Unknown` writes kind, length
    /// and zeros.
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        let n = self.wire_len();
        let b = &mut buf[..n];
        match *self {
            TcpOption::End => b[0] = 0,
            TcpOption::Nop => b[0] = 1,
            TcpOption::Mss(v) => {
                b[..2].copy_from_slice(&[2, 4]);
                write_u16(b, 2..4, v);
            }
            TcpOption::WindowScale(s) => b.copy_from_slice(&[3, 3, s]),
            TcpOption::SackPermitted => b.copy_from_slice(&[4, 2]),
            TcpOption::Timestamps { tsval, tsecr } => {
                b[..2].copy_from_slice(&[8, 10]);
                write_u32(b, 2..6, tsval);
                write_u32(b, 6..10, tsecr);
            }
            TcpOption::Unknown { kind, len } => {
                b.fill(0);
                b[0] = kind;
                if len >= 2 {
                    b[1] = len;
                }
            }
        }
        n
    }

    /// Parse one option at the start of `buf`; returns it and its length.
    pub fn parse(buf: &[u8]) -> Result<(TcpOption, usize), WireError> {
        let malformed = |what| Err(WireError::Malformed { what });
        let Some(&kind) = buf.first() else { return malformed("empty TCP option") };
        match kind {
            0 => return Ok((TcpOption::End, 1)),
            1 => return Ok((TcpOption::Nop, 1)),
            _ => {}
        }
        let Some(&len) = buf.get(1) else { return malformed("TCP option without length") };
        let len_us = len as usize;
        if len_us < 2 || len_us > buf.len() {
            return malformed("TCP option length out of range");
        }
        let body = &buf[2..len_us];
        let opt = match (kind, len) {
            (2, 4) => TcpOption::Mss(read_u16(body, 0..2)),
            (3, 3) => TcpOption::WindowScale(body[0]),
            (4, 2) => TcpOption::SackPermitted,
            (8, 10) => TcpOption::Timestamps { tsval: read_u32(body, 0..4), tsecr: read_u32(body, 4..8) },
            (2 | 3 | 4 | 8, _) => return malformed("TCP option with a wrong length for its kind"),
            _ => TcpOption::Unknown { kind, len },
        };
        Ok((opt, len_us))
    }
}

/// A read/write view of a TCP segment over a byte buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Packet<T>, WireError> {
        let p = Packet::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// The buffer holds the fixed header and the options its data offset announces.
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated { what: "TCP header", need: HEADER_LEN, have: len });
        }
        let hl = self.header_len() as usize;
        if hl < HEADER_LEN {
            return Err(WireError::Malformed { what: "TCP data offset below 5 words" });
        }
        if len < hl {
            return Err(WireError::Truncated { what: "TCP options", need: hl, have: len });
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn src_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::SRC_PORT)
    }

    pub fn dst_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::DST_PORT)
    }

    pub fn seq_number(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::SEQ)
    }

    pub fn ack_number(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::ACK)
    }

    /// Header length in bytes, options included.
    pub fn header_len(&self) -> u8 {
        (self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    pub fn flags(&self) -> Flags {
        Flags(self.buffer.as_ref()[field::FLAGS] & 0x3f)
    }

    pub fn window_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::WINDOW)
    }

    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    pub fn urgent_at(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::URGENT)
    }

    /// The raw option bytes.
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len() as usize]
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len() as usize..]
    }

    /// Does the checksum verify for this segment carried from `src` to `dst`? (The whole buffer is
    /// the segment.)
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        let b = self.buffer.as_ref();
        let acc = checksum::pseudo_header(src, dst, protocol::TCP, b.len() as u16);
        checksum::verifies(checksum::accumulate(acc, b))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_src_port(&mut self, v: u16) {
        write_u16(self.buffer.as_mut(), field::SRC_PORT, v);
    }

    pub fn set_dst_port(&mut self, v: u16) {
        write_u16(self.buffer.as_mut(), field::DST_PORT, v);
    }

    pub fn set_seq_number(&mut self, v: u32) {
        write_u32(self.buffer.as_mut(), field::SEQ, v);
    }

    pub fn set_ack_number(&mut self, v: u32) {
        write_u32(self.buffer.as_mut(), field::ACK, v);
    }

    /// Header length in bytes (a multiple of 4, 20 to 60).
    pub fn set_header_len(&mut self, len: u8) {
        self.buffer.as_mut()[field::DATA_OFF] = (len / 4) << 4;
    }

    pub fn set_flags(&mut self, f: Flags) {
        self.buffer.as_mut()[field::FLAGS] = f.0;
    }

    pub fn set_window_len(&mut self, v: u16) {
        write_u16(self.buffer.as_mut(), field::WINDOW, v);
    }

    pub fn set_checksum(&mut self, v: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, v);
    }

    pub fn set_urgent_at(&mut self, v: u16) {
        write_u16(self.buffer.as_mut(), field::URGENT, v);
    }

    pub fn options_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len() as usize;
        &mut self.buffer.as_mut()[HEADER_LEN..hl]
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len() as usize;
        &mut self.buffer.as_mut()[hl..]
    }

    /// Recompute the checksum over the whole buffer as the segment from `src` to `dst`.
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let b = self.buffer.as_ref();
        let acc = checksum::pseudo_header(src, dst, protocol::TCP, b.len() as u16);
        let c = checksum::finish(checksum::accumulate(acc, b));
        self.set_checksum(c);
    }
}

/// Most options a header can carry (40 option bytes, at least one byte each... in practice far fewer).
pub const MAX_OPTIONS: usize = 16;

/// The meaning of a TCP segment header (the payload is left to the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repr {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: Flags,
    pub window: u16,
    pub urgent: u16,
    /// Options in wire order, padding (NOP, End) included when parsed; [`Repr::emit`] pads with
    /// End bytes to a multiple of 4.
    pub options: Vec<TcpOption>,
}

impl Repr {
    /// Parse a segment carried from `src` to `dst`; the checksum must verify.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>, src: Ipv4Addr, dst: Ipv4Addr) -> Result<Repr, WireError> {
        p.check_len()?;
        if !p.verify_checksum(src, dst) {
            return Err(WireError::BadChecksum { what: "TCP segment" });
        }
        let mut options = Vec::new();
        let mut rest = p.options();
        while !rest.is_empty() {
            let (opt, n) = TcpOption::parse(rest)?;
            options.push(opt);
            rest = &rest[n..];
            if opt == TcpOption::End {
                break;
            }
        }
        Ok(Repr {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            seq: p.seq_number(),
            ack: p.ack_number(),
            flags: p.flags(),
            window: p.window_len(),
            urgent: p.urgent_at(),
            options,
        })
    }

    /// Option bytes, padded to a multiple of 4.
    pub fn options_len(&self) -> usize {
        self.options.iter().map(TcpOption::wire_len).sum::<usize>().div_ceil(4) * 4
    }

    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options_len()
    }

    /// Write the header into a packet whose buffer is exactly header + payload (payload already in place
    /// or written later: call [`Packet::fill_checksum`] again then). Fails if the options do not fit.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        p: &mut Packet<T>,
        src: Ipv4Addr,
        dst: Ipv4Addr,
    ) -> Result<(), WireError> {
        let hl = self.header_len();
        if hl > MAX_HEADER_LEN {
            return Err(WireError::Malformed { what: "TCP options longer than 40 bytes" });
        }
        let have = p.buffer.as_ref().len();
        if have < hl {
            return Err(WireError::Truncated { what: "TCP header buffer", need: hl, have });
        }
        p.set_src_port(self.src_port);
        p.set_dst_port(self.dst_port);
        p.set_seq_number(self.seq);
        p.set_ack_number(self.ack);
        p.set_header_len(hl as u8);
        p.set_flags(self.flags);
        p.set_window_len(self.window);
        p.set_urgent_at(self.urgent);
        let opts = p.options_mut();
        let mut at = 0;
        for o in &self.options {
            at += o.emit(&mut opts[at..]);
        }
        opts[at..].fill(0);
        p.fill_checksum(src, dst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_roundtrip() {
        let opts = [
            TcpOption::Mss(1460),
            TcpOption::SackPermitted,
            TcpOption::Timestamps { tsval: 7, tsecr: 0 },
            TcpOption::Nop,
            TcpOption::WindowScale(7),
        ];
        let mut buf = [0u8; 20];
        let mut at = 0;
        for o in &opts {
            at += o.emit(&mut buf[at..]);
        }
        assert_eq!(at, 20);
        let mut rest = &buf[..];
        for o in &opts {
            let (p, n) = TcpOption::parse(rest).unwrap();
            assert_eq!(&p, o);
            rest = &rest[n..];
        }
    }

    #[test]
    fn bad_option_length_is_refused() {
        assert!(TcpOption::parse(&[2, 3, 0]).is_err());
        assert!(TcpOption::parse(&[8, 10, 0]).is_err());
        assert!(TcpOption::parse(&[30, 1]).is_err());
    }
}
