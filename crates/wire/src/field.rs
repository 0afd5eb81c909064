//! What every packet view shares: a header field is a byte range ([`Field`]) and multi-byte numbers
//! are in network byte order (big-endian). Each protocol module lists its own ranges in a `field`
//! module and reads and writes them with these helpers (smoltcp's `field` + `NetworkEndian`).
//!
//! The helpers index the buffer: callers check its length first (`check_len`), as the views do.

use std::net::Ipv4Addr;
use std::ops::Range;

/// The bytes a header field occupies.
pub type Field = Range<usize>;

/// The 16-bit number at the start of `f`.
pub fn read_u16(b: &[u8], f: Field) -> u16 {
    u16::from_be_bytes([b[f.start], b[f.start + 1]])
}

/// The 32-bit number at the start of `f`.
pub fn read_u32(b: &[u8], f: Field) -> u32 {
    u32::from_be_bytes([b[f.start], b[f.start + 1], b[f.start + 2], b[f.start + 3]])
}

/// The IPv4 address at the start of `f`.
pub fn read_addr(b: &[u8], f: Field) -> Ipv4Addr {
    Ipv4Addr::new(b[f.start], b[f.start + 1], b[f.start + 2], b[f.start + 3])
}

/// Write `v` at the start of `f`.
pub fn write_u16(b: &mut [u8], f: Field, v: u16) {
    b[f.start..f.start + 2].copy_from_slice(&v.to_be_bytes());
}

/// Write `v` at the start of `f`.
pub fn write_u32(b: &mut [u8], f: Field, v: u32) {
    b[f.start..f.start + 4].copy_from_slice(&v.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_byte_order() {
        let mut b = [0u8; 8];
        write_u16(&mut b, 0..2, 0x1234);
        write_u32(&mut b, 2..6, 0xdead_beef);
        assert_eq!(b, [0x12, 0x34, 0xde, 0xad, 0xbe, 0xef, 0, 0]);
        assert_eq!(read_u16(&b, 0..2), 0x1234);
        assert_eq!(read_u32(&b, 2..6), 0xdead_beef);
        assert_eq!(read_addr(&b, 2..6), Ipv4Addr::new(0xde, 0xad, 0xbe, 0xef));
    }
}
