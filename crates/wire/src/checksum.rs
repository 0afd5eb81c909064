//! The Internet checksum (RFC 1071): one's complement sum of 16-bit big-endian words.
//!
//! Sums are accumulated in a `u64` and folded at the end, so partial sums of disjoint parts can be
//! added with plain `+` (that is what the template fast path does with precomputed sums).

use std::net::Ipv4Addr;

/// Add the 16-bit big-endian words of `data` to `acc` (an odd trailing byte is padded with zero).
#[inline]
pub fn accumulate(mut acc: u64, data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        // Eight bytes at a time: four words, summed as two 32-bit halves of a big-endian u64.
        let v = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        acc += (v >> 32) + (v & 0xffff_ffff);
    }
    let rest = chunks.remainder();
    let mut words = rest.chunks_exact(2);
    for w in &mut words {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// Fold a wide sum to 16 bits (end-around carry).
#[inline]
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The checksum field value for data whose sum is `acc`: the complement of the folded sum.
#[inline]
pub fn finish(acc: u64) -> u16 {
    !fold(acc)
}

/// Checksum of `data` alone (the value an IPv4 header checksum field holds).
pub fn checksum(data: &[u8]) -> u16 {
    finish(accumulate(0, data))
}

/// Sum of an address as two 16-bit words.
#[inline]
pub fn addr_sum(addr: Ipv4Addr) -> u64 {
    let v = u32::from(addr);
    u64::from(v >> 16) + u64::from(v & 0xffff)
}

/// Sum of the IPv4 pseudo header that TCP and UDP checksums cover.
#[inline]
pub fn pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, l4_len: u16) -> u64 {
    addr_sum(src) + addr_sum(dst) + u64::from(protocol) + u64::from(l4_len)
}

/// Does `data` (which contains its own checksum field) sum to all ones, i.e. verify?
pub fn verifies(acc: u64) -> bool {
    fold(acc) == 0xffff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(accumulate(0, &data)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(fold(accumulate(0, &[0x12, 0x34, 0x56])), 0x1234 + 0x5600);
    }

    #[test]
    fn chunked_and_wordwise_agree() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1001).collect();
        let slow = data.chunks(2).fold(0u64, |a, w| a + u64::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])));
        assert_eq!(fold(accumulate(0, &data)), fold(slow));
    }
}
